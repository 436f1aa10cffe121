"""Hostile candidates: each test checks one property of the sandbox, then runs a normal job that must
still get correct verdicts from the same fork server (same pid).

Which layer stops what (see the cocos.sandbox docstring):
- infinite loop, ignored SIGALRM/SIGTERM: wall-clock SIGKILL from the warden (+ RLIMIT_CPU).
- fork bomb: RLIMIT_NPROC (the job's own uid); the job's PID namespace is cleared after every assert.
- 4 GB allocation: RLIMIT_AS. 100 MB of output: RLIMIT_FSIZE on the captured output file.
- TCP to 127.0.0.1: a network namespace of the sandbox (bwrap's, or one per job; needs root). Without
  it, only the cluster NetworkPolicy in k8s/sandbox/ stops egress; the test skips.
- AWS secret: the server starts with an empty environment; /proc/<pid>/environ of other users is closed.
- writing into the project tree: an unprivileged uid (EACCES), and bubblewrap's read-only root (EROFS).
  Writing to /tmp: only bubblewrap (private root-owned /tmp) stops it; that half skips without bwrap.
- killing the parent / the server: an unprivileged uid and the PID namespace.
- os._exit / sys.exit / replaced builtins: the harness's nonce-tagged verdict channel, and builtins
  restored after the definition.
- reading another test's or job's files: private 0700 folders under 0711 parents, deleted afterwards.

Run: pytest tests/sandbox/test_hostile.py -q   (about 15 s; timeouts are 1 s)
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from cocos.records import Status
from cocos.sandbox import execute
from cocos.sandbox.executor import ForkServer, Limits, default_server

CODE = "def square(x):\n    return x * x\n"
FAST = 1.0


@pytest.fixture(autouse=True)
def same_server_stays_healthy():
    """Runs a normal job after each hostile one and checks the server process was not replaced."""
    assert execute(CODE, ["assert square(3) == 9"]).all_passed
    server = default_server()
    pid = server._process.pid
    yield
    result = execute(CODE, ["assert square(4) == 16", "assert square(4) == 15", "assert cube(1) == 1"])
    assert [o.status for o in result.outcomes] == [Status.PASSED, Status.FAILED, Status.ERROR]
    assert server._process.pid == pid, "the fork server died and was restarted"


def run(test: str, code: str = CODE, timeout_s: float = FAST, **limits):
    start = time.monotonic()
    outcome = execute(code, [test], timeout_s=timeout_s, **limits).outcomes[0]
    return outcome, time.monotonic() - start


def test_infinite_loop_times_out():
    outcome, took = run("while True: pass")
    assert outcome.status is Status.TIMEOUT and took < FAST + 2


def test_fork_bomb_is_contained():
    outcome, took = run("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass")
    assert outcome.status is not Status.PASSED and took < FAST + 3


def test_allocating_4gb_is_a_memory_outcome():
    outcome, _ = run("x = bytearray(4 * 1024**3)\nassert x")
    assert outcome.status is Status.MEMORY


def test_printing_100mb_hits_the_output_limit():
    outcome, took = run("import sys\nfor _ in range(100):\n    sys.stdout.write('x' * 1024 * 1024)\nassert True")
    assert outcome.status is Status.OUTPUT_LIMIT and took < FAST + 2


def test_no_tcp_connection_to_a_local_listener():
    if not default_server().layers.get("netns"):
        pytest.skip("no network namespace here: only the cluster NetworkPolicy stops this")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(0.2)
        port = listener.getsockname()[1]
        test = f"import socket\ns = socket.socket()\ns.settimeout(0.5)\ns.connect(('127.0.0.1', {port}))\nassert True"
        outcome, _ = run(test)
        assert outcome.status is Status.ERROR
        with pytest.raises(TimeoutError):
            listener.accept()


def test_parent_secrets_are_not_visible(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sekrit-value")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "sekrit-value")
    probe = (
        "import glob, os\n"
        "found = [k for k in os.environ if k.startswith(('AWS_', 'MLFLOW_'))]\n"
        "for path in glob.glob('/proc/*/environ'):\n"
        "    try:\n"
        "        found += [path] if b'sekrit-value' in open(path, 'rb').read() else []\n"
        "    except OSError:\n"
        "        pass\n"
        "assert not found, found"
    )
    fresh = ForkServer()  # started after the variables were set
    try:
        outcomes = fresh.run("", [probe], "", Limits(timeout_s=FAST))
    finally:
        fresh.close()
    assert outcomes[0]["status"] == "passed", outcomes[0]
    assert run(probe)[0].status is Status.PASSED


def test_cannot_write_into_the_project_tree():
    target = Path(__file__).with_name("written_by_candidate.txt")
    outcome, _ = run(f"open({str(target)!r}, 'w').write('x')")
    # read-only, or not there at all (a checkout under /tmp is hidden by the sandbox's private /tmp)
    assert outcome.status is Status.ERROR and outcome.error_type in {"PermissionError", "OSError", "FileNotFoundError"}
    assert not target.exists()


def test_cannot_write_to_tmp_with_bubblewrap():
    if not default_server().layers.get("bwrap"):
        pytest.skip("only bubblewrap's private /tmp stops writes to world-writable host folders")
    name = f"/tmp/cocos-hostile-{os.getpid()}"
    outcome, _ = run(f"open({name!r}, 'w').write('x')")
    assert outcome.status is Status.ERROR and not Path(name).exists()


@pytest.mark.parametrize("exit_call", ["import os; os._exit(0)", "import sys; sys.exit(0)", "raise SystemExit(0)"])
def test_exiting_before_the_assert_never_passes(exit_call):
    outcome, _ = run(f"{exit_call}\nassert square(2) == 5")
    assert outcome.status is Status.ERROR


def test_killing_the_parent_and_everything_else():
    test = (
        "import os, signal\n"
        "for pid in (os.getppid(), 1, -1, *range(2, 400)):\n"
        "    try:\n"
        "        os.kill(pid, signal.SIGKILL)\n"
        "    except OSError:\n"
        "        pass\n"
        "assert square(2) == 5"
    )
    outcome, _ = run(test)
    assert outcome.status is not Status.PASSED


def test_ignoring_sigalrm_and_sigterm_still_times_out():
    test = (
        "import signal\n"
        "for s in (signal.SIGALRM, signal.SIGTERM):\n"
        "    signal.signal(s, signal.SIG_IGN)\n"
        "while True: pass"
    )
    outcome, took = run(test)
    assert outcome.status is Status.TIMEOUT and took < FAST + 2


def test_deep_recursion():
    code = "def down(n):\n    return down(n + 1)\n"
    outcome, _ = run("assert down(0)", code=code)
    assert outcome.status is Status.ERROR and outcome.error_type == "RecursionError"
    outcome, _ = run("import sys\nsys.setrecursionlimit(10**9)\nassert down(0)", code=code)
    assert outcome.status is not Status.PASSED


def test_segfault_via_ctypes():
    outcome, _ = run("import ctypes\nctypes.string_at(0)")
    assert outcome.status is Status.ERROR and outcome.error_type == "SIGSEGV"


def test_thread_left_running_does_not_change_or_delay_the_verdict():
    code = CODE + "import threading\nthreading.Thread(target=lambda: [0 for _ in iter(int, 1)]).start()\n"
    outcome, took = run("assert square(2) == 4", code=code)
    assert outcome.status is Status.PASSED and took < FAST
    outcome, _ = run("assert square(2) == 5", code=code)
    assert outcome.status is Status.FAILED


def test_replacing_builtins_and_os_cannot_forge_a_pass():
    code = (
        CODE + "import builtins, os\n"
        "builtins.AssertionError = ZeroDivisionError\n"
        "builtins.type = lambda *a: int\n"
        "builtins.str = lambda *a: 'passed'\n"
        "_write = os.write\n"
        "os.write = lambda fd, data: _write(fd, data.replace(b'failed', b'passed'))\n"
    )
    outcome, _ = run("assert square(2) == 5", code=code)
    assert outcome.status is Status.FAILED


def test_cannot_read_another_tests_or_jobs_files():
    writer = "import os\nopen('note.txt', 'w').write('secret')\nassert os.path.exists('note.txt')"
    reader = (
        "import glob, os\n"
        "here = os.getcwd()\n"
        "assert not os.path.exists('note.txt')\n"
        "assert not glob.glob('/tmp/**/note.txt', recursive=True)\n"
        "try:\n"
        "    siblings = os.listdir(os.path.dirname(here))\n"
        "except OSError:\n"
        "    siblings = []\n"
        "assert siblings in ([], [os.path.basename(here)]), siblings"
    )
    result = execute("", [writer, reader], timeout_s=FAST)
    assert [o.status for o in result.outcomes] == [Status.PASSED, Status.PASSED], result
    assert run(reader, code="")[0].status is Status.PASSED


def test_concurrent_jobs_do_not_disturb_each_other():
    results = {}

    def job(name, test):
        results[name] = execute(CODE, [test, "assert square(5) == 25"], timeout_s=FAST)

    threads = [
        threading.Thread(target=job, args=("loop", "while True: pass")),
        threading.Thread(target=job, args=("ok", "assert square(2) == 4")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [o.status for o in results["loop"].outcomes] == [Status.TIMEOUT, Status.PASSED]
    assert results["ok"].all_passed
