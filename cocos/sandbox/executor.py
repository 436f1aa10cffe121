"""Local execution: the parent side of the warm fork server, and `execute` / `execute_many`.

The server (`_forkserver.py`) is started lazily on first use, reused by every call from any thread,
and restarted once when it has died; a job that still gets no answer comes back as `sandbox_error`
outcomes, never as passed or failed.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import selectors
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import cache, partial
from pathlib import Path

from cocos.records import ExecutionJob, ExecutionResult, Status, TestOutcome

log = logging.getLogger(__name__)

SERVER_SCRIPT = Path(__file__).with_name("_forkserver.py")
SERVER_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
READY_TIMEOUT_S = 20.0


class SandboxFailure(RuntimeError):
    """The sandbox itself failed (server down, protocol error); callers see sandbox_error outcomes."""


ISOLATIONS = ("redefine", "fork")
ISOLATION_ENV = "COCOS_SANDBOX_ISOLATION"  # an operator's default for jobs that do not choose


@dataclass(frozen=True)
class Limits:
    """Per-assert limits. `timeout_s` is wall clock; CPU time is capped at ceil(timeout_s) + 1 s.

    `isolation` is how asserts of one job are kept apart (see the cocos.sandbox docstring):
    "redefine" runs them one after another in one worker process, each against a fresh definition
    of the program, and moves the rest to a new worker whenever an assert ends, hangs or taints it;
    "fork" runs each in its own forked copy (process-level isolation, about 3x slower on HumanEval).
    The default is $COCOS_SANDBOX_ISOLATION, else "redefine".
    """

    timeout_s: float = 3.0
    memory_mb: int = 1024
    output_bytes: int = 1 << 20
    nproc: int = 64
    nofile: int = 64
    isolation: str = field(default_factory=lambda: os.environ.get(ISOLATION_ENV, "redefine"))

    def __post_init__(self) -> None:
        if not 0 < self.timeout_s <= 600:
            raise ValueError(f"timeout_s={self.timeout_s}: must be in (0, 600] seconds per assert")
        for name in ("memory_mb", "output_bytes", "nproc", "nofile"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: a limit must be a positive integer")
        if self.isolation not in ISOLATIONS:
            raise ValueError(
                f"isolation={self.isolation!r}: must be one of {ISOLATIONS} (redefine: fast, a fresh definition "
                "per assert; fork: a fresh process per assert)"
            )


_spawner: ThreadPoolExecutor | None = None


def _spawn(command: list[str]) -> subprocess.Popen[bytes]:
    """Popen from one long-lived thread: the server's parent-death signal fires when the *thread*
    that started it exits, so a server started from a short-lived worker thread would be killed."""
    global _spawner
    if _spawner is None:
        _spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sandbox-spawner")
    popen = partial(subprocess.Popen, env=SERVER_ENV, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    return _spawner.submit(popen, command, close_fds=True).result()


def _resolved_python() -> str:
    """The interpreter itself, never a pyenv shim (a shell script that reads the environment)."""
    python = sys.executable
    if "shims" in Path(python).parts:
        python = os.path.realpath(shutil.which("python3") or python)
    return python


@cache
def _site_dirs(python: str) -> tuple[str, ...]:
    """The interpreter's own site-packages folders (as `site` would add them), asked once."""
    probe = "import json, site; print(json.dumps(site.getsitepackages()))"
    try:
        done = subprocess.run([python, "-I", "-c", probe], capture_output=True, text=True, timeout=30, check=True)
        return tuple(path for path in json.loads(done.stdout) if os.path.isdir(path))
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        log.warning("no site-packages listed for %s (%r): candidates get the standard library only", python, exc)
        return ()


def _interpreter_binds(python: str) -> list[str]:
    """bwrap arguments that let the unprivileged job uids read the interpreter under a private folder such as /root.

    Each closed ancestor becomes an empty tmpfs and only the interpreter's own trees are bound back,
    so the rest of that folder (/root/.aws, say) stays invisible to candidates.
    """
    trees = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, os.path.dirname(os.path.realpath(python)))}
    closed: set[str] = set()
    for tree in trees:
        parts = Path(tree).parts
        for depth in range(2, len(parts) + 1):
            ancestor = str(Path(*parts[:depth]))
            if os.path.isdir(ancestor) and not os.stat(ancestor).st_mode & 0o001:
                closed.add(ancestor)
                break
    args: list[str] = []
    for ancestor in sorted(closed):
        args += ["--perms", "0755", "--tmpfs", ancestor]
    made: set[str] = set()
    for tree in sorted(trees):
        ancestor = next((a for a in closed if tree.startswith(a + os.sep)), None)
        if ancestor is None:
            continue
        for middle in reversed(Path(tree).parents):  # bwrap would create these 0700
            if len(middle.parts) > len(Path(ancestor).parts) and str(middle) not in made:
                made.add(str(middle))
                args += ["--perms", "0755", "--dir", str(middle)]
        args += ["--ro-bind", tree, tree]
    return args


MASKED_BY_BWRAP = ("/tmp", "/dev/shm")


def _unmask_binds(paths: list[str]) -> list[str]:
    """bwrap arguments that bind back, read-only, the trees the server needs (its script, the venv) when they
    live under a folder that the sandbox replaces by an empty tmpfs, as a checkout under /tmp does."""
    args: list[str] = []
    made: set[str] = set()
    for tree in sorted({os.path.realpath(p) for p in paths}):
        mask = next((m for m in MASKED_BY_BWRAP if tree.startswith(m + os.sep)), None)
        if mask is None:
            continue
        for middle in reversed(Path(tree).parents):
            if len(middle.parts) > len(Path(mask).parts) and str(middle) not in made:
                made.add(str(middle))
                args += ["--perms", "0755", "--dir", str(middle)]
        args += ["--ro-bind", tree, tree]
    return args


class ForkServer:
    """A handle on one fork-server process; thread-safe; restarts the process when it has died."""

    def __init__(self, python: str | None = None, use_bwrap: bool | None = None) -> None:
        self.python = python or _resolved_python()
        self.use_bwrap = shutil.which("bwrap") is not None if use_bwrap is None else use_bwrap
        self.layers: dict[str, bool] = {}
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: str | None = None
        self._owner_pid = os.getpid()
        self._generation = 0  # bumped at every start: connections to an older server are dropped
        self._local = threading.local()

    @property
    def socket_path(self) -> str:
        assert self._dir is not None
        return os.path.join(self._dir, "server.sock")

    def _command(self) -> list[str]:
        # -S: no site import (its .pth hooks would preload modules that make every fork dearer); the
        # interpreter's site-packages still come after the standard library, imported on demand.
        server = [self.python, "-I", "-S", "-B", str(SERVER_SCRIPT), self.socket_path, *_site_dirs(self.python)]
        if not self.use_bwrap:
            return server
        return [
            "bwrap", "--die-with-parent", "--new-session",
            "--unshare-ipc", "--unshare-uts", "--unshare-net", "--unshare-pid",
            "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
            "--perms", "0755", "--tmpfs", "/tmp", "--perms", "0755", "--tmpfs", "/dev/shm",
            *_interpreter_binds(self.python),
            *_unmask_binds([sys.prefix, sys.base_prefix, os.path.dirname(self.python), str(SERVER_SCRIPT.parent)]),
            "--bind", self._dir, self._dir, "--cap-add", "ALL",
            "--setenv", "COCOS_SANDBOX_PRIVATE_TMP", "1",
            *server,
        ]  # fmt: skip

    def _start(self) -> None:
        self._stop()
        self._dir = tempfile.mkdtemp(prefix="cocos-sandbox-")
        os.chmod(self._dir, 0o711)  # the unprivileged child must traverse it to reach its own folder
        self._process = _spawn(self._command())
        line = self._ready_line()
        try:
            ready = json.loads(line)
        except ValueError as exc:
            self._stop()
            raise SandboxFailure(f"fork server did not start: {line[:200]!r}") from exc
        self.layers = {**ready["layers"], "bwrap": self.use_bwrap}
        self._owner_pid = os.getpid()
        self._generation += 1
        missing = [name for name in ("root", "netns", "pidns") if not self.layers.get(name)]
        if missing == ["root"] and self.layers.get("userns"):
            log.warning(
                "sandbox without root: a user namespace gives network and PID isolation, but candidates "
                "run as the caller's uid (without capabilities) instead of a per-job uid"
            )
        elif missing:
            log.warning("sandbox degraded: no %s layer(s); rlimits and process groups still apply", missing)
        log.info("fork server %s started with layers %s", ready["pid"], self.layers)

    def _ready_line(self) -> bytes:
        assert self._process is not None and self._process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._process.stdout, selectors.EVENT_READ)
            if not selector.select(READY_TIMEOUT_S):
                return b""
        return self._process.stdout.readline()

    def _stop(self) -> None:
        if self._process is not None and self._owner_pid == os.getpid():
            self._process.kill()
            self._process.wait()
        self._process = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _ensure(self) -> tuple[str, int]:
        with self._lock:
            forked = self._owner_pid != os.getpid()
            if forked:  # a forked copy of our process must not share the parent's server
                self._process, self._dir = None, None
            if self._process is None or self._process.poll() is not None:
                if self._process is not None:
                    log.warning("fork server exited with %s; restarting", self._process.returncode)
                self._start()
            return self.socket_path, self._generation

    def _connection(self) -> socket.socket:
        """This thread's connection (its own J in the server), opened on first use and after a restart."""
        path, generation = self._ensure()
        key = (os.getpid(), generation)
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.key == key:
            return conn
        self._drop_connection()
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(path)
        except OSError:
            conn.close()
            raise
        self._local.conn, self._local.key = conn, key
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def _request(self, payload: dict, timeout: float) -> dict:
        conn = self._connection()
        data = json.dumps(payload).encode()
        try:
            conn.settimeout(timeout)
            conn.sendall(struct.pack("!I", len(data)) + data)
            (size,) = struct.unpack("!I", _recv_exact(conn, 4))
            return json.loads(_recv_exact(conn, size))
        except BaseException:
            self._drop_connection()  # a half-read reply would desynchronise the next request
            raise

    def run(self, code: str, tests: Sequence[str], setup: str, limits: Limits) -> list[dict]:
        """Outcome dicts, one per test; raises SandboxFailure when two attempts get no answer."""
        payload = {"code": code, "tests": list(tests), "setup": setup, "limits": asdict(limits)}
        timeout = len(tests) * (limits.timeout_s + 2.0) + 15.0
        last: Exception | None = None
        for attempt in range(3):
            generation = self._generation
            try:
                reply = self._request(payload, timeout)
            except (OSError, ValueError, struct.error, SandboxFailure) as exc:
                last = exc
                with self._lock:
                    if self._generation != generation:
                        continue  # another thread restarted the server meanwhile: just reconnect
                    if attempt == 0 and not isinstance(exc, TimeoutError) and self._process is not None:
                        if self._process.poll() is None:
                            log.warning("fork server connection failed (%r); reconnecting", exc)
                            continue  # the server is alive: only this connection's J was lost
                    log.warning("fork server request failed (%r); restarting it", exc)
                    self._stop()
                continue
            if "error" in reply:
                raise SandboxFailure(f"fork server job failed: {reply['error']}")
            if len(reply["outcomes"]) != len(tests):
                raise SandboxFailure("fork server returned the wrong number of outcomes")
            return reply["outcomes"]
        raise SandboxFailure(f"fork server unavailable: {last!r}")


def _recv_exact(conn: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = conn.recv(min(size, 1 << 20))
        if not chunk:
            raise ConnectionError("fork server closed the connection")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def sandbox_error_result(count: int, message: str) -> ExecutionResult:
    """A result whose every verdict is missing because of the sandbox: it carries no reward."""
    outcome = TestOutcome(Status.SANDBOX_ERROR, message[:300], "SandboxError")
    return ExecutionResult(outcomes=(outcome,) * count)


_default: ForkServer | None = None
_default_lock = threading.Lock()


def default_server() -> ForkServer:
    global _default
    with _default_lock:
        if _default is None:
            _default = ForkServer()
            atexit.register(_default.close)
        return _default


def _check_tests(tests: Sequence[str]) -> None:
    if isinstance(tests, str) or not all(isinstance(test, str) for test in tests):
        raise TypeError("tests must be a sequence of assert strings, not a single string")


def execute(
    code: str, tests: Sequence[str], setup: str = "", timeout_s: float = 3.0, **limits: int | str
) -> ExecutionResult:
    """Run each assert in `tests` separately against `setup + code + "\\n" + assert`.

    Returns one outcome per test, in order. Limits: memory_mb, output_bytes, nproc, nofile, isolation.

    >>> execute("def f(x):\\n    return x + 1", ["assert f(1) == 2", "assert f(1) == 3"]).passed
    1
    """
    _check_tests(tests)
    checked = Limits(timeout_s=timeout_s, **limits)
    if not tests:
        return ExecutionResult(outcomes=())
    try:
        outcomes = default_server().run(code, tests, setup, checked)
    except SandboxFailure as exc:
        log.error("sandbox failure: %s", exc)
        return sandbox_error_result(len(tests), str(exc))
    return ExecutionResult(outcomes=tuple(TestOutcome.from_dict(outcome) for outcome in outcomes))


def execute_many(
    jobs: Sequence[ExecutionJob], workers: int | None = None, **limits: int | str
) -> list[ExecutionResult]:
    """`execute` for each job, `workers` at a time (default: CPU count), results in the order of `jobs`."""
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(jobs) <= 1:
        return [execute(job.code, job.tests, job.setup, job.timeout_s, **limits) for job in jobs]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox") as pool:
        futures = [pool.submit(execute, job.code, job.tests, job.setup, job.timeout_s, **limits) for job in jobs]
        return [future.result() for future in futures]


class LocalExecutor:
    """The selector's local choice: the same two calls as `SandboxClient`."""

    def execute(
        self, code: str, tests: Sequence[str], setup: str = "", timeout_s: float = 3.0, **limits: int | str
    ) -> ExecutionResult:
        return execute(code, tests, setup, timeout_s, **limits)

    def execute_many(self, jobs: Sequence[ExecutionJob], workers: int | None = None) -> list[ExecutionResult]:
        return execute_many(jobs, workers)
