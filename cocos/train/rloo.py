"""CoCoS online RLOO (method.md sections 4-5): multi-turn rollouts, sandboxed rewards, PPO-clip update.

One step:
1. take `prompts_per_step` problems (a seeded order, so a resumed run sees the same data);
2. roll out T turns: `independent` draws k full trajectories per prompt; `shared_turn1` draws turn 1
   once per prompt (from the current policy, or pre-sampled from the starting model for Turn-RL) and
   k continuations; each later prompt holds only the latest extracted code and the fixed instruction;
3. run every turn's code in the sandbox (verdicts cached per (task, code)); a sandbox error gives no
   reward (NaN, masked out of the group), never zero;
4. R = accumulated progressive reward - beta * KL(correction-turn tokens) - beta_1 * KL(turn-1 tokens),
   with the k1 KL from forward passes of the policy before the update and of the frozen reference;
5. leave-one-out advantages, one PPO-clip step with a sequence-level ratio over the trained tokens
   (all turns in `independent`, correction turns only in `shared_turn1`; prompt and instruction tokens
   are never trained).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from cocos.advantages import clipped_policy_loss, rloo_advantages
from cocos.config import RLOOConfig, to_dict
from cocos.prompts import extract_code, turn_prompt
from cocos.records import ExecutionJob, ExecutionResult, Problem
from cocos.rewards import accumulated_reward, progressive_scores
from cocos.train.generation import Completion, generate, sequence_logprobs

log = logging.getLogger(__name__)

CHECKPOINT_MARKER = "COMPLETE"


class Executor(Protocol):
    def execute_many(self, jobs: Sequence[ExecutionJob]) -> list[ExecutionResult]: ...


@dataclass
class Trajectory:
    """One sample of one prompt: a completion per turn and its verdicts."""

    problem: Problem
    group: int
    turns: list[Completion] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)
    results: list[ExecutionResult] = field(default_factory=list)
    trained_turns: list[int] = field(default_factory=list)
    reward: float = math.nan
    kl: float = 0.0
    turn1_kl: float = 0.0

    def scores(self, mode: str) -> list[float] | None:
        if any(r.sandbox_error for r in self.results):
            return None
        total = len(self.problem.tests)
        return progressive_scores([r.passed for r in self.results], total, mode)


@dataclass
class StepCallbacks:
    on_step: Callable[[int, dict[str, float]], None] | None = None
    on_rollouts: Callable[[int, list[dict[str, Any]]], None] | None = None
    on_checkpoint: Callable[[int, str], None] | None = None


@dataclass
class TrainResult:
    output_dir: str
    steps_done: int
    resumed_from: int
    history: list[dict[str, float]]


class VerdictCache:
    """Verdicts per (task, code): unchanged code at turn 2 and repeated turn-1 answers run once."""

    def __init__(self, executor: Executor, timeout_s: float) -> None:
        self.executor = executor
        self.timeout_s = timeout_s
        self.cache: dict[tuple[str, str], ExecutionResult] = {}
        self.executed = 0

    def run(self, items: Sequence[tuple[Problem, str]]) -> list[ExecutionResult]:
        keys = [(problem.task_id, code) for problem, code in items]
        missing: dict[tuple[str, str], ExecutionJob] = {}
        for (problem, code), key in zip(items, keys, strict=True):
            if key not in self.cache and key not in missing:
                missing[key] = ExecutionJob(code, problem.tests, problem.setup, self.timeout_s)
        fresh: dict[tuple[str, str], ExecutionResult] = {}
        if missing:
            fresh = dict(zip(missing, self.executor.execute_many(list(missing.values())), strict=True))
            self.executed += len(fresh)
            # A sandbox failure may not repeat: only real verdicts are cached.
            self.cache.update({key: result for key, result in fresh.items() if not result.sandbox_error})
        return [fresh[key] if key in fresh else self.cache[key] for key in keys]


def _set_seed(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def problem_order(num_problems: int, seed: int, epoch: int) -> list[int]:
    generator = random.Random(seed * 1_000_003 + epoch)
    order = list(range(num_problems))
    generator.shuffle(order)
    return order


def batch_for_step(problems: Sequence[Problem], step: int, per_step: int, seed: int) -> list[Problem]:
    """The problems of step `step` (0-based): a function of the step alone, so a resumed run continues exactly."""
    n = len(problems)
    start = step * per_step
    picked = []
    for position in range(start, start + per_step):
        epoch, index = divmod(position, n)
        picked.append(problems[problem_order(n, seed, epoch)[index]])
    return picked


class RLOOTrainer:
    def __init__(
        self,
        config: RLOOConfig,
        model: Any,
        tokenizer: Any,
        problems: Sequence[Problem],
        executor: Executor,
        output_dir: str | Path,
        checkpoint_uri: str = "",
        callbacks: StepCallbacks | None = None,
        run_id: str = "",
    ) -> None:
        if not problems:
            raise ValueError("rloo: the training set is empty; prepare_data must produce at least one problem")
        self.config = config
        self.model = model
        self.tokenizer = tokenizer
        self.problems = list(problems)
        self.output_dir = Path(output_dir)
        self.checkpoint_uri = checkpoint_uri.rstrip("/")
        self.callbacks = callbacks or StepCallbacks()
        self.run_id = run_id
        self.reference = copy.deepcopy(model).eval()
        for parameter in self.reference.parameters():
            parameter.requires_grad_(False)
        self.verdicts = VerdictCache(executor, config.test_timeout_s)
        self.optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad],
            lr=config.learning_rate,
            weight_decay=config.weight_decay,
        )
        from transformers import get_scheduler

        self.scheduler = get_scheduler(
            config.lr_scheduler, self.optimizer, num_warmup_steps=0, num_training_steps=config.steps
        )
        self.step = 0
        self.initial_turn1: dict[str, Completion] = {}
        self.generated_tokens = 0
        self.instruction = config.instruction or None
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    # ---------------------------------------------------------------- rollouts
    def _generate(self, model: Any, prompts: list[str]) -> list[Completion]:
        completions = generate(
            model,
            self.tokenizer,
            prompts,
            max_new_tokens=self.config.max_new_tokens,
            temperature=self.config.temperature,
            stop_at_done=self.config.stop_at_done,
            batch_size=max(self.config.micro_batch_size, 1),
        )
        self.generated_tokens += sum(len(c.completion_ids) for c in completions)
        return completions

    def rollout(self, batch: list[Problem]) -> list[Trajectory]:
        cfg = self.config
        k = cfg.group_size
        trajectories = [Trajectory(problem, group) for group, problem in enumerate(batch) for _ in range(k)]
        if cfg.rollout_mode == "independent":
            first = self._generate(self.model, [turn_prompt(t.problem) for t in trajectories])
            for trajectory, completion in zip(trajectories, first, strict=True):
                trajectory.turns.append(completion)
            trained = list(range(cfg.turns))
        else:
            shared = self._turn_one_shared(batch)
            for trajectory in trajectories:
                trajectory.turns.append(shared[trajectory.group])
            trained = list(range(1, cfg.turns))
        for trajectory in trajectories:
            trajectory.codes.append(extract_code(trajectory.turns[0].text))
            trajectory.trained_turns = trained
        for _ in range(1, cfg.turns):
            prompts = [
                turn_prompt(t.problem, previous_code=t.codes[-1], instruction=self.instruction) for t in trajectories
            ]
            for trajectory, completion in zip(trajectories, self._generate(self.model, prompts), strict=True):
                trajectory.turns.append(completion)
                trajectory.codes.append(extract_code(completion.text))
        for turn in range(cfg.turns):
            results = self.verdicts.run([(t.problem, t.codes[turn]) for t in trajectories])
            for trajectory, result in zip(trajectories, results, strict=True):
                trajectory.results.append(result)
        return trajectories

    def _turn_one_shared(self, batch: list[Problem]) -> list[Completion]:
        if self.config.turn1_source == "policy":
            return self._generate(self.model, [turn_prompt(p) for p in batch])
        missing = [p for p in batch if p.task_id not in self.initial_turn1]
        if missing:
            # Turn-RL: the first response is fixed, pre-sampled once from the starting model.
            for problem, completion in zip(
                missing, self._generate(self.reference, [turn_prompt(p) for p in missing]), strict=True
            ):
                self.initial_turn1[problem.task_id] = completion
        return [self.initial_turn1[p.task_id] for p in batch]

    # ---------------------------------------------------------------- log-probs
    def _trajectory_logprobs(
        self, model: Any, trajectories: Sequence[Trajectory], turns: Sequence[int] | None = None
    ) -> torch.Tensor:
        """Summed log-prob of each trajectory's tokens in `turns` (default: its trained turns). (batch,)"""
        pairs: list[tuple[list[int], list[int]]] = []
        owners: list[int] = []
        for index, trajectory in enumerate(trajectories):
            for turn in trajectory.trained_turns if turns is None else turns:
                completion = trajectory.turns[turn]
                if completion.completion_ids:
                    pairs.append((completion.prompt_ids, completion.completion_ids))
                    owners.append(index)
        device = next(model.parameters()).device
        totals = torch.zeros(len(trajectories), device=device)  # (batch,)
        if not pairs:
            return totals
        size = self.config.micro_batch_size
        for start in range(0, len(pairs), size):
            sums, _ = sequence_logprobs(model, pairs[start : start + size], self.pad_id)  # (chunk,)
            index = torch.tensor(owners[start : start + size], device=device)
            totals = totals.index_add(0, index, sums)
        return totals

    @torch.no_grad()
    def _kl_terms(self, trajectories: list[Trajectory]) -> tuple[torch.Tensor, torch.Tensor]:
        """k1 KL (summed log-ratio) of correction-turn tokens and of turn-1 tokens, each (batch,)."""
        corrections = list(range(1, self.config.turns))
        policy_corr = self._trajectory_logprobs(self.model, trajectories, corrections)
        reference_corr = self._trajectory_logprobs(self.reference, trajectories, corrections)
        if self.config.turn1_kl_beta > 0:
            policy_t1 = self._trajectory_logprobs(self.model, trajectories, [0])
            reference_t1 = self._trajectory_logprobs(self.reference, trajectories, [0])
            turn1 = policy_t1 - reference_t1
        else:
            turn1 = torch.zeros_like(policy_corr)
        return policy_corr - reference_corr, turn1

    # ---------------------------------------------------------------- update
    def score(self, trajectories: list[Trajectory]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rewards with the KL folded in, the rewards before KL, and the correction-turn KL.

        Returns (rewards, raw, kl): (num_prompts, k), (num_prompts, k), (batch,). NaN marks no reward.
        """
        cfg = self.config
        kl_corr, kl_turn1 = self._kl_terms(trajectories)  # (batch,), (batch,)
        rewards = torch.full((len(trajectories) // cfg.group_size, cfg.group_size), math.nan)  # (num_prompts, k)
        raw = torch.full_like(rewards, math.nan)  # (num_prompts, k)
        for index, trajectory in enumerate(trajectories):
            trajectory.kl = float(kl_corr[index])
            trajectory.turn1_kl = float(kl_turn1[index])
            scores = trajectory.scores(cfg.score_mode)
            if scores is None:  # a sandbox error: no verdict, so no reward (not zero)
                trajectory.reward = math.nan
                continue
            base = accumulated_reward(scores, cfg.gamma)
            trajectory.reward = base - cfg.kl_beta * trajectory.kl - cfg.turn1_kl_beta * trajectory.turn1_kl
            rewards[index // cfg.group_size, index % cfg.group_size] = trajectory.reward
            raw[index // cfg.group_size, index % cfg.group_size] = base
        return rewards, raw, kl_corr

    def policy_loss(
        self,
        trajectories: list[Trajectory],
        advantages: torch.Tensor,
        old_logprobs: torch.Tensor,
        backward: bool = True,
    ) -> tuple[float, dict[str, float]]:
        """The PPO-clip loss over the batch, in micro-batches; gradients accumulate when `backward`.

        advantages and old_logprobs are (batch,), in the order of `trajectories`.
        """
        cfg = self.config
        size = max(1, cfg.micro_batch_size // max(1, len(trajectories[0].trained_turns)))
        total = 0.0
        stats = {"clip_ratio": 0.0, "ratio_mean": 0.0}
        for start in range(0, len(trajectories), size):
            chunk = trajectories[start : start + size]
            new_logprobs = self._trajectory_logprobs(self.model, chunk)  # (chunk,)
            loss, chunk_stats = clipped_policy_loss(
                new_logprobs,
                old_logprobs[start : start + size].to(new_logprobs.device),
                advantages[start : start + size].to(new_logprobs.device),
                cfg.clip_epsilon,
            )
            weight = len(chunk) / len(trajectories)
            if backward:
                (loss * weight).backward()
            total += loss.item() * weight
            for key in stats:
                stats[key] += chunk_stats[key] * weight
        return total, stats

    def train_step(self) -> dict[str, float]:
        cfg = self.config
        started = time.monotonic()
        generated_before = self.generated_tokens
        batch = batch_for_step(self.problems, self.step, cfg.prompts_per_step, cfg.seed)
        was_training = self.model.training
        trajectories = self.rollout(batch)
        rewards, raw, kl = self.score(trajectories)
        advantages = rloo_advantages(rewards).flatten()  # (num_prompts * k,)
        with torch.no_grad():
            old_logprobs = self._trajectory_logprobs(self.model, trajectories)  # (batch,)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss, stats = self.policy_loss(trajectories, advantages, old_logprobs)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.scheduler.step()
        if not was_training:
            self.model.eval()
        self.step += 1
        metrics = self._step_metrics(trajectories, raw, rewards, kl)
        metrics.update(
            {
                "rollout/generated_tokens": float(self.generated_tokens - generated_before),
                "train/loss": loss,
                "train/clip_ratio": stats["clip_ratio"],
                "train/ratio_mean": stats["ratio_mean"],
                "train/learning_rate": self.scheduler.get_last_lr()[0],
                "train/step_time_s": time.monotonic() - started,
            }
        )
        self.last_trajectories = trajectories
        return metrics

    def _step_metrics(
        self, trajectories: list[Trajectory], raw: torch.Tensor, rewards: torch.Tensor, kl: torch.Tensor
    ) -> dict[str, float]:
        cfg = self.config
        valid = [t for t in trajectories if not math.isnan(t.reward)]
        metrics: dict[str, float] = {
            "rollout/reward_mean": _nanmean(rewards),
            "rollout/reward_std": _nanstd(rewards),
            "rollout/score_reward_mean": _nanmean(raw),
            "rollout/kl": float(kl.mean()),
            "rollout/sandbox_errors": float(len(trajectories) - len(valid)),
            "rollout/executions": float(self.verdicts.executed),
        }
        for turn in range(cfg.turns):
            correct = [t.results[turn].all_passed for t in valid]
            ratio = [t.results[turn].passed / t.results[turn].total for t in valid]
            metrics[f"rollout/acc_t{turn + 1}"] = sum(correct) / len(valid) if valid else 0.0
            metrics[f"rollout/score_t{turn + 1}"] = sum(ratio) / len(valid) if valid else 0.0
        for turn in range(cfg.turns - 1):
            before = [t.results[turn].all_passed for t in valid]
            after = [t.results[turn + 1].all_passed for t in valid]
            n = max(len(valid), 1)
            pairs = list(zip(before, after, strict=True))
            metrics[f"rollout/i2c_t{turn + 1}_t{turn + 2}"] = sum((not b) and a for b, a in pairs) / n
            metrics[f"rollout/c2i_t{turn + 1}_t{turn + 2}"] = sum(b and not a for b, a in pairs) / n
        return metrics

    def rollout_records(self, trajectories: list[Trajectory]) -> list[dict[str, Any]]:
        return [
            {
                "step": self.step,
                "task_id": t.problem.task_id,
                "prompt": turn_prompt(t.problem),
                **{f"code_t{i + 1}": code for i, code in enumerate(t.codes)},
                **{f"verdicts_t{i + 1}": [o.status.value for o in r.outcomes] for i, r in enumerate(t.results)},
                "reward": t.reward,
                "kl": t.kl,
            }
            for t in trajectories
        ]

    # ---------------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> Path:
        """Model, optimizer, scheduler, RNG and data position; the marker file is written last."""
        target = self.output_dir / "checkpoints" / f"step-{self.step:06d}"
        tmp = target.with_name(target.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self.model.save_pretrained(tmp / "model")
        self.tokenizer.save_pretrained(tmp / "model")
        torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(self.scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save({"torch": torch.get_rng_state(), "python": random.getstate()}, tmp / "rng.pt")
        torch.save(
            {k: (v.prompt_ids, v.completion_ids, v.text) for k, v in self.initial_turn1.items()}, tmp / "turn1.pt"
        )
        state = {"step": self.step, "seed": self.config.seed, "run_id": self.run_id, "config": to_dict(self.config)}
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=2))
        (tmp / CHECKPOINT_MARKER).write_text(str(self.step))
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
        if self.checkpoint_uri:
            from cocos import storage

            uri = f"{self.checkpoint_uri}/step-{self.step:06d}"
            storage.upload_dir(str(target), uri, extra={"step": self.step, "run_id": self.run_id})
            if self.callbacks.on_checkpoint:
                self.callbacks.on_checkpoint(self.step, uri)
        self._prune_local_checkpoints()
        return target

    def _prune_local_checkpoints(self) -> None:
        complete = sorted(
            p for p in (self.output_dir / "checkpoints").glob("step-*") if (p / CHECKPOINT_MARKER).exists()
        )
        for old in complete[: -self.config.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)

    def latest_checkpoint(self) -> Path | None:
        """Newest complete checkpoint: from S3 when a checkpoint URI is set, else the local folder."""
        if self.checkpoint_uri:
            from cocos import storage

            uri = storage.latest_complete(self.checkpoint_uri)
            if uri is None:
                return None
            local = self.output_dir / "checkpoints" / uri.rstrip("/").rsplit("/", 1)[-1]
            if not (local / CHECKPOINT_MARKER).exists():
                shutil.rmtree(local, ignore_errors=True)
                storage.download_dir(uri, str(local))
            return local
        folder = self.output_dir / "checkpoints"
        complete = (
            sorted(p for p in folder.glob("step-*") if (p / CHECKPOINT_MARKER).exists()) if folder.exists() else []
        )
        return complete[-1] if complete else None

    def resume(self) -> int:
        checkpoint = self.latest_checkpoint()
        if checkpoint is None:
            return 0
        from transformers import AutoModelForCausalLM

        state = json.loads((checkpoint / "trainer_state.json").read_text())
        trained = AutoModelForCausalLM.from_pretrained(checkpoint / "model", dtype=next(self.model.parameters()).dtype)
        self.model.load_state_dict(trained.state_dict())
        self.optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", weights_only=False))
        self.scheduler.load_state_dict(torch.load(checkpoint / "scheduler.pt", weights_only=False))
        rng = torch.load(checkpoint / "rng.pt", weights_only=False)
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
        turn1 = torch.load(checkpoint / "turn1.pt", weights_only=False)
        self.initial_turn1 = {k: Completion(*v) for k, v in turn1.items()}
        self.step = int(state["step"])
        log.info("resumed from %s at step %d", checkpoint, self.step)
        return self.step

    # ---------------------------------------------------------------- loop
    def train(self) -> TrainResult:
        _set_seed(self.config.seed)
        resumed_from = self.resume()
        history: list[dict[str, float]] = []
        while self.step < self.config.steps:
            metrics = self.train_step()
            history.append(metrics)
            log.info(
                "rloo step %d/%d reward %.3f acc_t1 %.2f acc_t2 %.2f tokens %d (%.1fs)",
                self.step,
                self.config.steps,
                metrics["rollout/reward_mean"],
                metrics["rollout/acc_t1"],
                metrics[f"rollout/acc_t{self.config.turns}"],
                metrics["rollout/generated_tokens"],
                metrics["train/step_time_s"],
            )
            if self.callbacks.on_step:
                self.callbacks.on_step(self.step, metrics)
            if self.callbacks.on_rollouts and (
                self.step % self.config.log_rollouts_every == 0 or self.step == self.config.steps
            ):
                self.callbacks.on_rollouts(self.step, self.rollout_records(self.last_trajectories))
            if self.step % self.config.checkpoint_every == 0 or self.step == self.config.steps:
                self.save_checkpoint()
        return TrainResult(str(self.output_dir), self.step, resumed_from, history)

    def save_final(self, model_dir: str | Path) -> None:
        self.model.save_pretrained(model_dir)
        self.tokenizer.save_pretrained(model_dir)


def _nanmean(values: torch.Tensor) -> float:
    valid = values[~torch.isnan(values)]
    return float(valid.mean()) if valid.numel() else math.nan


def _nanstd(values: torch.Tensor) -> float:
    valid = values[~torch.isnan(values)]
    return float(valid.std(unbiased=False)) if valid.numel() else math.nan
