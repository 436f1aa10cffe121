"""The committed compiled pipeline is not stale, and it carries the cluster settings: GPU requests,
accelerator type, node selector and tolerations as parameters, secrets by name, caching off for
training and evaluation, the register step under the evaluation condition.
Run: pytest tests/pipelines/test_compiled.py -q   (regenerate with `make compile`)
"""

import yaml

from pipelines.cli import COMPILED, compile_pipeline


def _documents(path):
    return list(yaml.safe_load_all(path.read_text()))


def test_committed_yaml_is_up_to_date(tmp_path):
    fresh = compile_pipeline(tmp_path / "fresh.yaml")
    assert COMPILED.exists(), "pipelines/compiled/cocos_pipeline.yaml is missing: run `make compile`"
    assert fresh.read_text() == COMPILED.read_text(), "compiled pipeline is stale: run `make compile` and commit"


def test_training_tasks_request_gpus_with_parameters():
    spec, platform = _documents(COMPILED)
    executors = spec["deploymentSpec"]["executors"]
    for name in ("exec-boost-sft-op", "exec-cocos-rloo-op"):
        resources = executors[name]["container"]["resources"]
        accelerator = resources["accelerator"]["resourceType"]
        assert accelerator == "{{$.inputs.parameters['pipelinechannel--train_accelerator']}}"
        assert "train_gpus" in str(resources["accelerator"]["resourceCount"])
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    rloo = k8s["exec-cocos-rloo-op"]
    assert "train_node_selector" in str(rloo["nodeSelector"])
    assert "train_tolerations" in str(rloo["tolerations"])
    secrets = {s["secretNameParameter"]["componentInputParameter"] for s in rloo["secretAsEnv"]}
    assert secrets == {"s3_secret", "mlflow_secret"}  # secret names are pipeline parameters
    env = {pair["envVar"] for s in rloo["secretAsEnv"] for pair in s["keyToEnv"]}
    assert env == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "MLFLOW_TRACKING_URI"}


def test_caching_is_off_for_training_and_evaluation():
    spec, _ = _documents(COMPILED)
    tasks = spec["root"]["dag"]["tasks"]
    for name in ("boost-sft-op", "cocos-rloo-op", "evaluate-op"):
        assert tasks[name]["cachingOptions"] == {} or tasks[name]["cachingOptions"].get("enableCache") is not True


def test_register_runs_only_after_a_clean_evaluation():
    spec, _ = _documents(COMPILED)
    condition = spec["root"]["dag"]["tasks"]["condition-1"]
    assert "evaluate-op" in condition["dependentTasks"]
    assert "pipelinechannel--evaluate-op-Output" in condition["triggerPolicy"]["condition"]


def test_parameters_are_stage_prefixed():
    spec, _ = _documents(COMPILED)
    names = set(spec["root"]["inputDefinitions"]["parameters"])
    prefixes = ("data_", "sft_", "rloo_", "eval_", "register_", "train_", "sandbox_", "mlflow_", "model_", "s3_")
    assert all(name.startswith(prefixes) for name in names), sorted(n for n in names if not n.startswith(prefixes))
