"""Self-correction metrics (SCoRe definitions, method.md section 7): fractions of all problems.

>>> m = self_correction_metrics([[False, True], [True, True], [True, False], [False, False]])
>>> m["acc_t1"], m["acc_t2"], m["i2c_t1_t2"], m["c2i_t1_t2"], m["delta_t1_t2"]
(0.5, 0.5, 0.25, 0.25, 0.0)
"""

from __future__ import annotations

from collections.abc import Sequence


def self_correction_metrics(correct: Sequence[Sequence[bool]]) -> dict[str, float]:
    """Acc@t per turn and i2c / c2i / delta per consecutive pair of turns."""
    if not correct:
        raise ValueError("correct is empty: metrics need at least one problem")
    turns = len(correct[0])
    if turns == 0:
        raise ValueError("correct[0] is empty: each problem needs a verdict for at least one turn")
    for index, row in enumerate(correct):
        if len(row) != turns:
            raise ValueError(f"correct[{index}] has {len(row)} turns, correct[0] has {turns}: rows must agree")
    n = len(correct)
    metrics: dict[str, float] = {}
    for t in range(turns):
        metrics[f"acc_t{t + 1}"] = sum(bool(row[t]) for row in correct) / n
    for t in range(turns - 1):
        pair = f"t{t + 1}_t{t + 2}"
        i2c = sum((not row[t]) and bool(row[t + 1]) for row in correct) / n
        c2i = sum(bool(row[t]) and not row[t + 1] for row in correct) / n
        metrics[f"i2c_{pair}"] = i2c
        metrics[f"c2i_{pair}"] = c2i
        metrics[f"delta_{pair}"] = metrics[f"acc_t{t + 2}"] - metrics[f"acc_t{t + 1}"]
    return metrics


def assert_transitions(passed: Sequence[Sequence[Sequence[bool]]]) -> dict[str, int]:
    """Assert-level transitions between consecutive turns (paper Table 5).

    `passed[problem][turn][test]` is the verdict of one assert. Returns counts of asserts going
    pass->fail and fail->pass for every pair of turns, keys `p2f_t1_t2`, `f2p_t1_t2`, ...
    """
    counts: dict[str, int] = {}
    for problem_index, turns in enumerate(passed):
        for t in range(len(turns) - 1):
            before, after = turns[t], turns[t + 1]
            if len(before) != len(after):
                raise ValueError(f"passed[{problem_index}]: turn {t + 1} and {t + 2} have different test counts")
            pair = f"t{t + 1}_t{t + 2}"
            counts.setdefault(f"p2f_{pair}", 0)
            counts.setdefault(f"f2p_{pair}", 0)
            counts[f"p2f_{pair}"] += sum(b and not a for b, a in zip(before, after, strict=True))
            counts[f"f2p_{pair}"] += sum(a and not b for b, a in zip(before, after, strict=True))
    return counts

