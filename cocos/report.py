"""Evaluation report (method.md sections 7 and 9): turn-wise transitions, bootstrap intervals, Markdown and HTML.

Pure functions over evaluation records (`cocos.evaluate.EvalResult.records`) and metrics dicts
(`EvalResult.metrics`); no MLflow, no model. The HTML page is self-contained (images embedded as
base64 PNG, no external assets) so the Kubeflow UI can show it as an HTML artifact.

>>> records = [{"correct": [False, True]}, {"correct": [True, True]}, {"correct": [True, False]}]
>>> d = turn_distribution(records, 2)
>>> d["c2c"], d["c2i"], d["i2c"], d["i2i"], d["cumulative_net_gain"]
([1], [1], [1], [0], [0])
"""

from __future__ import annotations

import base64
import html
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cocos.prompts import CORRECTION_INSTRUCTION, INSTRUCTION_REPHRASINGS

log = logging.getLogger(__name__)

# method.md section 9 (paper, greedy decoding), in percent; None where the paper gives no number.
PAPER_RESULTS: tuple[dict[str, Any], ...] = (
    {"model": "Qwen2.5-1.5B", "dataset": "mbpp", "method": "Boost model",
     "acc_t1": 9.0, "acc_t2": 10.2, "i2c": 1.2, "c2i": 0.0, "delta": 1.2},
    {"model": "Qwen2.5-1.5B", "dataset": "mbpp", "method": "Turn-RL",
     "acc_t1": 46.4, "acc_t2": 48.6, "i2c": 4.0, "c2i": 1.8, "delta": 2.2},
    {"model": "Qwen2.5-1.5B", "dataset": "mbpp", "method": "CoCoS",
     "acc_t1": 45.0, "acc_t2": 54.2, "i2c": 11.0, "c2i": 1.8, "delta": 9.2},
    {"model": "Qwen2.5-1.5B", "dataset": "humaneval", "method": "CoCoS",
     "acc_t1": 29.3, "acc_t2": 32.3, "i2c": 3.0, "c2i": 0.0, "delta": 3.0},
    {"model": "Qwen2.5-1.5B", "dataset": "odex", "method": "CoCoS",
     "acc_t1": 23.0, "acc_t2": 28.9, "i2c": 5.9, "c2i": 0.0, "delta": 5.9},
    {"model": "Qwen2.5-1.5B", "dataset": "mbpp", "method": "Prompting (3-shot)",
     "acc_t1": 43.8, "acc_t2": 44.6, "i2c": None, "c2i": None, "delta": 0.8},
    {"model": "Llama-3.2-1B", "dataset": "mbpp", "method": "CoCoS",
     "acc_t1": 57.2, "acc_t2": 59.4, "i2c": None, "c2i": None, "delta": 2.2},
    {"model": "Llama-3.2-1B", "dataset": "humaneval", "method": "CoCoS",
     "acc_t1": 34.1, "acc_t2": 39.6, "i2c": None, "c2i": None, "delta": 5.5},
    {"model": "Llama-3.2-1B", "dataset": "odex", "method": "CoCoS",
     "acc_t1": 23.2, "acc_t2": 25.1, "i2c": None, "c2i": None, "delta": 1.9},
    {"model": "deepseek-coder-1.3B", "dataset": "mbpp", "method": "CoCoS",
     "acc_t1": 48.2, "acc_t2": 60.4, "i2c": None, "c2i": None, "delta": 12.2},
    {"model": "deepseek-coder-1.3B", "dataset": "humaneval", "method": "CoCoS",
     "acc_t1": 22.6, "acc_t2": 25.0, "i2c": None, "c2i": None, "delta": 2.4},
    {"model": "deepseek-coder-1.3B", "dataset": "odex", "method": "CoCoS",
     "acc_t1": 26.2, "acc_t2": 31.4, "i2c": None, "c2i": None, "delta": 5.2},
)

# Row i of the robustness table: instruction i (0 = the fixed instruction used in training).
INSTRUCTIONS: tuple[str, ...] = (CORRECTION_INSTRUCTION, *INSTRUCTION_REPHRASINGS)


def _correct_matrix(records: Sequence[Mapping[str, Any]], turns: int) -> np.ndarray:
    """`correct[:turns]` of every record as a bool array (problems, turns); refuses short or missing rows."""
    if not records:
        raise ValueError("records is empty: the report needs at least one problem")
    if turns < 1:
        raise ValueError(f"turns={turns} must be >= 1")
    rows = []
    for index, record in enumerate(records):
        correct = record.get("correct")
        if correct is None or len(correct) < turns:
            have = "no 'correct'" if correct is None else f"{len(correct)} turns"
            raise ValueError(f"records[{index}] ({record.get('task_id', '?')}) has {have}, the report asks {turns}")
        rows.append([bool(c) for c in correct[:turns]])
    return np.asarray(rows, dtype=bool)  # (problems, turns)


def turn_distribution(records: Sequence[Mapping[str, Any]], turns: int) -> dict[str, Any]:
    """Counts of c->c, c->i, i->c, i->i per consecutive pair of turns and the cumulative net gain (paper Figure 4).

    Lists are aligned with `pairs` (`["t1_t2", "t2_t3", ...]`); `net_gain[k] = i2c[k] - c2i[k]` and
    `cumulative_net_gain[k]` sums it over pairs 0..k, which equals correct(t_{k+2}) - correct(t1).
    `correct` holds the number of correct problems per turn.
    """
    c = _correct_matrix(records, turns)
    before, after = c[:, :-1], c[:, 1:]  # (problems, turns - 1)
    i2c = (~before & after).sum(axis=0)
    c2i = (before & ~after).sum(axis=0)
    net = i2c - c2i
    return {
        "problems": int(c.shape[0]),
        "turns": turns,
        "pairs": [f"t{t + 1}_t{t + 2}" for t in range(turns - 1)],
        "correct": [int(v) for v in c.sum(axis=0)],
        "c2c": [int(v) for v in (before & after).sum(axis=0)],
        "c2i": [int(v) for v in c2i],
        "i2c": [int(v) for v in i2c],
        "i2i": [int(v) for v in (~before & ~after).sum(axis=0)],
        "net_gain": [int(v) for v in net],
        "cumulative_net_gain": [int(v) for v in np.cumsum(net)],
    }


def _metric_columns(c: np.ndarray) -> dict[str, np.ndarray]:
    """Acc@t and i2c / c2i / delta per pair over the last-but-one axis: c is (..., problems, turns)."""
    turns = c.shape[-1]
    values = {f"acc_t{t + 1}": c[..., t].mean(axis=-1) for t in range(turns)}
    for t in range(turns - 1):
        pair = f"t{t + 1}_t{t + 2}"
        b, a = c[..., t], c[..., t + 1]
        values[f"i2c_{pair}"] = (~b & a).mean(axis=-1)
        values[f"c2i_{pair}"] = (b & ~a).mean(axis=-1)
        values[f"delta_{pair}"] = values[f"acc_t{t + 2}"] - values[f"acc_t{t + 1}"]
    return values


def bootstrap_intervals(
    records: Sequence[Mapping[str, Any]], turns: int, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals (fractions) for the keys of `cocos.metrics.self_correction_metrics`.

    Problems are resampled with replacement `n_boot` times from a generator seeded with `seed`, so
    the same records give the same intervals. Keys: `acc_t1`.., `i2c_t1_t2`, `c2i_t1_t2`, `delta_t1_t2`, ...
    """
    if n_boot < 1:
        raise ValueError(f"n_boot={n_boot} must be >= 1")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha={alpha} must be in (0, 1): it is the two-sided miss rate, 0.05 for 95% intervals")
    c = _correct_matrix(records, turns)
    rng = np.random.default_rng(seed)
    index = rng.integers(0, c.shape[0], size=(n_boot, c.shape[0]))  # (n_boot, problems)
    samples = _metric_columns(c[index])  # each (n_boot,)
    return {
        key: (float(np.quantile(v, alpha / 2)), float(np.quantile(v, 1 - alpha / 2))) for key, v in samples.items()
    }


# ---------------------------------------------------------------------------- Markdown
def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _cell(metrics: Mapping[str, float], key: str, interval: Mapping[str, tuple[float, float]] | None) -> str:
    if key not in metrics:
        return "-"
    text = _pct(metrics[key])
    if interval and key in interval:
        low, high = interval[key]
        text += f" [{_pct(low)}, {_pct(high)}]"
    return text


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def _metrics_section(
    results: Mapping[str, Mapping[str, float]],
    turns: int,
    intervals: Mapping[str, Mapping[str, tuple[float, float]]] | None,
    confidence: float,
) -> list[str]:
    header = ["dataset", "n", *(f"Acc@t{t + 1}" for t in range(turns))]
    for t in range(turns - 1):
        suffix = "" if turns == 2 else f" t{t + 1}->t{t + 2}"
        header += [f"D_i->c{suffix}", f"D_c->i{suffix}", f"Delta{suffix}"]
    rows = []
    for dataset, m in results.items():
        interval = (intervals or {}).get(dataset)
        row = [dataset, str(int(m["problems"])) if "problems" in m else "-"]
        row += [_cell(m, f"acc_t{t + 1}", interval) for t in range(turns)]
        for t in range(turns - 1):
            pair = f"t{t + 1}_t{t + 2}"
            row += [_cell(m, f"{k}_{pair}", interval) for k in ("i2c", "c2i", "delta")]
        rows.append(row)
    lines = ["## Self-correction metrics", "", "Percent of all problems, greedy decoding (method.md section 7)."]
    if intervals:
        lines.append(f"Brackets: {100 * confidence:.0f}% percentile bootstrap interval, resampling problems.")
    return [*lines, "", *_table(header, rows), ""]


def _assert_section(results: Mapping[str, Mapping[str, float]], turns: int) -> list[str]:
    pairs = [f"t{t + 1}_t{t + 2}" for t in range(turns - 1)]
    if not pairs or not any(f"p2f_{p}" in m for m in results.values() for p in pairs):
        return []
    header = ["dataset"]
    for p in pairs:
        name = p.replace("_", "->")
        header += [f"pass->fail {name}", f"fail->pass {name}"]
    rows = []
    for dataset, m in results.items():
        row = [dataset]
        for p in pairs:
            row += [str(int(m[k])) if k in m else "-" for k in (f"p2f_{p}", f"f2p_{p}")]
        rows.append(row)
    intro = "Counts of asserts changing verdict between consecutive turns (paper Table 5)."
    return ["## Assert-level transitions", "", intro, "", *_table(header, rows), ""]


def _robustness_section(
    robustness: Mapping[str, Sequence[Mapping[str, float]]], instructions: Sequence[str]
) -> list[str]:
    datasets = list(robustness)
    count = max((len(v) for v in robustness.values()), default=0)
    if count == 0:
        return []
    header = ["instruction"]
    for d in datasets:
        header += [f"{d} Acc@t1", f"{d} Acc@t2", f"{d} Delta"]
    rows = []
    for i in range(count):
        row = [f"{i} (fixed)" if i == 0 else str(i)]
        for d in datasets:
            m = robustness[d][i] if i < len(robustness[d]) else {}
            row += [_cell(m, k, None) for k in ("acc_t1", "acc_t2", "delta_t1_t2")]
        rows.append(row)
    for name, reduce in (("mean", np.mean), ("std", np.std)):
        row = [name]
        for d in datasets:
            for k in ("acc_t1", "acc_t2", "delta_t1_t2"):
                values = [m[k] for m in robustness[d] if k in m]
                row.append(_pct(float(reduce(values))) if values else "-")
        rows.append(row)
    lines = ["## Robustness to the correction instruction", "", "Paper Table 6; percent of all problems.", ""]
    lines += _table(header, rows)
    lines += ["", "Instructions:", ""]
    for i in range(count):
        text = instructions[i] if i < len(instructions) else "(instruction text not given)"
        lines.append(f"- {i}: {text}")
    return [*lines, ""]


def _paper_section(datasets: Sequence[str]) -> list[str]:
    wanted = {d.lower() for d in datasets}
    rows = [r for r in PAPER_RESULTS if r["dataset"] in wanted] or list(PAPER_RESULTS)
    header = ["model", "dataset", "method", "Acc@t1", "Acc@t2", "D_i->c", "D_c->i", "Delta"]
    body = [
        [r["model"], r["dataset"], r["method"]]
        + ["-" if r[k] is None else f"{r[k]:.1f}" for k in ("acc_t1", "acc_t2", "i2c", "c2i", "delta")]
        for r in rows
    ]
    intro = (
        "Reference numbers from the paper (method.md section 9), percent, greedy decoding; "
        "where the paper gives only Acc@t1 and Acc@t2, Delta is their difference."
    )
    return ["## Paper results for comparison", "", intro, "", *_table(header, body), ""]


def markdown_report(
    results_by_dataset: Mapping[str, Mapping[str, float]],
    turns: int,
    robustness: Mapping[str, Sequence[Mapping[str, float]]] | None = None,
    intervals: Mapping[str, Mapping[str, tuple[float, float]]] | None = None,
    plots: Mapping[str, str] | None = None,
    title: str = "CoCoS evaluation",
    confidence: float = 0.95,
    instructions: Sequence[str] = INSTRUCTIONS,
) -> str:
    """The evaluation page in Markdown.

    - `results_by_dataset`: dataset -> `EvalResult.metrics` (fractions; `p2f_*`/`f2p_*` counts; `problems`).
    - `robustness`: dataset -> metrics per instruction, index i = `instructions[i]` (0 = the fixed one;
      default `INSTRUCTIONS`: the fixed instruction then the five rephrasings of cocos.prompts).
    - `intervals`: dataset -> `bootstrap_intervals(...)`; shown in brackets next to each value, labelled
      with `confidence` (pass `1 - alpha`).
    - `plots`: name -> image path (relative to the page), written as `![name](path)`.
    """
    lines = [f"# {title}", ""]
    lines += _metrics_section(results_by_dataset, turns, intervals, confidence)
    lines += _assert_section(results_by_dataset, turns)
    if robustness:
        lines += _robustness_section(robustness, instructions)
    lines += _paper_section(list(results_by_dataset))
    if plots:
        lines += ["## Figures", ""]
        for name, path in plots.items():
            lines += [f"![{name}]({path})", ""]
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------------------- HTML
_IMAGE = re.compile(r"^!\[(?P<alt>[^\]]*)\]\((?P<src>[^)]*)\)$")
_CSS = (
    "body{font-family:sans-serif;max-width:1100px;margin:1em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:0.5em 0}th,td{border:1px solid #bbb;padding:3px 8px;text-align:right}"
    "th{background:#eee}td:first-child,th:first-child{text-align:left}img{max-width:100%}"
    "code{background:#f3f3f3;padding:0 3px}"
)


def _inline(text: str) -> str:
    """Escape, then render `code` spans (the only inline markup the report uses)."""
    parts = text.split("`")
    return "".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts))


def _embedded(path: str | Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></figure>'


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def html_report(markdown_text: str, images: Mapping[str, str | Path] | None = None, title: str = "") -> str:
    """A self-contained HTML page from the subset of Markdown that `markdown_report` writes.

    Headings, pipe tables, numbered/bullet lists, paragraphs and `![alt](src)` image lines. All text
    is escaped. An image line whose alt text or src matches an entry of `images` (name -> PNG path)
    is embedded as base64; one that matches none stays a caption. Images never referenced are
    appended at the end, so every given image is on the page.
    """
    images = dict(images or {})
    by_src = {str(p): name for name, p in images.items()}
    used: set[str] = set()
    body: list[str] = []
    lines = markdown_text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if not line:
            i += 1
        elif match := re.match(r"^(#{1,6})\s+(.*)$", line):
            level = len(match.group(1))
            body.append(f"<h{level}>{_inline(match.group(2))}</h{level}>")
            i += 1
        elif line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                block.append(lines[i].strip())
                i += 1
            separator = len(block) > 1 and re.fullmatch(r"\|?(\s*:?-{3,}:?\s*\|)+\s*:?-*:?\s*", block[1])
            header, rows = _cells(block[0]), block[2:] if separator else block[1:]
            body.append("<table><thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in header) + "</tr></thead>")
            body.append(
                "<tbody>"
                + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in _cells(r)) + "</tr>" for r in rows)
                + "</tbody></table>"
            )
        elif match := _IMAGE.match(line):
            alt, src = match.group("alt"), match.group("src")
            name = alt if alt in images else by_src.get(src)
            if name is not None:
                body.append(_embedded(images[name], name))
                used.add(name)
            else:
                body.append(f"<p><em>image {_inline(alt)} ({_inline(src)}) not embedded</em></p>")
            i += 1
        elif re.match(r"^(\d+\.|[-*])\s+", line):
            tag = "ol" if line[0].isdigit() else "ul"
            items = []
            while i < len(lines) and (item := re.match(r"^(?:\d+\.|[-*])\s+(.*)$", lines[i].strip())):
                items.append(f"<li>{_inline(item.group(1))}</li>")
                i += 1
            body.append(f"<{tag}>{''.join(items)}</{tag}>")
        else:
            paragraph = []
            while i < len(lines) and lines[i].strip() and not re.match(r"^(#|\||!\[|\d+\.\s|[-*]\s)", lines[i].strip()):
                paragraph.append(lines[i].strip())
                i += 1
            if not paragraph:  # a line that looked like markup but did not parse as any block
                paragraph.append(line)
                i += 1
            body.append(f"<p>{_inline(' '.join(paragraph))}</p>")
    for name, path in images.items():
        if name not in used:
            body.append(f"<h3>{html.escape(name)}</h3>" + _embedded(path, name))
    if not title:
        heading = next((ln.lstrip("#").strip() for ln in lines if ln.startswith("# ")), "CoCoS report")
        title = heading
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
