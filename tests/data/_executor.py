"""Executor for the data tests: the sandbox's execute_many when it exists, else a tiny local runner.

The local runner starts one subprocess per problem and runs each test as
`setup + "\\n" + code + "\\n" + test` in a fresh namespace there (the sandbox's program order). It is
for trusted benchmark references in tests only; it is not a sandbox.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from cocos.records import ExecutionJob, ExecutionResult, Status, TestOutcome

_RUNNER = r"""
import json, signal, sys, traceback
job = json.loads(sys.stdin.read())
out = []
def alarm(*_):
    raise TimeoutError("timeout")
signal.signal(signal.SIGALRM, alarm)
for test in job["tests"]:
    program = job["setup"] + "\n" + job["code"] + "\n" + test
    signal.setitimer(signal.ITIMER_REAL, job["timeout_s"])
    try:
        exec(compile(program, "<test>", "exec"), {"__name__": "__main__"})
        out.append(["passed", ""])
    except AssertionError as err:
        out.append(["failed", "AssertionError: " + str(err)[:200]])
    except TimeoutError:
        out.append(["timeout", "timeout"])
    except BaseException as err:
        out.append(["error", type(err).__name__ + ": " + str(err)[:200]])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
sys.__stdout__.write("\n@@RESULT@@" + json.dumps(out))
"""


def _local_one(job: ExecutionJob) -> ExecutionResult:
    payload = json.dumps({"code": job.code, "tests": list(job.tests), "setup": job.setup, "timeout_s": job.timeout_s})
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _RUNNER],
            input=payload,
            capture_output=True,
            text=True,
            timeout=job.timeout_s * len(job.tests) + 10,
        )
        marker = proc.stdout.rsplit("@@RESULT@@", 1)
        rows = json.loads(marker[1]) if len(marker) == 2 else None
    except subprocess.TimeoutExpired:
        rows = None
    if rows is None:
        return ExecutionResult(tuple(TestOutcome(Status.SANDBOX_ERROR, "runner died") for _ in job.tests))
    return ExecutionResult(tuple(TestOutcome(Status(s), m) for s, m in rows))


def local_execute_many(jobs: list[ExecutionJob]) -> list[ExecutionResult]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(_local_one, jobs))


def executor():
    """The sandbox's execute_many when importable, else the local runner."""
    try:
        from cocos.sandbox import execute_many
    except ImportError:
        return local_execute_many
    return execute_many


def kept_after_retry(problems, **kwargs):
    """Validate, then re-run the dropped problems once: on a loaded 2-core machine the sandbox can give a
    transient error ("exited before a verdict"); a real conversion bug fails both times."""
    import logging

    from cocos.data import validate

    first = validate(problems, 1.0, executor(), **kwargs)
    retry = [p for p in problems if p.task_id in first.dropped]
    second = validate(retry, 1.0, executor(), **kwargs) if retry else first
    if retry:
        logging.getLogger(__name__).warning("re-ran %d dropped problems: %s", len(retry), dict(first.dropped))
    return [p.task_id for p in first.problems] + [p.task_id for p in second.problems if retry], second.dropped
