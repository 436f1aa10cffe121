"""Every component is a thin shim: each stage-prefixed parameter maps onto a field of that stage's
config, and every component compiles on its own. Run: pytest tests/components -q
"""

import dataclasses
import inspect

import pytest

from cocos.config import EvalConfig, PromotionConfig, RLOOConfig, SFTConfig
from cocos.data import DataConfig
from components.boost_sft import boost_sft_op
from components.cocos_rloo import cocos_rloo_op
from components.evaluate import evaluate_op
from components.prepare_data import prepare_data_op
from components.register_model import register_model_op
from components.validate_parameters import validate_parameters_op

PREFIXES = {
    "data_": DataConfig,
    "sft_": SFTConfig,
    "rloo_": RLOOConfig,
    "eval_": EvalConfig,
    "register_": PromotionConfig,
}
# Parameters that are not config fields, and why.
NOT_CONFIG = {
    "rloo_checkpoint_uri": "where checkpoints go, with the run id appended: a location, not a training setting",
    "register_model_name": "PromotionConfig.model_name",
    "register_acc_t2_margin": "PromotionConfig.acc_t2_margin",
    "register_c2i_ceiling": "PromotionConfig.c2i_ceiling",
}
STAGES = [prepare_data_op, boost_sft_op, cocos_rloo_op, evaluate_op, register_model_op]
COMPONENTS = [validate_parameters_op, *STAGES]


def _inputs(component):
    return list(component.component_spec.inputs or {})


@pytest.mark.parametrize("component", COMPONENTS, ids=lambda c: c.name)
def test_prefixed_parameters_map_onto_config_fields(component):
    for name in _inputs(component):
        for prefix, config in PREFIXES.items():
            if name.startswith(prefix):
                field = name.removeprefix(prefix)
                fields = {f.name for f in dataclasses.fields(config)}
                if name in NOT_CONFIG:
                    target = NOT_CONFIG[name]
                    if target.startswith("PromotionConfig."):
                        assert target.split(".", 1)[1] in fields
                    continue
                assert field in fields, f"{component.name}: {name} has no field {field!r} in {config.__name__}"


@pytest.mark.parametrize("component", COMPONENTS, ids=lambda c: c.name)
def test_component_body_is_a_shim(component):
    source = inspect.getsource(component.python_func)
    body = source.split('"""', 2)[-1]
    logic_lines = [line for line in body.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert len(logic_lines) <= 30, f"{component.name}: move logic into cocos/ ({len(logic_lines)} lines)"
    assert "from cocos." in body


def test_every_stage_reports_to_one_pipeline_run():
    for component in STAGES:
        assert {"mlflow_experiment", "pipeline_run_id"} <= set(_inputs(component)), component.name
