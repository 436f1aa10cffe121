"""The only MLflow code: runs per pipeline stage, datasets, and the model registry gate.

Runs. Each kfp component is its own process, so the parent run of a pipeline run is found by tag
(`cocos.pipeline_run_id`) or created: `parent_run` is find-or-create, and when two processes race, both
keep the oldest run and the loser deletes its own. Each stage opens a child run (`stage_run`) named by
its stage, tagged `mlflow.parentRunId` and `cocos.stage`, with the stage config logged as flat params.

Registry. `register_model` logs a Hugging Face folder as plain run artifacts (under `model/`, or
`model-<n>/` if that is taken, so a version's files are never overwritten), registers a new version
and points the `challenger` alias at it. Evaluation numbers live on the version as tags
`metric.<dataset>.<key>`, so `promote` compares a candidate with the `champion` without re-evaluating:
the champion moves only if on every dataset `acc_t2 >= champion acc_t2 + margin` and `c2i <= ceiling`
(with no champion, only the ceiling applies). The decision and its numbers are written as version tags
and a second call returns the recorded decision. `rollback` moves `champion` back along the history
kept in the registered model tag `cocos.champion_history`. Aliases only; stages are deprecated.

The tracking server comes from `configure(uri)` or `$MLFLOW_TRACKING_URI` (`cocos.services.client_env`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.http_dataset_source import HTTPDatasetSource
from mlflow.data.meta_dataset import MetaDataset
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

PIPELINE_TAG = "cocos.pipeline_run_id"
STAGE_TAG = "cocos.stage"
PARENT_TAG = "mlflow.parentRunId"
HISTORY_TAG = "cocos.champion_history"
DECISION_TAG = "cocos.promotion.decision"
DECISION_JSON_TAG = "cocos.promotion.json"
CHAMPION = "champion"
CHALLENGER = "challenger"
MAX_PARAM_LEN = 6000  # mlflow.utils.validation.MAX_PARAM_VAL_LENGTH
MAX_PARAMS_PER_BATCH = 100
MAX_DIGEST_LEN = 36  # the dataset digest column is String(36)
PARENT_SETTLE_S = 0.5


class TrackingError(RuntimeError):
    """A tracking or registry request that cannot be done as asked; the message says the fix."""


def configure(tracking_uri: str | None = None) -> str:
    """Point MLflow (tracking and registry) at `tracking_uri` or `$MLFLOW_TRACKING_URI`; returns the URI."""
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise TrackingError(
            "tracking_uri is not given and MLFLOW_TRACKING_URI is unset; run `cocos services up` and use "
            "cocos.services.client_env(), or pass tracking_uri='http://127.0.0.1:15000'"
        )
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def _client() -> MlflowClient:
    return MlflowClient()


def _is_missing(exc: MlflowException) -> bool:
    return exc.error_code in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}


# --- runs ------------------------------------------------------------------------------------------


def _experiment_id(client: MlflowClient, name: str) -> str:
    if not name or not name.strip():
        raise TrackingError("experiment is empty; give the experiment name, e.g. 'cocos'")
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException as exc:  # created by a concurrent process
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise TrackingError(f"cannot create experiment {name!r}: {exc}") from exc
        return exp.experiment_id


def _runs_with_pipeline_id(client: MlflowClient, experiment_id: str, pipeline_run_id: str) -> list[Any]:
    value = pipeline_run_id.replace("'", "\\'")
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{PIPELINE_TAG}` = '{value}' and tags.`{STAGE_TAG}` = 'pipeline'",
        max_results=50,
    )
    return sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))


def parent_run(experiment: str, pipeline_run_id: str, run_name: str | None = None) -> str:
    """The id of the one parent run of `pipeline_run_id` in `experiment`, created on first use."""
    if not pipeline_run_id:
        raise TrackingError("pipeline_run_id is empty; pass the kfp run id (dsl.PIPELINE_JOB_ID_PLACEHOLDER)")
    client = _client()
    exp_id = _experiment_id(client, experiment)
    found = _runs_with_pipeline_id(client, exp_id, pipeline_run_id)
    if found:
        return found[0].info.run_id
    tags = {PIPELINE_TAG: pipeline_run_id, STAGE_TAG: "pipeline"}
    mine = client.create_run(
        exp_id, run_name=run_name or f"pipeline-{pipeline_run_id}", tags=tags
    ).info.run_id
    # Let a concurrent creator finish, so every racer sees the same set and keeps the same (oldest) run.
    time.sleep(PARENT_SETTLE_S)
    found = _runs_with_pipeline_id(client, exp_id, pipeline_run_id)
    winner = found[0].info.run_id if found else mine
    if winner != mine:  # another process created one at the same time; the oldest wins
        log.info("parent run race for %s: keeping %s, deleting %s", pipeline_run_id, winner, mine)
        client.delete_run(mine)
    return winner


def end_parent_run(run_id: str, status: str = "FINISHED") -> None:
    """Mark a parent run finished (or FAILED / KILLED); child runs end by themselves."""
    if status not in {"FINISHED", "FAILED", "KILLED"}:
        raise TrackingError(f"status={status!r}; use FINISHED, FAILED or KILLED")
    _client().set_terminated(run_id, status=status)


@contextlib.contextmanager
def stage_run(parent_run_id: str, stage: str, params: Mapping[str, Any] | Any | None = None) -> Iterator[str]:
    """Open a child run of `parent_run_id` named `stage`, log `params` flat, yield its run id.

    The run is the active run inside the block, so `log_metrics`, `log_artifact` etc. write to it; it
    ends FINISHED, or FAILED when the block raises.
    """
    if not stage:
        raise TrackingError("stage is empty; name the pipeline stage, e.g. 'sft' or 'rloo'")
    client = _client()
    try:
        parent = client.get_run(parent_run_id)
    except MlflowException as exc:
        raise TrackingError(
            f"parent_run_id={parent_run_id!r} does not exist; create it with parent_run()"
        ) from exc
    tags = {STAGE_TAG: stage, PIPELINE_TAG: parent.data.tags.get(PIPELINE_TAG, "")}
    with mlflow.start_run(
        experiment_id=parent.info.experiment_id, run_name=stage, parent_run_id=parent_run_id, tags=tags
    ) as run:
        if params is not None:
            log_params_flat(params)
        yield run.info.run_id


def flatten(obj: Any, prefix: str = "") -> dict[str, str]:
    """Dataclasses and mappings as `section.field -> str`, values cut to MLflow's param limit.

    >>> flatten({"sft": {"lr": 1e-5, "steps": 10}, "seed": 0})
    {'sft.lr': '1e-05', 'sft.steps': '10', 'seed': '0'}
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if not isinstance(obj, Mapping):
        raise TrackingError(
            f"params of type {type(obj).__name__} cannot be flattened; pass a dataclass or dict"
        )
    flat: dict[str, str] = {}
    for key, value in obj.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if (dataclasses.is_dataclass(value) and not isinstance(value, type)) or isinstance(value, Mapping):
            flat.update(flatten(value, name))
            continue
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        if len(text) > MAX_PARAM_LEN:
            text = text[: MAX_PARAM_LEN - 15] + "...[truncated]"
        flat[name] = text
    return flat


def log_params_flat(obj: Mapping[str, Any] | Any) -> dict[str, str]:
    """Log a dataclass or dict as flat params on the active run; returns what was logged."""
    flat = flatten(obj)
    items = list(flat.items())
    for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
        mlflow.log_params(dict(items[i : i + MAX_PARAMS_PER_BATCH]))
    return flat


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    """Log numeric metrics (keys like `eval/mbpp/acc_t2`) on the active run."""
    mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)


def log_artifact(path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    """Log a file or a whole folder on the active run."""
    path = Path(path)
    if path.is_dir():
        mlflow.log_artifacts(str(path), artifact_path=artifact_path)
    elif path.is_file():
        mlflow.log_artifact(str(path), artifact_path=artifact_path)
    else:
        raise TrackingError(f"path={str(path)!r} does not exist; log a file or folder that was written")


def log_dict(obj: Mapping[str, Any] | Sequence[Any], name: str) -> None:
    """Log `obj` as a JSON (or YAML, by extension) artifact `name` on the active run."""
    mlflow.log_dict(obj, name)


def log_text(text: str, name: str) -> None:
    """Log `text` as artifact `name` on the active run."""
    mlflow.log_text(text, name)


def log_table(records: Sequence[Mapping[str, Any]], name: str) -> None:
    """Log rows (dicts with the same keys) as a table artifact, viewable in the MLflow UI."""
    artifact = name if name.endswith(".json") else f"{name}.json"
    mlflow.log_table(data=pd.DataFrame(list(records)), artifact_file=artifact)


def log_dataset_input(
    name: str,
    digest: str,
    source_uri: str,
    counts: Mapping[str, int] | None = None,
    context: str = "training",
) -> None:
    """Record a dataset (by name, content hash and location) as an input of the active run.

    The full hash and the counts are input tags; MLflow's digest column holds the first 36 characters.
    """
    if not digest:
        raise TrackingError("digest is empty; pass the dataset content hash (e.g. sha256 of the JSONL)")
    try:
        source = resolve_dataset_source(source_uri)
    except Exception:  # unknown scheme; keep the URI as an opaque location
        source = HTTPDatasetSource(url=source_uri)
    dataset = MetaDataset(source=source, name=name, digest=digest[:MAX_DIGEST_LEN])
    tags = {"cocos.sha256": digest} | {f"count.{k}": str(int(v)) for k, v in (counts or {}).items()}
    mlflow.log_input(dataset, context=context, tags=tags)


# --- registry --------------------------------------------------------------------------------------


def _free_artifact_path(client: MlflowClient, run_id: str) -> str:
    taken = {a.path for a in client.list_artifacts(run_id)}
    if "model" not in taken:
        return "model"
    n = 2
    while f"model-{n}" in taken:
        n += 1
    return f"model-{n}"


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if not _is_missing(exc):
            raise
        try:
            client.create_registered_model(name)
        except MlflowException as exc2:
            if exc2.error_code != "RESOURCE_ALREADY_EXISTS":
                raise


def register_model(model_dir: str | os.PathLike[str], name: str, run_id: str, tags: Mapping[str, str]) -> str:
    """Log the HF folder `model_dir` to run `run_id`, register it as a new version of `name`, alias it
    `challenger`, tag it; returns the version."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise TrackingError(
            f"model_dir={str(model_dir)!r} has no config.json; pass a saved Hugging Face folder"
        )
    if not name:
        raise TrackingError("name is empty; give the registered model name, e.g. 'cocos-self-correct'")
    client = _client()
    artifact_path = _free_artifact_path(client, run_id)
    client.log_artifacts(run_id, str(model_dir), artifact_path=artifact_path)
    _ensure_registered_model(client, name)
    source = f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/{artifact_path}"
    version = client.create_model_version(
        name, source=source, run_id=run_id, tags={str(k): str(v) for k, v in tags.items()}
    ).version
    client.set_registered_model_alias(name, CHALLENGER, str(version))
    log.info("registered %s version %s from run %s (%s)", name, version, run_id, artifact_path)
    return str(version)


def get_alias_version(name: str, alias: str) -> str | None:
    """The version that `alias` points at, or None when the model or the alias does not exist."""
    try:
        return str(_client().get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if _is_missing(exc) or exc.error_code == "INVALID_PARAMETER_VALUE":
            return None
        raise


def model_uri(name: str, alias: str = CHAMPION) -> str:
    """`models:/<name>@<alias>`, or `models:/<name>/<version>` for a number; see `download_model`."""
    return f"models:/{name}/{alias}" if str(alias).isdigit() else f"models:/{name}@{alias}"


def download_model(name: str, alias: str, dst_dir: str | os.PathLike[str]) -> str:
    """Download the HF folder of `name@alias` (or a version number) to `dst_dir`; returns the local path.

    The files land in a temporary sibling first; `dst_dir` is replaced only when the download succeeded,
    so a cache folder never mixes two versions.
    """
    dst = Path(dst_dir)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".partial", dir=dst.parent))
    try:
        local = Path(
            mlflow.artifacts.download_artifacts(artifact_uri=model_uri(name, alias), dst_path=str(tmp))
        )
        if dst.exists():
            shutil.rmtree(dst)
        os.replace(local, dst)
    except MlflowException as exc:
        raise TrackingError(f"cannot download {model_uri(name, alias)}: {exc.message}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(dst)


def set_version_metrics(name: str, version: str, metrics: Mapping[str, Mapping[str, float]]) -> None:
    """Store evaluation numbers on a version as tags `metric.<dataset>.<key>`."""
    client = _client()
    for dataset, values in metrics.items():
        for key, value in values.items():
            client.set_model_version_tag(name, version, f"metric.{dataset}.{key}", repr(float(value)))


def version_metrics(name: str, version: str) -> dict[str, dict[str, float]]:
    """The `metric.<dataset>.<key>` tags of a version, as nested floats."""
    tags = _client().get_model_version(name, version).tags
    out: dict[str, dict[str, float]] = {}
    for tag, value in tags.items():
        if tag.startswith("metric."):
            dataset, _, key = tag[len("metric.") :].rpartition(".")
            out.setdefault(dataset, {})[key] = float(value)
    return out


@dataclass(frozen=True)
class PromotionDecision:
    """The outcome of `promote`: whether `version` became champion, and why."""

    name: str
    version: str
    promoted: bool
    reasons: tuple[str, ...]
    previous_champion: str | None
    candidate_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    champion_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    margin: float = 0.0
    c2i_ceiling: float = 1.0
    decided_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PromotionDecision:
        return cls(**{**data, "reasons": tuple(data.get("reasons", ()))})


def decide(
    candidate: Mapping[str, Mapping[str, float]],
    champion: Mapping[str, Mapping[str, float]] | None,
    margin: float,
    c2i_ceiling: float,
    acc_key: str = "acc_t2",
    c2i_key: str = "c2i_t1_t2",
) -> tuple[bool, list[str]]:
    """The promotion gate as a pure function: (promote?, reasons). No champion: only the ceiling applies.

    >>> decide({"mbpp": {"acc_t2": 0.5, "c2i_t1_t2": 0.01}}, {"mbpp": {"acc_t2": 0.4}}, 0.02, 0.05)
    (True, ['mbpp: acc_t2 0.5000 >= 0.4000 + 0.0200', 'mbpp: c2i_t1_t2 0.0100 <= 0.0500'])
    """
    if not candidate:
        raise TrackingError("candidate_metrics is empty; pass {dataset: {'acc_t2': ..., 'c2i_t1_t2': ...}}")
    ok = True
    reasons: list[str] = []
    for dataset, values in sorted(candidate.items()):
        for key in (acc_key, c2i_key) if champion else (c2i_key,):
            if key not in values:
                raise TrackingError(f"candidate_metrics[{dataset!r}] lacks {key!r}; has {sorted(values)}")
        if champion:
            acc, best = values[acc_key], (champion.get(dataset) or {}).get(acc_key)
            if best is None:
                ok = False
                reasons.append(
                    f"{dataset}: champion has no {acc_key}; cannot compare, re-evaluate the champion"
                )
            else:
                passed = acc >= best + margin
                ok &= passed
                reasons.append(
                    f"{dataset}: {acc_key} {acc:.4f} {'>=' if passed else '<'} {best:.4f} + {margin:.4f}"
                )
        c2i = values[c2i_key]
        passed = c2i <= c2i_ceiling
        ok &= passed
        reasons.append(f"{dataset}: {c2i_key} {c2i:.4f} {'<=' if passed else '>'} {c2i_ceiling:.4f}")
    return ok, reasons


def _history(client: MlflowClient, name: str) -> list[str]:
    raw = client.get_registered_model(name).tags.get(HISTORY_TAG)
    return list(json.loads(raw)) if raw else []


def promote(
    name: str,
    version: str,
    candidate_metrics: Mapping[str, Mapping[str, float]],
    margin: float,
    c2i_ceiling: float,
    acc_key: str = "acc_t2",
    c2i_key: str = "c2i_t1_t2",
) -> PromotionDecision:
    """Move `champion` to `version` if it passes the gate (see `decide`); record and return the decision.

    Idempotent: when the version already carries a decision, that decision is returned unchanged.
    """
    client = _client()
    version = str(version)
    mv = client.get_model_version(name, version)
    if DECISION_JSON_TAG in mv.tags:
        log.info("%s version %s already has a promotion decision; returning it", name, version)
        return PromotionDecision.from_dict(json.loads(mv.tags[DECISION_JSON_TAG]))
    set_version_metrics(name, version, candidate_metrics)
    current = get_alias_version(name, CHAMPION)
    if current == version:
        promoted, reasons = True, ["already champion"]
        champion_metrics: dict[str, dict[str, float]] = {}
    else:
        champion_metrics = version_metrics(name, current) if current else {}
        promoted, reasons = decide(
            candidate_metrics, champion_metrics if current else None, margin, c2i_ceiling, acc_key, c2i_key
        )
    decision = PromotionDecision(
        name=name,
        version=version,
        promoted=promoted,
        reasons=tuple(reasons),
        previous_champion=current,
        candidate_metrics={d: {k: float(v) for k, v in m.items()} for d, m in candidate_metrics.items()},
        champion_metrics=champion_metrics,
        margin=float(margin),
        c2i_ceiling=float(c2i_ceiling),
        decided_at=time.time(),
    )
    if promoted and current != version:
        history = _history(client, name)
        if current and (not history or history[-1] != current):
            history.append(current)
        history.append(version)
        client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
        client.set_registered_model_alias(name, CHAMPION, version)
        log.info("%s: champion %s -> %s", name, current, version)
    else:
        log.info("%s version %s not promoted: %s", name, version, "; ".join(reasons))
    client.set_model_version_tag(name, version, "cocos.promotion.reasons", "; ".join(reasons))
    # The JSON tag is written last: its presence means the decision is complete (see the idempotency check).
    client.set_model_version_tag(name, version, DECISION_TAG, "promoted" if promoted else "rejected")
    client.set_model_version_tag(name, version, DECISION_JSON_TAG, json.dumps(decision.to_dict()))
    return decision


def rollback(name: str) -> str:
    """Move `champion` back to the previous champion; returns that version."""
    client = _client()
    history = _history(client, name)
    current = get_alias_version(name, CHAMPION)
    if current and history and history[-1] != current:
        history.append(current)  # the alias was moved by hand; treat it as the newest champion
    if len(history) < 2:
        raise TrackingError(
            f"model {name!r} has no previous champion (history {history}); nothing to roll back"
        )
    demoted = history.pop()
    previous = history[-1]
    client.set_registered_model_alias(name, CHAMPION, previous)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    client.set_model_version_tag(name, demoted, "cocos.rolled_back", "true")
    log.info("%s: rolled champion back from %s to %s", name, demoted, previous)
    return previous


def run_status(run_id: str) -> str:
    """FINISHED, FAILED, RUNNING, ... of a run."""
    return str(_client().get_run(run_id).info.status)


__all__ = [
    "PromotionDecision",
    "TrackingError",
    "configure",
    "decide",
    "download_model",
    "end_parent_run",
    "flatten",
    "get_alias_version",
    "log_artifact",
    "log_dataset_input",
    "log_dict",
    "log_metrics",
    "log_params_flat",
    "log_table",
    "log_text",
    "model_uri",
    "parent_run",
    "promote",
    "register_model",
    "rollback",
    "run_status",
    "set_version_metrics",
    "stage_run",
    "version_metrics",
]
