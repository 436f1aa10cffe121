"""Multi-process training on CPU: `launch("rloo", nproc=2)` with gloo and DeepSpeed ZeRO-2 and ZeRO-3 on the tiny model,
plus the pure helpers of cocos.train.distributed (shard, DeepSpeed config filling) and launch's errors.

The launched processes take verdicts from COCOS_TEST_EXECUTOR=hash (a hash of the code decides how many
asserts pass): a random tiny model never passes a real test, so with the real sandbox every reward is 0 and
every advantage vanishes, and nothing would train. That stand-in is enough for what is tested here, the
distributed mechanics; the real sandbox has its own tests in tests/sandbox.
Run: pytest tests/train/test_distributed.py -q        (the 2-process tests are marked slow: -m slow)
"""

import json
import os

import pytest
import torch

from cocos.config import ConfigError, RLOOConfig, SFTConfig, to_dict
from cocos.data import write_split
from cocos.records import Problem
from cocos.train import distributed
from cocos.train.launch import LaunchError, run_rloo_distributed, torchrun_command

PROBLEMS = [
    Problem(f"p{i}", f"Return {i}.", tuple(f"assert f({j}) == {i}" for j in range(3)), reference=f"return {i}")
    for i in range(8)
]


def _weights(model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def test_shard_keeps_order_and_covers_everything():
    items = list(range(10))
    parts = [distributed.shard(items, r, 3) for r in range(3)]
    assert parts == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert distributed.shard(items, 1, 2) == [5, 6, 7, 8, 9]
    with pytest.raises(ValueError, match="rank=2"):
        distributed.shard(items, 2, 2)


@pytest.mark.parametrize("stage", [2, 3])
def test_packaged_deepspeed_configs_fill_auto(stage):
    path = distributed.deepspeed_config_path(stage)
    config = distributed.resolve_deepspeed_config(
        path, micro_batch_size=4, gradient_accumulation_steps=3, world=2, bf16=True, hidden_size=64
    )
    assert config["train_batch_size"] == 24 and config["train_micro_batch_size_per_gpu"] == 4
    assert config["bf16"]["enabled"] is True and config["zero_optimization"]["stage"] == stage
    assert "auto" not in json.dumps(config)
    if stage == 3:
        assert config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    with pytest.raises(ValueError, match="stage=1"):
        distributed.deepspeed_config_path(1)


def test_rloo_config_refuses_a_non_json_deepspeed_config():
    with pytest.raises(ConfigError, match="deepspeed_config"):
        RLOOConfig(deepspeed_config="zero2.yaml")


def test_torchrun_command():
    command = torchrun_command("rloo", 4, ["--config", "c.json"])
    assert command[1:4] == ["-m", "torch.distributed.run", "--nproc_per_node=4"]
    assert "--standalone" in command and command[-4:] == ["cocos.train.launch", "rloo", "--config", "c.json"]
    multi = torchrun_command("sft", 8, [], nnodes=2, master_addr="10.0.0.1", node_rank=1)
    assert "--master_addr=10.0.0.1" in multi and "--node_rank=1" in multi and "--standalone" not in multi


@pytest.fixture
def rloo_setup(tiny_model_dir, tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    write_split(PROBLEMS, data / "train.jsonl")
    monkeypatch.setenv("COCOS_TEST_EXECUTOR", "hash")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return data


@pytest.mark.slow
@pytest.mark.parametrize("zero_stage", [2, 3])
def test_two_process_rloo_with_zero_trains_every_parameter(tiny_model_dir, tmp_path, rloo_setup, zero_stage):
    config = RLOOConfig(
        steps=2,
        prompts_per_step=4,
        group_size=2,
        max_new_tokens=10,
        micro_batch_size=4,
        learning_rate=1e-3,
        rollout_mode="independent",
        checkpoint_every=1,
        log_rollouts_every=1,
        seed=3,
        deepspeed_config=distributed.deepspeed_config_path(zero_stage),
    )
    out = tmp_path / "model"
    work = tmp_path / "work"
    summary = run_rloo_distributed(config, tiny_model_dir, rloo_setup, out, "", nproc=2, work_dir=work)

    assert summary["world_size"] == 2 and summary["steps"] == 2
    assert len(summary["history"]) == 2
    # both ranks rolled out: the gathered rollouts of a step hold all 4 prompts x 2 samples
    records = summary["rollouts"][0]["records"]
    assert len(records) == 8 and len({r["task_id"] for r in records}) == 4
    assert summary["history"][0]["rollout/generated_tokens"] > 0
    assert any(m["rollout/reward_std"] > 0 for m in summary["history"])
    # saved once: one model folder, and checkpoints with both ranks' ZeRO optimizer shards
    assert (out / "config.json").exists() and len(list(out.glob("*.safetensors"))) == 1
    last = work / "checkpoints" / "step-000002"
    assert (last / "COMPLETE").exists()
    shards = list((last / "deepspeed" / "state").glob("*optim_states.pt"))
    assert len(shards) == 2
    assert len(torch.load(last / "rng.pt", weights_only=False)["ranks"]) == 2
    before, after = _weights(tiny_model_dir), _weights(out)
    unchanged = [name for name in before if torch.equal(before[name], after[name])]
    assert unchanged == []
    # a longer run resumes every rank from that checkpoint (model and ZeRO optimizer shards)
    longer = RLOOConfig(**{**to_dict(config), "steps": 3})
    resumed = run_rloo_distributed(longer, tiny_model_dir, rloo_setup, tmp_path / "model3", "", nproc=2, work_dir=work)
    assert resumed["resumed_from"] == 2 and resumed["steps"] == 3 and len(resumed["history"]) == 1
    assert resumed["history"][0]["step"] == 3


@pytest.mark.slow
def test_two_process_rloo_without_deepspeed_and_a_bad_split(tiny_model_dir, tmp_path, rloo_setup):
    """All-reduce gradients (no DeepSpeed); a resumed run continues from rank 0's checkpoint; an indivisible
    prompts_per_step fails with the config error in the launch error."""
    settings = {
        "steps": 1,
        "prompts_per_step": 2,
        "group_size": 2,
        "max_new_tokens": 8,
        "learning_rate": 1e-3,
        "checkpoint_every": 1,
        "seed": 1,
    }
    work = tmp_path / "work"
    first = run_rloo_distributed(RLOOConfig(**settings), tiny_model_dir, rloo_setup, tmp_path / "m1", "", 2, work)
    assert first["steps"] == 1 and first["resumed_from"] == 0
    second = run_rloo_distributed(
        RLOOConfig(**{**settings, "steps": 2}), tiny_model_dir, rloo_setup, tmp_path / "m2", "", 2, work
    )
    assert second["resumed_from"] == 1 and second["steps"] == 2 and len(second["history"]) == 1
    expected = r"stage 'rloo' failed with exit code 1 .*ConfigError: rloo prompts_per_step=3 must be divisible"
    with pytest.raises(LaunchError, match=expected):
        run_rloo_distributed(
            RLOOConfig(**{**settings, "prompts_per_step": 3}), tiny_model_dir, rloo_setup, tmp_path / "m3", "", 2
        )


@pytest.mark.slow
def test_two_process_sft_with_zero2(tiny_model_dir, tmp_path, monkeypatch):
    from cocos.train.launch import run_sft_distributed

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    data = tmp_path / "data"
    data.mkdir()
    lines = [
        json.dumps({"prompt": f"Write f returning {i}.\n", "completion": f"def f():\n    return {i}\n[DONE]"})
        for i in range(16)
    ]
    (data / "boost_train.jsonl").write_text("\n".join(lines) + "\n")
    config = SFTConfig(
        max_steps=2,
        per_device_batch_size=2,
        gradient_accumulation_steps=1,
        learning_rate=1e-3,
        max_length=128,
        logging_steps=1,
        deepspeed_config=distributed.deepspeed_config_path(2),
    )
    out = tmp_path / "boost"
    metrics = run_sft_distributed(config, tiny_model_dir, data, out, nproc=2)
    assert metrics["world_size"] == 2 and metrics["history"]
    assert any("sft/loss" in entry for entry in metrics["history"])
    before, after = _weights(tiny_model_dir), _weights(out)
    assert [name for name in before if torch.equal(before[name], after[name])] == []
    assert to_dict(config)["deepspeed_config"].endswith("zero2.json")
    assert os.environ["OMP_NUM_THREADS"] == "1"
