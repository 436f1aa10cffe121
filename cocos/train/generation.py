"""Batched generation that stops at [DONE], and log-probabilities of completions from a forward pass."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from cocos.prompts import DONE


@dataclass
class Completion:
    prompt_ids: list[int]
    completion_ids: list[int]
    text: str


def _trim(ids: list[int], eos_id: int | None, pad_id: int | None) -> list[int]:
    """Cut a generated row after its end: at the first EOS (kept, the model chose to stop) or padding."""
    out: list[int] = []
    for token in ids:
        if eos_id is not None and token == eos_id:
            out.append(token)
            break
        if pad_id is not None and token == pad_id:
            break
        out.append(token)
    return out


@torch.no_grad()
def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    stop_at_done: bool = True,
    batch_size: int = 8,
    fixed_length: bool = False,
    synced_gpus: bool = False,
    logits_processor: Any = None,
) -> list[Completion]:
    """Generate one completion per prompt. temperature 0 is greedy decoding.

    `fixed_length` reproduces the reference code: no stop string and EOS ignored, always max_new_tokens.
    `synced_gpus` keeps every rank stepping until all ranks finish: needed under ZeRO-3, where each
    forward gathers parameter shards from all ranks. `logits_processor` (a transformers
    LogitsProcessorList) is passed through to `model.generate`.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    eos_id = tokenizer.eos_token_id
    pad_id = tokenizer.pad_token_id
    results: list[Completion] = []
    for start in range(0, len(prompts), batch_size):
        chunk = list(prompts[start : start + batch_size])
        encoded = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
        encoded = {key: value.to(device) for key, value in encoded.items()}  # (batch, prompt_len) each
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "pad_token_id": pad_id,
            "use_cache": True,  # a model saved from training may carry use_cache=False
        }
        if synced_gpus:
            kwargs["synced_gpus"] = True
        if logits_processor is not None:
            kwargs["logits_processor"] = logits_processor
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature, top_p=1.0, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if fixed_length:
            kwargs.update(min_new_tokens=max_new_tokens, eos_token_id=None)
        elif stop_at_done:
            kwargs.update(stop_strings=[DONE], tokenizer=tokenizer)
        output = model.generate(**encoded, **kwargs)  # (batch, prompt_len + new_tokens)
        prompt_len = encoded["input_ids"].shape[1]
        for row in range(len(chunk)):
            attention = encoded["attention_mask"][row].bool()
            prompt_ids = encoded["input_ids"][row][attention].tolist()
            new_ids = output[row, prompt_len:].tolist()
            completion_ids = new_ids if fixed_length else _trim(new_ids, eos_id, pad_id if pad_id != eos_id else None)
            text = tokenizer.decode(completion_ids, skip_special_tokens=True)
            results.append(Completion(prompt_ids, completion_ids, text))
    if was_training:
        model.train()
    return results


def sequence_logprobs(
    model: Any,
    pairs: Sequence[tuple[list[int], list[int]]],
    pad_id: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum and count of log p(completion token | prefix) for each (prompt_ids, completion_ids) pair.

    Gradients flow when called outside no_grad. Returns (sums, counts), both (batch,).
    """
    lengths = [len(p) + len(c) for p, c in pairs]
    width = max(lengths)
    batch = len(pairs)
    input_ids = torch.full((batch, width), pad_id, dtype=torch.long)  # (batch, width), right-padded
    attention = torch.zeros((batch, width), dtype=torch.long)  # (batch, width)
    completion_mask = torch.zeros((batch, width), dtype=torch.bool)  # (batch, width)
    for row, (prompt, completion) in enumerate(pairs):
        ids = prompt + completion
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention[row, : len(ids)] = 1
        completion_mask[row, len(prompt) : len(ids)] = True
    device = next(model.parameters()).device
    input_ids, attention, completion_mask = input_ids.to(device), attention.to(device), completion_mask.to(device)
    logits = model(input_ids=input_ids, attention_mask=attention).logits  # (batch, width, vocab)
    # token i is predicted by position i-1
    logits = logits[:, :-1, :].float()  # (batch, width-1, vocab)
    targets = input_ids[:, 1:]  # (batch, width-1)
    mask = completion_mask[:, 1:]  # (batch, width-1)
    token_logprobs = torch.gather(logits.log_softmax(dim=-1), 2, targets.unsqueeze(-1)).squeeze(-1)  # (batch, width-1)
    token_logprobs = token_logprobs * mask
    return token_logprobs.sum(dim=1), mask.sum(dim=1)  # (batch,), (batch,)
