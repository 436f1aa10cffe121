"""ODEX (Wang et al. 2023), English test split: intent + test snippets -> standalone tests.

text = the intent; the entry point `f_<id>` appears in every test. reference = prompt +
canonical_solution + suffix. setup = `test_start` without its `def check(<arg>):` header (imports).
task_id = `odex/<post id>_<n>`: post ids repeat in ODEX, n counts them in file order.
About half of the records need third-party libraries (pandas, numpy, ...); without them in the
sandbox the validation gate drops those records with the error as reason.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from cocos.data.convert import ConversionError, odex_to_tests
from cocos.data.io import DataError
from cocos.records import Problem


def convert(records: list[dict[str, Any]], origin: str) -> list[Problem]:
    seen: Counter[str] = Counter()
    problems = []
    for record in records:
        post = str(record.get("task_id", "<no task_id>"))
        task_id = f"odex/{post}_{seen[post]}"
        seen[post] += 1
        try:
            tests = record.get("test") or []
            if not tests:
                raise ConversionError("record has no tests")
            setup, converted = odex_to_tests(record["test_start"], list(tests), record["entry_point"])
            problems.append(
                Problem(
                    task_id=task_id,
                    text=record["intent"],
                    tests=converted,
                    setup=setup,
                    reference=record["prompt"] + record["canonical_solution"] + (record.get("suffix") or ""),
                    entry_point=record["entry_point"],
                    source="odex",
                )
            )
        except (ConversionError, ValueError, KeyError) as err:
            raise DataError(f"{origin}: record {task_id}: {err}") from err
    return problems
