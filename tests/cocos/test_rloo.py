"""The CoCoS RLOO trainer on the tiny model: the loss of one batch recomputed by hand (rewards, KL,
advantages, ratio, clipping) for both rollout modes, the effect of gamma in each mode, masking of
sandbox errors, the baselines as presets, and a CPU training step that changes every parameter.

Verdicts come from a deterministic stand-in executor (a hash of the code), so rewards vary within a
group without depending on what a random model writes; the real sandbox is tested in tests/sandbox.
Run: pytest tests/cocos/test_rloo.py -q
"""

import hashlib
import math

import pytest
import torch

from cocos.advantages import rloo_advantages
from cocos.config import ConfigError, RLOOConfig
from cocos.models import load_model_and_tokenizer
from cocos.records import ExecutionResult, Problem, Status, TestOutcome
from cocos.rewards import accumulated_reward, progressive_scores
from cocos.train.generation import sequence_logprobs
from cocos.train.rloo import RLOOTrainer, batch_for_step

PROBLEMS = [
    Problem(
        f"p{i}", f"Return {i}.", tuple(f"assert f({j}) == {i}" for j in range(3)), reference=f"def f(x): return {i}"
    )
    for i in range(6)
]


class HashVerdicts:
    """Passes a number of asserts that is a function of the code: varied, deterministic rewards."""

    def __init__(self, sandbox_error_codes: frozenset[str] = frozenset()):
        self.sandbox_error_codes = sandbox_error_codes
        self.calls = 0

    def execute_many(self, jobs):
        self.calls += len(jobs)
        results = []
        for job in jobs:
            if job.code in self.sandbox_error_codes:
                results.append(ExecutionResult((TestOutcome(Status.SANDBOX_ERROR, "down"),) * len(job.tests)))
                continue
            passed = int(hashlib.sha256(job.code.encode()).hexdigest(), 16) % (len(job.tests) + 1)
            outcomes = [TestOutcome(Status.PASSED)] * passed + [TestOutcome(Status.FAILED)] * (len(job.tests) - passed)
            results.append(ExecutionResult(tuple(outcomes)))
        return results


def make_trainer(tiny_model_dir, tmp_path, executor=None, **overrides):
    model, tokenizer = load_model_and_tokenizer(tiny_model_dir)
    settings = {
        "steps": 2,
        "prompts_per_step": 3,
        "group_size": 2,
        "max_new_tokens": 12,
        "micro_batch_size": 4,
        "learning_rate": 1e-3,
        "checkpoint_every": 100,
        "seed": 3,
        **overrides,
    }
    method = settings.pop("method", "cocos")
    config = RLOOConfig.preset(method, **settings)
    return RLOOTrainer(config, model, tokenizer, PROBLEMS, executor or HashVerdicts(), tmp_path / "out")


def perturb(trainer, steps=1):
    """Move the policy away from the reference so that KL terms are non-zero."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in trainer.model.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))


@torch.no_grad()
def hand_logprob(model, completion, pad_id):
    sums, _ = sequence_logprobs(model, [(completion.prompt_ids, completion.completion_ids)], pad_id)
    return float(sums[0])


@pytest.mark.parametrize("mode", ["independent", "shared_turn1"])
def test_loss_of_one_batch_by_hand(tiny_model_dir, tmp_path, mode):
    trainer = make_trainer(tiny_model_dir, tmp_path, rollout_mode=mode, kl_beta=0.1, score_mode="count")
    perturb(trainer)
    cfg = trainer.config
    torch.manual_seed(0)
    trajectories = trainer.rollout(PROBLEMS[:3])
    rewards, _, _ = trainer.score(trajectories)

    trained = [0, 1] if mode == "independent" else [1]
    assert all(t.trained_turns == trained for t in trajectories)
    pad = trainer.pad_id
    expected_rewards = []
    for t in trajectories:
        scores = progressive_scores([r.passed for r in t.results], 3, "count")
        correction = t.turns[1]
        kl = hand_logprob(trainer.model, correction, pad) - hand_logprob(trainer.reference, correction, pad)
        expected_rewards.append(accumulated_reward(scores, cfg.gamma) - 0.1 * kl)
    assert rewards.flatten().tolist() == pytest.approx(expected_rewards, abs=1e-4)

    # advantages: reward minus the mean of the other sample of the group (k = 2)
    expected_adv = []
    for group in range(3):
        a, b = expected_rewards[2 * group], expected_rewards[2 * group + 1]
        expected_adv += [a - b, b - a]
    advantages = rloo_advantages(rewards).flatten()
    assert advantages.tolist() == pytest.approx(expected_adv, abs=1e-4)

    # sequence-level ratio against shifted old log-probs, so that some samples are clipped
    new = [sum(hand_logprob(trainer.model, t.turns[i], pad) for i in trained) for t in trajectories]
    shifts = [0.5, -0.5, 0.1, -0.1, 0.4, -0.3]
    old = torch.tensor([n - s for n, s in zip(new, shifts, strict=True)])
    loss, stats = trainer.policy_loss(trajectories, advantages, old, backward=False)
    per_sample, clipped = [], 0
    for adv, shift in zip(expected_adv, shifts, strict=True):
        ratio = math.exp(shift)
        unclipped, clip = -adv * ratio, -adv * min(max(ratio, 0.8), 1.2)
        per_sample.append(max(unclipped, clip))
        clipped += clip > unclipped
    assert loss == pytest.approx(sum(per_sample) / len(per_sample), abs=1e-4)
    assert stats["clip_ratio"] == pytest.approx(clipped / len(shifts), abs=1e-6)


def _advantages_for(trainer, trajectories, gamma):
    trainer.config = RLOOConfig(**{**trainer.config.__dict__, "gamma": gamma})
    rewards, _, _ = trainer.score(trajectories)
    return rloo_advantages(rewards)


def test_gamma_has_no_effect_in_shared_turn1(tiny_model_dir, tmp_path):
    trainer = make_trainer(tiny_model_dir, tmp_path, rollout_mode="shared_turn1")
    trajectories = trainer.rollout(PROBLEMS)
    # turn 1 is shared inside each group
    for group in range(len(PROBLEMS)):
        assert trajectories[2 * group].codes[0] == trajectories[2 * group + 1].codes[0]
    advantages = [_advantages_for(trainer, trajectories, g) for g in (0.0, 0.5, 1.0)]
    assert torch.allclose(advantages[0], advantages[1], atol=1e-6)
    assert torch.allclose(advantages[1], advantages[2], atol=1e-6)


def test_gamma_changes_advantages_in_independent_mode(tiny_model_dir, tmp_path):
    trainer = make_trainer(tiny_model_dir, tmp_path, rollout_mode="independent")
    torch.manual_seed(1)
    trajectories = trainer.rollout(PROBLEMS)
    first_turn_differs = any(
        trajectories[2 * g].results[0].passed != trajectories[2 * g + 1].results[0].passed for g in range(len(PROBLEMS))
    )
    assert first_turn_differs, "the stand-in executor should give different turn-1 scores inside some group"
    assert not torch.allclose(
        _advantages_for(trainer, trajectories, 0.0), _advantages_for(trainer, trajectories, 1.0), atol=1e-6
    )


def test_sandbox_error_gives_no_reward_not_zero(tiny_model_dir, tmp_path):
    trainer = make_trainer(tiny_model_dir, tmp_path, rollout_mode="independent", prompts_per_step=2)
    torch.manual_seed(2)
    trajectories = trainer.rollout(PROBLEMS[:2])
    broken = trajectories[0].codes[1]
    trainer.verdicts.cache.clear()
    trainer.verdicts.executor = HashVerdicts(frozenset({broken}))
    for t in trajectories:
        t.results = trainer.verdicts.run([(t.problem, code) for code in t.codes])
    rewards, _, _ = trainer.score(trajectories)
    assert math.isnan(rewards[0, 0])
    assert rloo_advantages(rewards)[0].tolist() == [0.0, 0.0]  # its group has no baseline left


def test_a_training_step_changes_every_parameter(tiny_model_dir, tmp_path):
    trainer = make_trainer(tiny_model_dir, tmp_path, rollout_mode="independent", steps=1, prompts_per_step=6)
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters() if p.requires_grad}
    metrics = trainer.train_step()
    assert metrics["rollout/reward_std"] > 0
    unchanged = [name for name, p in trainer.model.named_parameters() if torch.equal(before[name], p)]
    assert unchanged == []
    assert metrics["rollout/generated_tokens"] > 0
    # the reference policy is frozen
    assert all(not p.requires_grad for p in trainer.reference.parameters())


def test_turn_rl_presamples_turn_one_from_the_starting_model(tiny_model_dir, tmp_path):
    trainer = make_trainer(tiny_model_dir, tmp_path, method="turn_rl", steps=2, prompts_per_step=2)
    assert trainer.config.rollout_mode == "shared_turn1" and trainer.config.turn1_source == "initial"
    trainer.train_step()
    first = {task: c.completion_ids for task, c in trainer.initial_turn1.items()}
    trainer.train_step()
    again = batch_for_step(PROBLEMS, 0, 2, trainer.config.seed)
    trajectories = trainer.rollout(again)
    assert [t.turns[0].completion_ids for t in trajectories[::2]] == [first[p.task_id] for p in again]


def test_presets_and_bad_config():
    assert RLOOConfig.preset("score_stage1").turn1_kl_beta == 0.25
    assert RLOOConfig.preset("score_stage1").score_mode == "binary"
    assert RLOOConfig.preset("cocos_binary").score_mode == "binary"
    with pytest.raises(ConfigError, match="group_size=1"):
        RLOOConfig(group_size=1)
    with pytest.raises(ConfigError, match="rollout_mode='both'"):
        RLOOConfig(rollout_mode="both")
    with pytest.raises(ConfigError, match="method='ppo'"):
        RLOOConfig.preset("ppo")


def test_batches_are_a_function_of_the_step():
    seen = [batch_for_step(PROBLEMS, step, 4, seed=7) for step in range(3)]
    assert seen == [batch_for_step(PROBLEMS, step, 4, seed=7) for step in range(3)]
    flat = [p.task_id for batch in seen for p in batch]
    assert sorted(flat[:6]) == sorted(p.task_id for p in PROBLEMS)  # one epoch covers every problem once
