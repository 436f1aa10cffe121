"""Self-correction metrics (method.md section 7) and assert-level transitions.
Run: pytest tests/cocos/test_metrics.py -q
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cocos.metrics import assert_transitions, self_correction_metrics


def test_known_rows():
    rows = [[False, True], [True, True], [True, False], [False, False], [False, True]]
    m = self_correction_metrics(rows)
    assert m == pytest.approx(
        {"acc_t1": 0.4, "acc_t2": 0.6, "i2c_t1_t2": 0.4, "c2i_t1_t2": 0.2, "delta_t1_t2": 0.2}
    )


def test_three_turns_have_every_consecutive_pair():
    m = self_correction_metrics([[False, True, False], [False, False, True]])
    assert set(m) == {
        "acc_t1", "acc_t2", "acc_t3",
        "i2c_t1_t2", "c2i_t1_t2", "delta_t1_t2",
        "i2c_t2_t3", "c2i_t2_t3", "delta_t2_t3",
    }
    assert m["i2c_t1_t2"] == 0.5 and m["c2i_t2_t3"] == 0.5 and m["delta_t2_t3"] == 0.0


@given(st.lists(st.lists(st.booleans(), min_size=2, max_size=2), min_size=1, max_size=40))
def test_delta_is_i2c_minus_c2i_and_fractions(rows):
    m = self_correction_metrics(rows)
    assert m["delta_t1_t2"] == pytest.approx(m["i2c_t1_t2"] - m["c2i_t1_t2"])
    assert all(-1.0 <= v <= 1.0 for v in m.values())
    assert all(0.0 <= m[k] <= 1.0 for k in ("acc_t1", "acc_t2", "i2c_t1_t2", "c2i_t1_t2"))


def test_ragged_rows_are_refused():
    with pytest.raises(ValueError, match=r"correct\[1\] has 1 turns"):
        self_correction_metrics([[True, False], [True]])
    with pytest.raises(ValueError, match="correct is empty"):
        self_correction_metrics([])


def test_assert_transitions():
    passed = [
        [[True, False, True], [True, True, False]],  # one fail->pass, one pass->fail
        [[False, False], [True, True]],  # two fail->pass
    ]
    assert assert_transitions(passed) == {"p2f_t1_t2": 1, "f2p_t1_t2": 3}
