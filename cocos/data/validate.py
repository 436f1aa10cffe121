"""Validation gate: every problem must pass its own tests with its reference solution (method.md s. 1).

Failing problems are dropped and listed with the reason (first failing test and its message); more
than `max_drop_share` dropped raises, since that points at a broken conversion or sandbox.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cocos.records import ExecutionJob, ExecutionResult, Problem

log = logging.getLogger(__name__)

Executor = Callable[[list[ExecutionJob]], list[ExecutionResult]]


class ValidationError(ValueError):
    """Too many problems fail their own tests."""


@dataclass(frozen=True)
class ValidationReport:
    total: int
    kept: int
    dropped: dict[str, str] = field(default_factory=dict)  # task_id -> reason
    problems: tuple[Problem, ...] = ()  # the kept problems, in input order (not in to_dict)

    @property
    def drop_share(self) -> float:
        return len(self.dropped) / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "kept": self.kept, "dropped": dict(self.dropped), "drop_share": self.drop_share}


def _reason(problem: Problem, result: ExecutionResult) -> str:
    if result.total != len(problem.tests):
        return f"sandbox returned {result.total} outcomes for {len(problem.tests)} tests"
    for i, outcome in enumerate(result.outcomes):
        if outcome.status.value != "passed":
            message = outcome.message.strip().splitlines()[-1:] if outcome.message else []
            return f"test {i}: {outcome.status.value}" + (f": {message[0][:200]}" if message else "")
    return "no tests"


def validate(
    problems: Sequence[Problem], max_drop_share: float, executor: Executor | None = None, timeout_s: float = 3.0
) -> ValidationReport:
    """Run each reference against its own tests; the report holds the kept problems and the dropped ids.

    `executor` maps ExecutionJobs to ExecutionResults; default `cocos.sandbox.execute_many`.
    """
    if not 0.0 <= max_drop_share <= 1.0:
        raise ValueError(f"max_drop_share={max_drop_share}: must be a share between 0 and 1")
    if executor is None:
        from cocos.sandbox import execute_many

        executor = execute_many
    jobs = [ExecutionJob(code=p.reference, tests=p.tests, setup=p.setup, timeout_s=timeout_s) for p in problems]
    results = executor(jobs)
    kept, dropped = [], {}
    for problem, result in zip(problems, results, strict=True):
        if result.all_passed and result.total == len(problem.tests):
            kept.append(problem)
        else:
            dropped[problem.task_id] = _reason(problem, result)
    report = ValidationReport(total=len(problems), kept=len(kept), dropped=dropped, problems=tuple(kept))
    for task_id, reason in dropped.items():
        log.warning("validation: dropped %s: %s", task_id, reason)
    if report.drop_share > max_drop_share:
        sample = "; ".join(f"{k}: {v}" for k, v in list(dropped.items())[:5])
        raise ValidationError(
            f"{len(dropped)}/{len(problems)} problems ({report.drop_share:.1%}) fail their own tests, above "
            f"max_drop_share={max_drop_share:.1%}; first ones: {sample}. Check the conversion and the "
            f"sandbox (missing libraries?), or raise max_drop_share if these drops are expected."
        )
    return report
