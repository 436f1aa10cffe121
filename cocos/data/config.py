"""`DataConfig`: what `prepare` loads, validates, decontaminates and writes. Frozen, checked on creation."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from cocos.records import SOURCES

TRAIN_SOURCES = ("mbpp", "synthetic")
EVAL_SOURCES = ("mbpp", "humaneval", "odex", "synthetic")
BOOST_SOURCES = ("synthetic", "kodcode")


@dataclass(frozen=True)
class DataConfig:
    """Data stage settings. `eval_paths` is empty or one path (or None) per entry of `eval_sources`."""

    train_source: str = "mbpp"
    train_path: str | None = None
    eval_sources: tuple[str, ...] = ("mbpp", "humaneval")
    eval_paths: tuple[str | None, ...] = ()
    boost_source: str = "synthetic"
    boost_path: str | None = None
    synthetic_train: int = 200
    synthetic_validation: int = 40
    synthetic_test: int = 40
    seed: int = 0
    max_drop_share: float = 0.05
    eval_limit: int | None = None
    train_limit: int | None = None
    decontamination_n: int = 13

    def __post_init__(self) -> None:
        object.__setattr__(self, "eval_sources", tuple(self.eval_sources))
        object.__setattr__(self, "eval_paths", tuple(self.eval_paths))
        if self.train_source not in TRAIN_SOURCES:
            raise ValueError(
                f"train_source={self.train_source!r}: must be one of {', '.join(TRAIN_SOURCES)}, the sources "
                f"with a train split (known datasets: {', '.join(SOURCES)}). Fix: pick one of those."
            )
        if not self.eval_sources:
            raise ValueError(
                "eval_sources is empty: at least one evaluation set is needed to report results "
                f"and to decontaminate against. Fix: e.g. ('mbpp',); allowed: {', '.join(EVAL_SOURCES)}"
            )
        for name in self.eval_sources:
            if name not in EVAL_SOURCES:
                raise ValueError(
                    f"eval_sources contains {name!r}: each must be one of {', '.join(EVAL_SOURCES)}, "
                    "the sources with a test split. Fix: remove or rename it."
                )
        if len(set(self.eval_sources)) != len(self.eval_sources):
            raise ValueError(
                f"eval_sources={self.eval_sources}: has duplicates, each set is written once by name. "
                "Fix: list each source once."
            )
        if self.eval_paths and len(self.eval_paths) != len(self.eval_sources):
            raise ValueError(
                f"eval_paths has {len(self.eval_paths)} entries for {len(self.eval_sources)} eval_sources: they "
                "pair up by position. Fix: give one path (or None) per source, or leave eval_paths empty."
            )
        if self.boost_source not in BOOST_SOURCES:
            raise ValueError(
                f"boost_source={self.boost_source!r}: must be one of {', '.join(BOOST_SOURCES)}, "
                "the sources with wrong first attempts for two-turn examples. Fix: pick one."
            )
        for name in ("synthetic_train", "synthetic_validation", "synthetic_test"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"{name}={getattr(self, name)}: must be at least 1, every split is written. "
                    "Fix: use a positive size."
                )
        if not 0.0 <= self.max_drop_share <= 1.0:
            raise ValueError(
                f"max_drop_share={self.max_drop_share}: must be a share in [0, 1] of problems that "
                "may fail their own tests. Fix: e.g. 0.05."
            )
        for name in ("eval_limit", "train_limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(
                    f"{name}={value}: must be None (no cap) or a positive count; a cap of 0 leaves "
                    "nothing to train or evaluate. Fix: None or a positive int."
                )
        if self.decontamination_n < 1:
            raise ValueError(
                f"decontamination_n={self.decontamination_n}: the n-gram length must be at least 1. "
                "Fix: the default 13."
            )

    def eval_path(self, source: str) -> str | None:
        return self.eval_paths[self.eval_sources.index(source)] if self.eval_paths else None

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["eval_sources"] = list(self.eval_sources)
        record["eval_paths"] = list(self.eval_paths)
        return record
