"""Evaluation report (cocos/report.py): turn-wise transition counts checked by hand, bootstrap intervals
(contain the estimate, seeded, narrow with more problems), Markdown tables, self-contained escaped HTML.
Run: pytest tests/cocos/test_report.py -q
"""

import base64
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cocos.metrics import self_correction_metrics
from cocos.report import (
    INSTRUCTIONS,
    PAPER_RESULTS,
    bootstrap_intervals,
    html_report,
    markdown_report,
    turn_distribution,
)

# Three turns, six problems; per pair (t1->t2, t2->t3):
#   p1 i i c: i2i, i2c      p2 c c c: c2c, c2c      p3 c i c: c2i, i2c
#   p4 i c i: i2c, c2i      p5 i i i: i2i, i2i      p6 c c i: c2c, c2i
ROWS = [
    [False, False, True],
    [True, True, True],
    [True, False, True],
    [False, True, False],
    [False, False, False],
    [True, True, False],
]
RECORDS = [{"dataset": "mbpp", "task_id": f"p{i + 1}", "correct": row} for i, row in enumerate(ROWS)]
PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def _records(rows):
    return [{"task_id": str(i), "correct": list(r)} for i, r in enumerate(rows)]


def _metrics(rows, **extra):
    return {**self_correction_metrics(rows), "problems": float(len(rows)), **extra}


# ---------------------------------------------------------------------------- turn_distribution
def test_turn_distribution_hand_counts():
    d = turn_distribution(RECORDS, 3)
    assert d["pairs"] == ["t1_t2", "t2_t3"]
    assert d["problems"] == 6
    assert d["correct"] == [3, 3, 3]
    assert d["c2c"] == [2, 1]
    assert d["c2i"] == [1, 2]
    assert d["i2c"] == [1, 2]
    assert d["i2i"] == [2, 1]
    assert d["net_gain"] == [0, 0]
    assert d["cumulative_net_gain"] == [0, 0]


def test_cumulative_net_gain_accumulates_over_pairs():
    rows = [[False, True, True], [False, False, True], [True, True, True], [True, False, True]]
    d = turn_distribution(_records(rows), 3)
    assert d["i2c"] == [1, 2] and d["c2i"] == [1, 0]
    assert d["net_gain"] == [0, 2]
    assert d["cumulative_net_gain"] == [0, 2]


def test_turn_distribution_uses_the_first_turns_only():
    d = turn_distribution(RECORDS, 2)
    assert d["pairs"] == ["t1_t2"] and d["c2c"] == [2] and d["i2i"] == [2]
    one = turn_distribution(RECORDS, 1)
    assert one["pairs"] == [] and one["cumulative_net_gain"] == [] and one["correct"] == [3]


@settings(max_examples=50)
@given(st.integers(2, 4).flatmap(lambda t: st.lists(st.lists(st.booleans(), min_size=t, max_size=t), min_size=1)))
def test_distribution_agrees_with_metrics(rows):
    turns = len(rows[0])
    d = turn_distribution(_records(rows), turns)
    m = self_correction_metrics(rows)
    n = len(rows)
    for k in range(turns - 1):
        assert d["c2c"][k] + d["c2i"][k] + d["i2c"][k] + d["i2i"][k] == n
        assert d["i2c"][k] == pytest.approx(m[f"i2c_t{k + 1}_t{k + 2}"] * n)
        # the cumulative net gain is the change in correct problems since turn 1
        assert d["cumulative_net_gain"][k] == d["correct"][k + 1] - d["correct"][0]


def test_short_or_missing_rows_are_refused():
    with pytest.raises(ValueError, match=r"records\[1\] \(b\) has 2 turns, the report asks 3"):
        turn_distribution([{"task_id": "a", "correct": [1, 1, 1]}, {"task_id": "b", "correct": [1, 0]}], 3)
    with pytest.raises(ValueError, match="no 'correct'"):
        turn_distribution([{"task_id": "a"}], 2)
    with pytest.raises(ValueError, match="empty"):
        turn_distribution([], 2)


# ---------------------------------------------------------------------------- bootstrap
def _bernoulli_rows(n, seed=1):
    import numpy as np

    rng = np.random.default_rng(seed)
    first = rng.random(n) < 0.4
    second = np.where(first, rng.random(n) < 0.95, rng.random(n) < 0.2)
    return [[bool(a), bool(b)] for a, b in zip(first, second, strict=True)]


def test_bootstrap_contains_the_estimate_and_has_every_metric_key():
    rows = _bernoulli_rows(200)
    intervals = bootstrap_intervals(_records(rows), 2, n_boot=500, seed=3)
    point = self_correction_metrics(rows)
    assert set(intervals) == set(point)
    for key, (low, high) in intervals.items():
        assert low <= point[key] <= high, key
        assert low < high, key


def test_bootstrap_is_deterministic_with_a_seed():
    records = _records(_bernoulli_rows(80))
    first = bootstrap_intervals(records, 2, n_boot=300, seed=7)
    assert bootstrap_intervals(records, 2, n_boot=300, seed=7) == first
    assert bootstrap_intervals(records, 2, n_boot=300, seed=8) != first


def test_bootstrap_narrows_with_more_problems():
    small = bootstrap_intervals(_records(_bernoulli_rows(50)), 2, n_boot=500)
    large = bootstrap_intervals(_records(_bernoulli_rows(2000)), 2, n_boot=500)
    for key in ("acc_t1", "acc_t2", "i2c_t1_t2", "delta_t1_t2"):
        assert large[key][1] - large[key][0] < 0.5 * (small[key][1] - small[key][0]), key


def test_bootstrap_of_a_constant_column_is_a_point_and_alpha_is_checked():
    intervals = bootstrap_intervals(_records([[True, True]] * 10), 2, n_boot=50)
    assert intervals["acc_t1"] == (1.0, 1.0) and intervals["c2i_t1_t2"] == (0.0, 0.0)
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_intervals(RECORDS, 2, alpha=1.5)


# ---------------------------------------------------------------------------- Markdown
def test_markdown_has_metric_table_numbers_and_assert_transitions():
    rows = [r[:2] for r in ROWS]  # acc_t1 50.0, acc_t2 50.0, i2c 16.7, c2i 16.7
    md = markdown_report({"mbpp": _metrics(rows, p2f_t1_t2=4.0, f2p_t1_t2=9.0)}, 2)
    assert "| dataset | n | Acc@t1 | Acc@t2 | D_i->c | D_c->i | Delta |" in md
    assert "| mbpp | 6 | 50.0 | 50.0 | 16.7 | 16.7 | 0.0 |" in md
    assert "| dataset | pass->fail t1->t2 | fail->pass t1->t2 |" in md
    assert "| mbpp | 4 | 9 |" in md
    # paper reference rows for the evaluated dataset only
    assert "| Qwen2.5-1.5B | mbpp | CoCoS | 45.0 | 54.2 | 11.0 | 1.8 | 9.2 |" in md
    assert "humaneval" not in md
    assert "Robustness" not in md and "![" not in md


def test_markdown_three_turns_names_each_pair_and_shows_intervals():
    md = markdown_report(
        {"mbpp": _metrics(ROWS)}, 3, intervals={"mbpp": {"acc_t1": (0.25, 0.75)}}, confidence=0.9
    )
    assert "Acc@t3" in md and "D_i->c t2->t3" in md and "Delta t1->t2" in md
    assert "50.0 [25.0, 75.0]" in md
    assert "90% percentile bootstrap" in md


def test_markdown_robustness_table_rows_per_instruction():
    base = _metrics([[False, True], [True, True], [False, False], [True, True]])  # 50 -> 75, delta 25
    worse = _metrics([[False, False], [True, True], [False, False], [True, True]])  # 50 -> 50, delta 0
    md = markdown_report(
        {"mbpp": base, "odex": base}, 2, robustness={"mbpp": [base, worse], "odex": [base, base]}
    )
    assert "| instruction | mbpp Acc@t1 | mbpp Acc@t2 | mbpp Delta | odex Acc@t1 | odex Acc@t2 | odex Delta |" in md
    assert "| 0 (fixed) | 50.0 | 75.0 | 25.0 | 50.0 | 75.0 | 25.0 |" in md
    assert "| 1 | 50.0 | 50.0 | 0.0 | 50.0 | 75.0 | 25.0 |" in md
    assert "| mean | 50.0 | 62.5 | 12.5 | 50.0 | 75.0 | 25.0 |" in md
    assert f"- 0: {INSTRUCTIONS[0]}" in md and f"- 1: {INSTRUCTIONS[1]}" in md
    assert len(INSTRUCTIONS) == 6
    custom = markdown_report({"mbpp": base}, 2, robustness={"mbpp": [base, worse]}, instructions=["fixed", "<own>"])
    assert "- 1: <own>" in custom


def test_markdown_links_plots_and_paper_constant_matches_method_md():
    md = markdown_report({"mbpp": _metrics(ROWS)}, 2, plots={"turn transitions": "plots/transitions_mbpp.png"})
    assert "![turn transitions](plots/transitions_mbpp.png)" in md
    cocos_mbpp = [r for r in PAPER_RESULTS if r["model"] == "Qwen2.5-1.5B" and r["method"] == "CoCoS"]
    assert {r["dataset"]: (r["acc_t1"], r["acc_t2"]) for r in cocos_mbpp} == {
        "mbpp": (45.0, 54.2), "humaneval": (29.3, 32.3), "odex": (23.0, 28.9)
    }
    for r in PAPER_RESULTS:
        if r["i2c"] is not None:
            assert r["delta"] == pytest.approx(r["i2c"] - r["c2i"], abs=0.05), r
        assert r["delta"] == pytest.approx(r["acc_t2"] - r["acc_t1"], abs=0.05), r


# ---------------------------------------------------------------------------- HTML
def test_html_embeds_images_as_base64_and_has_no_external_assets(tmp_path):
    image = tmp_path / "transitions_mbpp.png"
    image.write_bytes(PNG_1X1)
    md = markdown_report({"mbpp": _metrics(ROWS)}, 2, plots={"transitions": "plots/transitions_mbpp.png"})
    page = html_report(md, {"transitions": image})
    assert page.startswith("<!DOCTYPE html>")
    assert f"data:image/png;base64,{base64.b64encode(PNG_1X1).decode()}" in page
    assert page.count("<img") == 1
    assert "<th>Acc@t1</th>" in page and "<td>mbpp</td>" in page
    assert not re.search(r"(src|href)=\"(?!data:)", page)
    assert "plots/transitions_mbpp.png" not in page


def test_html_escapes_script_and_appends_unreferenced_images(tmp_path):
    image = tmp_path / "a.png"
    image.write_bytes(PNG_1X1)
    md = "# Title <script>alert(1)</script>\n\nsome <script>x</script> & text\n\n| a<b> | c |\n|---|---|\n| <i> | - |\n"
    page = html_report(md, {"curves & <more>": image})
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&amp; text" in page
    assert "<td>-</td>" in page  # a row of dashes is data, not the separator
    assert "<h3>curves &amp; &lt;more&gt;</h3>" in page and page.count("<img") == 1
    assert "<title>Title &lt;script&gt;" in page


def test_html_unknown_image_is_a_caption_not_a_link():
    page = html_report("![missing](nowhere.png)\n", {})
    assert "<img" not in page and "not embedded" in page
