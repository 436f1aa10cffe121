"""KodCode (Xu et al. 2025) for boost SFT (method.md section 6): pytest files -> asserts, two-turn examples.

Accepts both the demo files (`test_code`, `trial_qwen2.5_*`) and the released KodCode-V1 (`test`,
`trial_gpt4o_*`). The 8:2 train/validation split is by question: `question_id` without its style
suffix (`_I`, `_C`), so the variants of one question never straddle the split.
"""

from __future__ import annotations

import logging
import random
import re
from collections import Counter
from typing import Any

from cocos.data.convert import ConversionError, pytest_to_tests
from cocos.data.io import DataError
from cocos.records import Problem

log = logging.getLogger(__name__)

SPLITS = ("train", "validation")
TRAIN_SHARE = 0.8


def question_key(record: dict[str, Any]) -> str:
    return re.sub(r"_[A-Z]$", "", str(record.get("question_id", "")))


def split_of(keys: list[str], seed: int) -> dict[str, str]:
    """Seeded 8:2 assignment of question keys to train / validation."""
    unique = sorted(set(keys))
    random.Random(seed).shuffle(unique)
    cut = round(len(unique) * TRAIN_SHARE)
    return {key: ("train" if i < cut else "validation") for i, key in enumerate(unique)}


def to_problem(record: dict[str, Any], origin: str) -> tuple[Problem | None, Counter[str]]:
    """The Problem of one record (None when no test converts) and the skipped test functions per reason."""
    task_id = f"kodcode/{record.get('question_id', '<no question_id>')}"
    test_code = record.get("test") or record.get("test_code")
    if not test_code:
        raise DataError(f"{origin}: record {task_id}: record has no tests (no `test` / `test_code`)")
    try:
        result = pytest_to_tests(test_code)
    except ConversionError as err:
        raise DataError(f"{origin}: record {task_id}: {err}") from err
    if not result.tests:
        return None, result.skipped + Counter({"record dropped: no convertible test function": 1})
    info = record.get("test_info") or []
    entry_point = info[0].get("function_name") if info and isinstance(info[0], dict) else None
    try:
        problem = Problem(
            task_id=task_id,
            text=record["question"],
            tests=result.tests,
            setup=result.setup,
            reference=record["solution"],
            entry_point=entry_point,
            source="kodcode",
        )
    except (ValueError, KeyError) as err:
        raise DataError(f"{origin}: record {task_id}: {err}") from err
    return problem, result.skipped


def convert(records: list[dict[str, Any]], origin: str) -> tuple[list[Problem], Counter[str]]:
    problems: list[Problem] = []
    skipped: Counter[str] = Counter()
    for record in records:
        problem, reasons = to_problem(record, origin)
        skipped += reasons
        if problem is not None:
            problems.append(problem)
    log.info("kodcode %s: %d/%d records converted; skipped: %s", origin, len(problems), len(records), dict(skipped))
    return problems, skipped


def select(records: list[dict[str, Any]], split: str, seed: int) -> list[dict[str, Any]]:
    assignment = split_of([question_key(r) for r in records], seed)
    return [r for r in records if assignment[question_key(r)] == split]


def failed_trials(record: dict[str, Any]) -> list[str]:
    """Code of the trials whose test_result is not a pass, in trial-name order."""
    trials = record.get("trials") or {}
    return [
        trial["solution_code"]
        for _, trial in sorted(trials.items())
        if isinstance(trial, dict)
        and trial.get("solution_code")
        and str(trial.get("test_result", "")).strip().lower() != "pass"
    ]


def boost_examples(
    records: list[dict[str, Any]], seed: int, split: str | None = None, origin: str = "kodcode"
) -> list[dict[str, Any]]:
    """Two-turn boost SFT examples, turn-1 and turn-2 1:1, one pair per usable record.

    A record is usable when its tests convert and one trial failed: turn 1 is
    (turn_prompt(problem), solution + [DONE]); turn 2 is (turn_prompt(problem, failed code),
    solution + [DONE]). The failed trial is picked with `seed`. `split` ("train" / "validation")
    keeps the records of that side of the seeded 8:2 split by question; None keeps all.
    """
    from cocos.prompts import completion_text, turn_prompt

    if split is not None:
        if split not in SPLITS:
            raise ValueError(f"split={split!r} is not a KodCode boost split; allowed: {', '.join(SPLITS)}")
        records = select(records, split, seed)
    rng = random.Random(seed)
    examples: list[dict[str, Any]] = []
    unusable: Counter[str] = Counter()
    for record in records:
        failed = failed_trials(record)
        if not failed:
            unusable["no failed trial"] += 1
            continue
        problem, _ = to_problem(record, origin)
        if problem is None:
            unusable["no convertible test"] += 1
            continue
        wrong = rng.choice(failed)
        if wrong.strip() == problem.reference.strip():
            unusable["failed trial equals the solution"] += 1
            continue
        completion = completion_text(problem.reference)
        examples.append(
            {"prompt": turn_prompt(problem), "completion": completion, "turn": 1, "task_id": problem.task_id}
        )
        examples.append(
            {
                "prompt": turn_prompt(problem, previous_code=wrong),
                "completion": completion,
                "turn": 2,
                "task_id": problem.task_id,
            }
        )
    log.info(
        "kodcode boost examples: %d pairs from %d records; unusable: %s",
        len(examples) // 2,
        len(records),
        dict(unusable),
    )
    return examples
