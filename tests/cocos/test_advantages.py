"""RLOO leave-one-out advantages and the sequence-level PPO-clip loss: properties and hand values.
Run: pytest tests/cocos/test_advantages.py -q
"""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cocos.advantages import clipped_policy_loss, rloo_advantages


@given(st.integers(1, 6), st.integers(2, 6), st.integers(0, 10_000))
def test_advantages_sum_to_zero_per_group(prompts, k, seed):
    generator = torch.Generator().manual_seed(seed)
    rewards = torch.randn(prompts, k, generator=generator, dtype=torch.float64)
    advantages = rloo_advantages(rewards)
    assert torch.allclose(advantages.sum(dim=1), torch.zeros(prompts, dtype=torch.float64), atol=1e-9)


@given(st.floats(-3, 3), st.integers(2, 6))
def test_equal_rewards_give_zero_advantages(value, k):
    assert torch.allclose(rloo_advantages(torch.full((3, k), value)), torch.zeros(3, k), atol=1e-6)


def test_hand_values():
    rewards = torch.tensor([[1.0, 2.0, 6.0]])
    # A_i = R_i - mean of the others
    assert rloo_advantages(rewards).tolist() == [[1 - 4.0, 2 - 3.5, 6 - 1.5]]


def test_missing_reward_is_masked_out_of_the_group():
    rewards = torch.tensor([[1.0, math.nan, 3.0], [math.nan, 2.0, math.nan]])
    advantages = rloo_advantages(rewards)
    assert advantages.tolist() == [[-2.0, 0.0, 2.0], [0.0, 0.0, 0.0]]


def test_group_of_one_is_refused():
    with pytest.raises(ValueError, match="k=1"):
        rloo_advantages(torch.zeros(4, 1))


def test_clipped_loss_by_hand():
    new = torch.tensor([0.5, -0.5, 0.0])
    old = torch.tensor([0.0, 0.0, 0.0])
    adv = torch.tensor([1.0, -1.0, 2.0])
    loss, stats = clipped_policy_loss(new, old, adv, clip_epsilon=0.2)
    r = torch.exp(torch.tensor([0.5, -0.5, 0.0]))
    # sample 0: ratio 1.65 > 1.2 with A>0 -> clipped 1.2; sample 1: ratio 0.61 < 0.8 with A<0 -> clipped 0.8
    expected = torch.stack([-1.0 * torch.tensor(1.2), 1.0 * torch.tensor(0.8), -2.0 * r[2]]).mean()
    assert loss.item() == pytest.approx(expected.item())
    assert stats["clip_ratio"] == pytest.approx(2 / 3)
