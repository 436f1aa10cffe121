"""Plain records shared by every stage: problems, execution outcomes, rollouts.

They are small frozen dataclasses with `to_dict`/`from_dict`, so they travel as JSON lines between
kfp components and into MLflow artifacts without pickling.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

SOURCES = ("mbpp", "humaneval", "odex", "kodcode", "synthetic")


class RecordError(ValueError):
    """A record that cannot be used; the message names the record and the field."""


@dataclass(frozen=True)
class Problem:
    """One task of method.md section 1: statement, standalone asserts, setup and reference solution."""

    task_id: str
    text: str
    tests: tuple[str, ...]
    setup: str = ""
    reference: str = ""
    entry_point: str | None = None
    source: str = "synthetic"

    def __post_init__(self) -> None:
        if not isinstance(self.task_id, str) or not self.task_id:
            raise RecordError(f"problem {self.task_id!r}: task_id must be a non-empty string")
        if not self.text.strip():
            raise RecordError(f"problem {self.task_id}: text is empty")
        if isinstance(self.tests, str) or not isinstance(self.tests, Sequence):
            raise RecordError(f"problem {self.task_id}: tests must be a list of assert strings")
        object.__setattr__(self, "tests", tuple(self.tests))
        if not self.tests:
            raise RecordError(f"problem {self.task_id}: has no tests; a problem needs at least one assert")
        for i, test in enumerate(self.tests):
            if not isinstance(test, str) or not test.strip():
                raise RecordError(f"problem {self.task_id}: test {i} is empty or not a string")

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["tests"] = list(self.tests)
        return record

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> Problem:
        missing = [key for key in ("task_id", "text", "tests") if key not in record]
        if missing:
            name = record.get("task_id", "<no task_id>")
            raise RecordError(f"problem {name}: missing field(s) {', '.join(missing)}")
        return cls(
            task_id=str(record["task_id"]),
            text=record["text"],
            tests=tuple(record["tests"]),
            setup=record.get("setup") or "",
            reference=record.get("reference") or "",
            entry_point=record.get("entry_point"),
            source=record.get("source") or "synthetic",
        )


class Status(str, enum.Enum):
    """Outcome of one assert. Only the harness decides it, never the candidate program."""

    PASSED = "passed"
    FAILED = "failed"  # AssertionError
    ERROR = "error"  # any other exception (syntax error, NameError, ...)
    TIMEOUT = "timeout"
    MEMORY = "memory"
    OUTPUT_LIMIT = "output_limit"
    SANDBOX_ERROR = "sandbox_error"  # our failure, not the candidate's: carries no reward


@dataclass(frozen=True)
class TestOutcome:
    status: Status
    message: str = ""
    error_type: str | None = None
    duration_s: float = 0.0

    __test__ = False  # not a pytest class

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "message": self.message,
            "error_type": self.error_type,
            "duration_s": self.duration_s,
        }

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> TestOutcome:
        return cls(
            status=Status(record["status"]),
            message=record.get("message", ""),
            error_type=record.get("error_type"),
            duration_s=float(record.get("duration_s", 0.0)),
        )


@dataclass(frozen=True)
class ExecutionResult:
    """One typed outcome per test, in the order of the tests."""

    outcomes: tuple[TestOutcome, ...]

    @property
    def total(self) -> int:
        return len(self.outcomes)

    @property
    def passed(self) -> int:
        return sum(outcome.status is Status.PASSED for outcome in self.outcomes)

    @property
    def all_passed(self) -> bool:
        return self.total > 0 and self.passed == self.total

    @property
    def sandbox_error(self) -> bool:
        """True when any verdict is missing because the sandbox failed: such a result earns no reward."""
        return any(outcome.status is Status.SANDBOX_ERROR for outcome in self.outcomes)

    def to_dict(self) -> dict[str, Any]:
        return {"outcomes": [outcome.to_dict() for outcome in self.outcomes]}

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> ExecutionResult:
        return cls(outcomes=tuple(TestOutcome.from_dict(o) for o in record["outcomes"]))


@dataclass(frozen=True)
class ExecutionJob:
    """Input of `cocos.sandbox.execute_many`: the same arguments as `execute`."""

    code: str
    tests: tuple[str, ...]
    setup: str = ""
    timeout_s: float = 3.0


@dataclass
class Rollout:
    """One multi-turn trajectory for one problem: code and verdicts per turn, and its reward."""

    task_id: str
    codes: list[str] = field(default_factory=list)
    results: list[ExecutionResult] = field(default_factory=list)
    reward: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "codes": self.codes,
            "results": [r.to_dict() for r in self.results],
            "reward": self.reward,
        }
