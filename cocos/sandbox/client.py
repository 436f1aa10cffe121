"""HTTP client of the sandbox service, with the same calls as the local executor.

A sandbox that cannot answer (connection refused, timeout, 5xx, a malformed reply, too many 429s)
never yields passed or failed: the job comes back as `sandbox_error` outcomes, which carry no reward.
Only a request the service rejects as malformed (400) raises, because that is our bug.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

import httpx

from cocos.records import ExecutionJob, ExecutionResult
from cocos.sandbox.executor import Limits, sandbox_error_result

log = logging.getLogger(__name__)


class SandboxClient:
    """`SandboxClient("http://cocos-sandbox:8080").execute(code, tests)`; thread-safe."""

    def __init__(self, url: str, retries: int = 3, backoff_s: float = 0.5, connect_timeout_s: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.retries = retries
        self.backoff_s = backoff_s
        self._http = httpx.Client(timeout=httpx.Timeout(60.0, connect=connect_timeout_s))

    def close(self) -> None:
        self._http.close()

    def execute(
        self, code: str, tests: Sequence[str], setup: str = "", timeout_s: float = 3.0, **limits: int | str
    ) -> ExecutionResult:
        if isinstance(tests, str):
            raise TypeError("tests must be a sequence of assert strings, not a single string")
        checked = Limits(timeout_s=timeout_s, **limits)
        if not tests:
            return ExecutionResult(outcomes=())
        extra = {k: v for k, v in asdict(checked).items() if k != "timeout_s"}
        body = {"code": code, "tests": list(tests), "setup": setup, "timeout_s": timeout_s, "limits": extra}
        read_timeout = len(tests) * (timeout_s + 2.0) + 30.0
        problem = "no attempt"
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                reply = self._http.post(
                    f"{self.url}/execute", json=body, timeout=httpx.Timeout(read_timeout, connect=5.0)
                )
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
                continue
            if reply.status_code == 429:
                problem = "service queue full (429)"
                time.sleep(_retry_after(reply))
                continue
            if reply.status_code == 400:
                raise ValueError(f"sandbox service rejected the request: {reply.text[:300]}")
            if reply.status_code != 200:
                problem = f"HTTP {reply.status_code}"
                continue
            try:
                result = ExecutionResult.from_dict(reply.json())
            except (ValueError, KeyError, TypeError) as exc:
                problem = f"malformed reply: {exc!r}"
                continue
            if result.total == len(tests):
                return result
            problem = f"reply has {result.total} outcomes for {len(tests)} tests"
        log.error("sandbox service %s failed after %d attempts: %s", self.url, self.retries + 1, problem)
        return sandbox_error_result(len(tests), f"sandbox service: {problem}")

    def execute_many(
        self, jobs: Sequence[ExecutionJob], workers: int | None = None, **limits: int | str
    ) -> list[ExecutionResult]:
        """One request per job, `workers` in flight (default 4), results in the order of `jobs`."""
        with ThreadPoolExecutor(max_workers=workers or 4, thread_name_prefix="sandbox-client") as pool:
            futures = [
                pool.submit(self.execute, job.code, job.tests, job.setup, job.timeout_s, **limits) for job in jobs
            ]
            return [future.result() for future in futures]


def _retry_after(reply: httpx.Response) -> float:
    try:
        return min(float(reply.headers.get("Retry-After", "1")), 30.0)
    except ValueError:
        return 1.0
