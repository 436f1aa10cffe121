"""Pins the CoCoS reward of method.md section 4: every worked value, the gamma limits, the score modes,
and property tests of the accumulated reward. Run: pytest tests/cocos/test_rewards.py -q
"""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cocos.rewards import accumulated_reward, progressive_scores, trajectory_reward

# method.md section 4: count scores, |U| = 3, gamma = 0.5; rows r1 = 0..3, columns r2 = 0..3.
WORKED = {
    0: [0, 1, 2, 3],
    1: [-0.5, 0.5, 1.5, 2.5],
    2: [-1, 0, 1, 2],
    3: [-1.5, -0.5, 0.5, 1.5],
}


@pytest.mark.parametrize("r1", range(4))
@pytest.mark.parametrize("r2", range(4))
def test_worked_table_count_mode(r1, r2):
    scores = progressive_scores([r1, r2], total=3, mode="count")
    assert accumulated_reward(scores, gamma=0.5) == pytest.approx(WORKED[r1][r2])


def test_worked_three_turns():
    assert trajectory_reward([1, 2, 3], total=3, gamma=0.5, mode="count") == pytest.approx(1.75)


def test_ratio_mode_is_count_over_total():
    assert progressive_scores([1, 3], total=3) == pytest.approx([1 / 3, 1.0])
    # ratio rewards are the count rewards scaled by 1/|U|
    assert trajectory_reward([1, 3], 3, 0.5, "ratio") == pytest.approx(trajectory_reward([1, 3], 3, 0.5, "count") / 3)


def test_binary_mode():
    assert progressive_scores([2, 3, 0], total=3, mode="binary") == [0.0, 1.0, 0.0]


@given(st.floats(-2, 2), st.floats(-2, 2))
def test_two_turn_closed_form(r1, r2):
    for gamma in (-1.0, 0.0, 0.5, 1.0):
        assert accumulated_reward([r1, r2], gamma) == pytest.approx(r2 - (1 - gamma) * r1, abs=1e-9)


@given(st.lists(st.floats(0, 1), min_size=1, max_size=5))
def test_gamma_one_is_last_score_and_gamma_zero_is_last_difference(scores):
    assert accumulated_reward(scores, 1.0) == pytest.approx(scores[-1], abs=1e-9)
    previous = scores[-2] if len(scores) > 1 else 0.0
    assert accumulated_reward(scores, 0.0) == pytest.approx(scores[-1] - previous, abs=1e-9)


def test_gain_from_degrading_turn_one_shrinks_with_gamma():
    # gamma=0 rewards a deliberately bad first turn the most (reward hacking); gamma=1 not at all.
    honest, hacked = [1.0, 1.0], [0.0, 1.0]
    gains = [accumulated_reward(hacked, g) - accumulated_reward(honest, g) for g in (0.0, 0.5, 1.0)]
    assert gains == pytest.approx([1.0, 0.5, 0.0])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: progressive_scores([1], 3, mode="pass"), "mode='pass'"),
        (lambda: progressive_scores([4], 3), "outside 0..total=3"),
        (lambda: progressive_scores([0], 0), "total=0"),
        (lambda: accumulated_reward([], 0.5), "scores is empty"),
        (lambda: accumulated_reward([1.0], math.nan), "gamma=nan"),
    ],
)
def test_bad_input_names_the_parameter(call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        call()
