"""Hostile candidates: each test checks one property of the sandbox, under both isolation modes. The
hostile assert is followed, in the same job, by two normal asserts whose verdicts must be right (for
`redefine`, they run after it in the same worker or in the fresh copy it was handed to), and then by
a normal job that must get correct verdicts from the same fork server (same pid).

Which layer stops what (see the cocos.sandbox docstring):
- infinite loop, ignored SIGALRM/SIGTERM: wall-clock SIGKILL from the warden (+ RLIMIT_CPU).
- fork bomb: RLIMIT_NPROC (the job's own uid); the job's PID namespace is cleared after every assert
  ("fork"), or the worker, PID 1 of its namespace, is replaced as soon as it has a child ("redefine").
- 4 GB allocation: RLIMIT_AS. 100 MB of output: RLIMIT_FSIZE on the captured output file.
- TCP to 127.0.0.1: a network namespace of the sandbox (bwrap's, or one per job; needs root). Without
  it, only the cluster NetworkPolicy in k8s/sandbox/ stops egress; the test skips.
- AWS secret: the server starts with an empty environment; /proc/<pid>/environ of other users is closed.
- writing into the project tree: an unprivileged uid (EACCES), and bubblewrap's read-only root (EROFS).
  Writing to /tmp: only bubblewrap (private root-owned /tmp) stops it; that half skips without bwrap.
- killing the parent / the server: an unprivileged uid and the PID namespace.
- os._exit / sys.exit / replaced builtins: the harness's nonce-tagged verdict channel, functions bound
  before the candidate ran (a private copy of builtins), and builtins restored after the candidate's code.
- reading another test's or job's files: private 0700 folders under 0711 parents, deleted afterwards;
  under "redefine" a worker whose folder holds anything but its output hands the rest to a fresh one.
- timers, daemons, changed process state (added for "redefine", checked in both modes): a worker hands
  off after an assert that leaves any of them, or puts the state back.

Run: pytest tests/sandbox/test_hostile.py -q   (about 25 s; timeouts are 1 s)
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
AFTER = ("assert square(2) == 4", "assert square(2) == 5")  # a pass and a fail after the hostile assert
AFTER_ANY = ("assert len('ok') == 2", "assert len('ok') == 3")  # the same, for programs without square

pytestmark = pytest.mark.usefixtures("isolation")


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
    """The hostile assert's outcome and how long the whole job took; checks the two asserts after it."""
    after = AFTER if "def square" in code else AFTER_ANY
    start = time.monotonic()
    result = execute(code, [test, *after], timeout_s=timeout_s, **limits)
    took = time.monotonic() - start
    assert [o.status for o in result.outcomes[1:]] == [Status.PASSED, Status.FAILED], result
    return result.outcomes[0], took


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
        outcomes = fresh.run("", [probe, *AFTER_ANY], "", Limits(timeout_s=FAST))
    finally:
        fresh.close()
    assert [o["status"] for o in outcomes] == ["passed", "passed", "failed"], outcomes
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


def test_timer_left_armed_does_not_reach_the_next_assert():
    arm = "import signal\nsignal.signal(signal.SIGALRM, lambda *a: 1 / 0)\nsignal.setitimer(signal.ITIMER_REAL, 0.2)"
    wait = "import time\ntime.sleep(0.5)\nassert square(3) == 9"
    result = execute(CODE, [arm, wait], timeout_s=FAST)
    assert [o.status for o in result.outcomes] == [Status.PASSED, Status.PASSED], result


def test_daemon_left_behind_cannot_touch_later_asserts():
    daemon = (
        "import os, signal, time\n"
        "if os.fork() == 0:\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(0.3)\n"
        "        for fd in range(3, 64):\n"
        "            try:\n"
        "                os.write(fd, b'passed')\n"
        "            except OSError:\n"
        "                pass\n"
        "        os.kill(os.getppid(), signal.SIGKILL)\n"
        "    os._exit(0)\n"
        "assert square(1) == 1"
    )
    wait = "import time\ntime.sleep(0.6)\nassert square(2) == 5"
    result = execute(CODE, [daemon, wait, "assert square(2) == 4"], timeout_s=FAST)
    assert [o.status for o in result.outcomes] == [Status.PASSED, Status.FAILED, Status.PASSED], result


def test_process_state_changed_by_an_assert_is_put_back():
    change = (
        "import builtins, os, signal, sys, io\n"
        "os.environ['CHANGED'] = '1'\n"
        "sys.stdout = io.StringIO()\n"
        "sys.setrecursionlimit(50)\n"
        "builtins.len = lambda x: 0\n"
        "os.listdir = lambda *a: ['forged']\n"
        "signal.getsignal = lambda *a: None\n"
        "sys.modules['os'] = None\n"
        "os.chdir('/')\n"
        "assert True"
    )
    check = (
        "import os, sys, signal\n"
        "assert 'CHANGED' not in os.environ\n"
        "assert sys.stdout.fileno() == 1\n"
        "assert sys.getrecursionlimit() > 50\n"
        "assert len('ab') == 2\n"
        "assert signal.getsignal(signal.SIGTERM) is not None\n"
        "assert os.listdir('.') in ([], ['output'])"
    )
    result = execute(CODE, [change, check], timeout_s=FAST)
    assert [o.status for o in result.outcomes] == [Status.PASSED, Status.PASSED], result


def test_module_attributes_are_shared_only_under_redefine(isolation):
    """The documented difference: `redefine` puts back builtins, os, signal and some sys state, not
    the attributes of every imported module; `fork` gives each assert a copy of the untouched program."""
    result = execute("import math\n", ["math.pi = 3\nassert True", "assert math.pi > 3.1"], timeout_s=FAST)
    expected = Status.FAILED if isolation == "redefine" else Status.PASSED
    assert [o.status for o in result.outcomes] == [Status.PASSED, expected], result


def _forkserver_module():
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "cocos" / "sandbox" / "_forkserver.py"
    spec = importlib.util.spec_from_file_location("_forkserver_for_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("source", "may_tamper"),
    [
        ("import math\ndef f(xs):\n    return sorted(x * x for x in xs)\n", False),
        ("class A:\n    def __init__(self):\n        self.x = 1\n", False),
        ("import builtins\nbuiltins.len = None\n", True),
        ("from os import environ\n", True),
        ("def f():\n    return ().__class__.__base__.__subclasses__()\n", True),
        ("def f(g):\n    return [g.__globals__ for _ in range(1)]\n", True),  # nested code object
        ("setattr(__import__('sys'), 'x', 1)\n", True),
    ],
)
def test_worker_restores_shared_modules_when_code_can_reach_them(source, may_tamper):
    """`redefine` skips putting builtins/os/signal back only for code that names no way to them."""
    server = _forkserver_module()
    assert server._may_tamper(compile(source, "<candidate>", "exec")) is may_tamper


def test_harness_functions_see_a_private_copy_of_builtins():
    import builtins

    server = _forkserver_module()
    assert server._verdict_of.__builtins__ is not vars(builtins)
    assert server._verdict_of.__builtins__["isinstance"] is builtins.isinstance
