"""The pipeline's stages as plain functions: what each kfp component runs, testable without kfp.

Each stage opens a child MLflow run under the one parent run of its pipeline run (found by the kfp
run id), logs its whole config as params, and writes its outputs into the folder kfp gives it.
Services are reached through the environment (MLFLOW_TRACKING_URI, AWS_* / AWS_ENDPOINT_URL).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cocos.config import EvalConfig, PromotionConfig, RLOOConfig, SFTConfig, to_dict

log = logging.getLogger(__name__)

EVAL_SUMMARY = "summary.json"
TRAINING_HISTORY = "training_history.json"


@dataclass(frozen=True)
class RunContext:
    """Where a stage reports: the MLflow experiment and the kfp run it belongs to."""

    experiment: str = "cocos"
    pipeline_run_id: str = "local"

    def __post_init__(self) -> None:
        # A kfp task runs its stage in a fresh interpreter: show the stage's progress in the task log.
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")

    def parent(self) -> str:
        from cocos import tracking

        return tracking.parent_run(self.experiment, self.pipeline_run_id)


@dataclass(frozen=True)
class Placement:
    """Where a training stage runs. One node: in this pod (one process per local GPU). Several nodes: a
    Kubeflow Trainer TrainJob that this pod creates and follows, with inputs and outputs staged in S3."""

    nodes: int = 1
    gpus_per_node: int = 1
    image: str = ""
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    timeout_s: float = 7 * 24 * 3600.0

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise ValueError(f"train_nodes={self.nodes} must be >= 1")
        if self.nodes > 1 and not self.image:
            raise ValueError("a multi-node TrainJob needs the training image (components.images.TRAIN)")


def pod_namespace() -> str:
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    return path.read_text().strip() if path.exists() else os.environ.get("POD_NAMESPACE", "kubeflow")


def run_as_trainjob(
    stage: str,
    config: Any,
    model_dir: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    ctx: RunContext,
    placement: Placement,
    extra_args: list[str] | None = None,
    submit: Any = None,
) -> dict[str, Any]:
    """Stage inputs in S3, run `python -m cocos.train.launch STAGE` as a TrainJob, fetch its outputs.

    Returns rank 0's metrics file. `submit` defaults to cocos.trainjob.submit_and_follow (tests pass a stand-in).
    """
    from cocos import storage, trainjob

    bucket = os.environ.get("COCOS_BUCKET", "cocos")
    run = "".join(c if c.isalnum() else "-" for c in ctx.pipeline_run_id.lower())
    staging = f"s3://{bucket}/staging/{run}/{stage}"
    storage.upload_dir(model_dir, f"{staging}/model")
    storage.upload_dir(data_dir, f"{staging}/data")
    storage.write_json(f"{staging}/config.json", to_dict(config))
    args = ["--config", f"{staging}/config.json", "--model-dir", f"{staging}/model", "--data-dir", f"{staging}/data"]
    args += ["--out-dir", f"{staging}/out", "--metrics-file", f"{staging}/metrics.json", *(extra_args or [])]
    spec = trainjob.TrainJobSpec(
        name=f"cocos-{stage}-{run}"[:63].rstrip("-"),
        stage=stage,
        image=placement.image,
        args=args,
        num_nodes=placement.nodes,
        gpus_per_node=placement.gpus_per_node,
        node_selector=dict(placement.node_selector),
        tolerations=list(placement.tolerations),
        env={"COCOS_BUCKET": bucket},
    )
    (submit or trainjob.submit_and_follow)(trainjob.build_trainjob(spec), pod_namespace(), placement.timeout_s)
    storage.download_dir(f"{staging}/out", out_dir)
    return storage.read_json(f"{staging}/metrics.json")


def local_gpus() -> int:
    """GPUs of this pod: the stage starts one training process per GPU (torchrun) when there are several."""
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _log_history(history: list[dict[str, Any]]) -> None:
    from cocos import tracking

    for entry in history:
        tracking.log_metrics({k: float(v) for k, v in entry.items() if k != "step"}, int(entry["step"]))


def code_version() -> str:
    """The git commit of this code, or the package version outside a checkout (images)."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if out.returncode == 0:
            return out.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    from cocos import __version__

    return os.environ.get("COCOS_CODE_VERSION", __version__)


# ---------------------------------------------------------------------------- data
def prepare_data_stage(data_config: Any, out_dir: str | Path, ctx: RunContext) -> dict[str, Any]:
    """Prepare the splits, keep them in S3 under their content hash, record them in MLflow as dataset inputs."""
    import hashlib

    from cocos import storage, tracking
    from cocos.data import prepare

    with tracking.stage_run(ctx.parent(), "prepare_data", {"data": to_dict(data_config)}):
        prepared = prepare(data_config, out_dir)
        version = hashlib.sha256(json.dumps(prepared.hashes, sort_keys=True).encode()).hexdigest()[:16]
        stored = f"s3://{os.environ.get('COCOS_BUCKET', 'cocos')}/datasets/{version}"
        if not storage.exists(f"{stored}/{storage.MANIFEST_NAME}"):  # the same content is stored once
            storage.upload_dir(out_dir, stored, extra={"counts": prepared.counts, "sha256": prepared.hashes})
        for name, digest in prepared.hashes.items():
            context = "evaluation" if name.startswith("test_") else "training"
            source = f"{stored}/{Path(prepared.files[name]).name}"
            tracking.log_dataset_input(name, digest, source, {"records": prepared.counts[name]}, context=context)
        tracking.log_metrics({f"data/{name}_count": float(n) for name, n in prepared.counts.items()})
        tracking.log_artifact(prepared.manifest, "data")
    return {"counts": prepared.counts, "sha256": prepared.hashes, "version": version, "uri": stored}


def _eval_sets(data_dir: Path) -> dict[str, Path]:
    sets = {p.stem.removeprefix("test_"): p for p in sorted(data_dir.glob("test_*.jsonl"))}
    if not sets:
        raise FileNotFoundError(f"{data_dir}: no test_<dataset>.jsonl files; run prepare_data first")
    return sets


# ---------------------------------------------------------------------------- boost SFT
def boost_sft_stage(
    config: SFTConfig,
    model_reference: str,
    data_dir: str | Path,
    out_dir: str | Path,
    ctx: RunContext,
    placement: Placement | None = None,
) -> dict[str, Any]:
    from cocos import tracking
    from cocos.models import resolve_model
    from cocos.train.sft import read_examples, run_sft

    base = resolve_model(model_reference)
    data_dir = Path(data_dir)
    train = read_examples(data_dir / "boost_train.jsonl")
    validation_path = data_dir / "boost_validation.jsonl"
    validation = read_examples(validation_path)[: config.max_eval_examples] if validation_path.exists() else None
    params = {"sft": to_dict(config), "model_reference": model_reference, "examples": len(train)}
    placement = placement or Placement()
    gpus = local_gpus()
    with tracking.stage_run(ctx.parent(), "boost_sft", {**params, "gpus": gpus, "nodes": placement.nodes}):
        if placement.nodes > 1:
            result = run_as_trainjob("sft", config, base, data_dir, out_dir, ctx, placement)
            _log_history(result.get("history", []))
            metrics = result.get("final", {})
        elif gpus > 1:
            from cocos.train.launch import run_sft_distributed

            result = run_sft_distributed(config, base, data_dir, out_dir, gpus)
            _log_history(result.get("history", []))
            metrics = result.get("final", {})
        else:
            metrics = run_sft(
                config, base, train, out_dir, validation, on_log=lambda step, m: tracking.log_metrics(m, step)
            )
        tracking.log_metrics({k: float(v) for k, v in metrics.items() if isinstance(v, int | float)})
    return metrics


# ---------------------------------------------------------------------------- RLOO
def rloo_stage(
    config: RLOOConfig,
    model_dir: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    ctx: RunContext,
    checkpoint_uri: str = "",
    work_dir: str | Path | None = None,
    placement: Placement | None = None,
) -> dict[str, Any]:
    """Train from the boost model; checkpoints go to `checkpoint_uri` (S3) and a restart resumes there."""
    from cocos import tracking
    from cocos.data import read_split
    from cocos.models import load_model_and_tokenizer
    from cocos.sandbox import get_executor
    from cocos.train.rloo import RLOOTrainer, StepCallbacks

    problems = read_split(Path(data_dir) / "train.jsonl")
    work = Path(work_dir) if work_dir else Path(out_dir).parent / (Path(out_dir).name + ".work")
    placement = placement or Placement()
    gpus = local_gpus()
    params = {"rloo": to_dict(config), "train_problems": len(problems), "gpus": gpus, "nodes": placement.nodes}
    with tracking.stage_run(ctx.parent(), "cocos_rloo", params) as run_id:
        if placement.nodes > 1 or gpus > 1:
            if placement.nodes > 1:
                extra = ["--checkpoint-uri", checkpoint_uri, "--run-id", run_id]
                launched = run_as_trainjob("rloo", config, model_dir, data_dir, out_dir, ctx, placement, extra)
            else:
                from cocos.train.launch import run_rloo_distributed

                launched = run_rloo_distributed(
                    config, model_dir, data_dir, out_dir, checkpoint_uri, gpus, work_dir=work, run_id=run_id
                )
            history = launched.get("history", [])
            _log_history(history)
            for entry in launched.get("rollouts", []):
                tracking.log_table(entry["records"], f"rollouts/step-{entry['step']:06d}.json")
            steps, resumed_from = launched.get("steps", 0), launched.get("resumed_from", 0)
        else:
            model, tokenizer = load_model_and_tokenizer(
                model_dir, dtype="bfloat16" if config.bf16 else "float32", device="auto"
            )
            callbacks = StepCallbacks(
                on_step=lambda step, metrics: tracking.log_metrics(metrics, step),
                on_rollouts=lambda step, records: tracking.log_table(records, f"rollouts/step-{step:06d}.json"),
                on_checkpoint=lambda step, uri: tracking.log_metrics({"checkpoint/step": float(step)}, step),
            )
            executor = get_executor(config.sandbox_url or None)
            trainer = RLOOTrainer(
                config, model, tokenizer, problems, executor, work, checkpoint_uri, callbacks, run_id=run_id
            )
            result = trainer.train()
            trainer.save_final(out_dir)
            steps, resumed_from = result.steps_done, result.resumed_from
            history = [{"step": step, **m} for step, m in enumerate(result.history, start=result.resumed_from + 1)]
        summary = {
            "steps": steps,
            "resumed_from": resumed_from,
            "gpus": gpus,
            "checkpoint_uri": checkpoint_uri,
            "config": to_dict(config),
            "last": history[-1] if history else {},
        }
        tracking.log_dict(summary, "rloo_summary.json")
        (Path(out_dir) / TRAINING_HISTORY).write_text(json.dumps(history))
        if history:
            from cocos.plots import plot_training_curves

            tracking.log_artifact(plot_training_curves(history, work / "training_curves.png"), "plots")
    (Path(out_dir) / "cocos_training.json").write_text(json.dumps(summary, indent=2))
    return summary


# ---------------------------------------------------------------------------- evaluation
def evaluate_stage(
    config: EvalConfig, model_dir: str | Path, data_dir: str | Path, out_dir: str | Path, ctx: RunContext
) -> dict[str, Any]:
    """Greedy T-turn evaluation of every test set; writes records, the table and summary.json."""
    from cocos import tracking
    from cocos.data import read_split
    from cocos.evaluate import evaluate_problems, format_table
    from cocos.models import load_model_and_tokenizer
    from cocos.sandbox import get_executor

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, tokenizer = load_model_and_tokenizer(model_dir, device="auto")
    executor = get_executor(config.sandbox_url or None)
    results = []
    robustness: dict[str, list[dict[str, float]]] = {}
    with tracking.stage_run(ctx.parent(), "evaluate", {"eval": to_dict(config)}):
        for dataset, path in _eval_sets(Path(data_dir)).items():
            problems = read_split(path)
            result = evaluate_problems(model, tokenizer, problems, config, executor, dataset)
            results.append(result)
            tracking.log_metrics({f"eval/{dataset}/{k}": v for k, v in result.metrics.items()})
            with (out / f"records_{dataset}.jsonl").open("w", encoding="utf-8") as handle:
                for record in result.records:
                    handle.write(json.dumps(record, sort_keys=True) + "\n")
            if config.instructions and config.turns > 1:
                robustness[dataset] = [result.metrics]
                for index, instruction in enumerate(config.instructions, start=1):
                    rephrased = evaluate_problems(model, tokenizer, problems, config, executor, dataset, instruction)
                    robustness[dataset].append(rephrased.metrics)
                    prefix = f"eval/{dataset}/instruction{index}"
                    tracking.log_metrics({f"{prefix}/{k}": v for k, v in rephrased.metrics.items()})
        table = format_table(results, config.turns)
        (out / "table.md").write_text(table + "\n")
        summary = {
            "metrics": {r.dataset: r.metrics for r in results},
            "table": table,
            "sandbox_errors": sum(int(r.metrics["sandbox_errors"]) for r in results),
            "robustness": robustness,
        }
        (out / EVAL_SUMMARY).write_text(json.dumps(summary, indent=2, sort_keys=True))
        write_report(out, results, config, robustness, Path(model_dir) / TRAINING_HISTORY)
        tracking.log_artifact(str(out), "evaluation")
    if summary["sandbox_errors"]:
        # register_model will not run (the pipeline gates it on a clean evaluation): the run ends here.
        tracking.end_parent_run(ctx.parent(), "FAILED")
    return summary


def write_report(
    out: Path, results: list[Any], config: EvalConfig, robustness: dict[str, list[dict[str, float]]], history: Path
) -> dict[str, str]:
    """Plots (paper Figure 4, accuracy by turn, training curves) and the Markdown/HTML report in `out`."""
    from cocos.plots import plot_accuracy_by_turn, plot_training_curves, plot_turn_transitions
    from cocos.prompts import CORRECTION_INSTRUCTION
    from cocos.report import bootstrap_intervals, html_report, markdown_report, turn_distribution

    metrics = {r.dataset: r.metrics for r in results}
    plots: dict[str, str] = {}
    intervals = {}
    for result in results:
        intervals[result.dataset] = bootstrap_intervals(result.records, config.turns, n_boot=1000, seed=0)
        if config.turns > 1:
            plots[f"transitions_{result.dataset}"] = plot_turn_transitions(
                turn_distribution(result.records, config.turns),
                out / "plots" / f"transitions_{result.dataset}.png",
                f"{result.dataset}: turn-wise transitions",
            )
    plots["accuracy_by_turn"] = plot_accuracy_by_turn(metrics, out / "plots" / "accuracy_by_turn.png")
    if history.exists():
        curves = json.loads(history.read_text())
        plots["training_curves"] = plot_training_curves(curves, out / "plots" / "training_curves.png")
    markdown = markdown_report(
        metrics,
        config.turns,
        robustness=robustness or None,
        intervals=intervals,
        plots={name: str(Path(path).relative_to(out)) for name, path in plots.items()},
        instructions=(CORRECTION_INSTRUCTION, *config.instructions),
    )
    (out / "report.md").write_text(markdown)
    (out / "report.html").write_text(html_report(markdown, plots))
    return plots


# ---------------------------------------------------------------------------- registry
@dataclass
class RegistrationResult:
    version: str
    promoted: bool
    reasons: list[str] = field(default_factory=list)
    champion: str | None = None


def register_stage(
    config: PromotionConfig,
    model_dir: str | Path,
    eval_dir: str | Path,
    ctx: RunContext,
    lineage: dict[str, str],
) -> RegistrationResult:
    """A new registered version (alias `challenger`), moved to `champion` only through the promotion gate."""
    from cocos import tracking

    summary = json.loads((Path(eval_dir) / EVAL_SUMMARY).read_text())
    candidate = {
        dataset: {k: float(v) for k, v in metrics.items() if k.startswith(("acc_", "c2i_", "i2c_", "delta_"))}
        for dataset, metrics in summary["metrics"].items()
    }
    tags = {"cocos.code_version": code_version(), "cocos.pipeline_run_id": ctx.pipeline_run_id, **lineage}
    with tracking.stage_run(ctx.parent(), "register", {"register": to_dict(config)}) as run_id:
        version = tracking.register_model(model_dir, config.model_name, run_id, tags)
        decision = tracking.promote(config.model_name, version, candidate, config.acc_t2_margin, config.c2i_ceiling)
        tracking.log_dict(decision.to_dict(), "promotion_decision.json")
        tracking.log_metrics({"register/promoted": float(decision.promoted), "register/version": float(version)})
    tracking.end_parent_run(ctx.parent(), "FINISHED")
    return RegistrationResult(
        version=version,
        promoted=decision.promoted,
        reasons=list(decision.reasons),
        champion=tracking.get_alias_version(config.model_name, "champion"),
    )


def copy_model(src: str | Path, dst: str | Path) -> None:
    """Copy an HF folder (used when a stage passes its input through unchanged)."""
    shutil.copytree(src, dst, dirs_exist_ok=True)
