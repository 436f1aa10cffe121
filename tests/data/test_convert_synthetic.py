"""Test conversion rules (HumanEval check, ODEX snippets, pytest files) and the synthetic generator.

Covers: multi-line asserts, loops as one test, preludes that need the candidate, ODEX early `return`,
pytest skip reasons, synthetic determinism, split disjointness, buggy variants that fail, boost 1:1.
Run: pytest tests/data/test_convert_synthetic.py -q
"""

from __future__ import annotations

import ast
import time
from collections import Counter

from cocos.data import synthetic, validate
from cocos.data.convert import check_to_tests, odex_to_tests, pytest_to_tests, rename
from cocos.records import Problem
from tests.data._executor import executor

CHECK = """
import math

METADATA = {"author": "x"}


def helper(x):
    return x


def check(candidate):
    assert candidate(1) == 2
    assert candidate(
        2,
    ) == 3, "multi-line"
    value = candidate(5)
    for i in range(3):
        assert candidate(i) == i + 1
    assert True, "no signal"
    assert value == 6
"""


def test_check_to_tests_rules() -> None:
    setup, tests = check_to_tests(CHECK, "inc")
    assert "import math" in setup and "METADATA" in setup and "def helper" in setup
    assert tests[0] == "assert inc(1) == 2"
    assert tests[1].startswith("assert inc(\n    2,\n) == 3")
    assert tests[2].startswith("value = inc(5)\nfor i in range(3):")
    assert tests[3] == "value = inc(5)\nassert value == 6"
    assert len(tests) == 4 and all(ast.parse(t) for t in tests)
    report = validate(
        [__import__("cocos.records").records.Problem("t", "x", tests, setup, "def inc(x):\n    return x + 1")],
        0.0,
        executor(),
    )
    assert report.kept == 1


def test_rename_leaves_strings_and_attributes() -> None:
    assert rename("candidate(x.candidate, 'candidate')", "candidate", "f") == "f(x.candidate, 'candidate')"


def test_odex_setup_and_early_return() -> None:
    setup, tests = odex_to_tests(
        "\nimport os\n\ndef check(fn):",
        ["\n    assert fn() == 1\n", "\n    try:\n        fn()\n    except:\n        return False\n"],
        "f_1",
    )
    assert setup == "\nimport os".strip("\n") and tests[0] == "assert f_1() == 1"
    assert "def _check():" in tests[1] and "f_1()" in tests[1]
    ast.parse(tests[1])


def test_pytest_conversion_reasons() -> None:
    code = """
import pytest
import math
from solution import add, Node as N

def build():
    return N(1)

def test_plain():
    assert add(1, 2) == 3
    assert add(0, 0) == 0

def test_with_setup():
    x = add(1, 1)
    assert x == 2

def test_raises():
    with pytest.raises(ValueError):
        add(None, 1)

@pytest.mark.parametrize("a", [1])
def test_param(a):
    assert add(a, 0) == a

def test_fixture(tmp_path):
    assert tmp_path

test_plain()
"""
    result = pytest_to_tests(code)
    assert "import math" in result.setup and "pytest" not in result.setup and "from solution" not in result.setup
    # build() uses a solution name, so it is a prelude (after the code), not setup.
    prelude = "N = Node\ndef build():\n    return N(1)\n"
    assert result.tests[0] == prelude + "assert add(1, 2) == 3"
    assert result.tests[2] == prelude + "x = add(1, 1)\nassert x == 2"
    assert "def build" not in result.setup
    assert len(result.tests) == 3
    assert result.skipped == Counter(
        {"uses pytest (raises, approx, ...)": 1, "decorated (parametrize, fixture, mark)": 1, "takes fixtures": 1}
    )


def test_synthetic_is_deterministic_and_varied() -> None:
    assert synthetic.generate(50, seed=3) == synthetic.generate(50, seed=3)
    assert synthetic.generate(50, seed=3) != synthetic.generate(50, seed=4)
    assert len(synthetic.TEMPLATES) >= 30
    problems = synthetic.generate(len(synthetic.universe()), seed=0)
    assert len({p.task_id for p in problems}) == len(problems) >= 280
    assert {p.task_id.split("/")[1] for p in problems} == {t.name for t in synthetic.TEMPLATES}
    assert all(len(p.tests) == 3 and len(p.reference.splitlines()) <= 6 and len(p.text) < 130 for p in problems)


def test_synthetic_splits_disjoint_and_pass() -> None:
    parts = synthetic.splits(seed=1, train=200, validation=40, test=40)
    ids = [set(p.task_id for p in parts[s]) for s in ("train", "validation", "test")]
    assert [len(i) for i in ids] == [200, 40, 40]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    report = validate([p for s in parts.values() for p in s], 0.0, executor())
    assert report.kept == 280


def test_synthetic_buggy_variants_fail_and_boost_is_one_to_one() -> None:
    problems = synthetic.generate(60, seed=0)
    with_bugs = [(p, synthetic.buggy_variants(p)) for p in problems]
    assert sum(bool(b) for _, b in with_bugs) >= 50
    for problem, bugs in with_bugs[:15]:
        for bug in bugs:
            assert bug != problem.reference
    examples = synthetic.synthetic_boost_examples(problems, seed=0)
    turns = Counter(e["turn"] for e in examples)
    assert turns[1] == turns[2] >= 50
    assert examples == synthetic.synthetic_boost_examples(problems, seed=0)
    wrong = [e["prompt"].split("[BEGIN]\n", 1)[1].split("\n[DONE]")[0] for e in examples if e["turn"] == 2]
    by_id = {p.task_id: p for p in problems}
    task_ids = [e["task_id"] for e in examples if e["turn"] == 2]
    report = validate(
        [by_id[t].__class__(t, "x", by_id[t].tests, "", code) for t, code in zip(task_ids, wrong, strict=True)],
        1.0,
        executor(),
    )
    assert report.kept == 0  # every wrong first attempt fails a test


def test_mutants_that_loop_forever_are_judged_in_the_sandbox() -> None:
    """--mbpp-boost mutates references that are not ours: `i += 1` -> `i += 2` under `while i != n`
    must time out in the sandbox (a usable wrong attempt), not hang the caller."""
    reference = "def count_to(n):\n    i = 0\n    while i != n:\n        i += 1\n    return i\n"
    problem = Problem("loop/1", "Count to n.", ("assert count_to(3) == 3", "assert count_to(0) == 0"), "", reference)
    start = time.monotonic()
    variants = synthetic.buggy_variants(problem, limit=50)
    assert variants and reference not in variants
    assert "i += 2" in "".join(variants)  # never equals 3: loops until the sandbox times it out
    assert time.monotonic() - start < 60
