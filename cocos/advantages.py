"""RLOO leave-one-out advantages and the PPO-clip loss with a sequence-level ratio (method.md section 5).

Rewards arrive as (num_prompts, k): k samples of one prompt share a row. Samples whose reward is
missing (a sandbox error: no verdict, so no reward) are NaN and get a zero advantage; they are left
out of their group's baseline as well.
"""

from __future__ import annotations

import torch


def rloo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """A_i = R_i - mean_{j != i} R_j within each group.

    >>> rloo_advantages(torch.tensor([[1.0, 0.0]])).tolist()
    [[1.0, -1.0]]
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be (num_prompts, k), got shape {tuple(rewards.shape)}")
    k = rewards.shape[1]
    if k < 2:
        raise ValueError(f"group size k={k}: RLOO needs at least 2 samples per prompt for a baseline")
    valid = ~torch.isnan(rewards)  # (num_prompts, k)
    filled = torch.where(valid, rewards, torch.zeros_like(rewards))  # (num_prompts, k)
    group_sum = filled.sum(dim=1, keepdim=True)  # (num_prompts, 1)
    group_count = valid.sum(dim=1, keepdim=True)  # (num_prompts, 1)
    others = (group_count - 1).clamp(min=1)  # (num_prompts, 1)
    baseline = (group_sum - filled) / others  # (num_prompts, k)
    has_baseline = valid & (group_count >= 2)  # (num_prompts, k)
    return torch.where(has_baseline, filled - baseline, torch.zeros_like(rewards))  # (num_prompts, k)


def clipped_policy_loss(
    new_logprob: torch.Tensor,
    old_logprob: torch.Tensor,
    advantages: torch.Tensor,
    clip_epsilon: float = 0.2,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO-clip loss with one probability ratio per sequence (summed token log-probs).

    All inputs are (batch,): log-probabilities summed over a sequence's trained tokens.
    """
    log_ratio = new_logprob - old_logprob  # (batch,)
    ratio = torch.exp(log_ratio)  # (batch,)
    unclipped = -advantages * ratio  # (batch,)
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_epsilon, 1.0 + clip_epsilon)  # (batch,)
    per_sample = torch.maximum(unclipped, clipped)  # (batch,)
    loss = per_sample.mean()
    with torch.no_grad():
        clip_fraction = (clipped > unclipped).float().mean().item()
    return loss, {"clip_ratio": clip_fraction, "ratio_mean": ratio.detach().mean().item()}
