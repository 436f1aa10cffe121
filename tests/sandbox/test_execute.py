"""Normal verdicts of `cocos.sandbox.execute` / `execute_many`: pass, fail, error types, timeout,
memory, output limit, early exit, setup, order, and the local/HTTP selector.

Run: pytest tests/sandbox/test_execute.py -q
"""

from __future__ import annotations

import pytest

from cocos.records import ExecutionJob, Status
from cocos.sandbox import Limits, execute, execute_many, get_executor
from cocos.sandbox.executor import ForkServer, LocalExecutor

CODE = "def add(a, b):\n    return a + b\n"


pytestmark = pytest.mark.usefixtures("isolation")


def statuses(result):
    return [outcome.status for outcome in result.outcomes]


def test_pass_fail_error_in_order():
    result = execute(CODE, ["assert add(1, 2) == 3", "assert add(1, 2) == 4", "assert add(1) == 1"])
    assert statuses(result) == [Status.PASSED, Status.FAILED, Status.ERROR]
    assert result.outcomes[1].error_type == "AssertionError"
    assert result.outcomes[2].error_type == "TypeError"
    assert result.passed == 1 and not result.all_passed and not result.sandbox_error


def test_assert_message_is_kept_and_capped():
    result = execute(CODE, ["assert add(1, 1) == 3, 'x' * 5000"])
    assert result.outcomes[0].status is Status.FAILED
    assert 0 < len(result.outcomes[0].message) <= 300


def test_syntax_error_in_code_errors_every_test():
    result = execute("def add(a, b) return a", ["assert add(1, 2) == 3", "assert True"])
    assert statuses(result) == [Status.ERROR, Status.ERROR]
    assert {outcome.error_type for outcome in result.outcomes} == {"SyntaxError"}


def test_setup_is_prepended():
    result = execute("def f():\n    return helper() + 1", ["assert f() == 42"], setup="def helper():\n    return 41")
    assert result.all_passed


def test_each_assert_sees_a_fresh_program():
    code = (
        "STATE = []\n"
        "def push(x, seen=[]):\n"
        "    STATE.append(x)\n"
        "    seen.append(x)\n"
        "    return len(STATE) + len(seen)\n"
        "class Counter:\n"
        "    n = 0\n"
    )
    tests = ["Counter.n += 1\nassert push(1) == 2", "assert push(2) == 2 and Counter.n == 0", "assert add(1, 1) == 2"]
    result = execute(code + "add = lambda a, b: a + b\n", tests)
    assert result.all_passed, result


def test_isolation_is_checked_and_has_an_operator_default(isolation, monkeypatch):
    assert Limits().isolation == isolation
    with pytest.raises(ValueError, match="isolation='threads'"):
        Limits(isolation="threads")
    monkeypatch.setenv("COCOS_SANDBOX_ISOLATION", "fork")
    assert execute(CODE, ["assert add(1, 1) == 2"], isolation="redefine").all_passed


def test_timeout_memory_output():
    result = execute(
        CODE,
        ["while True: pass", "x = bytearray(2 * 1024**3)", "print('y' * 5_000_000)", "assert add(2, 2) == 4"],
        timeout_s=1.0,
    )
    assert statuses(result) == [Status.TIMEOUT, Status.MEMORY, Status.OUTPUT_LIMIT, Status.PASSED]


def test_limits_are_keyword_arguments():
    result = execute("", ["x = bytearray(300 * 1024**2)"], memory_mb=128)
    assert statuses(result) == [Status.MEMORY]
    with pytest.raises(TypeError):
        execute("", ["assert True"], no_such_limit=1)
    with pytest.raises(ValueError, match="timeout_s"):
        Limits(timeout_s=0)


def test_early_exit_never_passes():
    result = execute(CODE, ["import os; os._exit(0)", "import sys; sys.exit(0)", "raise SystemExit"])
    assert Status.PASSED not in statuses(result)
    assert result.outcomes[0].error_type == "EarlyExit"
    assert result.outcomes[1].error_type == "SystemExit"


def test_printing_pass_is_not_a_verdict():
    result = execute(CODE, ["print('passed'); assert add(1, 1) == 3"])
    assert statuses(result) == [Status.FAILED]


def test_no_tests_gives_empty_result():
    assert execute(CODE, []).total == 0
    with pytest.raises(TypeError):
        execute(CODE, "assert add(1, 2) == 3")


def test_execute_many_keeps_order():
    jobs = [
        ExecutionJob(code=f"def f():\n    return {i}\n", tests=(f"assert f() == {i}", "assert f() == -1"))
        for i in range(12)
    ]
    jobs.insert(5, ExecutionJob(code="while True: pass", tests=("assert True",), timeout_s=0.5))
    results = execute_many(jobs, workers=3)
    assert len(results) == len(jobs)
    for job, result in zip(jobs, results, strict=True):
        if job.timeout_s == 0.5:
            assert statuses(result) == [Status.TIMEOUT]
        else:
            assert statuses(result) == [Status.PASSED, Status.FAILED]


def test_selector_local():
    executor = get_executor(None)
    assert isinstance(executor, LocalExecutor)
    assert executor.execute(CODE, ["assert add(2, 3) == 5"]).all_passed
    assert [r.passed for r in executor.execute_many([ExecutionJob(CODE, ("assert add(0, 0) == 0",))])] == [1]


def test_stdlib_imports_work():
    result = execute("import csv, email.utils, sqlite3\n", ["assert csv.reader(['a,b']).__next__() == ['a', 'b']"])
    assert result.all_passed, result


def test_without_bubblewrap_the_other_layers_still_hold():
    server = ForkServer(use_bwrap=False)
    try:
        limits = Limits(timeout_s=1.0)
        tests = ["assert add(1, 2) == 3", "assert add(1, 2) == 4", "import os; os._exit(0)", "while True: pass"]
        outcomes = server.run(CODE, tests, "", limits)
        assert server.layers["bwrap"] is False
    finally:
        server.close()
    assert [o["status"] for o in outcomes] == ["passed", "failed", "error", "timeout"]
