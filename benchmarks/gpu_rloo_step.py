"""One RLOO step on one GPU at the paper's batch: 64 prompts x 2 samples x 2 turns, bf16, Qwen2.5-1.5B shape.

    python benchmarks/gpu_rloo_step.py [--steps 2] [--out benchmarks/results/gpu_rloo_step.json]

Two arms, same model, same prompts, same trainer (cocos.train.rloo.RLOOTrainer.train_step):
- baseline: the reference code's generation, always 512 new tokens (generate(..., fixed_length=True));
- ours: generation stops at the stop string [DONE].

What is real and what is not (read before quoting the numbers):
- The model has the Qwen2.5-1.5B architecture (values written out in `qwen25_15b_config`) with random
  weights: no download. The tokenizer is the offline byte-level BPE of cocos.models.build_tiny_model
  (a few hundred tokens); logits are masked to its vocabulary so every sampled id decodes. Prompts
  therefore tokenize longer than with Qwen's tokenizer (the JSON reports the prompt lengths).
- Random weights never write [DONE]. In "ours" a logits processor forces "\\n[DONE]" after a length drawn
  per row from an ASSUMED log-normal (median 96 tokens, sigma 0.6, clipped to [8, 500]); the
  project has no measured length distribution yet, so replace these numbers with measured ones
  (rollout/generated_tokens of a trained model) when they exist. The stop-string machinery itself runs
  for real. EOS and pad are masked in this arm, so lengths follow the draw.
- Verdicts come from a hash of the code, not the sandbox: the step time excludes test execution.
- Generation runs all 128 rollouts of a turn in one batch in both arms (the trainer's default uses
  micro_batch_size, which would serialise generation); the update uses micro-batches of 8 sequences.
Without a CUDA device it prints "skipped: no CUDA device" and exits 0.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "gpu_rloo_step.json"
PROMPTS, SAMPLES, TURNS, MAX_NEW_TOKENS = 64, 2, 2, 512
LENGTH_MEDIAN, LENGTH_SIGMA, LENGTH_MIN, LENGTH_MAX = 96, 0.6, 8, 500


def qwen25_15b_config(
    vocab_size: int = 151936, pad_token_id: int | None = None, eos_token_id: int | None = None
) -> Any:
    """Qwen2.5-1.5B's architecture (its config.json values), random weights: 1.54B parameters."""
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=1536,
        intermediate_size=8960,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
        hidden_act="silu",
        tie_word_embeddings=True,
        pad_token_id=pad_token_id,
        eos_token_id=eos_token_id,
        bos_token_id=eos_token_id,
    )


class VocabMask:
    """Keeps sampling inside the tokenizer's ids (the model's embedding table is larger, as in Qwen)."""

    def __init__(self, size: int, banned: list[int]) -> None:
        self.size = size
        self.banned = banned

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores[:, self.size :] = -math.inf  # scores: (batch, model_vocab)
        if self.banned:
            scores[:, self.banned] = -math.inf
        return scores


class ForceDone:
    """Forces `done_ids` after a per-row length drawn from the assumed distribution (see the module doc)."""

    def __init__(self, done_ids: list[int], seed: int) -> None:
        self.done_ids = done_ids
        self.generator = torch.Generator().manual_seed(seed)
        self.prompt_len = -1
        self.last_len = 1 << 30
        self.lengths = torch.empty(0, dtype=torch.long)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        length = input_ids.shape[1]  # input_ids: (batch, prompt + generated)
        if length <= self.last_len:  # a new generate call
            self.prompt_len = length
            normal = torch.randn(input_ids.shape[0], generator=self.generator)
            drawn = torch.exp(math.log(LENGTH_MEDIAN) + LENGTH_SIGMA * normal).round().long()
            self.lengths = drawn.clamp(LENGTH_MIN, LENGTH_MAX).tolist()
        self.last_len = length
        generated = length - self.prompt_len
        for row, target in enumerate(self.lengths):
            offset = generated - target
            if 0 <= offset < len(self.done_ids):
                scores[row, :] = -math.inf
                scores[row, self.done_ids[offset]] = 0.0
        return scores


def make_problems() -> list[Any]:
    from cocos.records import Problem

    tasks = ["sum of a list", "reverse a string", "count vowels", "maximum of a list", "check a palindrome"]
    return [
        Problem(
            f"bench-{i}",
            f"Write a function to compute the {tasks[i % len(tasks)]} (variant {i}).",
            tuple(f"assert f({j}) == {i + j}" for j in range(3)),
        )
        for i in range(PROMPTS)
    ]


def run_arm(name: str, model: Any, tokenizer: Any, steps: int, work: Path) -> dict[str, Any]:
    from transformers import LogitsProcessorList

    from cocos.config import RLOOConfig
    from cocos.train.generation import generate
    from cocos.train.launch import HashVerdicts
    from cocos.train.rloo import RLOOTrainer

    fixed = name == "baseline"
    config = RLOOConfig(
        steps=steps,
        prompts_per_step=PROMPTS,
        group_size=SAMPLES,
        turns=TURNS,
        max_new_tokens=MAX_NEW_TOKENS,
        micro_batch_size=8,
        stop_at_done=not fixed,
        rollout_mode="independent",
        bf16=True,
        checkpoint_every=10_000,
        log_rollouts_every=10_000,
    )
    # pad would end a completion early (it is trimmed); EOS too, except in the fixed-length arm that ignores it
    banned = [tokenizer.pad_token_id] + ([] if fixed else [tokenizer.eos_token_id])
    done_ids = tokenizer.encode("\n[DONE]", add_special_tokens=False)
    timing = {"generation_s": 0.0, "generated_tokens": 0}

    class Arm(RLOOTrainer):
        def _generate(self, policy: Any, prompts: list[str]) -> list[Any]:
            processors = [VocabMask(len(tokenizer), banned)]
            if not fixed:
                processors.append(ForceDone(done_ids, seed=len(prompts)))
            torch.cuda.synchronize()
            started = time.perf_counter()
            completions = generate(
                policy,
                self.tokenizer,
                prompts,
                max_new_tokens=self.config.max_new_tokens,
                temperature=self.config.temperature,
                stop_at_done=not fixed,
                fixed_length=fixed,
                batch_size=len(prompts),
                logits_processor=LogitsProcessorList(processors),
            )
            torch.cuda.synchronize()
            timing["generation_s"] += time.perf_counter() - started
            tokens = sum(len(c.completion_ids) for c in completions)
            timing["generated_tokens"] += tokens
            self.generated_tokens += tokens
            return completions

    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    trainer = Arm(config, model, tokenizer, make_problems(), HashVerdicts(), work / name)
    step_times, prompt_tokens = [], []
    for _ in range(steps):
        before = dict(timing)
        torch.cuda.synchronize()
        started = time.perf_counter()
        metrics = trainer.train_step()
        torch.cuda.synchronize()
        step_times.append(
            {
                "step_s": time.perf_counter() - started,
                "generation_s": timing["generation_s"] - before["generation_s"],
                "generated_tokens": timing["generated_tokens"] - before["generated_tokens"],
                "loss": metrics["train/loss"],
            }
        )
        prompt_tokens += [len(t.turns[1].prompt_ids) for t in trainer.last_trajectories]
    measured = step_times[1:] or step_times  # the first step includes CUDA warm-up when there are more
    step_s = sum(s["step_s"] for s in measured) / len(measured)
    gen_s = sum(s["generation_s"] for s in measured)
    gen_tokens = sum(s["generated_tokens"] for s in measured)
    del trainer
    return {
        "step_s": step_s,
        "generation_s_per_step": gen_s / len(measured),
        "generation_tokens_per_s": gen_tokens / gen_s,
        "generated_tokens_per_step": gen_tokens / len(measured),
        "mean_tokens_per_completion": gen_tokens / len(measured) / (PROMPTS * SAMPLES * TURNS),
        "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
        "mean_turn2_prompt_tokens": sum(prompt_tokens) / len(prompt_tokens),
        "steps": step_times,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2, help="RLOO steps per arm; the first is warm-up when > 1")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(json.dumps({"benchmark": "gpu_rloo_step", "skipped": "no CUDA device"}))
        print("skipped: no CUDA device")
        return 0
    logging.basicConfig(level=logging.WARNING)
    from transformers import AutoTokenizer, Qwen2ForCausalLM

    from cocos.models import build_tiny_model

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="gpu-rloo-") as tmp:
        tokenizer = AutoTokenizer.from_pretrained(build_tiny_model(Path(tmp) / "tok"))
        tokenizer.padding_side = "left"
        config = qwen25_15b_config(pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        with torch.device("cuda"):
            model = Qwen2ForCausalLM(config).to(torch.bfloat16)
        parameters = sum(p.numel() for p in model.parameters())
        initial = {k: v.to("cpu", copy=True) for k, v in model.state_dict().items()}
        arms = {}
        for name in ("baseline", "ours"):
            model.load_state_dict(initial)  # both arms start from the same weights
            arms[name] = run_arm(name, model, tokenizer, args.steps, Path(tmp))
    base, ours = arms["baseline"], arms["ours"]
    result = {
        "benchmark": "gpu_rloo_step",
        "device": torch.cuda.get_device_name(0),
        "model": f"Qwen2.5-1.5B architecture, random weights, bf16, {parameters / 1e9:.3f}B parameters",
        "batch": f"{PROMPTS} prompts x {SAMPLES} samples x {TURNS} turns, max {MAX_NEW_TOKENS} new tokens",
        "ours_stop_lengths": (
            f"ASSUMED log-normal(median {LENGTH_MEDIAN}, sigma {LENGTH_SIGMA}) clipped to [{LENGTH_MIN}, "
            f"{LENGTH_MAX}] then a forced [DONE]; random weights never stop by themselves"
        ),
        "verdicts": "hash stand-in (no sandbox time in the step)",
        "baseline": base,
        "ours": ours,
        "ratios": {
            "step_time_baseline_over_ours": base["step_s"] / ours["step_s"],
            "generation_time_baseline_over_ours": base["generation_s_per_step"] / ours["generation_s_per_step"],
            "generated_tokens_baseline_over_ours": base["generated_tokens_per_step"]
            / ours["generated_tokens_per_step"],
            "peak_memory_baseline_over_ours": base["peak_gpu_memory_gib"] / ours["peak_gpu_memory_gib"],
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
