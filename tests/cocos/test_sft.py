"""Boost SFT on TRL: the loss covers completion tokens only (the prompt is masked, found by the
tokenizer), a short run changes every parameter, the saved model keeps its KV cache on, and bad example
files name the line. Run: pytest tests/cocos/test_sft.py -q
"""

import json

import pytest
import torch
from safetensors.torch import load_file

from cocos.config import SFTConfig
from cocos.prompts import completion_text, turn_prompt
from cocos.records import Problem
from cocos.train.sft import SFTDataError, build_trainer, read_examples, run_sft

PROBLEM = Problem("t", "Return one.", ("assert f() == 1",))
EXAMPLES = [
    {"prompt": turn_prompt(PROBLEM), "completion": completion_text("def f():\n    return 1")},
    {
        "prompt": turn_prompt(PROBLEM, previous_code="def f():\n    return 2"),
        "completion": completion_text("def f():\n    return 1"),
    },
] * 4


def test_completion_only_loss_and_every_parameter_changes(tiny_model_dir, tmp_path):

    out = tmp_path / "boost"
    config = SFTConfig(max_steps=2, per_device_batch_size=4, gradient_accumulation_steps=1, learning_rate=1e-3)
    run_sft(config, tiny_model_dir, EXAMPLES, out)
    before, after = load_file(str(tiny_model_dir / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert [name for name in before if torch.equal(before[name], after[name])] == []
    assert json.loads((out / "config.json").read_text()).get("use_cache", True) is True

    # what TRL trains on: the prompt tokens are masked out of the labels, the completion tokens are kept
    trainer = build_trainer(config, tiny_model_dir, EXAMPLES, tmp_path / "again")
    tokenizer = trainer.processing_class
    row = trainer.train_dataset[1]
    prompt_ids = tokenizer(EXAMPLES[1]["prompt"], add_special_tokens=False).input_ids
    assert row["input_ids"][: len(prompt_ids)] == prompt_ids
    assert row["labels"][: len(prompt_ids)] == [-100] * len(prompt_ids)
    labels = trainer.data_collator([row])["labels"][0].tolist()
    assert all(label == -100 for label in labels[: len(prompt_ids)])
    assert labels[len(prompt_ids) :] == row["input_ids"][len(prompt_ids) :]
    completion = tokenizer.decode(row["input_ids"][len(prompt_ids) :])
    assert completion.startswith("def f():") and "[DONE]" in completion


def test_bad_example_files_name_the_line(tmp_path):
    bad = tmp_path / "boost_train.jsonl"
    bad.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "a"\n')
    with pytest.raises(SFTDataError, match=r"boost_train.jsonl:2: not valid JSON"):
        read_examples(bad)
    bad.write_text('{"prompt": "a"}\n')
    with pytest.raises(SFTDataError, match=r":1: .*'completion'"):
        read_examples(bad)
    bad.write_text("")
    with pytest.raises(SFTDataError, match="no SFT examples"):
        read_examples(bad)
