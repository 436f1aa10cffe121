"""Evaluation and training figures as PNG files (matplotlib, Agg canvas; no pyplot state, no seaborn).

Each function draws one figure, writes it to `path` (parents created) at 100 dpi and returns the path
as a string. Figures are 6.4 x 4 inches (640 x 400 pixels), except `plot_training_curves`
(6.4 x 7.2 inches, 640 x 720 pixels, three stacked panels).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

log = logging.getLogger(__name__)

DPI = 100
SIZE = (6.4, 4.0)
TRAINING_SIZE = (6.4, 7.2)
# c->c, c->i, i->c, i->i: green for staying right, red for breaking, blue for fixing, grey for staying wrong.
TRANSITION_COLOURS = {"c2c": "#4c9a2a", "c2i": "#d62728", "i2c": "#1f77b4", "i2i": "#9e9e9e"}
TRANSITION_LABELS = {"c2c": "c->c", "c2i": "c->i", "i2c": "i->c", "i2i": "i->i"}


def _save(fig: Figure, path: str | Path) -> str:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(target, dpi=DPI, format="png")
    log.info("wrote %s", target)
    return str(target)


def plot_turn_transitions(distribution: Mapping[str, Any], path: str | Path, title: str = "") -> str:
    """Paper Figure 4: stacked c->c / c->i / i->c / i->i bars per pair of turns, cumulative net gain on the right axis.

    `distribution` is `cocos.report.turn_distribution(...)`; bars are counts of problems.
    """
    pairs = list(distribution.get("pairs", []))
    fig = Figure(figsize=SIZE, dpi=DPI)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_title(title or "Turn-wise transitions")
    if not pairs:
        ax.text(0.5, 0.5, "one turn: no transitions", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return _save(fig, path)
    x = list(range(len(pairs)))
    bottom = [0.0] * len(pairs)
    total = float(distribution.get("problems") or sum(float(distribution[k][0]) for k in TRANSITION_COLOURS))
    for key in ("c2c", "i2c", "c2i", "i2i"):
        values = [float(v) for v in distribution[key]]
        bars = ax.bar(x, values, bottom=bottom, width=0.6, color=TRANSITION_COLOURS[key], label=TRANSITION_LABELS[key])
        # a count is written inside its segment only where the segment is tall enough to hold it
        labels = [f"{int(v)}" if v >= 0.04 * total else "" for v in values]
        ax.bar_label(bars, labels=labels, label_type="center", fontsize=8, color="white")
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_xticks(x, [p.replace("_", "->") for p in pairs])
    ax.set_xlabel("turn pair")
    ax.set_ylabel(f"problems (n={int(total)})")
    ax.set_xlim(-0.6, len(pairs) - 0.4)
    gain_ax = ax.twinx()
    gain = [float(v) for v in distribution["cumulative_net_gain"]]
    gain_ax.plot(x, gain, color="black", marker="o", linewidth=1.5, label="cumulative net gain")
    gain_ax.axhline(0.0, color="black", linewidth=0.5, linestyle=":")
    span = max(1.0, *(abs(g) for g in gain))
    gain_ax.set_ylim(-1.2 * span, 1.2 * span)
    gain_ax.set_ylabel("cumulative net gain (i->c - c->i)")
    for xi, g in zip(x, gain, strict=True):
        gain_ax.annotate(f"{g:+.0f}", (xi, g), xytext=(8, 4), textcoords="offset points", fontsize=9, weight="bold")
    handles, labels = ax.get_legend_handles_labels()
    gain_handles, gain_labels = gain_ax.get_legend_handles_labels()
    ax.legend(
        handles + gain_handles,
        labels + gain_labels,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.15),
        ncol=5,
        fontsize=8,
        frameon=False,
    )
    fig.tight_layout()
    return _save(fig, path)


def _series(history: Sequence[Mapping[str, float]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) where `key` is present and finite; the step is `step` if logged, else 1-based position."""
    steps, values = [], []
    for position, entry in enumerate(history):
        value = entry.get(key)
        if value is None or not math.isfinite(float(value)):
            continue
        steps.append(float(entry.get("step", position + 1)))
        values.append(float(value))
    return steps, values


def _acc_keys(history: Sequence[Mapping[str, float]]) -> list[str]:
    keys = {k for entry in history for k in entry if k.startswith("rollout/acc_t")}
    return sorted(keys, key=lambda k: int(k.removeprefix("rollout/acc_t")) if k[13:].isdigit() else 99)


def plot_training_curves(history: Sequence[Mapping[str, float]], path: str | Path, title: str = "") -> str:
    """Reward mean (band: +-`rollout/reward_std`), rollout Acc@t per turn and KL against the training step.

    `history` is `RLOOResult.history` (one metrics dict per step). A missing key leaves its panel
    with a note instead of failing; a single step is drawn as markers.
    """
    fig = Figure(figsize=TRAINING_SIZE, dpi=DPI)
    reward_ax, acc_ax, kl_ax = fig.subplots(3, 1, sharex=True)
    reward_ax.set_title(title or "RLOO training")

    steps, mean = _series(history, "rollout/reward_mean")
    if steps:
        reward_ax.plot(steps, mean, marker="o" if len(steps) < 30 else None, markersize=3, label="reward mean")
        std_steps, std = _series(history, "rollout/reward_std")
        if std_steps == steps:
            low = [m - s for m, s in zip(mean, std, strict=True)]
            high = [m + s for m, s in zip(mean, std, strict=True)]
            reward_ax.fill_between(steps, low, high, alpha=0.25, label="+-1 std")
        reward_ax.legend(fontsize=8, loc="best")
    _note_if_empty(reward_ax, bool(steps), "no rollout/reward_mean logged")
    reward_ax.set_ylabel("reward")

    plotted = False
    for key in _acc_keys(history):
        s, v = _series(history, key)
        if s:
            label = "Acc@" + key.removeprefix("rollout/acc_")
            acc_ax.plot(s, [100 * x for x in v], marker="o" if len(s) < 30 else None, markersize=3, label=label)
            plotted = True
    if plotted:
        acc_ax.legend(fontsize=8, loc="best")
    _note_if_empty(acc_ax, plotted, "no rollout/acc_t* logged")
    acc_ax.set_ylabel("rollout accuracy (%)")

    steps, kl = _series(history, "rollout/kl")
    if steps:
        kl_ax.plot(steps, kl, color="#8c564b", marker="o" if len(steps) < 30 else None, markersize=3)
    _note_if_empty(kl_ax, bool(steps), "no rollout/kl logged")
    kl_ax.set_ylabel("KL")
    kl_ax.set_xlabel("step")
    kl_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (reward_ax, acc_ax, kl_ax):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def _note_if_empty(ax: Any, has_data: bool, text: str) -> None:
    if not has_data:
        ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")


def plot_accuracy_by_turn(
    results_by_dataset: Mapping[str, Mapping[str, float]], path: str | Path, title: str = ""
) -> str:
    """Acc@t (percent) against the turn, one line per dataset; `results_by_dataset` maps dataset -> metrics."""
    fig = Figure(figsize=SIZE, dpi=DPI)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_title(title or "Accuracy by turn")
    max_turn = 1
    for dataset, metrics in results_by_dataset.items():
        turns = sorted(int(k.removeprefix("acc_t")) for k in metrics if k.startswith("acc_t") and k[5:].isdigit())
        if not turns:
            continue
        max_turn = max(max_turn, turns[-1])
        ax.plot(turns, [100 * float(metrics[f"acc_t{t}"]) for t in turns], marker="o", label=dataset)
    ax.set_xticks(range(1, max_turn + 1), [f"t{t}" for t in range(1, max_turn + 1)])
    ax.set_xlim(0.7, max_turn + 0.3)
    ax.set_xlabel("turn")
    ax.set_ylabel("Acc@t (% of problems)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    else:
        _note_if_empty(ax, False, "no acc_t* metrics")
    fig.tight_layout()
    return _save(fig, path)
