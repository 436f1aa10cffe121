"""A stage placed on several nodes runs as a Kubeflow Trainer TrainJob: its inputs are staged in S3, the
TrainJob's trainer command is `cocos.train.launch` on S3 paths, and the outputs come back from S3.

No cluster here: the stand-in for `submit_and_follow` runs the generated TrainJob's own command (minus
torchrun, one process) in this machine against real SeaweedFS, so the contract between the stage, the
TrainJob object and the launcher is exercised for real. Run: pytest tests/cocos/test_trainjob_stage.py -q
"""

import json

import pytest
from safetensors.torch import load_file

from cocos import storage
from cocos.config import SFTConfig
from cocos.stages import Placement, RunContext, run_as_trainjob
from cocos.train import launch

pytestmark = pytest.mark.slow


def test_sft_as_a_trainjob(live_services, tiny_model_dir, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    examples = [
        {"prompt": f"Return {i}.\n[BEGIN]\n", "completion": f"def f():\n    return {i}\n[DONE]"} for i in range(8)
    ]
    (data / "boost_train.jsonl").write_text("".join(json.dumps(e) + "\n" for e in examples))
    submitted = []

    def run_locally(trainjob, namespace, timeout_s):
        submitted.append(trainjob)
        command = trainjob["spec"]["trainer"]["command"]
        assert command[0] == "torchrun"
        launch.main(command[command.index("cocos.train.launch") + 1 :])

    placement = Placement(
        nodes=2, gpus_per_node=8, image="registry.example/cocos-train:1", tolerations=[{"key": "gpu"}]
    )
    config = SFTConfig(max_steps=1, per_device_batch_size=2, gradient_accumulation_steps=1, learning_rate=1e-3)
    out = tmp_path / "boost_model"
    ctx = RunContext("trainjob-test", "run-ABC_1")
    metrics = run_as_trainjob("sft", config, tiny_model_dir, data, out, ctx, placement, submit=run_locally)

    job = submitted[0]
    assert job["kind"] == "TrainJob" and job["metadata"]["name"] == "cocos-sft-run-abc-1"
    assert job["spec"]["trainer"]["numNodes"] == 2
    assert job["spec"]["trainer"]["image"] == "registry.example/cocos-train:1"
    args = job["spec"]["trainer"]["command"]
    assert all(a.startswith("s3://") for a in (args[args.index(flag) + 1] for flag in ("--model-dir", "--data-dir")))
    staging = f"s3://{live_services.bucket}/staging/run-abc-1/sft"
    assert storage.read_manifest(f"{staging}/out")
    assert "history" in metrics and metrics["history"]
    before, after = load_file(str(tiny_model_dir / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert any(not (before[name] == after[name]).all() for name in before)


def test_one_node_placement_needs_no_image():
    assert Placement().nodes == 1
    with pytest.raises(ValueError, match="train_nodes=0"):
        Placement(nodes=0)
    with pytest.raises(ValueError, match="training image"):
        Placement(nodes=2)
