"""CoCoS rewards (paper Eq. 4-5, method.md section 4): pure functions, no tensors.

>>> progressive_scores([1, 3], total=3, mode="count")
[1.0, 3.0]
>>> accumulated_reward([1.0, 3.0], gamma=0.5)
2.5
"""

from __future__ import annotations

import math
from collections.abc import Sequence

SCORE_MODES = ("ratio", "count", "binary")


def progressive_scores(passed: Sequence[int], total: int, mode: str = "ratio") -> list[float]:
    """Per-turn score r_t from the asserts passed at turn t.

    `ratio`: c_t / |U| (paper text); `count`: c_t (reference code); `binary`: 1[c_t == |U|] (paper 8.2).
    """
    if mode not in SCORE_MODES:
        raise ValueError(f"mode={mode!r} is not a score mode; use one of {', '.join(SCORE_MODES)}")
    if total <= 0:
        raise ValueError(f"total={total}: a problem needs at least one assert to be scored")
    scores = []
    for turn, count in enumerate(passed, start=1):
        if not 0 <= count <= total:
            raise ValueError(f"passed[{turn - 1}]={count} is outside 0..total={total}")
        if mode == "ratio":
            scores.append(count / total)
        elif mode == "count":
            scores.append(float(count))
        else:
            scores.append(1.0 if count == total else 0.0)
    return scores


def accumulated_reward(scores: Sequence[float], gamma: float) -> float:
    """R = sum_{t=1..T} gamma^(T-t) * (r_t - r_{t-1}), with r_0 = 0 (paper Eq. 4).

    For T=2 this is r_2 - (1 - gamma) * r_1; gamma=1 gives r_T, gamma=0 gives r_T - r_{T-1}.
    """
    if not scores:
        raise ValueError("scores is empty: the accumulated reward needs at least one turn")
    if not math.isfinite(gamma):
        raise ValueError(f"gamma={gamma} must be a finite number")
    last = len(scores)
    previous = 0.0
    reward = 0.0
    for turn, score in enumerate(scores, start=1):
        reward += gamma ** (last - turn) * (score - previous)
        previous = score
    return reward


def trajectory_reward(
    passed: Sequence[int], total: int, gamma: float, mode: str = "ratio"
) -> float:
    """Accumulated reward of one trajectory straight from the per-turn pass counts."""
    return accumulated_reward(progressive_scores(passed, total, mode), gamma)
