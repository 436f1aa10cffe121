"""The warm fork server: a stdlib-only process that runs untrusted asserts. Not imported by cocos.

Started by `cocos.sandbox.executor.ForkServer` as `python -I -S -B _forkserver.py SOCKET [SITE_DIR...]`,
with an empty environment, optionally inside bubblewrap. It never imports torch, a model or any secret.

Process tree (a client keeps one connection per thread; each connection gets its own J):
    server (root; accepts and forks) -> J (root, harness only: reads jobs one after another, watches
                                            deadlines; per job a new PID namespace for its next child)
      -> D (PID 1 of that namespace; the job's own uid, rlimits, empty env): defines setup + code once
        -> A_i, one fork per assert (isolation "fork"), in its own empty folder: runs the assert
           against D's definition, writes a verdict.
D enforces each assert's wall-clock deadline, then kills everything else in its namespace (fork
bombs, daemons, threads) and reaps it before the next assert. J is the backstop: it expects a
nonce-tagged line per assert within timeout + 1 s, otherwise it kills D (the whole namespace), marks
that assert as timed out and starts a new D for the rest.

Isolation "redefine" has no D: J forks W (PID 1 of a fresh PID namespace; the job's uid, rlimits,
empty env), which compiles and defines the program once (a failure or hang there is every assert's
fate), then runs the asserts in turn, each in its own empty folder against a fresh exec of the
program, and writes a token-tagged record per assert. J enforces each assert's deadline. W leaves,
and J forks a new W in a new namespace for the rest, when an assert ends it, overruns (SIGKILL), or
leaves threads, processes, timers or signal handlers behind; killing W, PID 1, ends its namespace.
"""

from __future__ import annotations

import _thread
import builtins
import ctypes
import errno
import gc
import importlib
import json
import math
import os
import resource
import select
import shutil
import signal
import socket
import stat
import struct
import sys
import time
import types
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

# The harness's own view of builtins: every function below is created with this private copy, so a
# candidate that replaces names in the shared builtins module cannot change what the harness calls.
__builtins__ = dict(vars(builtins))  # noqa: A001

# Each job runs under its own unprivileged uid/gid, drawn at random from this range: RLIMIT_NPROC is
# counted per uid, so a shared uid (65534) let one job's fork bomb, or any other sandbox on the host,
# make another job's harness fork fail with EAGAIN; it also keeps concurrent jobs from signalling or
# reading each other's processes. No passwd entry exists for these ids.
JOB_ID_BASE = 1_900_000_000
JOB_ID_SPAN = 1 << 24
FORK_RETRIES = (0.005, 0.02, 0.05, 0.1, 0.2, 0.4)
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
CLONE_NEWUSER = 0x10000000
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECUREBITS = 28
SECURE_NOROOT_LOCKED = 0x3F  # noroot, no_setuid_fixup, keep_caps_off, each with its lock
CAP_VERSION_3 = 0x20080522
PR_SET_DUMPABLE = 4
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
MESSAGE_CAP = 300
VERDICT_CAP = 4096
WORKER_READ_CAP = 1 << 20
VERDICTS = frozenset({"passed", "failed", "error", "memory", "sandbox_error"})  # what an assert's process reports
STATUSES = VERDICTS | {"output_limit"}  # what a redefine worker reports (it checks its own output size)
# A worker that finds one of these changed after an assert hands the rest to a fresh copy.
WATCHED_SIGNALS = (signal.SIGALRM, signal.SIGVTALRM, signal.SIGPROF, signal.SIGTERM, signal.SIGINT)
WATCHED_SIGNALS += (signal.SIGUSR1, signal.SIGUSR2, signal.SIGCHLD, signal.SIGPIPE, signal.SIGXFSZ)
TIMERS = (signal.ITIMER_REAL, signal.ITIMER_VIRTUAL, signal.ITIMER_PROF)
OUTPUT_NAME = "output"

_libc = ctypes.CDLL(None, use_errno=True)

# Imported once here so that forked children import them for free. Every module preloaded makes
# every fork dearer (more pages to copy and tear down; threading and random add at-fork hooks): a
# fork per assert costs about twice as much with the full list. So when the standard library is
# readable by the job uids (always under bubblewrap, which binds it), only what typical candidates
# import is preloaded and the rest is imported on demand; otherwise (no bubblewrap, interpreter in
# a private folder such as /root/.pyenv) the full list, as candidates could not import it later.
PRELOADED_LEAN = ("bisect", "collections", "functools", "heapq", "itertools", "math", "operator", "re", "string")
PRELOADED_LEAN += ("typing",)
PRELOADED_FULL = (
    *("abc", "array", "ast", "bisect", "calendar", "cmath", "collections", "contextlib", "copy", "dataclasses"),
    *("datetime", "decimal", "encodings.idna", "enum", "fractions", "functools", "glob", "hashlib", "heapq"),
    *("io", "itertools", "json", "math", "numbers", "operator", "pathlib", "pprint", "queue", "random", "re"),
    *("statistics", "string", "textwrap", "threading", "time", "typing", "unicodedata", "zlib"),
)


def _world_readable(folder: str) -> bool:
    """Whether any uid can list `folder` and traverse every folder above it."""
    try:
        if not os.stat(folder).st_mode & 0o005 == 0o005:
            return False
        parent = os.path.dirname(folder)
        while parent != folder:
            if not os.stat(parent).st_mode & 0o001:
                return False
            folder, parent = parent, os.path.dirname(parent)
    except OSError:
        return False
    return True


def _stdlib_public() -> bool:
    folders = {os.path.dirname(os.__file__), os.path.dirname(getattr(select, "__file__", os.__file__))}
    return all(_world_readable(folder) for folder in folders)


for _name in PRELOADED_LEAN if _stdlib_public() else PRELOADED_FULL:
    importlib.import_module(_name)

# Bound before any candidate runs: a candidate that replaces builtins or os functions in its own
# process cannot change what the harness calls to report its verdict.
_write = os.write
_exit = os._exit
_exec = builtins.exec
_compile = builtins.compile
_type = builtins.type
_str = builtins.str
_BaseException = builtins.BaseException
_AssertionError = builtins.AssertionError
_MemoryError = builtins.MemoryError
# What the redefine worker calls between asserts, bound here for the same reason.
_chdir, _dup2, _ftruncate, _fstat = os.chdir, os.dup2, os.ftruncate, os.fstat
_listdir, _waitpid = os.listdir, os.waitpid
_getitimer, _getsignal, _setrecursionlimit = signal.getitimer, signal.getsignal, sys.setrecursionlimit
_thread_count, _environ, _CodeType = _thread._count, os.environ, types.CodeType
# Names through which code can reach (and change) builtins, os, signal or sys. A worker restores
# those modules after each assert only when the program or a test uses one of them: restoring costs
# a fresh process about 0.3 ms of copy-on-write faults, and the harness itself does not rely on it.
TAMPER_NAMES = frozenset(
    {"builtins", "os", "_os", "posix", "signal", "_signal", "sys", "_sys", "importlib", "ctypes", "gc", "inspect"}
    | {"operator", "pickle", "_pickle", "marshal", "copyreg", "setattr", "delattr", "getattr", "vars", "globals"}
    | {"locals", "eval", "exec", "compile", "environ", "f_globals", "f_builtins", "f_back", "f_locals", "tb_frame"}
    | {"gi_frame", "cr_frame", "ag_frame", "__builtins__", "__import__", "__globals__", "__dict__", "__class__"}
    | {"__subclasses__", "__bases__", "__base__", "__mro__", "__getattribute__", "__setattr__", "__delattr__"}
    | {"__closure__", "__code__", "__func__", "__self__", "__loader__", "__spec__", "__reduce__", "__reduce_ex__"}
)


# D runs harness code after the candidate's module-level code has run in the same process; these
# modules are put back as they were before the asserts run, so monkeypatching them cannot reach the
# harness (and the asserts see the real builtins).
_GUARDED = (builtins, os, os.path, select, json, json.encoder, time, signal, resource)
_PRISTINE = tuple((vars(module), dict(vars(module))) for module in _GUARDED)


# What the worker's own harness code uses between asserts. Each module put back costs a fresh copy
# about 0.1 ms of copy-on-write faults, so the worker restores only these.
_WORKER_GUARDED = (builtins, os, signal)
_WORKER_PRISTINE = tuple(entry for entry in _PRISTINE if entry[0] in [vars(m) for m in _WORKER_GUARDED])


def _restore_modules(pristine: tuple = _PRISTINE, guarded: tuple = _GUARDED, modules: dict = sys.modules) -> None:
    for namespace, snapshot in pristine:
        dict.update(namespace, snapshot)
    for module in guarded:
        dict.__setitem__(modules, module.__name__, module)


def _unshare(flags: int) -> bool:
    return _libc.unshare(flags) == 0


def _token(size: int) -> str:
    return os.urandom(size).hex()


_own_pidns: int | None = None


def _new_pid_namespace() -> bool:
    """Make this process's next child PID 1 of a new PID namespace, without a middle process: go
    back to our own namespace for children (the last job's namespace has died), then unshare."""
    global _own_pidns
    if _own_pidns is None:
        _own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    if _libc.setns(_own_pidns, CLONE_NEWPID) != 0:
        return False
    return _unshare(CLONE_NEWPID)


def _pid_namespaces_work() -> bool:
    """Two jobs in a row, each with a new PID namespace whose PID 1 is a direct child."""
    for _ in range(2):
        if not _new_pid_namespace():
            return False
        pid = os.fork()
        if pid == 0:
            _exit(0 if os.getpid() == 1 else 1)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            return False
    return True


def _enter_user_namespace() -> bool:
    """Without root: become root of a new user namespace (only our own uid and gid mapped), and PID 1
    of a new PID namespace owned by it, so that the network and per-job PID namespaces work. The
    process that called this waits for that PID 1 and exits with its status; only PID 1 returns."""
    uid, gid = os.getuid(), os.getgid()
    if _libc.unshare(CLONE_NEWUSER | CLONE_NEWPID) != 0:
        return False
    try:
        for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
            with open(f"/proc/self/{name}", "w") as handle:
                handle.write(text)
    except OSError:
        return False
    child = os.fork()
    if child:
        _, status = os.waitpid(child, 0)
        _exit(os.waitstatus_to_exitcode(status) & 0xFF)
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    return True


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32))


def _drop_capabilities() -> None:
    """Root of our user namespace keeps no capability, and cannot regain one by exec."""
    for cap in range(64):
        _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    if _libc.prctl(PR_SET_SECUREBITS, SECURE_NOROOT_LOCKED, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_SECUREBITS failed")
    if _libc.capset(ctypes.byref(_CapHeader(CAP_VERSION_3, 0)), (_CapData * 2)()) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")
    _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


def _probe_namespaces(userns: bool = False) -> dict[str, bool]:
    """Which layers this server can apply; checked once in a throwaway child."""
    found = {}
    for name, works in (("netns", lambda: _unshare(CLONE_NEWNET)), ("pidns", _pid_namespaces_work)):
        pid = os.fork()
        if pid == 0:
            _exit(0 if works() else 1)
        _, status = os.waitpid(pid, 0)
        found[name] = os.waitstatus_to_exitcode(status) == 0
    found["root"] = os.geteuid() == 0 and not userns  # can switch to the per-job uids
    found["userns"] = userns
    return found


def _recv_exact(conn: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = conn.recv(min(size, 1 << 20))
        if not chunk:
            raise ConnectionError("connection closed mid-message")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _send(conn: socket.socket, payload: dict) -> None:
    data = json.dumps(payload).encode()
    conn.sendall(struct.pack("!I", len(data)) + data)


def _outcome(status: str, message: str = "", error_type: str | None = None, duration: float = 0.0) -> dict:
    return {"status": status, "message": message[:MESSAGE_CAP], "error_type": error_type, "duration_s": duration}


def _isolate(wdir: str, limits: dict, keep: tuple[int, ...], layers: dict, cpu_s: int, job_id: int) -> None:
    """Turn this (root) process into the unprivileged definer D: limits, the job's own uid, empty env."""
    os.chdir(wdir)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    out = os.open(OUTPUT_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(out, 1)
    os.dup2(out, 2)
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 65536)
    memory = limits["memory_mb"] * 1024 * 1024
    for kind, value in (
        (resource.RLIMIT_AS, memory),
        (resource.RLIMIT_DATA, memory),
        (resource.RLIMIT_CPU, cpu_s),
        (resource.RLIMIT_FSIZE, limits["output_bytes"]),
        (resource.RLIMIT_NOFILE, limits["nofile"]),
        (resource.RLIMIT_NPROC, limits["nproc"]),
        (resource.RLIMIT_CORE, 0),
    ):
        resource.setrlimit(kind, (value, value))
    if layers["root"]:
        os.fchown(1, job_id, job_id)
        os.setgroups([])
        os.setgid(job_id)
        os.setuid(job_id)
    elif layers["userns"]:
        _drop_capabilities()
    _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # cleared by setuid, so set after it


def _prepare_harness() -> None:
    """J, once per connection: what every D of its jobs inherits (default signal dispositions, the
    clean environment, stdio on fds 1 and 2). Done here rather than in each D because every write in
    a freshly forked process copies a page: these cost D about 0.5 ms per job."""
    for sig in (signal.SIGXFSZ, signal.SIGPIPE, signal.SIGINT, signal.SIGTERM, signal.SIGALRM, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    os.environ.clear()
    # HOME and TMPDIR are the current folder: each process's own (D's, then each assert's).
    os.environ.update({"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": ".", "TMPDIR": "."})
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
    sys.argv = [""]


def _verdict_of(exc: BaseException | None) -> tuple[str, str, str]:
    if exc is None:
        return "passed", "", ""
    if isinstance(exc, _AssertionError):
        return "failed", "AssertionError", _safe_str(exc)
    if isinstance(exc, _MemoryError):
        return "memory", "MemoryError", _safe_str(exc)
    return "error", _type(exc).__name__, _safe_str(exc)


def _line(nonce: str, index: int, outcome: dict) -> bytes:
    # One line per message, under PIPE_BUF, so writes are atomic and a candidate cannot split them.
    return (nonce + " " + json.dumps({"i": index, **outcome}) + "\n").encode()


def _fork() -> int:
    """os.fork, retried with backoff on EAGAIN (process limit reached while leftovers are reaped)."""
    for pause in FORK_RETRIES:
        try:
            return os.fork()
        except BlockingIOError:
            time.sleep(pause)
    return os.fork()


def _fork_writer(child: Callable[[int], object], *close_in_child: int) -> tuple[int, int]:
    """Fork a child that reports through a new pipe: it closes the read end and `close_in_child`, runs
    `child(write_fd)` and exits. The parent gets (pid, read_fd) and keeps no write end, so the read
    end sees EOF once the child and whatever it started are gone."""
    read_fd, write_fd = os.pipe()
    try:
        pid = _fork()
    except BaseException:
        os.close(read_fd)
        os.close(write_fd)
        raise
    if pid == 0:
        try:
            os.close(read_fd)
            for fd in close_in_child:
                os.close(fd)
            child(write_fd)
        finally:
            _exit(0)
    os.close(write_fd)
    return pid, read_fd


def _define_and_run(
    request: dict, wdirs: list[str], pending: list[int], rfd: int, nonce: str, layers: dict, job_id: int
) -> None:
    """D: PID 1 of a fresh PID namespace. Define the candidate once, then fork one child per assert."""
    limits = request["limits"]
    timeout = limits["timeout_s"]
    cpu = int(math.ceil(timeout)) + 1
    try:
        _isolate(wdirs[-1], limits, (rfd,), layers, cpu * (len(pending) + 1), job_id)
        namespace = {"__name__": "__main__", "__builtins__": builtins}
    except BaseException as exc:  # our own failure: report it as such, not as the candidate's
        _write(rfd, _line(nonce, -1, _outcome("sandbox_error", f"isolation failed: {exc!r}", "SandboxError")))
        _exit(0)
    prefix = "\n".join(part for part in (request["setup"], request["code"]) if part)
    caught = None
    try:
        _exec(_compile(prefix, "<candidate>", "exec"), namespace)
    except _BaseException as exc:
        caught = exc
    _restore_modules()
    status, error_type, message = _verdict_of(caught)
    if _size(OUTPUT_NAME) >= limits["output_bytes"]:
        status, error_type, message = "output_limit", "OutputLimit", f"output over {limits['output_bytes']} bytes"
    _write(rfd, _line(nonce, -1, _outcome(status, message, error_type or None)))
    if status != "passed":
        _exit(0)
    token = nonce.encode()
    for index in pending:
        test = _compiled(request["tests"][index])  # here, warm, rather than in each fresh copy
        try:
            outcome = _one_assert(test, namespace, wdirs[index], rfd, token, cpu, layers, limits)
        except _BaseException as exc:  # the harness failed (fork EAGAIN, pipe, ...): no candidate verdict
            outcome = _outcome("sandbox_error", f"harness failed: {exc!r}", "SandboxError")
        _write(rfd, _line(nonce, index, outcome))
    _exit(0)


def _one_assert(
    test: str | types.CodeType, namespace: dict, wdir: str, rfd: int, token: bytes, cpu: int, layers: dict, limits: dict
) -> dict:
    """D's side of one assert: fork A, wait for it (wall clock), clear the namespace, decide."""
    start = time.monotonic()
    pid, vr = _fork_writer(lambda vw: _run_assert(test, namespace, wdir, vw, token, cpu, layers), rfd)
    try:
        pidfd = os.pidfd_open(pid)
        try:
            timed_out = not select.select([pidfd], [], [], limits["timeout_s"])[0]
        finally:
            os.close(pidfd)
        if timed_out:
            _kill_quietly(pid)
        _, wait_status = os.waitpid(pid, 0)
        elapsed = time.monotonic() - start
        _clear_namespace(pid, layers)
        verdict = _drain(vr, VERDICT_CAP)
    finally:
        os.close(vr)
    ended = {"status": wait_status, "timed_out": timed_out, "elapsed": elapsed}
    return _decide(ended, verdict, token, _size(os.path.join(wdir, OUTPUT_NAME)), limits)


def _run_assert(
    test: str | types.CodeType, namespace: dict, wdir: str, vfd: int, token: bytes, cpu: int, layers: dict
) -> None:
    """A: one assert against the already defined candidate, in its own empty folder. Never returns."""
    try:
        os.chdir(wdir)
        out = os.open(OUTPUT_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(out)
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        if not layers["pidns"]:
            os.setsid()
    except BaseException as exc:
        _write(vfd, token + b"sandbox_error\0SandboxError\0" + repr(exc).encode()[:MESSAGE_CAP])
        _exit(0)
    caught = None
    try:
        _exec(_compile(test, "<test>", "exec") if _type(test) is _str else test, namespace)
    except _BaseException as exc:
        caught = exc
    status, error_type, message = _verdict_of(caught)
    _write(vfd, token + f"{status}\0{error_type}\0{message[:MESSAGE_CAP]}".encode(errors="replace"))
    _exit(0)


def _compiled(test: str) -> str | types.CodeType:
    """The test compiled, or its source when it does not compile (running it then reports why)."""
    try:
        return _compile(test, "<test>", "exec")
    except _BaseException:
        return test


def _run_redefined(request: dict, job_dir: str, layers: dict, outcomes: list, job_id: int) -> None:
    """J in `redefine` isolation: workers W, each PID 1 of a fresh PID namespace with its own empty
    folder, until every assert has a verdict. J runs none of the candidate's code, so no definer
    sits between J and W."""
    remaining = list(range(len(request["tests"])))

    def emit(index: int, outcome: dict) -> None:
        outcomes[index] = outcome

    while remaining:
        done = [0]
        try:
            folder = _private_folder(job_dir, layers, job_id)
            if layers["pidns"] and not _new_pid_namespace():
                raise OSError("could not create a PID namespace for the job")
            _worker_round(request, remaining, folder, emit, layers, done, job_id)
        except Exception as exc:  # the harness failed (fork EAGAIN, pipe, ...): no candidate verdict
            emit(remaining[done[0]], _outcome("sandbox_error", f"harness failed: {exc!r}", "SandboxError"))
            done[0] += 1
        remaining = remaining[done[0] :]


def _record(token: bytes, index: int, clean: bool, status: str, error_type: str, message: str) -> bytes:
    payload = f"{status}\0{error_type}\0{message[:MESSAGE_CAP]}".encode(errors="replace")
    return token + b"%d %d %d\n" % (index, int(clean), len(payload)) + payload


def _take_records(buffer: bytes, token: bytes) -> tuple[list[tuple[int, bool, bytes]], bytes]:
    """Complete worker records in `buffer`, and what is left; bytes without the token are skipped."""
    records = []
    while True:
        at = buffer.find(token)
        if at < 0:
            return records, buffer[-len(token) :]
        end = buffer.find(b"\n", at)
        if end < 0:
            return records, buffer[at:]
        try:
            index, clean, size = (int(part) for part in buffer[at + len(token) : end].split(b" "))
        except ValueError:
            buffer = buffer[at + len(token) :]
            continue
        if len(buffer) < end + 1 + size:
            return records, buffer[at:]
        records.append((index, bool(clean), buffer[end + 1 : end + 1 + size]))
        buffer = buffer[end + 1 + size :]


def _worker_round(
    request: dict, remaining: list[int], folder: str, emit: Callable[[int, dict], None], layers: dict,
    done: list[int], job_id: int,
) -> None:  # fmt: skip
    """Fork one worker W for `remaining`, relay its verdicts in order, and give the assert that was
    running when W ended or overran its deadline that fate; before W reports its definition of the
    program (record -1), that fate, or the definition's failure, is every remaining assert's.
    `done[0]` counts the settled asserts."""
    limits = request["limits"]
    timeout = limits["timeout_s"]
    token = _token(16).encode()
    last = time.monotonic()
    pid, vr = _fork_writer(lambda vw: _run_worker(request, remaining, folder, vw, token, layers, job_id))
    try:
        pidfd = os.pidfd_open(pid)
        buffer, handoff, timed_out, exited, watched = b"", False, False, False, [vr, pidfd]
        defined = False
        try:

            def settle(indices: list[int], outcome: dict) -> None:
                for index in indices:
                    emit(index, outcome)
                done[0] += len(indices)

            def accept(chunk: bytes) -> None:
                nonlocal buffer, handoff, last, defined
                records, buffer = _take_records((buffer + chunk)[-WORKER_READ_CAP:], token)
                for index, clean, payload in records:
                    expected = remaining[done[0]] if defined and done[0] < len(remaining) else -1
                    if handoff or done[0] >= len(remaining) or index != expected or (index == -1 and defined):
                        continue  # out of order: not the harness's record
                    parts = payload.decode(errors="replace").split("\0", 2)
                    now = time.monotonic()
                    elapsed, last = round(now - last, 4), now
                    if len(parts) != 3 or parts[0] not in STATUSES:
                        outcome = _outcome("error", "malformed verdict", "VerdictTampering", elapsed)
                    else:
                        outcome = _outcome(parts[0], parts[2], parts[1] or None, elapsed)
                    if index == -1:
                        defined = True
                        if outcome["status"] != "passed":  # the program fails before any assert
                            settle(remaining[done[0] :], outcome)
                        continue
                    settle([index], outcome)
                    handoff = not clean

            while done[0] < len(remaining) and not handoff and not exited:
                left = last + timeout - time.monotonic()
                if left <= 0:
                    timed_out = True
                    break
                ready = select.select(watched, [], [], left)[0]
                if vr in ready:
                    chunk = os.read(vr, 65536)
                    accept(chunk)
                    if not chunk:  # every writer closed it: only W's end is left to watch
                        watched = [pidfd]
                exited = pidfd in ready
        finally:
            os.close(pidfd)
        _kill_quietly(pid)  # as PID 1 of its namespace, W takes every process left in it along
        _, wait_status = os.waitpid(pid, 0)
        if not layers["pidns"]:
            _kill_quietly(-pid)
        accept(_drain(vr, WORKER_READ_CAP))  # written before W ended or was killed
        if done[0] < len(remaining) and not handoff:
            ended = {"status": wait_status, "timed_out": timed_out, "elapsed": time.monotonic() - last}
            targets = remaining[done[0] : done[0] + 1] if defined else remaining[done[0] :]
            fate = _decide(ended, b"", token, _size(os.path.join(folder, OUTPUT_NAME)), limits)
            killed = os.WIFSIGNALED(wait_status) and os.WTERMSIG(wait_status) == signal.SIGKILL
            if layers["pidns"] and killed and not timed_out:
                # Nothing inside its namespace can SIGKILL W, its PID 1, and we did not (no timeout):
                # the kernel's OOM killer or an operator did. Not the candidate's verdict.
                fate = _outcome("sandbox_error", "the worker was killed from outside (out of memory?)", "SandboxError")
            settle(targets, fate)
    finally:
        os.close(vr)


def _run_worker(
    request: dict, indices: list[int], folder: str, vfd: int, token: bytes, layers: dict, job_id: int
) -> None:
    """W: the asserts in turn, each against a fresh definition, in W's own folder with its output
    file emptied; never returns. After an assert that leaves a file, a thread, a child process, a
    timer or a changed signal handler behind, W reports it as its last verdict (not clean) and
    exits, so that J starts a fresh one, with a fresh folder, for the rest."""
    try:
        limits = request["limits"]
        cpu = int(math.ceil(limits["timeout_s"])) + 1
        os.setsid()  # its own group: kill(0, ...) reaches no harness process
        _isolate(folder, limits, (vfd,), layers, cpu * (len(indices) + 1), job_id)
        out = os.dup(1)  # W's own handle on its output file
        _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # orphans of W's children stay W's to see
        handlers = {sig: signal.getsignal(sig) for sig in WATCHED_SIGNALS}
        saved = (dict(os.environ), sys.stdout, sys.stderr, sys.getrecursionlimit())
        tests = request["tests"]
        source = "\n".join(part for part in (request["setup"], request["code"]) if part)
    except BaseException as exc:
        _write(vfd, _record(token, -1, False, "sandbox_error", "SandboxError", f"isolation failed: {exc!r}"))
        _exit(0)
    # The definition, in the job's own folder: its failure is every assert's; its namespace serves
    # the first assert.
    namespace: dict | None = {"__name__": "__main__", "__builtins__": builtins}
    caught = program = None
    codes = {index: _compiled(tests[index]) for index in indices}
    guard = True
    try:
        program = _compile(source, "<candidate>", "exec")
        guard = _may_tamper(program, *codes.values())
        _exec(program, namespace)
    except _BaseException as exc:
        caught = exc
    verdict = _verdict_of(caught)
    caught = None
    _restore_worker(saved, guard)  # first: the checks below must not call the candidate's replacements
    status, error_type, message = _output_checked(verdict, out, limits)
    _write(vfd, _record(token, -1, True, status, error_type, message))
    if status != "passed":
        _exit(0)
    for index in indices:
        try:
            _chdir(folder)
            _dup2(out, 1)
            _dup2(out, 2)
            _ftruncate(out, 0)
        except BaseException as exc:  # after the candidate's code ran here (it may hold every fd): its error
            _write(vfd, _record(token, index, False, "error", "SetupFailed", repr(exc)))
            _exit(0)
        caught = None
        try:
            if namespace is None:
                namespace = {"__name__": "__main__", "__builtins__": builtins}
                _exec(program, namespace)
            test = codes[index]
            _exec(_compile(test, "<test>", "exec") if _type(test) is _str else test, namespace)
        except _BaseException as exc:
            caught = exc
        verdict = _verdict_of(caught)
        namespace = caught = None
        _restore_worker(saved, guard)
        status, error_type, message = _output_checked(verdict, out, limits)
        clean = _worker_clean(handlers, folder)
        _write(vfd, _record(token, index, clean, status, error_type, message))
        if not clean:
            _exit(0)
    _exit(0)


def _may_tamper(*codes: types.CodeType | str) -> bool:
    """Whether any of these code objects (or code nested in them) names a way to shared modules."""
    stack = [code for code in codes if _type(code) is _CodeType]
    while stack:
        code = stack.pop()
        if not TAMPER_NAMES.isdisjoint(code.co_names):
            return True
        stack.extend(const for const in code.co_consts if _type(const) is _CodeType)
    return False


def _restore_worker(saved: tuple, modules: bool) -> None:
    """Put back what an assert may have changed in W's shared state, before the next one runs."""
    if modules:
        _restore_modules(_WORKER_PRISTINE, _WORKER_GUARDED)
    environ, stdout, stderr, recursion = saved
    if dict(_environ) != environ:
        _environ.clear()
        _environ.update(environ)
    sys.stdout, sys.stderr = stdout, stderr
    _setrecursionlimit(recursion)


def _output_checked(verdict: tuple[str, str, str], out: int, limits: dict) -> tuple[str, str, str]:
    """The verdict, or output_limit when the assert's output reached the cap (flushed first)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    if _fstat(out).st_size >= limits["output_bytes"]:
        return "output_limit", "OutputLimit", f"output over {limits['output_bytes']} bytes"
    return verdict


def _worker_clean(handlers: dict, folder: str) -> bool:
    """Whether W can run the next assert as if it were a fresh copy."""
    if _thread_count() or _listdir(folder) != [OUTPUT_NAME]:
        return False
    try:
        _waitpid(-1, os.WNOHANG)
        return False  # a descendant exists (W is their subreaper), running or not yet reaped
    except ChildProcessError:
        pass
    if any(_getitimer(timer)[0] for timer in TIMERS):
        return False
    return all(_getsignal(sig) == handler for sig, handler in handlers.items())


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _clear_namespace(pid: int, layers: dict) -> None:
    """Kill whatever the assert left behind, and reap it so that it stops counting against NPROC."""
    if layers["pidns"]:
        try:
            os.kill(-1, signal.SIGKILL)  # from PID 1 of a namespace: everyone in it but ourselves
        except OSError:
            pass
        while True:
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                return
    else:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass


def _safe_str(exc: BaseException) -> str:
    try:
        return _str(exc)
    except _BaseException:
        return "<unprintable exception>"


def _drain(fd: int, cap: int) -> bytes:
    """What is already in a pipe, without waiting. A's verdict is written before A exits, and A has
    been reaped when this runs, so the verdict is in the pipe: waiting (with a deadline) could only
    lose it when this process is descheduled under load, and a leftover writer cannot stall us."""
    os.set_blocking(fd, False)
    data = b""
    while len(data) < cap:
        try:
            chunk = os.read(fd, cap - len(data))
        except BlockingIOError:
            break
        if not chunk:
            break
        data += chunk
    return data


def _read_capped(fd: int, cap: int, deadline: float) -> bytes:
    data = b""
    while len(data) < cap:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, cap - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _size(path: str) -> int:
    try:
        return os.lstat(path).st_size
    except OSError:
        return 0


def _ended(status: int, timed_out: bool, elapsed: float, limits: dict) -> dict | None:
    """The outcome implied by how a process ended, or None when it exited normally."""
    if timed_out:
        return _outcome("timeout", f"no verdict within {limits['timeout_s']} s", "Timeout", elapsed)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGXCPU:
            return _outcome("timeout", "CPU time limit exceeded", "Timeout", elapsed)
        if sig == signal.SIGXFSZ:
            return _outcome("output_limit", f"output over {limits['output_bytes']} bytes", "OutputLimit", elapsed)
        name = signal.Signals(sig).name
        return _outcome("error", f"killed by signal {name}", name, elapsed)
    return None


def _decide(ended: dict, verdict: bytes, token: bytes, output_size: int, limits: dict) -> dict:
    """How the child ended first, then its verdict message; a missing verdict is never a pass."""
    elapsed = round(ended["elapsed"], 4)
    by_end = _ended(ended["status"], ended["timed_out"], elapsed, limits)
    if by_end is not None:
        return by_end
    if output_size >= limits["output_bytes"]:
        return _outcome("output_limit", f"output over {limits['output_bytes']} bytes", "OutputLimit", elapsed)
    if not verdict.startswith(token):
        code = os.WEXITSTATUS(ended["status"])
        return _outcome("error", f"exited with status {code} before a verdict", "EarlyExit", elapsed)
    parts = verdict[len(token) :].decode(errors="replace").split("\0", 2)
    if len(parts) != 3 or parts[0] not in VERDICTS:
        return _outcome("error", "malformed verdict", "VerdictTampering", elapsed)
    return _outcome(parts[0], parts[2], parts[1] or None, elapsed)


def _round(request: dict, wdirs: list[str], pending: list[int], layers: dict, outcomes: list, job_id: int) -> None:
    """One definer D for the pending asserts; J watches every step with its own deadline."""
    limits = request["limits"]
    nonce = _token(16)
    if layers["pidns"] and not _new_pid_namespace():
        raise OSError("could not create a PID namespace for the job")
    start = time.monotonic()
    # D: PID 1 of the job's fresh PID namespace
    definer, rr = _fork_writer(lambda rw: _define_and_run(request, wdirs, pending, rw, nonce, layers, job_id))
    try:
        step = limits["timeout_s"] + 1.0
        deadline = time.monotonic() + step
        buffer, defined, timed_out, prefix = b"", None, False, nonce.encode() + b" "
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([rr], [], [], left)[0]:
                timed_out = True
                _kill_quietly(definer)
                break
            chunk = os.read(rr, 65536)
            if not chunk:
                break
            buffer = (buffer + chunk)[-(1 << 20) :]
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if not line.startswith(prefix):
                    continue
                message = json.loads(line[len(prefix) :])
                index = message.pop("i")
                deadline = time.monotonic() + step
                if index == -1:
                    defined = message
                elif index in pending and outcomes[index] is None:
                    outcomes[index] = message
        _, status = os.waitpid(definer, 0)
        ended = {"status": status, "elapsed": time.monotonic() - start}
        if not layers["pidns"]:
            _kill_quietly(-definer)
    finally:
        os.close(rr)
    waiting = [index for index in pending if outcomes[index] is None]
    if not waiting:
        return
    if defined is not None and defined["status"] != "passed":
        for index in waiting:  # the program fails before any assert: every assert shares that fate
            outcomes[index] = defined
        return
    if timed_out:
        targets = waiting if defined is None else waiting[:1]
        for index in targets:
            outcomes[index] = _outcome("timeout", f"no verdict within {limits['timeout_s']} s", "Timeout", step)
        return
    status, elapsed = ended["status"], round(ended.get("elapsed", 0.0), 4)
    fate = _ended(status, False, elapsed, limits) or _outcome("error", "exited before a verdict", "EarlyExit", elapsed)
    if layers["pidns"] and os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
        # Nothing inside the namespace can SIGKILL its PID 1 and we did not (no timeout): the kernel's
        # OOM killer or an operator did. Not the candidate's verdict.
        fate = _outcome("sandbox_error", "the definer was killed from outside (out of memory?)", "SandboxError")
    for index in waiting if defined is None else waiting[:1]:
        outcomes[index] = fate


def _serve_connection(conn: socket.socket, base: str, layers: dict) -> None:
    """J: one client connection, jobs one after another until the client closes it. Harness code
    only; candidate code runs in each job's D and its children."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    _prepare_harness()
    if layers["netns"] and not layers["shared_netns"]:
        _unshare(CLONE_NEWNET)  # one per connection: its jobs run one at a time, each in its own PID ns
    while True:
        header = conn.recv(4, socket.MSG_WAITALL)
        if len(header) < 4:
            return
        (size,) = struct.unpack("!I", header)
        request = json.loads(_recv_exact(conn, size))
        try:
            reply = _handle(request, base, layers)
        except Exception as exc:  # reach the client with a typed failure rather than a hang
            reply = {"error": repr(exc)[:MESSAGE_CAP]}
        _send(conn, reply)


def _handle(request: dict, base: str, layers: dict) -> dict:
    """One job: workers ("redefine"), or a private folder per assert and rounds of definers ("fork"),
    until every assert has a verdict."""
    job_dir = os.path.join(base, _token(12))
    os.mkdir(job_dir, 0o711)
    tests = request["tests"]
    outcomes: list = [None] * len(tests)
    job_id = JOB_ID_BASE + int.from_bytes(os.urandom(4), "big") % JOB_ID_SPAN
    try:
        if request["limits"].get("isolation", "fork") == "redefine":
            _run_redefined(request, job_dir, layers, outcomes, job_id)
        else:
            wdirs = [_private_folder(job_dir, layers, job_id) for _ in range(len(tests) + 1)]  # the last for D
            for _ in range(len(tests) + 1):  # each round settles at least one assert
                pending = [index for index, outcome in enumerate(outcomes) if outcome is None]
                if not pending:
                    break
                _round(request, wdirs, pending, layers, outcomes, job_id)
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)
    missing = _outcome("sandbox_error", "no verdict after every retry", "SandboxError")
    return {"outcomes": [outcome or missing for outcome in outcomes]}


def _private_folder(job_dir: str, layers: dict, job_id: int) -> str:
    folder = os.path.join(job_dir, _token(8))
    os.mkdir(folder, 0o700)
    if layers["root"]:
        os.chown(folder, job_id, job_id)
    return folder


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main() -> None:
    sock_path = sys.argv[1]
    sys.path.extend(path for path in sys.argv[2:] if path not in sys.path)  # site-packages, after the stdlib
    os.umask(0o022)
    base = os.path.join(os.path.dirname(sock_path), "work")
    if os.environ.get("COCOS_SANDBOX_PRIVATE_TMP"):
        base = "/tmp/cocos-work"
    os.makedirs(base, exist_ok=True)
    os.chmod(base, stat.S_IRWXU | stat.S_IXGRP | stat.S_IXOTH)
    userns = os.geteuid() != 0 and _enter_user_namespace()
    layers = _probe_namespaces(userns)
    # bwrap already gave the server its own network namespace with only loopback; one per job would
    # cost ~3 ms each. Without bwrap every job gets its own.
    layers["shared_netns"] = bool(os.environ.get("COCOS_SANDBOX_PRIVATE_TMP"))
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sock_path)
    os.chmod(sock_path, 0o600)
    server.listen(64)
    sys.stdout.write(json.dumps({"ready": True, "pid": os.getpid(), "layers": layers}) + "\n")
    sys.stdout.flush()
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # The first compile() in a process initialises the parser (~1.5 ms here); done once in the server,
    # so that no job's definer pays for it.
    _exec(_compile("def _warm(x):\n    return [x for x in x]\n", "<warm-up>", "exec"), {})
    gc.freeze()  # children do not copy pages just because the collector walks the preloaded modules
    signal.signal(signal.SIGCHLD, lambda *_: _reap())
    while True:
        try:
            conn, _ = server.accept()
        except InterruptedError:
            _reap()
            continue
        except OSError as exc:
            if exc.errno == errno.EINTR:
                _reap()
                continue
            raise
        try:
            pid = _fork()
        except OSError as exc:  # tell the client (it reports sandbox_error) and keep serving
            try:
                _send(conn, {"error": f"fork server could not fork: {exc!r}"})
            except OSError:
                pass
            conn.close()
            continue
        if pid == 0:
            server.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            try:
                _serve_connection(conn, base, layers)
            finally:
                _exit(0)
        conn.close()
        _reap()


if __name__ == "__main__":
    main()
