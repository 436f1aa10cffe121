"""Boost SFT (method.md section 6) on TRL's SFTTrainer.

Examples are prompt/completion pairs of both turns mixed 1:1. TRL tokenizes prompt and prompt+completion
and masks the prompt tokens (completion_only_loss), so the boundary comes from the tokenizer itself.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cocos.config import SFTConfig

log = logging.getLogger(__name__)


class SFTDataError(ValueError):
    """An SFT example that cannot be trained on; the message names the file and line."""


def read_examples(path: str | Path) -> list[dict[str, str]]:
    """Prompt/completion JSON lines; a bad line is reported with its number, nothing is skipped silently."""
    path = Path(path)
    examples = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise SFTDataError(f"{path}:{number}: not valid JSON ({error.msg})") from error
            if not isinstance(record.get("prompt"), str) or not isinstance(record.get("completion"), str):
                raise SFTDataError(f"{path}:{number}: an SFT example needs string fields 'prompt' and 'completion'")
            examples.append({"prompt": record["prompt"], "completion": record["completion"]})
    if not examples:
        raise SFTDataError(f"{path}: no SFT examples; boost SFT needs at least one")
    return examples


def run_sft(
    config: SFTConfig,
    model_dir: str | Path,
    examples: Sequence[dict[str, str]],
    output_dir: str | Path,
    eval_examples: Sequence[dict[str, str]] | None = None,
    on_log: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Train and save the boost model (weights and tokenizer) into output_dir; returns the final metrics."""
    trainer = build_trainer(config, model_dir, examples, output_dir, eval_examples, on_log)
    tokenizer = trainer.processing_class
    result = trainer.train()
    metrics: dict[str, Any] = {f"sft/{k}": v for k, v in result.metrics.items()}
    if eval_examples:
        metrics.update({f"sft/{k}": v for k, v in trainer.evaluate().items()})
    tokenizer.padding_side = "left"
    # TRL turns the KV cache off for training; a saved model without it generates in quadratic time.
    trainer.model.config.use_cache = True
    trainer.save_model(str(output_dir))
    tokenizer.save_pretrained(str(output_dir))
    log.info("boost SFT finished: %s", metrics)
    return metrics


def build_trainer(
    config: SFTConfig,
    model_dir: str | Path,
    examples: Sequence[dict[str, str]],
    output_dir: str | Path,
    eval_examples: Sequence[dict[str, str]] | None = None,
    on_log: Callable[[int, dict[str, float]], None] | None = None,
) -> Any:
    """TRL's SFTTrainer for prompt/completion examples, with the stage's settings."""
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    from cocos.models import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(model_dir, dtype="bfloat16" if config.bf16 else "float32")
    tokenizer.padding_side = "right"
    output_dir = Path(output_dir)
    work_dir = output_dir.parent / (output_dir.name + ".trainer")
    args = TRLSFTConfig(
        output_dir=str(work_dir),
        max_steps=config.max_steps,
        per_device_train_batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=int(config.warmup_ratio * config.max_steps),
        optim="adamw_torch",
        max_length=config.max_length,
        completion_only_loss=True,
        gradient_checkpointing=config.gradient_checkpointing,
        packing=False,
        seed=config.seed,
        bf16=config.bf16,
        deepspeed=config.deepspeed_config or None,
        logging_steps=config.logging_steps,
        save_strategy="no",
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        disable_tqdm=True,
        per_device_eval_batch_size=config.per_device_batch_size,
        eval_strategy="no",
    )

    class _Forward(TrainerCallback):
        def on_log(self, _args: Any, state: Any, _control: Any, logs: dict[str, float] | None = None, **_: Any) -> None:
            if not logs:
                return
            numeric = {f"sft/{k}": float(v) for k, v in logs.items() if isinstance(v, int | float)}
            shown = ", ".join(f"{k.removeprefix('sft/')} {v:.4g}" for k, v in numeric.items())
            log.info("boost SFT step %d/%d: %s", state.global_step, state.max_steps, shown)
            if on_log:
                on_log(state.global_step, numeric)

    return SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(list(examples)),
        eval_dataset=Dataset.from_list(list(eval_examples)) if eval_examples else None,
        processing_class=tokenizer,
        callbacks=[_Forward()],
    )
