"""Stage configs refuse bad values with a message that names the parameter and the fix.
Run: pytest tests/cocos/test_config.py -q
"""

import pytest

from cocos.config import ConfigError, EvalConfig, PromotionConfig, RLOOConfig, SFTConfig, from_dict, prefixed
from cocos.data import DataConfig


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: RLOOConfig(group_size=1), "group_size=1.*at least 2"),
        (lambda: RLOOConfig(score_mode="pass"), "score_mode='pass'"),
        (lambda: RLOOConfig(gamma=2.0), "gamma=2.0"),
        (lambda: RLOOConfig(turns=1), "turns=1"),
        (lambda: RLOOConfig(turn1_source="initial"), "shared_turn1"),
        (lambda: SFTConfig(max_steps=0), "max_steps=0"),
        (lambda: EvalConfig(rephrasings=6), "rephrasings=6"),
        (lambda: PromotionConfig(c2i_ceiling=2.0), "c2i_ceiling=2.0"),
        (lambda: from_dict(SFTConfig, {"learning_rat": 1e-5}), "unknown parameter.*learning_rat"),
    ],
)
def test_bad_values_name_the_parameter(build, message):
    with pytest.raises(ConfigError, match=message):
        build()


def test_unknown_dataset_name_is_named():
    with pytest.raises(ValueError, match="train_source='mbbp'"):
        DataConfig(train_source="mbbp")


def test_method_presets_win_over_generic_parameters():
    config = RLOOConfig.for_pipeline({"method": "turn_rl", "rollout_mode": "independent", "steps": 3})
    assert (config.rollout_mode, config.turn1_source, config.steps) == ("shared_turn1", "initial", 3)
    assert RLOOConfig.for_pipeline({"method": "score_stage1"}).turn1_kl_beta == 0.25


def test_prefixed_picks_only_fields():
    assert prefixed({"sft_learning_rate": 1.0, "sft_nope": 2, "rloo_steps": 3}, "sft_", SFTConfig) == {
        "learning_rate": 1.0
    }


def test_eval_rephrasings_select_the_project_instructions():
    from cocos.prompts import INSTRUCTION_REPHRASINGS

    assert EvalConfig(rephrasings=2).instructions == INSTRUCTION_REPHRASINGS[:2]
