"""Sandboxed execution of candidate programs against standalone asserts (method.md section 3).

    from cocos.sandbox import execute, execute_many, get_executor
    result = execute(code, ["assert f(1) == 2"], setup="", timeout_s=3.0)

Each assert runs against a fresh `setup + code`, then the assert, and gets one typed outcome:
passed, failed (AssertionError), error (other exception; `error_type` names it, or the signal, or
`EarlyExit` for a program that exits before its verdict), timeout, memory, output_limit,
sandbox_error (our failure: no reward). The verdict comes from the harness: a nonce-tagged message
written after the program returns, checked against how the process ended; never from the exit code
or stdout.

Isolation between the asserts of one job (`isolation=`, default $COCOS_SANDBOX_ISOLATION or
"redefine"):
- "redefine": one worker W (PID 1 of the job's PID namespace) defines the program once (to check
  it and warm its imports), then runs the asserts one after another, each in an empty folder
  and its own freshly executed definition (new globals, functions, classes, default arguments): each
  assert runs against `setup + code` as method.md section 3 asks, without the reference code's
  process per assert (section 5 lists it as waste). Between asserts W empties its output file
  and puts back os.environ, sys.stdout/stderr and the recursion limit, and also builtins, os and
  signal when the program or a test names a way to them (`builtins`, `os`, `sys`, `setattr`,
  `__class__`, ...: `TAMPER_NAMES`); the harness itself calls only functions bound before any
  candidate code ran, through a private copy of builtins. An assert that crashes, exits, overruns
  its deadline, or leaves a file, a thread, a child process (W is their subreaper), an armed timer
  or a changed signal handler behind ends W; the rest run in a fresh W with a fresh folder. What W
  does not put back: attributes an assert sets on other imported modules (`math.pi = 3`), other
  sys.modules entries, random's state, files outside its folder: a later assert of the same job
  sees them. About one process per job: 3x the throughput of "fork" on HumanEval
  (benchmarks/sandbox_throughput.py).
- "fork": one forked copy of D per assert, killed with everything it started before the next one:
  process-level isolation, at about 1 ms of fork, copy-on-write and exit per assert.

What is covered
- Wall-clock timeout per assert (SIGKILL), CPU-time rlimit as a backstop, and a second watchdog in
  the root harness that kills the whole job's namespace if the in-namespace harness stops answering.
- Memory (RLIMIT_AS/DATA), processes (RLIMIT_NPROC, enforced because candidates run unprivileged,
  each job under its own random uid/gid, so one job's processes never count against another's),
  open files (RLIMIT_NOFILE), output and file size (RLIMIT_FSIZE on captured stdout/stderr), no core.
- Each job: a new PID namespace whose PID 1 (the definer D, or under "redefine" the worker W; the
  job's uid with no groups, not dumpable, empty environment) runs the program, each assert in its
  own empty folder; whenever a copy that ran candidate code ends, everything else in its namespace
  is killed and reaped (fork bombs, daemons, threads), and the namespace dies with the job. The
  server itself starts with an empty environment, so no AWS_* / MLFLOW_* secret exists to leak.
  Builtins and the harness's modules are restored after the candidate's code, so monkeypatching
  them cannot reach the harness.
- Network: without bubblewrap each client connection (one per client thread, serving its jobs one
  at a time) gets a new network namespace with no interface up; under bubblewrap all jobs share the
  server's own namespace, which has only loopback (creating one per job costs ~3 ms).
- With bubblewrap installed, the server runs with a read-only root, private root-owned /tmp and
  /dev/shm, its own IPC/UTS/PID/network namespaces, and private folders above the interpreter (such
  as /root) replaced by empty ones: candidates can write only their own folder.
- Crashes (segfault), `os._exit`, `sys.exit`, replaced builtins, ignored signals, threads left
  running, killing the parent: each gives a typed outcome and the server keeps serving.
- The harness's own failures (a fork that still fails with EAGAIN after retries, a pipe error, the
  server or a connection's harness dying, the definer SIGKILLed from outside its namespace, e.g. by
  the OOM killer) are `sandbox_error`, never a candidate verdict. An assert's own process killed by
  the OOM killer still reads as `error` (SIGKILL): it cannot be told apart from the candidate's doing.

What is not covered
- A candidate that deliberately walks the harness's frames, module globals or memory can find the
  nonce and forge a verdict; objects whose `__eq__` always returns True pass equality asserts. This
  guards rewards against accidents and simple tricks; it is not a proof.
- Under "fork", the program is defined once per job (its module-level code runs once) and each
  assert runs in a copy of it; under "redefine", module-level code runs once more per assert, and
  shared module state other than what W puts back (see above) carries over between asserts.
- Without bubblewrap, world-writable host folders (/tmp, /var/tmp, /dev/shm) are writable by the
  candidate and readable by other concurrent candidates that guess a name.
- Disk usage is bounded only per file (RLIMIT_FSIZE), not in total; no seccomp filter; the kernel
  is shared. On a cluster, gVisor (runtimeClassName) and the NetworkPolicy in k8s/sandbox/ add the
  layers this process cannot.
- Without root, the server makes itself root of a new user namespace (only the caller's uid mapped)
  and keeps the network and per-job PID namespaces; candidates run as that root with every
  capability dropped (bounding set, securebits locked, no_new_privs), which outside is the caller's
  uid: they can write what the caller can (unless bubblewrap's read-only root applies), and
  RLIMIT_NPROC counts against the caller's uid. Where user namespaces are disabled too, those
  layers are skipped with a warning; rlimits, process groups, clean environment and the verdict
  channel remain.
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
