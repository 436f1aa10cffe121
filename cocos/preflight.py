"""Checks a pipeline run before any GPU task starts: every stage config, the secrets' environment, and
that MLflow, S3 (the checkpoint bucket), the starting model and the sandbox service can be reached.

All problems are collected and reported together, so one failed run shows everything to fix.
"""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cocos.config import ConfigError, EvalConfig, PromotionConfig, RLOOConfig, SFTConfig, prefixed

log = logging.getLogger(__name__)

REQUIRED_ENV = ("MLFLOW_TRACKING_URI", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


class PreflightError(RuntimeError):
    """One or more problems found before training; the message lists each."""


def data_config(params: Mapping[str, Any]) -> Any:
    """DataConfig from the pipeline's data_* parameters (empty strings and zeros mean "not set")."""
    from cocos.data import DataConfig

    values = prefixed(params, "data_", DataConfig)
    if isinstance(values.get("eval_sources"), str):
        values["eval_sources"] = tuple(s.strip() for s in values["eval_sources"].split(",") if s.strip())
    for key in ("train_path", "boost_path"):
        if key in values:
            values[key] = values[key] or None
    for key in ("train_limit", "eval_limit"):
        if key in values:
            values[key] = values[key] or None
    return DataConfig(**values)


def _http_ok(url: str, timeout_s: float = 5.0) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (our own service URLs)
            return None if response.status < 400 else f"HTTP {response.status}"
    except (urllib.error.URLError, OSError) as error:
        return str(getattr(error, "reason", error))


def _collect(problems: list[str], what: str, check: Callable[[], Any]) -> Any:
    try:
        return check()
    except (ConfigError, ValueError, OSError, RuntimeError) as error:
        problems.append(f"{what}: {error}")
        return None


def check(params: Mapping[str, Any], reach_services: bool = True) -> list[str]:
    """Every problem with these pipeline parameters and this environment; empty when the run may start."""
    problems: list[str] = []
    _collect(problems, "data", lambda: data_config(params))
    _collect(problems, "sft", lambda: SFTConfig(**prefixed(params, "sft_", SFTConfig)))
    rloo = _collect(
        problems,
        "rloo",
        lambda: RLOOConfig.for_pipeline(prefixed(params, "rloo_", RLOOConfig)),
    )
    _collect(problems, "eval", lambda: EvalConfig(**prefixed(params, "eval_", EvalConfig)))
    _collect(problems, "register", lambda: PromotionConfig(**prefixed(params, "register_", PromotionConfig)))
    processes = int(params.get("train_gpus", 1) or 1) * int(params.get("train_nodes", 1) or 1)
    if rloo is not None and processes > 1 and rloo.prompts_per_step % processes:
        problems.append(
            f"rloo_prompts_per_step={rloo.prompts_per_step} must be divisible by train_gpus x train_nodes="
            f"{processes}: each GPU rolls out whole groups of prompts"
        )
    missing = [name for name in REQUIRED_ENV if not os.environ.get(name)]
    if missing:
        problems.append(
            f"environment lacks {', '.join(missing)}: create the secrets named by s3_secret and mlflow_secret"
        )
    model = str(params.get("model_reference", ""))
    if model.startswith(("/", ".", "~")) and not Path(model).expanduser().exists():
        problems.append(f"model_reference={model!r} does not exist")
    if reach_services and not missing:
        problems += _reachability(params, model)
    return problems


def _reachability(params: Mapping[str, Any], model: str) -> list[str]:
    from cocos import storage

    problems = []
    tracking_uri = os.environ["MLFLOW_TRACKING_URI"]
    if tracking_uri.startswith("http") and (error := _http_ok(tracking_uri.rstrip("/") + "/health")):
        problems.append(f"MLflow at {tracking_uri} is not reachable: {error}")
    checkpoint_uri = str(params.get("rloo_checkpoint_uri", ""))
    if checkpoint_uri:

        def bucket() -> None:
            storage.ensure_bucket(storage.parse_s3_uri(checkpoint_uri)[0])

        _collect(problems, f"rloo_checkpoint_uri={checkpoint_uri!r}", bucket)
    if model.startswith("s3://"):
        _collect(problems, f"model_reference={model!r}", lambda: storage.read_manifest(model))
    sandbox_url = str(params.get("sandbox_url", ""))
    if sandbox_url and (error := _http_ok(sandbox_url.rstrip("/") + "/healthz")):
        problems.append(f"sandbox_url={sandbox_url!r} is not reachable: {error}")
    return problems


def run_preflight(params: Mapping[str, Any], reach_services: bool = True) -> None:
    problems = check(params, reach_services)
    if problems:
        raise PreflightError("the pipeline run cannot start:\n- " + "\n- ".join(problems))
    log.info("preflight passed: configs valid, secrets present, services reachable")
