"""MBPP (Austin et al. 2021): records -> Problems, and the task_id split of the paper.

Setup rule: `test_setup_code` is the setup, except when it uses names that `code` defines (tasks 367
and 927 build `Node` objects from the class in `code`). Setup runs before the code, so there it is
prefixed to each assert instead. `challenge_test_list` is not used (the paper uses `test_list`).
"""

from __future__ import annotations

from typing import Any

from cocos.data.convert import ConversionError, defined_names, names_used, parse
from cocos.data.io import DataError
from cocos.records import Problem, RecordError

SPLITS: dict[str, range] = {
    "train": range(601, 975),
    "validation": range(511, 601),
    "test": range(11, 511),
    "prompt": range(1, 11),
}


def setup_and_tests(code: str, test_setup_code: str, tests: list[str]) -> tuple[str, tuple[str, ...]]:
    if not test_setup_code.strip():
        return "", tuple(tests)
    uses = names_used(parse(test_setup_code, "test_setup_code"))
    if uses & defined_names(code):
        return "", tuple(f"{test_setup_code.rstrip()}\n{t}" for t in tests)
    return test_setup_code, tuple(tests)


def to_problem(record: dict[str, Any], origin: str) -> Problem:
    task_id = record.get("task_id", "<no task_id>")
    try:
        tests = list(record.get("test_list") or [])
        if not tests:
            raise ConversionError("record has no tests (test_list is empty)")
        for i, test in enumerate(tests):
            parse(test, f"test {i}")
        code = record["code"]
        setup, tests_out = setup_and_tests(code, record.get("test_setup_code") or "", tests)
        return Problem(
            task_id=f"mbpp/{task_id}",
            text=record["text"],
            tests=tests_out,
            setup=setup,
            reference=code,
            entry_point=None,
            source="mbpp",
        )
    except KeyError as err:
        raise DataError(f"{origin}: record mbpp/{task_id}: missing field {err}") from err
    except (ConversionError, RecordError, TypeError) as err:
        raise DataError(f"{origin}: record mbpp/{task_id}: {err}") from err


def convert(records: list[dict[str, Any]], split: str, origin: str) -> list[Problem]:
    ids = SPLITS[split]
    chosen = sorted((r for r in records if int(r.get("task_id", -1)) in ids), key=lambda r: int(r["task_id"]))
    return [to_problem(r, origin) for r in chosen]
