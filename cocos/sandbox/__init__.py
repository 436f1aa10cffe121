"""Sandboxed execution of candidate programs against standalone asserts (method.md section 3).

    from cocos.sandbox import execute, execute_many, get_executor
    result = execute(code, ["assert f(1) == 2"], setup="", timeout_s=3.0)

Each assert runs in its own process against `setup + code + "\\n" + assert` and gets one typed
outcome: passed, failed (AssertionError), error (other exception; `error_type` names it, or the
signal, or `EarlyExit` for a program that exits before its verdict), timeout, memory, output_limit,
sandbox_error (our failure: no reward). The verdict comes from the harness: a nonce-tagged message
written after the program returns, checked against how the process ended; never from the exit code
or stdout.

What is covered
- Wall-clock timeout per assert (SIGKILL of the whole PID namespace), CPU-time rlimit as a backstop.
- Memory (RLIMIT_AS/DATA), processes (RLIMIT_NPROC, enforced because children run as uid 65534),
  open files (RLIMIT_NOFILE), output and file size (RLIMIT_FSIZE on captured stdout/stderr), no core.
- Every child: new session, new PID namespace (nothing it starts outlives it), uid/gid 65534 with no
  supplementary groups, not dumpable (other children cannot read its /proc entries), private empty
  working folder deleted afterwards, empty environment (the server itself starts with none, so no
  AWS_* / MLFLOW_* secret exists to leak), each job in a new network namespace without interfaces up.
- With bubblewrap installed, the server runs with a read-only root, private root-owned /tmp and
  /dev/shm, and its own IPC/UTS/PID/network namespaces: candidates can write only their own folder.
- Crashes (segfault), `os._exit`, `sys.exit`, replaced builtins, ignored signals, threads left
  running, killing the parent: each gives a typed outcome and the server keeps serving.

What is not covered
- A candidate that deliberately walks the harness's frames or memory to find the nonce can forge a
  verdict; objects whose `__eq__` always returns True pass equality asserts. This is a reward-hacking
  guard against accidents and simple tricks, not a proof.
- Without bubblewrap, world-writable host folders (/tmp, /var/tmp, /dev/shm) are writable by the
  child, and readable by other concurrent children that guess the name.
- RLIMIT_NPROC is per uid: a fork bomb can starve concurrent jobs' own forks until it is killed.
- Disk usage is bounded only per file (RLIMIT_FSIZE), not in total; no seccomp filter; the kernel
  is shared. On a cluster, gVisor (runtimeClassName) and the NetworkPolicy in k8s/sandbox/ add the
  layers this process cannot.
- Without root (or user namespaces) the uid, network and PID namespace layers are skipped with a
  warning; rlimits, process groups, clean environment and the verdict channel remain.
"""

from __future__ import annotations

from typing import Protocol

from cocos.records import ExecutionJob, ExecutionResult
from cocos.sandbox.executor import Limits, LocalExecutor, execute, execute_many

__all__ = ["Executor", "Limits", "execute", "execute_many", "get_executor"]


class Executor(Protocol):
    def execute(
        self, code: str, tests: list[str] | tuple[str, ...], setup: str = "", timeout_s: float = 3.0, **limits: int
    ) -> ExecutionResult: ...

    def execute_many(self, jobs: list[ExecutionJob], workers: int | None = None) -> list[ExecutionResult]: ...


def get_executor(url: str | None = None) -> Executor:
    """Local fork server when `url` is None, else an HTTP client of `cocos sandbox serve` at `url`."""
    if url is None:
        return LocalExecutor()
    from cocos.sandbox.client import SandboxClient

    return SandboxClient(url)
