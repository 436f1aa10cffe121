"""`prepare(config, out_dir)`: load, convert, validate, decontaminate, write; manifest.json last.

Outputs in `out_dir`: train.jsonl, validation.jsonl, test_<source>.jsonl per eval set,
boost_train.jsonl, boost_validation.jsonl (SFT prompt/completion examples) and manifest.json with
counts, sha256 hashes and reports. Every file is written atomically; any old manifest is removed
first, so a manifest is present only when all files of this run are complete.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cocos.data import kodcode, synthetic
from cocos.data.config import DataConfig
from cocos.data.decontaminate import decontaminate
from cocos.data.io import atomic_write_bytes, write_jsonl, write_split
from cocos.data.load import load_problems, load_records
from cocos.data.validate import Executor, validate
from cocos.records import Problem

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class PreparedData:
    out_dir: str
    files: dict[str, str] = field(default_factory=dict)  # name -> path
    hashes: dict[str, str] = field(default_factory=dict)  # name -> sha256
    counts: dict[str, int] = field(default_factory=dict)
    manifest: str = ""


def _load(config: DataConfig, source: str, split: str, path: str | None) -> list[Problem]:
    if source == "synthetic" and path is None:
        sizes = {
            "train": config.synthetic_train,
            "validation": config.synthetic_validation,
            "test": config.synthetic_test,
        }
        return synthetic.splits(config.seed, **sizes)[split]
    return load_problems(source, split, path, seed=config.seed)


def _boost(config: DataConfig, exclude: set[str]) -> dict[str, list[dict[str, Any]]]:
    if config.boost_source == "synthetic":
        parts = synthetic.splits(
            config.seed, config.synthetic_train, config.synthetic_validation, config.synthetic_test
        )
        return {split: synthetic_examples(parts[split], config.seed, exclude) for split in ("train", "validation")}
    records, _ = load_records("kodcode", "train", config.boost_path)
    out = {}
    for split in ("train", "validation"):
        examples = kodcode.boost_examples(records, config.seed, split=split)
        out[split] = [e for e in examples if e["task_id"] not in exclude]
    return out


def synthetic_examples(problems: list[Problem], seed: int, exclude: set[str]) -> list[dict[str, Any]]:
    return synthetic.synthetic_boost_examples([p for p in problems if p.task_id not in exclude], seed)


def prepare(config: DataConfig, out_dir: str | Path, executor: Executor | None = None) -> PreparedData:
    """Run the data stage; `executor` defaults to the sandbox's execute_many."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)

    evals: dict[str, list[Problem]] = {}
    reports: dict[str, Any] = {}
    for source in config.eval_sources:
        problems = _load(config, source, "test", config.eval_path(source))[: config.eval_limit]
        report = validate(problems, config.max_drop_share, executor)
        evals[source], reports[f"validation/test_{source}"] = list(report.problems), report.to_dict()

    splits: dict[str, list[Problem]] = {}
    for split in ("train", "validation"):
        problems = _load(config, config.train_source, split, config.train_path)
        if split == "train":
            problems = problems[: config.train_limit]
        report = validate(problems, config.max_drop_share, executor)
        reports[f"validation/{split}"] = report.to_dict()
        # Splits of one source are disjoint by construction (MBPP task ids, synthetic template parameters);
        # there, 13-gram hits are shared idioms (48 of MBPP's 374 train items), not leaks. So the check
        # runs against the other sources' eval sets only.
        against = {k: v for k, v in evals.items() if k != config.train_source}
        kept, decon = decontaminate(list(report.problems), against, config.decontamination_n)
        reports[f"decontamination/{split}"] = decon.to_dict()
        splits[split] = kept

    # Boost examples whose problem is an eval problem (same id) would leak the answers.
    eval_ids = {p.task_id for problems in evals.values() for p in problems}
    boost = _boost(config, eval_ids)

    files: dict[str, str] = {}
    hashes: dict[str, str] = {}
    counts: dict[str, int] = {}
    for name, problems in [*splits.items(), *((f"test_{s}", p) for s, p in evals.items())]:
        files[name] = str(out / f"{name}.jsonl")
        hashes[name] = write_split(problems, files[name])
        counts[name] = len(problems)
    for split, examples in boost.items():
        name = f"boost_{split}"
        files[name] = str(out / f"{name}.jsonl")
        hashes[name] = write_jsonl(examples, files[name])
        counts[name] = len(examples)

    manifest = {
        "config": config.to_dict(),
        "files": {name: Path(path).name for name, path in files.items()},
        "counts": counts,
        "sha256": hashes,
        "reports": reports,
    }
    manifest_path = out / MANIFEST
    atomic_write_bytes((json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8"), manifest_path)
    log.info("prepared data in %s: %s", out, counts)
    return PreparedData(out_dir=str(out), files=files, hashes=hashes, counts=counts, manifest=str(manifest_path))
