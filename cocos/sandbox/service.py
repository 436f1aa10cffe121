"""HTTP front of the sandbox: `POST /execute`, `GET /healthz`, `GET /metrics` (Prometheus).

Runs `execute` on a bounded pool: at most `workers` jobs run and `queue_size` wait; anything beyond
gets 429 with Retry-After, so callers back off instead of piling up timeouts. Start it with
`serve(host, port)` (the `cocos sandbox serve` command).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cocos.records import Status
from cocos.sandbox.executor import Limits, execute

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_TESTS = 256
LIMIT_NAMES = ("memory_mb", "output_bytes", "nproc", "nofile", "isolation")


class RequestError(ValueError):
    """A malformed request: the caller's bug, answered with 400."""


def parse_job(body: Any) -> tuple[str, list[str], str, Limits]:
    """Validate one `/execute` body; the message names the field."""
    if not isinstance(body, dict):
        raise RequestError("body must be a JSON object")
    code, tests, setup = body.get("code"), body.get("tests"), body.get("setup", "")
    if not isinstance(code, str) or not isinstance(setup, str):
        raise RequestError("code and setup must be strings")
    if not isinstance(tests, list) or not all(isinstance(t, str) for t in tests) or len(tests) > MAX_TESTS:
        raise RequestError(f"tests must be a list of at most {MAX_TESTS} strings")
    limits = body.get("limits") or {}
    if not isinstance(limits, dict) or set(limits) - set(LIMIT_NAMES):
        raise RequestError(f"limits must be an object with keys among {LIMIT_NAMES}")
    try:
        values = {k: v if k == "isolation" else int(v) for k, v in limits.items()}
        checked = Limits(timeout_s=float(body.get("timeout_s", 3.0)), **values)
    except (TypeError, ValueError) as exc:
        raise RequestError(str(exc)) from exc
    return code, tests, setup, checked


def create_app(workers: int | None = None, queue_size: int = 64, retry_after_s: int = 1) -> Starlette:
    """The ASGI app; each app has its own metrics registry, so tests can build several."""
    workers = workers or os.cpu_count() or 1
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox-http")
    capacity = workers + queue_size
    registry = CollectorRegistry()
    executions = Counter("cocos_sandbox_executions", "Jobs executed", registry=registry)
    outcomes = Counter("cocos_sandbox_outcomes", "Per-assert outcomes by status", ["status"], registry=registry)
    latency = Histogram("cocos_sandbox_latency_seconds", "Job latency, queueing included", registry=registry)
    rejected = Counter("cocos_sandbox_rejected", "Jobs refused with 429 because the queue was full", registry=registry)
    in_system = Gauge("cocos_sandbox_in_flight", "Jobs running or queued", registry=registry)
    for status in Status:
        outcomes.labels(status.value)
    state = {"pending": 0}

    async def run_job(request: Request) -> Response:
        if int(request.headers.get("content-length") or 0) > MAX_BODY_BYTES:
            return JSONResponse({"error": f"body over {MAX_BODY_BYTES} bytes"}, status_code=413)
        try:
            code, tests, setup, limits = parse_job(await request.json())
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        if state["pending"] >= capacity:
            rejected.inc()
            return JSONResponse({"error": "queue full"}, status_code=429, headers={"Retry-After": str(retry_after_s)})
        state["pending"] += 1
        in_system.inc()
        start = time.monotonic()
        try:
            extra = {k: v for k, v in asdict(limits).items() if k != "timeout_s"}
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(pool, lambda: execute(code, tests, setup, limits.timeout_s, **extra))
        finally:
            state["pending"] -= 1
            in_system.dec()
        latency.observe(time.monotonic() - start)
        executions.inc()
        for outcome in result.outcomes:
            outcomes.labels(outcome.status.value).inc()
        return JSONResponse(result.to_dict())

    async def healthz(request: Request) -> Response:
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(None, lambda: execute("", ["assert True"], timeout_s=5.0))
        healthy = result.all_passed
        return JSONResponse({"ok": healthy, "pending": state["pending"]}, status_code=200 if healthy else 503)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    routes = [
        Route("/execute", run_job, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        pool.shutdown(wait=False, cancel_futures=True)

    return Starlette(routes=routes, lifespan=lifespan)


def serve(
    host: str = "0.0.0.0", port: int = 8080, workers: int | None = None, queue_size: int = 64, log_level: str = "info"
) -> None:
    """Run the sandbox HTTP service until interrupted (`cocos sandbox serve`)."""
    log.info("sandbox service on %s:%d, workers=%s, queue_size=%d", host, port, workers, queue_size)
    uvicorn.run(create_app(workers, queue_size), host=host, port=port, log_level=log_level)
