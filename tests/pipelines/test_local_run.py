"""End to end: the whole DAG through kfp's local SubprocessRunner, with the tiny model, against real
SeaweedFS and MLflow server processes. Asserts the MLflow runs (params, metrics), the checkpoint objects
and their manifest in the bucket, a registered version with aliases, and the metrics table.
Run: pytest tests/pipelines/test_local_run.py -q   (about 2 minutes on 2 cores)
"""

import json
import uuid

import pytest

from cocos import storage, tracking

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

TINY_PARAMETERS = {
    "model_reference": "tiny:0",
    "data_train_source": "synthetic",
    "data_eval_sources": "synthetic,humaneval",
    "data_eval_limit": 3,
    "data_synthetic_train": 8,
    "data_synthetic_test": 3,
    "sft_max_steps": 2,
    "sft_per_device_batch_size": 2,
    "sft_gradient_accumulation_steps": 1,
    "sft_max_length": 512,
    "sft_bf16": False,
    "rloo_steps": 2,
    "rloo_prompts_per_step": 2,
    "rloo_max_new_tokens": 16,
    "rloo_checkpoint_every": 1,
    "eval_max_new_tokens": 16,
    "register_c2i_ceiling": 1.0,
    "train_gpus": 1,
}


@pytest.fixture(scope="module")
def pipeline_run(live_services, tmp_path_factory):
    from pipelines.cli import run_local

    experiment = f"e2e-{uuid.uuid4().hex[:8]}"
    bucket = live_services.bucket
    parameters = {
        **TINY_PARAMETERS,
        "mlflow_experiment": experiment,
        "rloo_checkpoint_uri": f"s3://{bucket}/e2e-checkpoints",
        "register_model_name": f"cocos-e2e-{uuid.uuid4().hex[:6]}",
    }
    root = tmp_path_factory.mktemp("kfp-local")
    run_local(parameters, root)
    tracking.configure(live_services.tracking_uri)
    return {"experiment": experiment, "parameters": parameters, "root": root, "bucket": bucket}


def _s3_location(source: str) -> str:
    """MLflow stores a dataset source as JSON ({"uri": ...} or {"url": ...}); return its s3:// location."""
    values = json.loads(source).values() if source.startswith("{") else [source]
    return next(v for v in values if isinstance(v, str) and v.startswith("s3://"))


def _runs(experiment):
    import mlflow

    return mlflow.search_runs(experiment_names=[experiment], output_format="list")


def test_one_parent_run_with_a_child_per_stage(pipeline_run):
    runs = _runs(pipeline_run["experiment"])
    parents = [r for r in runs if r.data.tags.get("cocos.stage") == "pipeline"]
    assert len(parents) == 1
    children = {
        r.data.tags["cocos.stage"]: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id
    }
    assert set(children) == {"prepare_data", "boost_sft", "cocos_rloo", "evaluate", "register"}
    rloo = children["cocos_rloo"]
    assert rloo.data.params["rloo.gamma"] == "0.5" and rloo.data.params["rloo.group_size"] == "2"
    assert {"rollout/reward_mean", "rollout/kl", "train/loss", "rollout/generated_tokens"} <= set(rloo.data.metrics)
    assert "sft.learning_rate" in children["boost_sft"].data.params
    evaluate = children["evaluate"]
    for key in ("acc_t1", "acc_t2", "i2c_t1_t2", "c2i_t1_t2", "delta_t1_t2"):
        assert f"eval/humaneval/{key}" in evaluate.data.metrics
    inputs = children["prepare_data"].inputs.dataset_inputs
    assert {d.dataset.name for d in inputs} >= {"train", "test_humaneval", "boost_train"}
    # the splits are kept in S3 under their content hash, complete with a manifest
    sources = {_s3_location(d.dataset.source) for d in inputs}
    stored = {source.rsplit("/", 1)[0] for source in sources}
    assert len(stored) == 1 and storage.read_manifest(stored.pop())


def test_checkpoints_and_manifest_in_the_bucket(pipeline_run):
    parents = [r for r in _runs(pipeline_run["experiment"]) if r.data.tags.get("cocos.stage") == "pipeline"]
    run_id = parents[0].data.tags["cocos.pipeline_run_id"]
    prefix = f"s3://{pipeline_run['bucket']}/e2e-checkpoints/{run_id}"
    complete = storage.list_complete(prefix)
    assert [uri.rstrip("/").rsplit("/", 1)[-1] for uri in complete] == ["step-000001", "step-000002"]
    manifest = storage.read_manifest(complete[-1])
    names = {entry if isinstance(entry, str) else entry.get("path", "") for entry in manifest["files"]}
    assert any(name.endswith("optimizer.pt") for name in names)
    assert any(name.endswith("model.safetensors") for name in names)


def test_registered_version_with_aliases_and_lineage(pipeline_run):
    name = pipeline_run["parameters"]["register_model_name"]
    version = tracking.get_alias_version(name, "challenger")
    assert version == "1"
    assert tracking.get_alias_version(name, "champion") == "1"  # first model, within the c2i ceiling
    import mlflow

    tags = mlflow.MlflowClient().get_model_version(name, version).tags
    assert tags["cocos.checkpoint_uri"].startswith(f"s3://{pipeline_run['bucket']}/e2e-checkpoints/")
    assert "train" in json.loads(tags["cocos.dataset_sha256"])
    assert tags["cocos.code_version"]


def test_metrics_table(pipeline_run):
    summaries = list(pipeline_run["root"].glob("**/summary.json"))
    assert len(summaries) == 1
    summary = json.loads(summaries[0].read_text())
    header = summary["table"].splitlines()[0]
    for column in ("Acc@t1", "Acc@t2", "D_i->c", "D_c->i", "Delta"):
        assert column in header
    assert set(summary["metrics"]) == {"synthetic", "humaneval"}
    assert summary["sandbox_errors"] == 0


def test_promotion_across_runs_and_rollback(pipeline_run, tmp_path):
    """Run 1 became champion (above). Run 2 is not better by the required margin: it stays challenger.
    Run 3 is promoted; a rollback then restores run 1's version. The tiny models score alike, so "worse"
    here is "not better by register_acc_t2_margin", which is exactly what the gate checks."""
    import mlflow

    from cocos.models import resolve_model
    from pipelines.cli import run_local

    name = pipeline_run["parameters"]["register_model_name"]
    run_local({**pipeline_run["parameters"], "register_acc_t2_margin": 0.01}, tmp_path / "second")
    assert tracking.get_alias_version(name, "challenger") == "2"
    assert tracking.get_alias_version(name, "champion") == "1"
    client = mlflow.MlflowClient()
    assert client.get_model_version(name, "2").tags["cocos.promotion.decision"] == "rejected"

    run_local(pipeline_run["parameters"], tmp_path / "third")
    assert tracking.get_alias_version(name, "champion") == "3"
    assert tracking.rollback(name) == "1"
    assert tracking.get_alias_version(name, "champion") == "1"
    for version in ("1", "2", "3"):
        tags = client.get_model_version(name, version).tags
        assert {"cocos.checkpoint_uri", "cocos.dataset_sha256", "cocos.code_version", "cocos.pipeline_run_id"} <= set(
            tags
        )
        assert tags["cocos.sandbox_image"]

    # the registered champion loads back by alias
    folder = resolve_model(f"models:/{name}@champion", cache_dir=tmp_path / "cache")
    assert (folder / "config.json").exists()
