"""Tests for cocos.tracking: flat params and the promotion gate (pure), and, against a live MLflow
server, parent-run find-or-create, child runs, registration and promotion/rollback through aliases.

Run: pytest tests/cocos/test_tracking.py -q   (the `slow` ones use the session's live services)
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from cocos import tracking


@dataclass(frozen=True)
class _Inner:
    lr: float = 1e-5
    tags: tuple[str, ...] = ("a", "b")


@dataclass(frozen=True)
class _Outer:
    seed: int = 0
    sft: _Inner = field(default_factory=_Inner)
    note: str = "x" * 10_000


def _uid() -> str:
    return uuid.uuid4().hex[:10]


def _model_folder(root: Path, marker: str) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"model_type": "llama", "marker": marker}))
    (root / "tokenizer.json").write_text("{}")
    return root


def test_flatten_dataclass_sections_and_truncation() -> None:
    flat = tracking.flatten(_Outer())
    assert flat["seed"] == "0"
    assert flat["sft.lr"] == "1e-05"
    assert flat["sft.tags"] == '["a", "b"]'
    assert len(flat["note"]) <= tracking.MAX_PARAM_LEN and flat["note"].endswith("[truncated]")
    with pytest.raises(tracking.TrackingError, match="dataclass or dict"):
        tracking.flatten([1, 2])


def test_decide_gate() -> None:
    champ = {"mbpp": {"acc_t2": 0.40}, "humaneval": {"acc_t2": 0.30}}
    better = {"mbpp": {"acc_t2": 0.45, "c2i_t1_t2": 0.01}, "humaneval": {"acc_t2": 0.33, "c2i_t1_t2": 0.02}}
    assert tracking.decide(better, champ, margin=0.02, c2i_ceiling=0.05)[0]
    # Better on one dataset only is not enough.
    mixed = {**better, "humaneval": {"acc_t2": 0.31, "c2i_t1_t2": 0.02}}
    assert not tracking.decide(mixed, champ, margin=0.02, c2i_ceiling=0.05)[0]
    # Accuracy does not buy a c2i above the ceiling.
    breaks = {**better, "mbpp": {"acc_t2": 0.9, "c2i_t1_t2": 0.2}}
    assert not tracking.decide(breaks, champ, margin=0.02, c2i_ceiling=0.05)[0]
    # No champion: only the ceiling applies.
    assert tracking.decide({"mbpp": {"c2i_t1_t2": 0.01}}, None, margin=0.5, c2i_ceiling=0.05)[0]
    ok, reasons = tracking.decide({"odex": {"acc_t2": 0.9, "c2i_t1_t2": 0.0}}, champ, 0.0, 1.0)
    assert not ok and "champion has no acc_t2" in reasons[0]
    with pytest.raises(tracking.TrackingError, match="lacks 'c2i_t1_t2'"):
        tracking.decide({"mbpp": {"acc_t2": 0.5}}, champ, 0.0, 1.0)


def test_configure_requires_a_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(tracking.TrackingError, match="MLFLOW_TRACKING_URI"):
        tracking.configure()


@pytest.mark.slow
def test_parent_run_is_find_or_create(live_services) -> None:
    experiment, pipeline_id = f"test-{_uid()}", _uid()
    first = tracking.parent_run(experiment, pipeline_id)
    assert tracking.parent_run(experiment, pipeline_id) == first
    assert tracking.parent_run(experiment, _uid()) != first
    run = MlflowClient().get_run(first)
    assert run.data.tags[tracking.PIPELINE_TAG] == pipeline_id


@pytest.mark.slow
def test_parent_run_is_shared_by_concurrent_processes(live_services) -> None:
    experiment, pipeline_id = f"test-{_uid()}", _uid()
    code = "import sys; from cocos import tracking; print(tracking.parent_run(sys.argv[1], sys.argv[2]))"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, experiment, pipeline_id], stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    ids = {proc.communicate(timeout=120)[0].strip() for proc in procs}
    assert len(ids) == 1 and all(proc.returncode == 0 for proc in procs)
    assert tracking.parent_run(experiment, pipeline_id) == ids.pop()
    exp = MlflowClient().get_experiment_by_name(experiment)
    assert len(MlflowClient().search_runs([exp.experiment_id])) == 1


@pytest.mark.slow
def test_stage_run_logs_params_metrics_and_inputs(live_services, tmp_path: Path) -> None:
    parent = tracking.parent_run(f"test-{_uid()}", _uid())
    (tmp_path / "report.txt").write_text("hello")
    with tracking.stage_run(parent, "sft", _Outer()) as run_id:
        tracking.log_metrics({"train/loss": 1.5}, step=1)
        tracking.log_metrics({"train/loss": 0.5}, step=2)
        tracking.log_artifact(tmp_path / "report.txt", "reports")
        tracking.log_dict({"a": 1}, "summary.json")
        tracking.log_text("text", "notes.txt")
        tracking.log_table([{"task": "t1", "passed": True}, {"task": "t2", "passed": False}], "outcomes")
        tracking.log_dataset_input("mbpp-train", "f" * 64, "s3://cocos/data/mbpp.jsonl", {"train": 374})
    client = MlflowClient()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags[tracking.PARENT_TAG] == parent
    assert run.data.tags[tracking.STAGE_TAG] == "sft"
    assert run.info.run_name == "sft"
    assert run.data.params["sft.lr"] == "1e-05"
    assert [m.value for m in client.get_metric_history(run_id, "train/loss")] == [1.5, 0.5]
    assert {a.path for a in client.list_artifacts(run_id)} >= {
        "reports",
        "summary.json",
        "notes.txt",
        "outcomes.json",
    }
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.name == "mbpp-train"
    assert {t.key: t.value for t in dataset_input.tags}["count.train"] == "374"


@pytest.mark.slow
def test_stage_run_marks_failure(live_services) -> None:
    parent = tracking.parent_run(f"test-{_uid()}", _uid())
    with (
        pytest.raises(RuntimeError, match="boom"),
        tracking.stage_run(parent, "rloo", {"gamma": 1.0}) as run_id,
    ):
        raise RuntimeError("boom")
    assert tracking.run_status(run_id) == "FAILED"
    assert mlflow.active_run() is None


@pytest.mark.slow
def test_register_promote_and_rollback(live_services, tmp_path: Path) -> None:
    name = f"cocos-test-{_uid()}"
    parent = tracking.parent_run(f"test-{_uid()}", _uid())
    with tracking.stage_run(parent, "register") as run_id:
        v1 = tracking.register_model(_model_folder(tmp_path / "m1", "one"), name, run_id, {"base": "smollm2"})
        v2 = tracking.register_model(_model_folder(tmp_path / "m2", "two"), name, run_id, {"base": "smollm2"})
    assert (v1, v2) == ("1", "2")
    assert tracking.get_alias_version(name, "challenger") == "2"
    assert tracking.get_alias_version(name, "champion") is None
    assert tracking.get_alias_version(f"missing-{_uid()}", "champion") is None
    # Registering twice from one run keeps both versions' files.
    v2_dir = tracking.download_model(name, "challenger", tmp_path / "dl2")
    assert json.loads((Path(v2_dir) / "config.json").read_text())["marker"] == "two"

    first = tracking.promote(
        name, v1, {"mbpp": {"acc_t2": 0.40, "c2i_t1_t2": 0.01}}, margin=0.02, c2i_ceiling=0.05
    )
    assert first.promoted and first.previous_champion is None
    assert tracking.get_alias_version(name, "champion") == "1"
    # The same cache folder is replaced, not mixed: version 1, then version 2 by number.
    v1_dir = tracking.download_model(name, "champion", tmp_path / "cache")
    assert json.loads((Path(v1_dir) / "config.json").read_text())["marker"] == "one"
    (Path(v1_dir) / "stale.txt").write_text("old")
    assert tracking.download_model(name, "2", tmp_path / "cache") == v1_dir
    assert json.loads((Path(v1_dir) / "config.json").read_text())["marker"] == "two"
    assert not (Path(v1_dir) / "stale.txt").exists()
    with pytest.raises(tracking.TrackingError, match="cannot download"):
        tracking.download_model(name, "nosuchalias", tmp_path / "cache")

    worse = tracking.promote(
        name, v2, {"mbpp": {"acc_t2": 0.41, "c2i_t1_t2": 0.01}}, margin=0.02, c2i_ceiling=0.05
    )
    assert not worse.promoted
    assert worse.champion_metrics == {"mbpp": {"acc_t2": 0.40, "c2i_t1_t2": 0.01}}
    assert tracking.get_alias_version(name, "champion") == "1"
    assert tracking.get_alias_version(name, "challenger") == "2"
    assert MlflowClient().get_model_version(name, v2).tags[tracking.DECISION_TAG] == "rejected"
    # Idempotent: the recorded decision comes back, even with different numbers.
    again = tracking.promote(
        name, v2, {"mbpp": {"acc_t2": 0.99, "c2i_t1_t2": 0.0}}, margin=0.02, c2i_ceiling=0.05
    )
    assert again == worse

    with tracking.stage_run(parent, "register") as run_id:
        v3 = tracking.register_model(_model_folder(tmp_path / "m3", "three"), name, run_id, {})
    better = tracking.promote(
        name, v3, {"mbpp": {"acc_t2": 0.50, "c2i_t1_t2": 0.02}}, margin=0.02, c2i_ceiling=0.05
    )
    assert better.promoted and better.previous_champion == "1"
    assert tracking.get_alias_version(name, "champion") == "3"
    assert tracking.version_metrics(name, v3) == {"mbpp": {"acc_t2": 0.50, "c2i_t1_t2": 0.02}}
    assert tracking.promote(name, v3, {"mbpp": {"acc_t2": 0.0, "c2i_t1_t2": 1.0}}, 0.02, 0.05) == better
    assert tracking.model_uri(name, "champion") == f"models:/{name}@champion"

    assert tracking.rollback(name) == "1"
    assert tracking.get_alias_version(name, "champion") == "1"
    with pytest.raises(tracking.TrackingError, match="no previous champion"):
        tracking.rollback(name)
