"""Compile, run locally, submit and schedule the CoCoS pipeline (`cocos pipeline ...`)."""

from __future__ import annotations

import ast
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

COMPILED = Path(__file__).resolve().parent / "compiled" / "cocos_pipeline.yaml"

# The demo: SmolLM2-135M on 2 CPU cores in minutes. Every value is a pipeline parameter.
DEMO_PARAMETERS: dict[str, Any] = {
    "data_train_source": "synthetic",
    "data_eval_sources": "synthetic,humaneval",
    "data_eval_limit": 8,
    "data_synthetic_train": 48,
    "data_synthetic_test": 8,
    "data_max_drop_share": 0.05,
    "model_reference": "packaged:smollm2",
    # One SmolLM2 step of 4 x ~190 tokens takes ~15 s on 2 cores: the demo shows the stages, not a trained model.
    "sft_learning_rate": 2e-4,
    "sft_max_steps": 8,
    "sft_per_device_batch_size": 4,
    "sft_gradient_accumulation_steps": 1,
    "sft_max_length": 384,
    "sft_bf16": False,
    "sft_max_eval_examples": 16,
    "rloo_steps": 2,
    "rloo_prompts_per_step": 4,
    "rloo_group_size": 2,
    "rloo_max_new_tokens": 64,
    "rloo_learning_rate": 2e-6,
    "rloo_micro_batch_size": 8,
    "rloo_checkpoint_every": 1,
    "eval_max_new_tokens": 96,
    "eval_batch_size": 8,
    "register_c2i_ceiling": 1.0,
    "train_gpus": 1,  # the local runner ignores GPU requests; this machine trains on its CPU
}


def compile_pipeline(output: str | Path = COMPILED) -> Path:
    from kfp import compiler

    from pipelines.cocos_pipeline import cocos_pipeline

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(cocos_pipeline, str(output))
    output.write_text(_stable_header(output.read_text()))
    return output


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


def _stable_header(text: str) -> str:
    """kfp's header comment prints dict defaults in hash order; sort them so the YAML is reproducible."""
    lines = []
    for line in text.splitlines(keepends=True):
        if line.startswith("#") and "[Default: {" in line or line.startswith("#") and "[Default: [" in line:
            head, _, default = line.rstrip("\n").partition("[Default: ")
            try:
                value = ast.literal_eval(default[:-1])
            except (ValueError, SyntaxError):
                lines.append(line)
                continue
            line = f"{head}[Default: {_sorted(value)!r}]\n"
        lines.append(line)
    return "".join(lines)


def run_local(parameters: dict[str, Any], pipeline_root: str | Path) -> Any:
    """Run the whole DAG with kfp's SubprocessRunner in this environment (k8s settings are ignored)."""
    from kfp import local

    from pipelines.cocos_pipeline import cocos_pipeline

    Path(pipeline_root).mkdir(parents=True, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root), raise_on_error=True)
    return cocos_pipeline(**parameters)


def _client(host: str, namespace: str | None) -> Any:
    import kfp

    return kfp.Client(host=host, namespace=namespace)


def submit(host: str, parameters: dict[str, Any], experiment: str, namespace: str | None = None) -> str:
    """Submit one run of the compiled pipeline; returns the run id."""
    package = COMPILED if COMPILED.exists() else compile_pipeline()
    run = _client(host, namespace).create_run_from_pipeline_package(
        str(package), arguments=parameters, experiment_name=experiment, enable_caching=True
    )
    return str(run.run_id)


def schedule(
    host: str,
    cron: str,
    parameters: dict[str, Any],
    experiment: str,
    name: str = "cocos-retrain",
    namespace: str | None = None,
) -> str:
    """A recurring run on an uploaded pipeline version (kfp cron: 6 fields, seconds first)."""
    if len(cron.split()) not in (5, 6):
        raise ValueError(f"cron={cron!r}: give 5 or 6 space-separated fields, e.g. '0 0 3 * * 0' (Sundays 03:00)")
    client = _client(host, namespace)
    package = COMPILED if COMPILED.exists() else compile_pipeline()
    pipeline = client.upload_pipeline(str(package), pipeline_name=name)
    version = client.list_pipeline_versions(pipeline.pipeline_id).pipeline_versions[0]
    experiment_id = client.create_experiment(experiment, namespace=namespace).experiment_id
    job = client.create_recurring_run(
        experiment_id=experiment_id,
        job_name=name,
        cron_expression=cron if len(cron.split()) == 6 else f"0 {cron}",
        pipeline_id=pipeline.pipeline_id,
        version_id=version.pipeline_version_id,
        params=parameters,
        max_concurrency=1,
        no_catchup=True,
    )
    return str(job.recurring_run_id)


def parse_parameters(pairs: list[str]) -> dict[str, Any]:
    """`name=value` pairs; values are JSON where they parse (numbers, booleans, lists), else strings."""
    parameters: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"parameter {pair!r}: write it as name=value")
        name, raw = pair.split("=", 1)
        try:
            parameters[name] = json.loads(raw)
        except json.JSONDecodeError:
            parameters[name] = raw
    return parameters
