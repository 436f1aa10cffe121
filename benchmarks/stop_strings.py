"""Generated tokens per RLOO rollout: stopping at [DONE] (ours) vs the reference code's fixed 512 tokens.

Both arms generate for the same turn-1 prompts with the same model in one run; the baseline ignores EOS
and stop strings and always runs `--max-new-tokens` tokens, as the reference code does. The ratio of
generated tokens is the rollout-cost saving; wall time per arm is reported as well.

    python benchmarks/stop_strings.py --model PATH_OR_REFERENCE [--prompts 8] [--max-new-tokens 512]

The model should be a boost (SFT) model: an untrained model never writes [DONE], so it saves nothing.
Writes benchmarks/results/stop_strings.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from cocos.data.synthetic import splits
from cocos.models import load_model_and_tokenizer, resolve_model
from cocos.prompts import DONE, turn_prompt
from cocos.train.generation import generate

RESULTS = Path(__file__).resolve().parent / "results" / "stop_strings.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model reference (folder, packaged:smollm2, s3://, ...)")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--temperature", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args()

    model, tokenizer = load_model_and_tokenizer(resolve_model(args.model))
    problems = splits(args.seed, train=args.prompts, validation=0, test=0)["train"][: args.prompts]
    prompts = [turn_prompt(p) for p in problems]
    arms = {}
    for name, fixed in (("stop_at_done", False), ("fixed_length_reference", True)):
        torch.manual_seed(args.seed)
        started = time.monotonic()
        completions = generate(
            model,
            tokenizer,
            prompts,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            stop_at_done=True,
            batch_size=len(prompts),
            fixed_length=fixed,
        )
        arms[name] = {
            "generated_tokens": sum(len(c.completion_ids) for c in completions),
            "wall_s": round(time.monotonic() - started, 2),
            "wrote_done": sum(DONE in c.text for c in completions),
        }
    ours, reference = arms["stop_at_done"], arms["fixed_length_reference"]
    result = {
        "model": args.model,
        "prompts": len(prompts),
        "max_new_tokens": args.max_new_tokens,
        "temperature": args.temperature,
        "torch_threads": torch.get_num_threads(),
        "arms": arms,
        "token_ratio_reference_over_ours": round(reference["generated_tokens"] / max(ours["generated_tokens"], 1), 2),
        "time_ratio_reference_over_ours": round(reference["wall_s"] / max(ours["wall_s"], 1e-9), 2),
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
