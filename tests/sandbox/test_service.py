"""The HTTP service and its client, against a real uvicorn server on 127.0.0.1 (random free port):
verdicts match the local executor, order is kept, /healthz and /metrics answer, a full queue gives
429 + Retry-After, and an unreachable or broken service gives sandbox_error outcomes, never pass/fail.

Run: pytest tests/sandbox/test_service.py -q
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from cocos.records import ExecutionJob, Status
from cocos.sandbox import execute, get_executor
from cocos.sandbox.client import SandboxClient
from cocos.sandbox.service import create_app

CODE = "def add(a, b):\n    return a + b\n"
TESTS = ["assert add(1, 2) == 3", "assert add(1, 2) == 4", "assert add(1) == 1", "while True: pass"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(app) -> tuple[str, uvicorn.Server, threading.Thread]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    return f"http://127.0.0.1:{port}", server, thread


@pytest.fixture
def service(request) -> Iterator[str]:
    params = getattr(request, "param", {"workers": 2, "queue_size": 8})
    url, server, thread = start(create_app(**params))
    yield url
    server.should_exit = True
    thread.join(timeout=5)


def statuses(result):
    return [outcome.status for outcome in result.outcomes]


def test_client_matches_local_execute(service):
    client = get_executor(service)
    assert isinstance(client, SandboxClient)
    remote = client.execute(CODE, TESTS, timeout_s=0.5)
    local = execute(CODE, TESTS, timeout_s=0.5)
    assert statuses(remote) == statuses(local) == [Status.PASSED, Status.FAILED, Status.ERROR, Status.TIMEOUT]
    assert remote.outcomes[2].error_type == "TypeError"


def test_execute_many_keeps_order(service):
    jobs = [ExecutionJob(f"def f():\n    return {i}\n", (f"assert f() == {i}", "assert f() == -1")) for i in range(10)]
    results = SandboxClient(service).execute_many(jobs, workers=4)
    assert [statuses(r) for r in results] == [[Status.PASSED, Status.FAILED]] * 10


def test_healthz_and_metrics(service):
    assert httpx.get(f"{service}/healthz").json()["ok"] is True
    SandboxClient(service).execute(CODE, TESTS[:2])
    text = httpx.get(f"{service}/metrics").text
    assert "cocos_sandbox_executions_total 1.0" in text
    assert 'cocos_sandbox_outcomes_total{status="passed"} 1.0' in text
    assert 'cocos_sandbox_outcomes_total{status="failed"} 1.0' in text
    assert "cocos_sandbox_latency_seconds_count 1.0" in text


def test_malformed_request_is_400_and_raises_in_client(service):
    reply = httpx.post(f"{service}/execute", json={"code": "x", "tests": "assert True"})
    assert reply.status_code == 400
    with pytest.raises(ValueError):
        SandboxClient(service).execute("", ["assert True"], timeout_s=700)


def test_isolation_travels_over_http_and_a_bad_one_is_400(service):
    tests = ["import math\nmath.pi = 3\nassert True", "assert math.pi > 3.1"]
    client = SandboxClient(service)
    by_mode = {mode: client.execute("import math\n", tests, isolation=mode) for mode in ("fork", "redefine")}
    assert [o.status for o in by_mode["fork"].outcomes] == [Status.PASSED, Status.PASSED]
    assert [o.status for o in by_mode["redefine"].outcomes] == [Status.PASSED, Status.FAILED]
    body = {"code": "", "tests": ["assert True"], "limits": {"isolation": "threads"}}
    reply = httpx.post(f"{service}/execute", json=body)
    assert reply.status_code == 400 and "isolation" in reply.text


@pytest.mark.parametrize("service", [{"workers": 1, "queue_size": 0}], indirect=True)
def test_full_queue_gives_429_with_retry_after(service):
    slow = threading.Thread(
        target=httpx.post,
        args=(f"{service}/execute",),
        kwargs={"json": {"code": "while True: pass", "tests": ["pass"], "timeout_s": 1.5}},
    )
    slow.start()
    time.sleep(0.4)
    reply = httpx.post(f"{service}/execute", json={"code": "", "tests": ["assert True"]})
    slow.join()
    assert reply.status_code == 429 and reply.headers["Retry-After"] == "1"
    assert "cocos_sandbox_rejected_total 1.0" in httpx.get(f"{service}/metrics").text


def test_unreachable_service_gives_sandbox_errors():
    client = SandboxClient(f"http://127.0.0.1:{free_port()}", retries=1, backoff_s=0.01)
    result = client.execute(CODE, TESTS[:2])
    assert statuses(result) == [Status.SANDBOX_ERROR] * 2 and result.sandbox_error


def test_broken_service_gives_sandbox_errors():
    async def broken(request):
        return JSONResponse({"outcomes": [{"status": "passed"}]}, status_code=200)

    async def failing(request):
        return JSONResponse({"error": "boom"}, status_code=500)

    for handler in (broken, failing):
        url, server, thread = start(Starlette(routes=[Route("/execute", handler, methods=["POST"])]))
        try:
            result = SandboxClient(url, retries=1, backoff_s=0.01).execute(CODE, TESTS[:2])
        finally:
            server.should_exit = True
            thread.join(timeout=5)
        assert statuses(result) == [Status.SANDBOX_ERROR] * 2
