"""One frozen config per training and evaluation stage. `__post_init__` says the rule, why, and the fix.

Defaults are the paper's (method.md sections 5-6); small runs override them from the pipeline.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cocos.rewards import SCORE_MODES

log = logging.getLogger(__name__)

ROLLOUT_MODES = ("independent", "shared_turn1")
TURN1_SOURCES = ("policy", "initial")
METHODS = ("cocos", "cocos_binary", "turn_rl", "score_stage1")


class ConfigError(ValueError):
    """A parameter that breaks a rule; the message names it."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def from_dict(cls: type, values: dict[str, Any]) -> Any:
    """Build a config from a dict, refusing unknown keys (a typo must not be silently ignored)."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"{cls.__name__}: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return cls(**values)


@dataclass(frozen=True)
class SFTConfig:
    """Boost SFT on two-turn examples (method.md section 6)."""

    learning_rate: float = 2e-5
    weight_decay: float = 0.1
    max_steps: int = 1000
    per_device_batch_size: int = 8
    gradient_accumulation_steps: int = 32  # 8 x 32 = global batch 256 on one device
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.0
    max_length: int = 1024
    seed: int = 0
    bf16: bool = False
    deepspeed_config: str = ""  # path to a DeepSpeed JSON (configs in cocos/train/deepspeed/)
    logging_steps: int = 10
    max_eval_examples: int = 512  # boost-validation examples scored for the eval loss (0: none)
    gradient_checkpointing: bool = False  # TRL turns it on by default; it costs ~30% more compute

    def __post_init__(self) -> None:
        _require(self.max_eval_examples >= 0, f"sft max_eval_examples={self.max_eval_examples} must be >= 0")
        _require(self.learning_rate > 0, f"sft learning_rate={self.learning_rate} must be > 0 (paper: 2e-5)")
        _require(self.weight_decay >= 0, f"sft weight_decay={self.weight_decay} must be >= 0 (paper: 0.1)")
        _require(self.max_steps >= 1, f"sft max_steps={self.max_steps} must be >= 1; set it to train at all")
        _require(
            self.per_device_batch_size >= 1, f"sft per_device_batch_size={self.per_device_batch_size} must be >= 1"
        )
        _require(
            self.gradient_accumulation_steps >= 1,
            f"sft gradient_accumulation_steps={self.gradient_accumulation_steps} must be >= 1",
        )
        _require(self.max_length >= 64, f"sft max_length={self.max_length} is too short for a prompt and its code")


@dataclass(frozen=True)
class RLOOConfig:
    """CoCoS online RLOO (method.md sections 4-5) and the baselines of section 8 as presets."""

    turns: int = 2
    group_size: int = 2  # k samples per prompt
    gamma: float = 0.5
    score_mode: str = "ratio"
    kl_beta: float = 0.01
    turn1_kl_beta: float = 0.0  # SCoRe stage I constrains turn 1 with 0.25
    clip_epsilon: float = 0.2
    learning_rate: float = 1e-5
    weight_decay: float = 0.0
    lr_scheduler: str = "cosine"
    steps: int = 1500
    prompts_per_step: int = 64
    micro_batch_size: int = 8  # sequences per forward/backward; gradients accumulate over the step
    temperature: float = 0.9
    max_new_tokens: int = 512
    stop_at_done: bool = True  # stop generation at [DONE]; False reproduces the reference code's fixed length
    rollout_mode: str = "independent"
    turn1_source: str = "policy"  # "initial": turn 1 pre-sampled once from the starting model (Turn-RL)
    instruction: str = ""  # empty: the fixed correction instruction of method.md
    test_timeout_s: float = 3.0
    sandbox_url: str = ""  # empty: the local fork server; else the HTTP sandbox service
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    log_rollouts_every: int = 10
    seed: int = 0
    bf16: bool = False
    method: str = "cocos"
    # DeepSpeed JSON (cocos.train.distributed.deepspeed_config_path(2 or 3)); empty: gradients are averaged
    # across ranks by an all-reduce (DDP-style), or not at all in a single process.
    deepspeed_config: str = ""

    def __post_init__(self) -> None:
        _require(
            self.group_size >= 2,
            f"rloo group_size={self.group_size}: RLOO's baseline is the mean of the other samples, "
            "so a prompt needs at least 2 samples; set group_size >= 2 (paper: 2)",
        )
        _require(2 <= self.turns <= 5, f"rloo turns={self.turns} must be in 2..5: self-correction needs a second turn")
        _require(
            self.score_mode in SCORE_MODES,
            f"rloo score_mode={self.score_mode!r} must be one of {', '.join(SCORE_MODES)}",
        )
        _require(
            self.rollout_mode in ROLLOUT_MODES,
            f"rloo rollout_mode={self.rollout_mode!r} must be one of {', '.join(ROLLOUT_MODES)}",
        )
        _require(
            self.turn1_source in TURN1_SOURCES,
            f"rloo turn1_source={self.turn1_source!r} must be one of {', '.join(TURN1_SOURCES)}",
        )
        _require(
            not (self.turn1_source == "initial" and self.rollout_mode == "independent"),
            "rloo turn1_source='initial' fixes turn 1, so it needs rollout_mode='shared_turn1' (Turn-RL)",
        )
        _require(self.method in METHODS, f"rloo method={self.method!r} must be one of {', '.join(METHODS)}")
        _require(-1.0 <= self.gamma <= 1.0, f"rloo gamma={self.gamma} must be in [-1, 1] (paper ablates -1, 0, 0.5, 1)")
        _require(self.kl_beta >= 0 and self.turn1_kl_beta >= 0, "rloo kl_beta and turn1_kl_beta must be >= 0")
        _require(0 < self.clip_epsilon < 1, f"rloo clip_epsilon={self.clip_epsilon} must be in (0, 1) (paper: 0.2)")
        _require(self.learning_rate > 0, f"rloo learning_rate={self.learning_rate} must be > 0 (paper: 1e-5)")
        _require(self.steps >= 1, f"rloo steps={self.steps} must be >= 1")
        _require(self.prompts_per_step >= 1, f"rloo prompts_per_step={self.prompts_per_step} must be >= 1")
        _require(self.micro_batch_size >= 1, f"rloo micro_batch_size={self.micro_batch_size} must be >= 1")
        _require(self.temperature > 0, f"rloo temperature={self.temperature} must be > 0 for sampling (paper: 0.9)")
        _require(self.max_new_tokens >= 1, f"rloo max_new_tokens={self.max_new_tokens} must be >= 1")
        _require(self.test_timeout_s > 0, f"rloo test_timeout_s={self.test_timeout_s} must be > 0")
        _require(self.checkpoint_every >= 1, f"rloo checkpoint_every={self.checkpoint_every} must be >= 1")
        _require(
            not self.deepspeed_config or self.deepspeed_config.endswith(".json"),
            f"rloo deepspeed_config={self.deepspeed_config!r} must be a DeepSpeed JSON file path (or empty for "
            "none); the packaged ones come from cocos.train.distributed.deepspeed_config_path(2 or 3)",
        )

    @classmethod
    def preset(cls, method: str, **overrides: Any) -> RLOOConfig:
        """The paper's method and baselines (method.md section 8) as configurations of one trainer."""
        return cls(**{**_preset(method), "method": method, **overrides})

    @classmethod
    def for_pipeline(cls, values: Mapping[str, Any]) -> RLOOConfig:
        """Pipeline parameters on top of a preset; the fields that define the method keep the preset's values.

        A pipeline passes every rloo_* parameter, so `rloo_method=turn_rl` with the default
        `rloo_rollout_mode=independent` must still give Turn-RL (shared turn 1).
        """
        method = str(values.get("method", "cocos"))
        defining = _preset(method)
        for key, value in defining.items():
            if key in values and values[key] != value:
                log.warning("rloo method %s sets %s=%r; ignoring %r", method, key, value, values[key])
        return cls(**{**values, **defining, "method": method})


def _preset(method: str) -> dict[str, Any]:
    presets: dict[str, dict[str, Any]] = {
        "cocos": {},
        "cocos_binary": {"score_mode": "binary"},
        # Turn-RL: first response pre-sampled from the starting model, turn 2 optimised.
        "turn_rl": {"rollout_mode": "shared_turn1", "turn1_source": "initial"},
        # SCoRe stage I: binary turn-2 reward only, turn-2 KL 0.01 and a turn-1 KL of 0.25.
        "score_stage1": {"score_mode": "binary", "gamma": 1.0, "turn1_kl_beta": 0.25, "kl_beta": 0.01},
    }
    if method not in presets:
        raise ConfigError(f"rloo method={method!r} must be one of {', '.join(presets)}")
    return presets[method]


def prefixed(params: Mapping[str, Any], prefix: str, cls: type) -> dict[str, Any]:
    """The `prefix + field` entries of `params` that name fields of `cls`, keyed by field.

    Components pass `locals()`: `SFTConfig(**prefixed(locals(), "sft_", SFTConfig))`.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    return {
        key[len(prefix) :]: value
        for key, value in params.items()
        if key.startswith(prefix) and key[len(prefix) :] in names
    }


@dataclass(frozen=True)
class EvalConfig:
    """Greedy multi-turn evaluation (method.md section 7)."""

    turns: int = 2
    max_new_tokens: int = 512
    batch_size: int = 8
    test_timeout_s: float = 3.0
    rephrasings: int = 0  # also evaluate with the first N of the project's five rephrased instructions
    instructions: tuple[str, ...] = field(default_factory=tuple)  # or give the extra instructions directly
    sandbox_url: str = ""
    stop_at_done: bool = True

    def __post_init__(self) -> None:
        from cocos.prompts import INSTRUCTION_REPHRASINGS

        _require(1 <= self.turns <= 5, f"eval turns={self.turns} must be in 1..5")
        _require(
            0 <= self.rephrasings <= len(INSTRUCTION_REPHRASINGS),
            f"eval rephrasings={self.rephrasings} must be in 0..{len(INSTRUCTION_REPHRASINGS)}",
        )
        if self.rephrasings and not self.instructions:
            object.__setattr__(self, "instructions", INSTRUCTION_REPHRASINGS[: self.rephrasings])
        _require(self.max_new_tokens >= 1, f"eval max_new_tokens={self.max_new_tokens} must be >= 1")
        _require(self.batch_size >= 1, f"eval batch_size={self.batch_size} must be >= 1")
        object.__setattr__(self, "instructions", tuple(self.instructions))


@dataclass(frozen=True)
class PromotionConfig:
    """When a trained model may take the registry's `champion` alias."""

    model_name: str = "cocos-self-correct"
    acc_t2_margin: float = 0.0
    c2i_ceiling: float = 1.0

    def __post_init__(self) -> None:
        _require(bool(self.model_name.strip()), "register model_name is empty: the registry needs a name")
        _require(
            0.0 <= self.c2i_ceiling <= 1.0, f"register c2i_ceiling={self.c2i_ceiling} must be a fraction in [0, 1]"
        )
