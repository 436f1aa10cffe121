"""The validation task that runs before any GPU task: all problems reported at once, each naming its
parameter; a good configuration against the live services passes. Run: pytest tests/cocos/test_preflight.py -q
"""

import inspect

import pytest

from cocos.preflight import PreflightError, check, data_config, run_preflight
from pipelines.cli import DEMO_PARAMETERS
from pipelines.cocos_pipeline import cocos_pipeline


def pipeline_defaults(**overrides):
    params = {n: p.default for n, p in inspect.signature(cocos_pipeline.pipeline_func).parameters.items()}
    return {**params, **DEMO_PARAMETERS, **overrides}


def test_every_problem_is_listed_with_its_parameter(monkeypatch, tmp_path):
    for name in ("MLFLOW_TRACKING_URI", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    params = pipeline_defaults(
        rloo_group_size=1,
        data_train_source="imagenet",
        sft_learning_rate=0.0,
        train_gpus=3,
        rloo_prompts_per_step=4,
        model_reference=str(tmp_path / "missing-model"),
    )
    problems = check(params)
    text = "\n".join(problems)
    assert "group_size=1" in text
    assert "train_source='imagenet'" in text
    assert "learning_rate=0.0" in text
    assert "environment lacks MLFLOW_TRACKING_URI" in text
    assert "missing-model" in text
    with pytest.raises(PreflightError, match="cannot start"):
        run_preflight(params)


def test_prompts_must_split_over_gpus(monkeypatch):
    problems = check(pipeline_defaults(train_gpus=3, rloo_prompts_per_step=4), reach_services=False)
    assert any("train_nodes=3" in p for p in problems)


def test_data_parameters_use_empty_for_unset():
    config = data_config(pipeline_defaults(data_train_path="", data_eval_limit=0, data_eval_sources="humaneval, mbpp"))
    assert config.train_path is None and config.eval_limit is None
    assert config.eval_sources == ("humaneval", "mbpp")


@pytest.mark.slow
def test_a_good_run_passes_against_live_services(live_services):
    params = pipeline_defaults(rloo_checkpoint_uri=f"s3://{live_services.bucket}/checkpoints")
    assert check(params) == []


@pytest.mark.slow
def test_unreachable_sandbox_is_reported(live_services):
    params = pipeline_defaults(sandbox_url="http://127.0.0.1:9", rloo_checkpoint_uri="")
    assert any("sandbox_url" in p and "not reachable" in p for p in check(params))
