"""Decontamination: drop training problems sharing a word n-gram with an evaluation set.

Words are lower-cased `\\w+` runs of `text + reference`. Texts shorter than n words count as one
n-gram (the whole text), so short duplicates are still caught.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from cocos.records import Problem

_WORD = re.compile(r"\w+")


def ngrams(problem: Problem, n: int) -> set[tuple[str, ...]]:
    words = _WORD.findall(f"{problem.text}\n{problem.reference}".lower())
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


@dataclass(frozen=True)
class DecontaminationReport:
    n: int
    total: int
    kept: int
    dropped: dict[str, list[str]] = field(default_factory=dict)  # eval set -> dropped training ids

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "dropped_count": {k: len(v) for k, v in self.dropped.items()}}


def decontaminate(
    train: Sequence[Problem], eval_sets: Mapping[str, Iterable[Problem]], n: int = 13
) -> tuple[list[Problem], DecontaminationReport]:
    """Training problems with no word n-gram in common with any evaluation set, and what was dropped."""
    if n < 1:
        raise ValueError(f"n={n}: the n-gram length must be at least 1")
    grams = {name: set().union(*(ngrams(p, n) for p in problems)) for name, problems in eval_sets.items()}
    kept: list[Problem] = []
    dropped: dict[str, list[str]] = {}
    for problem in train:
        mine = ngrams(problem, n)
        hits = [name for name, theirs in grams.items() if mine & theirs]
        for name in hits:
            dropped.setdefault(name, []).append(problem.task_id)
        if not hits:
            kept.append(problem)
    return kept, DecontaminationReport(n=n, total=len(train), kept=len(kept), dropped=dropped)
