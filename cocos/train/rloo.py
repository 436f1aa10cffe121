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

Distributed (torchrun, one process per device; cocos/train/launch.py): each of W ranks rolls out a
contiguous block of prompts_per_step / W prompts, so the k samples of a prompt never straddle ranks and
the leave-one-out baseline stays exact. Gradients are averaged across ranks by DeepSpeed ZeRO-2/3 when
`deepspeed_config` is set, else by an all-reduce (DDP-style). Step metrics are computed from every
rank's trajectories (gathered), callbacks fire on rank 0 only, and rank 0 alone writes and uploads a
checkpoint (under ZeRO every rank writes its optimizer shard into it); all ranks resume from the same one.
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
from cocos.config import ConfigError, RLOOConfig, to_dict
from cocos.prompts import extract_code, turn_prompt
from cocos.records import ExecutionJob, ExecutionResult, Problem
from cocos.rewards import accumulated_reward, progressive_scores
from cocos.train import distributed
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
        self.rank = distributed.rank() if distributed.is_distributed() else 0
        self.world = distributed.world_size() if distributed.is_distributed() else 1
        if config.prompts_per_step % self.world:
            raise ConfigError(
                f"rloo prompts_per_step={config.prompts_per_step} must be divisible by the {self.world} training "
                "processes: each rank rolls out whole groups of an equal share of the prompts; change "
                "prompts_per_step or the number of processes"
            )
        # The reference is a full frozen copy on every rank, taken before DeepSpeed converts or partitions the
        # policy. Under ZeRO-3 this costs one full model per device (3 GB in bf16 for 1.5B parameters) on top of
        # the policy shard; a ZeRO-3 inference engine for it would save that memory at the price of all-gathers
        # on every reference forward.
        self.reference = copy.deepcopy(model).eval()
        for parameter in self.reference.parameters():
            parameter.requires_grad_(False)
        self.verdicts = VerdictCache(executor, config.test_timeout_s)
        trainable = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
        from transformers import get_scheduler

        self.scheduler = get_scheduler(
            config.lr_scheduler, self.optimizer, num_warmup_steps=0, num_training_steps=config.steps
        )
        self.engine: Any = None
        self.zero_stage = 0
        if config.deepspeed_config:
            self._init_deepspeed()
        elif self.world > 1:
            distributed.broadcast_parameters(model)
        self.step = 0
        self.initial_turn1: dict[str, Completion] = {}
        self.generated_tokens = 0
        self.instruction = config.instruction or None
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def _chunk_size(self) -> int:
        """Trajectories per forward/backward in the update (each contributes one sequence per trained turn)."""
        trained_turns = self.config.turns if self.config.rollout_mode == "independent" else self.config.turns - 1
        return max(1, self.config.micro_batch_size // max(1, trained_turns))

    def _init_deepspeed(self) -> None:
        import deepspeed

        cfg = self.config
        if not Path(cfg.deepspeed_config).is_file():
            raise ConfigError(f"rloo deepspeed_config={cfg.deepspeed_config!r} is not a file")
        if not distributed.is_distributed():
            distributed.init_single_process()
        size = self._chunk_size()
        local_trajectories = cfg.prompts_per_step // self.world * cfg.group_size
        ds_config = distributed.resolve_deepspeed_config(
            cfg.deepspeed_config,
            micro_batch_size=size,
            # one engine.backward per micro-batch; the optimizer steps once per RLOO step
            gradient_accumulation_steps=math.ceil(local_trajectories / size),
            world=self.world,
            bf16=cfg.bf16,
            hidden_size=getattr(getattr(self.model, "config", None), "hidden_size", None),
        )
        self.zero_stage = int(ds_config.get("zero_optimization", {}).get("stage", 0))
        # Our scheduler drives the lr of the client optimizer's param groups, which ZeRO keeps.
        self.engine, _, _, _ = deepspeed.initialize(model=self.model, optimizer=self.optimizer, config=ds_config)
        self.model = self.engine.module
        log.info(
            "rloo: DeepSpeed ZeRO-%d on %d ranks, %d trajectories per micro-batch, %d micro-batches per step",
            self.zero_stage,
            self.world,
            size,
            ds_config["gradient_accumulation_steps"],
        )

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
            # under ZeRO-3 every policy forward gathers shards from all ranks, so all ranks step together
            synced_gpus=self.zero_stage == 3 and self.world > 1 and model is self.model,
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
        log.info("rloo step %d: turn 1 sampled for %d trajectories", self.step + 1, len(trajectories))
        for turn in range(1, cfg.turns):
            prompts = [
                turn_prompt(t.problem, previous_code=t.codes[-1], instruction=self.instruction) for t in trajectories
            ]
            for trajectory, completion in zip(trajectories, self._generate(self.model, prompts), strict=True):
                trajectory.turns.append(completion)
                trajectory.codes.append(extract_code(completion.text))
            log.info("rloo step %d: turn %d sampled", self.step + 1, turn + 1)
        for turn in range(cfg.turns):
            results = self.verdicts.run([(t.problem, t.codes[turn]) for t in trajectories])
            for trajectory, result in zip(trajectories, results, strict=True):
                trajectory.results.append(result)
        log.info("rloo step %d: verdicts in (%d sandbox runs so far)", self.step + 1, self.verdicts.executed)
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
        size = self.config.micro_batch_size
        calls = math.ceil(len(pairs) / size)
        if model is self.model and self.zero_stage == 3:
            calls = distributed.all_reduce_max(calls)  # ZeRO-3 forwards are collective: same count on every rank
        if torch.is_grad_enabled() and model is self.model:
            calls = max(calls, 1)  # a loss with a graph, so every rank runs the same number of backwards
        for call in range(calls):
            start = call * size
            if start < len(pairs):
                sums, _ = sequence_logprobs(model, pairs[start : start + size], self.pad_id)  # (chunk,)
                index = torch.tensor(owners[start : start + size], device=device)
                totals = totals.index_add(0, index, sums)
            else:
                # nothing left on this rank (e.g. empty completions): a zero-weight stand-in forward
                sums, _ = sequence_logprobs(model, [([self.pad_id], [self.pad_id])], self.pad_id)  # (1,)
                totals = totals + 0.0 * sums.sum()
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
        size = self._chunk_size()
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
                self._backward(loss * weight)
            total += loss.item() * weight
            for key in stats:
                stats[key] += chunk_stats[key] * weight
        return total, stats

    def _backward(self, loss: torch.Tensor) -> None:
        if self.engine is None:
            loss.backward()
            return
        # the loss is already weighted by the micro-batch's share; DeepSpeed steps at the last micro-batch
        self.engine.backward(loss, scale_wrt_gas=False)
        self.engine.step()

    def train_step(self) -> dict[str, float]:
        cfg = self.config
        started = time.monotonic()
        generated_before = self.generated_tokens
        batch = batch_for_step(self.problems, self.step, cfg.prompts_per_step, cfg.seed)
        local = distributed.shard(batch, self.rank, self.world)  # whole prompts: groups stay on one rank
        was_training = self.model.training
        known_turn1 = set(self.initial_turn1)
        trajectories = self.rollout(local)
        if self.world > 1 and cfg.turn1_source == "initial":
            self._share_initial_turn1(known_turn1)
        rewards, raw, kl = self.score(trajectories)  # (local_prompts, k), (local_prompts, k), (local_batch,)
        advantages = rloo_advantages(rewards).flatten()  # (local_prompts * k,)
        with torch.no_grad():
            old_logprobs = self._trajectory_logprobs(self.model, trajectories)  # (local_batch,)
        self.model.train()
        log.info("rloo step %d: rewards and KL done, updating the policy", self.step + 1)
        if self.engine is None:
            self.optimizer.zero_grad(set_to_none=True)
        loss, stats = self.policy_loss(trajectories, advantages, old_logprobs)
        if self.engine is None:
            trainable = [p for p in self.model.parameters() if p.requires_grad]
            distributed.average_gradients(trainable)  # ranks hold equal shares, so this is the global mean
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            self.optimizer.step()
        self.scheduler.step()
        if not was_training:
            self.model.eval()
        self.step += 1
        local_stats = {
            "executions": float(self.verdicts.executed),
            "generated_tokens": float(self.generated_tokens - generated_before),
            "loss": loss,
            "clip_ratio": stats["clip_ratio"],
            "ratio_mean": stats["ratio_mean"],
            "step_time_s": time.monotonic() - started,
        }
        summaries = [_summary(t, float(r)) for t, r in zip(trajectories, raw.flatten().tolist(), strict=True)]
        gathered = distributed.all_gather_objects((summaries, local_stats))
        per_rank = [stats for _, stats in gathered]
        metrics = _step_metrics([s for part, _ in gathered for s in part], cfg.turns)
        metrics.update(
            {
                "rollout/executions": sum(s["executions"] for s in per_rank),
                "rollout/generated_tokens": sum(s["generated_tokens"] for s in per_rank),
                # every rank holds the same number of trajectories, so the plain mean is the global one
                "train/loss": sum(s["loss"] for s in per_rank) / len(per_rank),
                "train/clip_ratio": sum(s["clip_ratio"] for s in per_rank) / len(per_rank),
                "train/ratio_mean": sum(s["ratio_mean"] for s in per_rank) / len(per_rank),
                "train/learning_rate": self.scheduler.get_last_lr()[0],
                "train/step_time_s": max(s["step_time_s"] for s in per_rank),
            }
        )
        self.last_trajectories = trajectories
        return metrics

    def _share_initial_turn1(self, known: set[str]) -> None:
        """Turn-RL: merge the turn-1 samples each rank drew this step, so every rank (and the checkpoint
        that rank 0 writes) fixes the same first response for a problem whichever rank rolls it out later."""
        fresh = {k: v for k, v in self.initial_turn1.items() if k not in known}
        for part in distributed.all_gather_objects(fresh):
            for task_id, completion in part.items():
                self.initial_turn1.setdefault(task_id, completion)

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
    def _full_state_dict(self) -> dict[str, torch.Tensor] | None:
        """Under ZeRO-3, the 16-bit weights gathered onto rank 0 (a collective: every rank calls it);
        else None, and save_pretrained reads the (full) parameters itself."""
        if self.engine is None or self.zero_stage != 3:
            return None
        return self.engine._zero3_consolidated_16bit_state_dict()

    def save_checkpoint(self) -> Path:
        """Model, optimizer, scheduler, RNG and data position; the marker file is written last.

        Every rank must call it: rank 0 writes and uploads; under ZeRO each rank adds its optimizer shard.
        """
        target = self.output_dir / "checkpoints" / f"step-{self.step:06d}"
        tmp = target.with_name(target.name + ".partial")
        main = self.rank == 0
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        distributed.barrier()
        rng = distributed.all_gather_objects({"torch": torch.get_rng_state(), "python": random.getstate()})
        state_dict = self._full_state_dict()
        if self.engine is not None:
            # model and optimizer partitions of every rank (fp32 master weights, Adam moments)
            self.engine.save_checkpoint(str(tmp / "deepspeed"), tag="state", save_latest=False)
        distributed.barrier()
        if main:
            self.model.save_pretrained(tmp / "model", state_dict=state_dict)
            self.tokenizer.save_pretrained(tmp / "model")
            if self.engine is None:
                torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
            torch.save(self.scheduler.state_dict(), tmp / "scheduler.pt")
            torch.save({**rng[0], "ranks": rng}, tmp / "rng.pt")
            torch.save(
                {k: (v.prompt_ids, v.completion_ids, v.text) for k, v in self.initial_turn1.items()}, tmp / "turn1.pt"
            )
            state = {
                "step": self.step,
                "seed": self.config.seed,
                "run_id": self.run_id,
                "world_size": self.world,
                "config": to_dict(self.config),
            }
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
        distributed.barrier()
        return target

    def _prune_local_checkpoints(self) -> None:
        complete = sorted(
            p for p in (self.output_dir / "checkpoints").glob("step-*") if (p / CHECKPOINT_MARKER).exists()
        )
        for old in complete[: -self.config.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)

    def latest_checkpoint(self) -> Path | None:
        """Newest complete checkpoint: from S3 when a checkpoint URI is set, else the local folder.

        Rank 0 picks it and tells the others; one process per node downloads it (local ranks share a disk).
        """
        if self.checkpoint_uri:
            from cocos import storage

            uri = distributed.broadcast_object(storage.latest_complete(self.checkpoint_uri) if self.rank == 0 else None)
            if uri is None:
                return None
            local = self.output_dir / "checkpoints" / uri.rstrip("/").rsplit("/", 1)[-1]
            if distributed.local_rank() == 0 and not (local / CHECKPOINT_MARKER).exists():
                shutil.rmtree(local, ignore_errors=True)
                storage.download_dir(uri, str(local))
            distributed.barrier()
            return local
        folder = self.output_dir / "checkpoints"
        complete = (
            sorted(p for p in folder.glob("step-*") if (p / CHECKPOINT_MARKER).exists()) if folder.exists() else []
        )
        name = distributed.broadcast_object(complete[-1].name if complete else None)
        return folder / name if name else None

    def resume(self) -> int:
        checkpoint = self.latest_checkpoint()
        if checkpoint is None:
            return 0
        from transformers import AutoModelForCausalLM

        state = json.loads((checkpoint / "trainer_state.json").read_text())
        if self.engine is not None:
            if not (checkpoint / "deepspeed").exists():
                raise RuntimeError(f"{checkpoint} was written without DeepSpeed; resume it with deepspeed_config=''")
            self.engine.load_checkpoint(
                str(checkpoint / "deepspeed"), tag="state", load_optimizer_states=True, load_lr_scheduler_states=False
            )
        else:
            if not (checkpoint / "optimizer.pt").exists():
                raise RuntimeError(f"{checkpoint} holds DeepSpeed shards; resume it with its deepspeed_config")
            dtype = next(self.model.parameters()).dtype
            trained = AutoModelForCausalLM.from_pretrained(checkpoint / "model", dtype=dtype)
            self.model.load_state_dict(trained.state_dict())
            self.optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", weights_only=False))
        self.scheduler.load_state_dict(torch.load(checkpoint / "scheduler.pt", weights_only=False))
        rng = torch.load(checkpoint / "rng.pt", weights_only=False)
        ranks = rng.get("ranks", [rng])
        if len(ranks) == self.world:
            torch.set_rng_state(ranks[self.rank]["torch"])
            random.setstate(ranks[self.rank]["python"])
        else:  # a different number of processes: a fresh, still per-rank and reproducible, stream
            log.warning("rloo: checkpoint of %d ranks resumed on %d; reseeding sampling", len(ranks), self.world)
            _set_seed(self.config.seed + 1_000 * int(state["step"]) + self.rank)
        turn1 = torch.load(checkpoint / "turn1.pt", weights_only=False)
        self.initial_turn1 = {k: Completion(*v) for k, v in turn1.items()}
        self.step = int(state["step"])
        log.info("resumed from %s at step %d", checkpoint, self.step)
        return self.step

    # ---------------------------------------------------------------- loop
    def train(self) -> TrainResult:
        """Every rank runs the loop; callbacks fire on rank 0 with metrics over all ranks."""
        _set_seed(self.config.seed + self.rank)
        resumed_from = self.resume()
        history: list[dict[str, float]] = []
        main = self.rank == 0
        while self.step < self.config.steps:
            metrics = self.train_step()
            history.append(metrics)
            if main:
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
            if main and self.callbacks.on_step:
                self.callbacks.on_step(self.step, metrics)
            if self.step % self.config.log_rollouts_every == 0 or self.step == self.config.steps:
                parts = distributed.all_gather_objects(self.rollout_records(self.last_trajectories))
                if main and self.callbacks.on_rollouts:
                    self.callbacks.on_rollouts(self.step, [record for part in parts for record in part])
            if self.step % self.config.checkpoint_every == 0 or self.step == self.config.steps:
                self.save_checkpoint()
        return TrainResult(str(self.output_dir), self.step, resumed_from, history)

    def save_final(self, model_dir: str | Path) -> None:
        """Rank 0 writes the trained weights and tokenizer; every rank must call it (ZeRO-3 gathers)."""
        state_dict = self._full_state_dict()
        if self.rank == 0:
            self.model.save_pretrained(model_dir, state_dict=state_dict)
            self.tokenizer.save_pretrained(model_dir)
        distributed.barrier()


def _nanmean(values: torch.Tensor) -> float:
    valid = values[~torch.isnan(values)]
    return float(valid.mean()) if valid.numel() else math.nan


def _nanstd(values: torch.Tensor) -> float:
    valid = values[~torch.isnan(values)]
    return float(valid.std(unbiased=False)) if valid.numel() else math.nan


def _summary(trajectory: Trajectory, raw: float) -> dict[str, Any]:
    """The few numbers of a trajectory that step metrics need (small, so ranks can gather them)."""
    return {
        "reward": trajectory.reward,
        "raw": raw,
        "kl": trajectory.kl,
        "passed": [r.passed for r in trajectory.results],
        "total": [r.total for r in trajectory.results],
        "all_passed": [r.all_passed for r in trajectory.results],
    }


def _step_metrics(summaries: list[dict[str, Any]], turns: int) -> dict[str, float]:
    """Rollout metrics over all trajectories of the step (every rank's)."""
    valid = [s for s in summaries if not math.isnan(s["reward"])]
    rewards = torch.tensor([s["reward"] for s in summaries], dtype=torch.float64)  # (batch,)
    raw = torch.tensor([s["raw"] for s in summaries], dtype=torch.float64)  # (batch,)
    metrics: dict[str, float] = {
        "rollout/reward_mean": _nanmean(rewards),
        "rollout/reward_std": _nanstd(rewards),
        "rollout/score_reward_mean": _nanmean(raw),
        "rollout/kl": sum(s["kl"] for s in summaries) / max(len(summaries), 1),
        "rollout/sandbox_errors": float(len(summaries) - len(valid)),
    }
    for turn in range(turns):
        correct = [s["all_passed"][turn] for s in valid]
        ratio = [s["passed"][turn] / s["total"][turn] for s in valid]
        metrics[f"rollout/acc_t{turn + 1}"] = sum(correct) / len(valid) if valid else 0.0
        metrics[f"rollout/score_t{turn + 1}"] = sum(ratio) / len(valid) if valid else 0.0
    for turn in range(turns - 1):
        before = [s["all_passed"][turn] for s in valid]
        after = [s["all_passed"][turn + 1] for s in valid]
        n = max(len(valid), 1)
        pairs = list(zip(before, after, strict=True))
        metrics[f"rollout/i2c_t{turn + 1}_t{turn + 2}"] = sum((not b) and a for b, a in pairs) / n
        metrics[f"rollout/c2i_t{turn + 1}_t{turn + 2}"] = sum(b and not a for b, a in pairs) / n
    return metrics
