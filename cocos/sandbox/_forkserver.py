"""The warm fork server: a stdlib-only process that runs untrusted asserts. Not imported by cocos.

Started by `cocos.sandbox.executor.ForkServer` as `python -I -B _forkserver.py SOCKET`, with an empty
environment, optionally inside bubblewrap. It never imports torch, a model or any secret.

Process tree per job (one connection on the Unix socket):
    server (root, accepts, forks)  -> job J (root, harness only: reads the request, new network namespace)
      -> per assert: warden W (root: new PID namespace, deadline) -> child C (PID 1 of that namespace,
         unprivileged uid 65534, rlimits, private empty dir, empty environment) runs setup + code + assert.
C reports its verdict on a pipe with a per-assert nonce; W reports how C ended on a second pipe that C
never holds. When C ends (or W kills it at the deadline) the kernel kills everything left in its PID
namespace, so fork bombs, daemons and stray threads cannot outlive the assert.
"""

from __future__ import annotations

import builtins
import ctypes
import errno
import importlib
import json
import math
import os
import resource
import secrets
import select
import shutil
import signal
import socket
import stat
import struct
import sys
import time

UNPRIVILEGED_ID = 65534
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
PR_SET_DUMPABLE = 4
PR_SET_PDEATHSIG = 1
MESSAGE_CAP = 300
VERDICT_CAP = 4096
OUTPUT_NAME = "output"

_libc = ctypes.CDLL(None, use_errno=True)

# Imported once here so that forked children import them for free, and so that they work when the
# interpreter lives in a folder uid 65534 cannot read (no bubblewrap; /root/.pyenv, say).
PRELOADED = (
    *("abc", "array", "ast", "bisect", "calendar", "cmath", "collections", "contextlib", "copy", "dataclasses"),
    *("datetime", "decimal", "encodings.idna", "enum", "fractions", "functools", "glob", "hashlib", "heapq"),
    *("io", "itertools", "json", "math", "numbers", "operator", "pathlib", "pprint", "queue", "random", "re"),
    *("statistics", "string", "textwrap", "threading", "time", "typing", "unicodedata", "zlib"),
)
for _name in PRELOADED:
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


def _unshare(flags: int) -> bool:
    return _libc.unshare(flags) == 0


def _probe_namespaces() -> dict[str, bool]:
    """Which layers this server can apply; checked once in a throwaway child."""
    found = {}
    for name, flag in (("netns", CLONE_NEWNET), ("pidns", CLONE_NEWPID)):
        pid = os.fork()
        if pid == 0:
            _exit(0 if _unshare(flag) else 1)
        _, status = os.waitpid(pid, 0)
        found[name] = os.waitstatus_to_exitcode(status) == 0
    found["root"] = os.geteuid() == 0
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


def _run_candidate(source: str, wdir: str, limits: dict, vfd: int, nonce: bytes, layers: dict) -> None:
    """Child C: isolate this process, run the program once, write the verdict, exit. Never returns."""
    try:
        os.chdir(wdir)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        out = os.open(OUTPUT_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.closerange(3, vfd)
        os.closerange(vfd + 1, 65536)
        for sig in (signal.SIGXFSZ, signal.SIGPIPE, signal.SIGINT, signal.SIGTERM, signal.SIGALRM):
            signal.signal(sig, signal.SIG_DFL)
        cpu = int(math.ceil(limits["timeout_s"])) + 1
        memory = limits["memory_mb"] * 1024 * 1024
        for kind, value in (
            (resource.RLIMIT_AS, memory),
            (resource.RLIMIT_DATA, memory),
            (resource.RLIMIT_CPU, cpu),
            (resource.RLIMIT_FSIZE, limits["output_bytes"]),
            (resource.RLIMIT_NOFILE, limits["nofile"]),
            (resource.RLIMIT_NPROC, limits["nproc"]),
            (resource.RLIMIT_CORE, 0),
        ):
            resource.setrlimit(kind, (value, value))
        if layers["root"]:
            os.chown(OUTPUT_NAME, UNPRIVILEGED_ID, UNPRIVILEGED_ID)
            os.setgroups([])
            os.setgid(UNPRIVILEGED_ID)
            os.setuid(UNPRIVILEGED_ID)
        _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # cleared by setuid, so set after it
        os.environ.clear()
        os.environ.update({"PATH": "/usr/bin:/bin", "HOME": wdir, "LANG": "C.UTF-8", "TMPDIR": wdir})
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
        sys.argv = [""]
        sys.path[:] = [p for p in sys.path if p and os.path.basename(p) != "sandbox"]
        namespace = {"__name__": "__main__", "__builtins__": builtins}
    except BaseException as exc:  # our own failure: report it as such, not as the candidate's
        _write(vfd, nonce + b"sandbox_error\0SetupFailure\0" + repr(exc).encode()[:MESSAGE_CAP])
        _exit(0)
    status, error_type, message = "passed", "", ""
    try:
        _exec(_compile(source, "<candidate>", "exec"), namespace)
    except _AssertionError as exc:
        status, error_type, message = "failed", "AssertionError", _safe_str(exc)
    except _MemoryError as exc:
        status, error_type, message = "memory", "MemoryError", _safe_str(exc)
    except _BaseException as exc:
        status, error_type, message = "error", _type(exc).__name__, _safe_str(exc)
    _write(vfd, nonce + f"{status}\0{error_type}\0{message[:MESSAGE_CAP]}".encode(errors="replace"))
    _exit(0)


def _safe_str(exc: BaseException) -> str:
    try:
        return _str(exc)
    except _BaseException:
        return "<unprintable exception>"


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


def _warden(source: str, wdir: str, limits: dict, vfd: int, sfd: int, nonce: bytes, layers: dict) -> None:
    """W: start C in a fresh PID namespace, enforce the wall-clock deadline, report how C ended."""
    if layers["pidns"]:
        _unshare(CLONE_NEWPID)
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.close(sfd)
        if not layers["pidns"]:
            os.setsid()
        _run_candidate(source, wdir, limits, vfd, nonce, layers)
    os.close(vfd)
    timed_out = False
    pidfd = os.pidfd_open(pid)
    if not select.select([pidfd], [], [], limits["timeout_s"])[0]:
        timed_out = True
        _kill(pid, layers)
    _, status = os.waitpid(pid, 0)
    if not layers["pidns"]:
        _kill(pid, layers)
    _write(sfd, json.dumps({"status": status, "timed_out": timed_out, "elapsed": time.monotonic() - start}).encode())
    _exit(0)


def _kill(pid: int, layers: dict) -> None:
    target = pid if layers["pidns"] else -pid  # PID 1 of a namespace takes its namespace with it
    try:
        os.kill(target, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _run_one(source: str, job_dir: str, index: int, limits: dict, layers: dict) -> dict:
    wdir = os.path.join(job_dir, f"{index}-{secrets.token_hex(8)}")
    os.mkdir(wdir, 0o700)
    if layers["root"]:
        os.chown(wdir, UNPRIVILEGED_ID, UNPRIVILEGED_ID)
    nonce = secrets.token_bytes(16)
    vr, vw = os.pipe()
    sr, sw = os.pipe()
    try:
        pid = os.fork()
        if pid == 0:
            try:
                os.close(vr)
                os.close(sr)
                _warden(source, wdir, limits, vw, sw, nonce, layers)
            finally:
                _exit(70)
        os.close(vw)
        os.close(sw)
        deadline = time.monotonic() + limits["timeout_s"] + 10.0
        report = _read_capped(sr, VERDICT_CAP, deadline)
        verdict = _read_capped(vr, VERDICT_CAP, time.monotonic() + 0.5)
        os.waitpid(pid, 0)
        output_size = _size(os.path.join(wdir, OUTPUT_NAME))
        return _decide(report, verdict, nonce, output_size, limits)
    finally:
        for fd in (vr, sr):
            os.close(fd)
        shutil.rmtree(wdir, ignore_errors=True)


def _size(path: str) -> int:
    try:
        return os.lstat(path).st_size
    except OSError:
        return 0


def _decide(report: bytes, verdict: bytes, nonce: bytes, output_size: int, limits: dict) -> dict:
    """The harness's decision: how the child ended (trusted) first, then its verdict message."""
    try:
        ended = json.loads(report)
    except ValueError:
        return _outcome("sandbox_error", "warden gave no report", "SandboxError")
    elapsed = round(ended["elapsed"], 4)
    status = ended["status"]
    if ended["timed_out"]:
        return _outcome("timeout", f"no verdict within {limits['timeout_s']} s", "Timeout", elapsed)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGXCPU:
            return _outcome("timeout", "CPU time limit exceeded", "Timeout", elapsed)
        if sig == signal.SIGXFSZ:
            return _outcome("output_limit", f"output over {limits['output_bytes']} bytes", "OutputLimit", elapsed)
        name = signal.Signals(sig).name
        return _outcome("error", f"killed by signal {name}", name, elapsed)
    if output_size >= limits["output_bytes"]:
        return _outcome("output_limit", f"output over {limits['output_bytes']} bytes", "OutputLimit", elapsed)
    if not verdict.startswith(nonce):
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else status
        return _outcome("error", f"exited with status {code} before a verdict", "EarlyExit", elapsed)
    parts = verdict[len(nonce) :].decode(errors="replace").split("\0", 2)
    if len(parts) != 3 or parts[0] not in {"passed", "failed", "error", "memory", "sandbox_error"}:
        return _outcome("sandbox_error", "malformed verdict", "SandboxError", elapsed)
    return _outcome(parts[0], parts[2], parts[1] or None, elapsed)


def _handle(conn: socket.socket, base: str, layers: dict) -> None:
    """J: one job. Harness code only; every candidate program runs in a grandchild."""
    (size,) = struct.unpack("!I", _recv_exact(conn, 4))
    request = json.loads(_recv_exact(conn, size))
    if layers["netns"]:
        _unshare(CLONE_NEWNET)
    job_dir = os.path.join(base, secrets.token_hex(12))
    os.mkdir(job_dir, 0o711)
    outcomes = []
    try:
        prefix = "\n".join(part for part in (request["setup"], request["code"]) if part)
        limits = request["limits"]
        for index, test in enumerate(request["tests"]):
            source = f"{prefix}\n{test}" if prefix else test
            try:
                outcomes.append(_run_one(source, job_dir, index, limits, layers))
            except OSError as exc:
                outcomes.append(_outcome("sandbox_error", f"harness: {exc!r}", "SandboxError"))
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)
    _send(conn, {"outcomes": outcomes})


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
    os.umask(0o022)
    base = os.path.join(os.path.dirname(sock_path), "work")
    if os.environ.get("COCOS_SANDBOX_PRIVATE_TMP"):
        base = "/tmp/cocos-work"
    os.makedirs(base, exist_ok=True)
    os.chmod(base, stat.S_IRWXU | stat.S_IXGRP | stat.S_IXOTH)
    layers = _probe_namespaces()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sock_path)
    os.chmod(sock_path, 0o600)
    server.listen(64)
    sys.stdout.write(json.dumps({"ready": True, "pid": os.getpid(), "layers": layers}) + "\n")
    sys.stdout.flush()
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
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
        pid = os.fork()
        if pid == 0:
            server.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            try:
                _handle(conn, base, layers)
            except BaseException as exc:  # reach the client with a typed failure rather than a hang
                try:
                    _send(conn, {"error": repr(exc)[:MESSAGE_CAP]})
                except OSError:
                    pass
            finally:
                _exit(0)
        conn.close()
        _reap()


if __name__ == "__main__":
    main()
