"""Multi-process training inside one component: torchrun starts N copies of this module's CLI.

    python -m cocos.train.launch sft  --config SFT.json  --model-dir M --data-dir D --out-dir O [--metrics-file F]
    python -m cocos.train.launch rloo --config RLOO.json --model-dir M --data-dir D --out-dir O
                                      [--checkpoint-uri s3://...] [--work-dir W] [--run-id R] [--metrics-file F]

`launch(stage, nproc, args)` runs `python -m torch.distributed.run --nproc_per_node=N -m cocos.train.launch
...` for nproc > 1 (streaming the children's output) and the same code in-process for nproc == 1.
No MLflow here: rank 0 writes the metrics history to the metrics file and the caller logs it
(`run_sft_distributed` / `run_rloo_distributed` return that file's content).

Test hook: COCOS_TEST_EXECUTOR=hash replaces the sandbox by a deterministic stand-in that passes a
hash-of-the-code number of asserts, so a random tiny model gets rewards that vary within a group.
Only the distributed-mechanics test uses it; it is never a default.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from cocos.config import RLOOConfig, SFTConfig, from_dict, to_dict
from cocos.records import ExecutionJob, ExecutionResult, Status, TestOutcome
from cocos.train import distributed

log = logging.getLogger(__name__)

STAGES = ("sft", "rloo")
TEST_EXECUTOR_ENV = "COCOS_TEST_EXECUTOR"
# "[rank0]: cocos.config.ConfigError: ..." in a child's traceback; torchrun's own wrapper error is not a cause
_CAUSE = re.compile(r"^(\[rank\d+\]:\s*)?([\w.]+(Error|Exception)): (.*)$")


class LaunchError(RuntimeError):
    """A launched training stage failed; the message names the stage, the exit code and its last output."""


class HashVerdicts:
    """Test stand-in for the sandbox: passes hash(code) mod (tests + 1) asserts. Deterministic, never runs code."""

    def execute_many(self, jobs: Sequence[ExecutionJob]) -> list[ExecutionResult]:
        results = []
        for job in jobs:
            passed = int(hashlib.sha256(job.code.encode()).hexdigest(), 16) % (len(job.tests) + 1)
            outcomes = [TestOutcome(Status.PASSED)] * passed + [TestOutcome(Status.FAILED)] * (len(job.tests) - passed)
            results.append(ExecutionResult(tuple(outcomes)))
        return results


def _executor(sandbox_url: str) -> Any:
    choice = os.environ.get(TEST_EXECUTOR_ENV, "")
    if choice == "hash":
        log.warning("%s=hash: verdicts come from a hash of the code, not the sandbox (tests only)", TEST_EXECUTOR_ENV)
        return HashVerdicts()
    if choice:
        raise ValueError(f"{TEST_EXECUTOR_ENV}={choice!r}: the only test executor is 'hash'")
    from cocos.sandbox import get_executor

    return get_executor(sandbox_url or None)


def _write_json(path: str | Path, value: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, default=str))
    tmp.replace(path)


# ---------------------------------------------------------------------------- per-process entry points
def train_sft(config: SFTConfig, model_dir: str, data_dir: str, out_dir: str, metrics_file: str) -> dict[str, Any]:
    """One process of boost SFT; the HF Trainer joins the process group and runs DeepSpeed itself."""
    from cocos.train.sft import read_examples, run_sft

    data = Path(data_dir)
    train = read_examples(data / "boost_train.jsonl")
    validation_path = data / "boost_validation.jsonl"
    validation = read_examples(validation_path) if validation_path.exists() else None
    history: list[dict[str, Any]] = []
    final = run_sft(
        config, model_dir, train, out_dir, validation, on_log=lambda step, m: history.append({"step": step, **m})
    )
    if distributed.rank() == 0:
        final = {k: v for k, v in final.items() if isinstance(v, int | float)}
        _write_json(
            metrics_file,
            {"stage": "sft", "world_size": distributed.world_size(), "history": history, "final": final},
        )
    return final


def train_rloo(
    config: RLOOConfig,
    model_dir: str,
    data_dir: str,
    out_dir: str,
    metrics_file: str,
    checkpoint_uri: str = "",
    work_dir: str = "",
    run_id: str = "",
) -> dict[str, Any]:
    """One process of RLOO: join the group, train on this rank's share, rank 0 saves and writes metrics.

    Rank 0 rewrites the metrics file after every step ({"stage", "partial": true, "history"}), so a
    caller can follow progress; the final summary replaces it at the end.
    """
    from cocos.data import read_split
    from cocos.models import load_model_and_tokenizer
    from cocos.train.rloo import RLOOTrainer, StepCallbacks

    distributed.init_distributed()
    problems = read_split(Path(data_dir) / "train.jsonl")
    model, tokenizer = load_model_and_tokenizer(model_dir, dtype="bfloat16" if config.bf16 else "float32")
    if torch.cuda.is_available():
        model.to(torch.device("cuda", distributed.local_rank()))  # DeepSpeed would move it too; all-reduce needs it
    work = Path(work_dir) if work_dir else Path(out_dir).parent / (Path(out_dir).name + ".work")
    rollouts: list[dict[str, Any]] = []
    checkpoints: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []

    def on_step(step: int, metrics: dict[str, float]) -> None:  # rank 0 only (the trainer's rule)
        history.append({"step": step, **metrics})
        _write_json(metrics_file, {"stage": "rloo", "partial": True, "history": history})

    callbacks = StepCallbacks(
        on_step=on_step,
        on_rollouts=lambda step, records: rollouts.append({"step": step, "records": records}),
        on_checkpoint=lambda step, uri: checkpoints.append({"step": step, "uri": uri}),
    )
    trainer = RLOOTrainer(
        config, model, tokenizer, problems, _executor(config.sandbox_url), work, checkpoint_uri, callbacks, run_id
    )
    result = trainer.train()
    trainer.save_final(out_dir)
    summary = {
        "stage": "rloo",
        "world_size": trainer.world,
        "steps": result.steps_done,
        "resumed_from": result.resumed_from,
        "checkpoint_uri": checkpoint_uri,
        "config": to_dict(config),
        "history": [{"step": result.resumed_from + i + 1, **m} for i, m in enumerate(result.history)],
        "last": result.history[-1] if result.history else {},
        "checkpoints": checkpoints,
        "rollouts": rollouts,
    }
    if trainer.rank == 0:
        _write_json(metrics_file, summary)
    distributed.barrier()
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cocos.train.launch", description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("--config", required=True, help="JSON file of SFTConfig or RLOOConfig fields")
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--metrics-file", default="", help="rank 0 writes the metrics history here (JSON)")
    parser.add_argument("--checkpoint-uri", default="", help="rloo: S3 prefix for checkpoints")
    parser.add_argument("--work-dir", default="", help="rloo: local checkpoints and scratch")
    parser.add_argument("--run-id", default="", help="rloo: tracking run id, stored in checkpoints")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format=f"[rank {distributed.rank()}] %(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with tempfile.TemporaryDirectory(prefix=f"cocos-{args.stage}-") as scratch:
        staged = _stage_from_s3(args, Path(scratch))
        values = json.loads(Path(staged.config).read_text())
        metrics_file = staged.metrics_file or str(
            Path(staged.out_dir).parent / (Path(staged.out_dir).name + ".metrics.json")
        )
        if args.stage == "sft":
            train_sft(from_dict(SFTConfig, values), staged.model_dir, staged.data_dir, staged.out_dir, metrics_file)
        else:
            train_rloo(
                from_dict(RLOOConfig, values),
                staged.model_dir,
                staged.data_dir,
                staged.out_dir,
                metrics_file,
                args.checkpoint_uri,
                args.work_dir,
                args.run_id,
            )
        _publish_to_s3(args, staged, metrics_file)
    return 0


def _stage_from_s3(args: argparse.Namespace, scratch: Path) -> argparse.Namespace:
    """A TrainJob's pods share no disk with the pipeline: s3:// inputs are downloaded per process and s3://
    outputs are written locally first (published by rank 0 at the end, manifest last)."""
    from cocos import storage

    staged = argparse.Namespace(**vars(args))
    if storage.is_s3_uri(args.config):
        staged.config = str(storage.download_file(args.config, scratch / "config.json"))
    for name in ("model_dir", "data_dir"):
        uri = getattr(args, name)
        if storage.is_s3_uri(uri):
            target = scratch / name
            storage.download_dir(uri, target)
            setattr(staged, name, str(target))
    if storage.is_s3_uri(args.out_dir):
        staged.out_dir = str(scratch / "out")
    if storage.is_s3_uri(args.metrics_file):
        staged.metrics_file = str(scratch / "metrics.json")
    return staged


def _publish_to_s3(args: argparse.Namespace, staged: argparse.Namespace, metrics_file: str) -> None:
    from cocos import storage

    if distributed.rank() == 0:
        if storage.is_s3_uri(args.out_dir):
            storage.upload_dir(staged.out_dir, args.out_dir, extra={"stage": args.stage})
        if storage.is_s3_uri(args.metrics_file):
            storage.upload_file(metrics_file, args.metrics_file)
    distributed.barrier()


# ---------------------------------------------------------------------------- launcher
def torchrun_command(
    stage: str, nproc: int, args: Sequence[str], nnodes: int = 1, master_addr: str | None = None, node_rank: int = 0
) -> list[str]:
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--nnodes={nnodes}"]
    if nnodes == 1 and master_addr is None:
        command.append("--standalone")  # a free local port, no rendezvous server
    else:
        if not master_addr:
            raise ValueError(f"launch: {nnodes} nodes need master_addr (the address of node 0)")
        port = os.environ.get("MASTER_PORT", "29500")
        command += [f"--node_rank={node_rank}", f"--master_addr={master_addr}", f"--master_port={port}"]
    return [*command, "-m", "cocos.train.launch", stage, *args]


def launch(
    stage: str,
    nproc: int,
    args: list[str],
    nnodes: int = 1,
    master_addr: str | None = None,
    node_rank: int = 0,
) -> int:
    """Run `stage` ("sft" or "rloo") with the CLI `args` in nproc processes per node; returns 0.

    nproc == 1 on one node runs in this process (its exceptions propagate unchanged). Otherwise torchrun
    starts the processes, their output is streamed to this process's stdout, and a non-zero exit raises
    LaunchError naming the stage and the exit code, with the last lines of output.
    """
    if stage not in STAGES:
        raise ValueError(f"launch: stage={stage!r} must be one of {', '.join(STAGES)}")
    if nproc < 1 or nnodes < 1:
        raise ValueError(f"launch: nproc={nproc} and nnodes={nnodes} must be >= 1")
    if nproc == 1 and nnodes == 1:
        return main([stage, *args])
    command = torchrun_command(stage, nproc, args, nnodes, master_addr, node_rank)
    log.info("launch %s: %s", stage, " ".join(command))
    tail: collections.deque[str] = collections.deque(maxlen=40)
    cause = ""
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)  # pass the children's output through, as it comes
            sys.stdout.flush()
            tail.append(line.rstrip("\n"))
            match = _CAUSE.match(line.strip())
            if match and not cause and "ChildFailedError" not in match.group(2):
                cause = f"{match.group(2)}: {match.group(4)}"
        code = process.wait()
    if code != 0:
        last = "\n".join(tail)
        raise LaunchError(
            f"launch: stage {stage!r} failed with exit code {code} ({nnodes} node(s) x {nproc} processes): "
            f"{cause or 'no exception in the output'}; last output:\n{last}"
        )
    return 0


def _launch_with_config(stage: str, config: Any, paths: list[str], nproc: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"cocos-{stage}-") as tmp:
        config_file = Path(tmp) / "config.json"
        metrics_file = Path(tmp) / "metrics.json"
        config_file.write_text(json.dumps(to_dict(config)))
        launch(stage, nproc, ["--config", str(config_file), "--metrics-file", str(metrics_file), *paths])
        return json.loads(metrics_file.read_text())


def run_sft_distributed(
    config: SFTConfig, model_dir: str | Path, data_dir: str | Path, out_dir: str | Path, nproc: int
) -> dict[str, Any]:
    """Boost SFT in nproc processes; returns {"history": [{"step", "sft/..."}], "final": {...}} from rank 0."""
    paths = ["--model-dir", str(model_dir), "--data-dir", str(data_dir), "--out-dir", str(out_dir)]
    return _launch_with_config("sft", config, paths, nproc)


def run_rloo_distributed(
    config: RLOOConfig,
    model_dir: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    checkpoint_uri: str,
    nproc: int,
    work_dir: str | Path | None = None,
    run_id: str = "",
) -> dict[str, Any]:
    """RLOO in nproc processes; returns rank 0's summary: steps, resumed_from, history, checkpoints, rollouts."""
    paths = ["--model-dir", str(model_dir), "--data-dir", str(data_dir), "--out-dir", str(out_dir)]
    paths += ["--checkpoint-uri", checkpoint_uri]
    if work_dir:
        paths += ["--work-dir", str(work_dir)]
    if run_id:
        paths += ["--run-id", run_id]
    return _launch_with_config("rloo", config, paths, nproc)


if __name__ == "__main__":
    sys.exit(main())
