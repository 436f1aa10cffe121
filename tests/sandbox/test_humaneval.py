"""Every HumanEval canonical solution passes all of its converted standalone asserts, and every broken
variant fails at least one, identically across 3 runs, two with isolation "redefine" and one with
"fork" (the conversion and programs come from benchmarks/sandbox_throughput.py). Marked slow: about
30 s on 2 cores.

Run: pytest tests/sandbox/test_humaneval.py -q
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from cocos.records import Status
from cocos.sandbox import execute_many

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "sandbox_throughput.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("sandbox_throughput", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_conversion_keeps_multiline_asserts_and_setup():
    bench = load_benchmark()
    problem = {
        "entry_point": "f",
        "test": "import math\nMETA = {}\n\ndef check(candidate):\n    x = 2\n    assert candidate(x) == (\n        4)\n"
        "    for i in range(3):\n        assert candidate(i) >= 0\n",
    }
    setup, tests = bench.convert(problem)
    assert setup.splitlines() == ["import math", "META = {}", "x = 2"]
    assert tests == ("assert f(x) == 4", "for i in range(3):\n    assert f(i) >= 0")


@pytest.mark.slow
def test_humaneval_canonical_pass_and_broken_fail_consistently():
    bench = load_benchmark()
    jobs = bench.jobs_for(bench.read_problems())
    assert len(jobs) == 2 * 164
    runs = []
    for isolation in ("redefine", "fork", "redefine"):
        results = execute_many([job for *_, job in jobs], workers=2, isolation=isolation)
        runs.append([[outcome.status for outcome in result.outcomes] for result in results])
        for (task_id, variant, _job), result in zip(jobs, results, strict=True):
            assert not result.sandbox_error, (task_id, variant, result)
            if variant == "canonical":
                assert result.all_passed, (task_id, result)
            else:
                assert any(o.status is not Status.PASSED for o in result.outcomes), task_id
    assert runs[0] == runs[1] == runs[2]
