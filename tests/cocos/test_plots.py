"""Figures (cocos/plots.py): each function writes a PNG (header bytes, 640 x 400 or 640 x 720 pixels,
not blank) and survives missing history keys, a single step, one turn and NaN values.
Run: pytest tests/cocos/test_plots.py -q
"""

import struct
from pathlib import Path

from cocos.metrics import self_correction_metrics
from cocos.plots import plot_accuracy_by_turn, plot_training_curves, plot_turn_transitions
from cocos.report import turn_distribution

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(path: str | Path) -> tuple[int, int]:
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE, "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert len(data) > 2000, f"{path}: {len(data)} bytes, looks blank"
    return width, height


def _records(rows):
    return [{"task_id": str(i), "correct": r} for i, r in enumerate(rows)]


ROWS = [[False, False, True], [True, True, True], [True, False, True], [False, True, False], [False, False, False]]


def _history(steps):
    return [
        {
            "rollout/reward_mean": 0.2 + 0.01 * i,
            "rollout/reward_std": 0.1,
            "rollout/acc_t1": 0.3 + 0.002 * i,
            "rollout/acc_t2": 0.35 + 0.003 * i,
            "rollout/kl": 0.001 * i,
            "train/loss": 0.5,
        }
        for i in range(steps)
    ]


def test_turn_transitions_png(tmp_path):
    path = plot_turn_transitions(turn_distribution(_records(ROWS), 3), tmp_path / "sub" / "t.png", "mbpp")
    assert path == str(tmp_path / "sub" / "t.png")
    assert _png_size(path) == (640, 400)


def test_turn_transitions_single_turn_draws_a_note(tmp_path):
    path = plot_turn_transitions(turn_distribution(_records(ROWS), 1), tmp_path / "t1.png", "one turn")
    assert _png_size(path) == (640, 400)


def test_training_curves_png(tmp_path):
    assert _png_size(plot_training_curves(_history(40), tmp_path / "train.png")) == (640, 720)


def test_training_curves_missing_keys_single_step_and_nan(tmp_path):
    cases = {
        "empty": [],
        "one_step": _history(1),
        "reward_only": [{"rollout/reward_mean": 0.1}, {"rollout/reward_mean": 0.3}],
        "no_std": [{k: v for k, v in h.items() if k != "rollout/reward_std"} for h in _history(5)],
        "ragged_std": [*_history(3), {"rollout/reward_mean": 0.5}],
        "nan": [{"rollout/kl": float("nan"), "rollout/acc_t1": 0.5, "step": 7}],
        "three_turns": [{**h, "rollout/acc_t3": 0.4} for h in _history(4)],
    }
    for name, history in cases.items():
        assert _png_size(plot_training_curves(history, tmp_path / f"{name}.png")) == (640, 720), name


def test_accuracy_by_turn_png(tmp_path):
    mbpp = self_correction_metrics(ROWS)
    odex = self_correction_metrics([r[:2] for r in ROWS])
    results = {"mbpp": {**mbpp, "problems": 5.0, "p2f_t1_t2": 2.0}, "odex": odex}
    assert _png_size(plot_accuracy_by_turn(results, tmp_path / "acc.png")) == (640, 400)
    assert _png_size(plot_accuracy_by_turn({}, tmp_path / "none.png")) == (640, 400)
