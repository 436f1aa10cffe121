"""`cocos`: services, the pipeline, the sandbox server, the model registry and the demo.

cocos services up|down|status
cocos pipeline compile|run|submit|schedule
cocos sandbox serve --port 8080
cocos registry rollback NAME
cocos demo
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("cocos")


def _services(args: argparse.Namespace) -> int:
    from cocos import services

    if args.action == "up":
        info = services.up()
        _say(f"SeaweedFS S3 at {info.s3_endpoint}, MLflow at {info.tracking_uri} (state in {info.state_dir})")
    elif args.action == "down":
        _say(json.dumps(services.down(), indent=2))
    else:
        _say(json.dumps(services.status(), indent=2, default=str))
    return 0


def _pipeline(args: argparse.Namespace) -> int:
    from pipelines import cli as pipeline_cli

    parameters = pipeline_cli.parse_parameters(args.param or [])
    if args.action == "compile":
        _say(f"compiled {pipeline_cli.compile_pipeline(args.output or pipeline_cli.COMPILED)}")
    elif args.action == "run":
        from cocos import services

        info = services.up()  # idempotent: reuses running, healthy services
        os.environ.update(info.env())
        pipeline_cli.run_local(parameters, Path(info.state_dir) / "kfp-local")
    elif args.action == "submit":
        _require_host(args)
        _say(f"run {pipeline_cli.submit(args.host, parameters, args.experiment, args.namespace)}")
    elif args.action == "schedule":
        _require_host(args)
        if not args.cron:
            raise SystemExit("cocos pipeline schedule: --cron is required, e.g. --cron '0 0 3 * * 0'")
        job = pipeline_cli.schedule(args.host, args.cron, parameters, args.experiment, namespace=args.namespace)
        _say(f"recurring run {job}")
    return 0


def _require_host(args: argparse.Namespace) -> None:
    if not args.host:
        raise SystemExit(f"cocos pipeline {args.action}: --host is required (the Kubeflow Pipelines API URL)")


def _sandbox(args: argparse.Namespace) -> int:
    from cocos.sandbox import service

    serve = service.serve
    accepted = inspect.signature(serve).parameters
    options = {"host": args.host, "port": args.port, "workers": args.workers, "queue_size": args.queue_size}
    serve(**{k: v for k, v in options.items() if k in accepted and v is not None})
    return 0


def _registry(args: argparse.Namespace) -> int:
    from cocos import tracking

    if args.action == "rollback":
        _say(f"{args.name}: champion is now version {tracking.rollback(args.name)}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from cocos import services
    from pipelines import cli as pipeline_cli

    started = time.monotonic()
    _say("[1/3] starting local services (SeaweedFS S3, MLflow on SQLite)")
    info = services.up()
    os.environ.update(info.env())
    parameters = {**pipeline_cli.DEMO_PARAMETERS, **pipeline_cli.parse_parameters(args.param or [])}
    _say("[2/3] running the pipeline with kfp's local SubprocessRunner:")
    _say("      prepare_data -> boost_sft -> cocos_rloo -> evaluate -> register_model")
    root = Path(info.state_dir) / "kfp-local"
    run = pipeline_cli.run_local(parameters, root)
    _say("[3/3] results")
    table, run_url, version = _demo_summary(run, info)
    _say("")
    _say(table)
    _say("")
    _say(f"MLflow UI: {info.tracking_uri}  (experiment 'cocos'; the run has a child run per stage)")
    if run_url:
        _say(f"  this pipeline run: {run_url}")
    if version:
        name = parameters.get("register_model_name", "cocos-self-correct")
        _say(f"  registered model: {info.tracking_uri}/#/models/{name} (version {version})")
    _say(f"S3 bucket '{info.bucket}' at {info.s3_endpoint} (credentials in {info.state_dir}/credentials.json)")
    _say(f"kfp local outputs: {root}")
    _say(f"finished in {time.monotonic() - started:.0f} s; stop the services with `make down`")
    return 0


def _demo_summary(run: Any, info: Any) -> tuple[str, str, str]:
    from cocos import tracking

    tracking.configure(info.tracking_uri)
    table, url, version = "", "", ""
    summaries = sorted(Path(info.state_dir, "kfp-local").glob("**/evaluation/summary.json"), key=os.path.getmtime)
    if summaries:
        table = json.loads(summaries[-1].read_text())["table"]
    try:
        import mlflow

        runs = mlflow.search_runs(
            experiment_names=["cocos"],
            filter_string="tags.`cocos.stage` = 'pipeline'",
            max_results=1,
            order_by=["start_time DESC"],
        )
        if len(runs):
            run_id, experiment_id = runs.iloc[0]["run_id"], runs.iloc[0]["experiment_id"]
            url = f"{info.tracking_uri}/#/experiments/{experiment_id}/runs/{run_id}"
        version = str(getattr(run, "output", "") or "")
    except Exception as error:  # the summary is a convenience; the run itself already succeeded
        log.warning("could not read the run summary from MLflow: %s", error)
    return table or "(no evaluation table found)", url, version


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cocos", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    services_parser = sub.add_parser("services", help="local SeaweedFS + MLflow")
    services_parser.add_argument("action", choices=["up", "down", "status"])
    services_parser.set_defaults(func=_services)

    pipeline = sub.add_parser("pipeline", help="compile, run locally, submit or schedule the pipeline")
    pipeline.add_argument("action", choices=["compile", "run", "submit", "schedule"])
    pipeline.add_argument("--param", "-p", action="append", help="name=value (repeatable)")
    pipeline.add_argument("--output", help="compile: where to write the YAML")
    pipeline.add_argument("--host", help="submit/schedule: Kubeflow Pipelines API URL")
    pipeline.add_argument("--namespace", help="submit/schedule: Kubeflow namespace")
    pipeline.add_argument("--experiment", default="cocos", help="submit/schedule: kfp experiment name")
    pipeline.add_argument("--cron", help="schedule: cron expression (kfp: 6 fields, seconds first)")
    pipeline.set_defaults(func=_pipeline)

    sandbox = sub.add_parser("sandbox", help="the sandbox execution service")
    sandbox.add_argument("action", choices=["serve"])
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8080)
    sandbox.add_argument("--workers", type=int)
    sandbox.add_argument("--queue-size", type=int)
    sandbox.set_defaults(func=_sandbox)

    registry = sub.add_parser("registry", help="the MLflow model registry")
    registry.add_argument("action", choices=["rollback"])
    registry.add_argument("name", help="registered model name")
    registry.set_defaults(func=_registry)

    demo = sub.add_parser("demo", help="start services and run the whole pipeline locally with SmolLM2")
    demo.add_argument("--param", "-p", action="append", help="override a demo parameter, name=value")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
