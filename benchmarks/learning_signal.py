"""Does RL on unit-test rewards teach a small model to correct itself? A CPU benchmark (issue 7).

    python benchmarks/learning_signal.py [--mlflow] [settings; see --help]

From one starting model (default SmolLM2-135M-Instruct, packaged, no download):
1. boost SFT on two-turn examples (turn-1 and turn-2 prompt/completion pairs 1:1) of the offline
   synthetic training split, plus MBPP train when /work/shared/data/mbpp/mbpp.jsonl is present and
   --mbpp-boost is given; the SFT eval loss is measured on the synthetic *validation* split;
2. from that boost model, the same RL budget (steps, prompts per step, samples per prompt, seed,
   learning rate) for three arms: CoCoS `independent`, CoCoS `shared_turn1`, and Turn-RL
   (`RLOOConfig.preset("turn_rl")`), all on the synthetic training split (--rl-source: or MBPP
   train, or both);
3. greedy two-turn evaluation of the boost model and every trained model on held-out problems
   (synthetic test split, an MBPP test subset when present, a HumanEval subset) with 95% percentile
   bootstrap intervals (`cocos.report.bootstrap_intervals`) for Acc@t1, Acc@t2, i2c, c2i and delta.

Writes benchmarks/results/learning_signal.json and learning_signal.png (reward / rollout accuracy
curves per arm and the final table as bars with error bars). Work products (boost model, per-arm
models and results) are cached under --work-dir: a rerun with the same settings skips what is done,
so the run is resumable per arm. The JSON is rewritten after each stage, so a cut-off run leaves the
arms that finished. With MLFLOW_TRACKING_URI set (or --mlflow, which starts local services through
cocos.services.up()) everything is logged to the experiment "learning-signal": one parent run, one
child run per stage.

No choice of this script was tuned on an evaluation split; the validation split only reports the
boost model's SFT loss and (with --val-problems) its greedy accuracy.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RESULTS = REPO / "benchmarks" / "results"
MBPP_FILE = Path("/work/shared/data/mbpp/mbpp.jsonl")
ARMS = {
    # name: (preset, overrides)
    "cocos_independent": ("cocos", {"rollout_mode": "independent"}),
    "cocos_shared_turn1": ("cocos", {"rollout_mode": "shared_turn1"}),
    "turn_rl": ("turn_rl", {}),
}
METRICS = (
    ("acc_t1", "Acc@t1"),
    ("acc_t2", "Acc@t2"),
    ("i2c_t1_t2", "D_i->c"),
    ("c2i_t1_t2", "D_c->i"),
    ("delta_t1_t2", "Delta"),
)
log = logging.getLogger("learning_signal")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--model", default="packaged:smollm2", help="cocos.models.resolve_model reference")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--work-dir", default=str(REPO / ".cocos" / "learning_signal"))
    p.add_argument("--out-dir", default=str(RESULTS))
    p.add_argument("--arms", default=",".join(ARMS), help="comma-separated subset of " + ", ".join(ARMS))
    p.add_argument("--mlflow", action="store_true", help="start local services (cocos.services.up()) and log")
    p.add_argument("--experiment", default="learning-signal")
    # data
    p.add_argument("--synthetic-train", type=int, default=200)
    p.add_argument("--synthetic-validation", type=int, default=40)
    p.add_argument("--synthetic-test", type=int, default=40)
    p.add_argument("--mbpp-boost", action="store_true", help="add MBPP train two-turn examples to boost SFT")
    p.add_argument("--mbpp-test", type=int, default=0, help="MBPP test problems to evaluate (0: none)")
    p.add_argument("--humaneval", type=int, default=0, help="HumanEval problems to evaluate (0: none)")
    p.add_argument("--val-problems", type=int, default=0, help="greedy eval of the boost model on validation")
    # boost SFT
    p.add_argument("--sft-steps", type=int, default=12)
    p.add_argument("--sft-batch", type=int, default=8)
    p.add_argument("--sft-lr", type=float, default=1e-4)
    p.add_argument("--sft-max-length", type=int, default=512)
    p.add_argument("--sft-val-examples", type=int, default=16, help="validation examples for the SFT eval loss")
    # RL (same for every arm)
    p.add_argument(
        "--rl-source",
        choices=("synthetic", "mbpp", "both"),
        default="synthetic",
        help="RL prompts: the synthetic training split, MBPP train (when the file is present), or both",
    )
    p.add_argument("--rl-steps", type=int, default=4)
    p.add_argument("--rl-prompts", type=int, default=4)
    p.add_argument("--rl-k", type=int, default=2)
    p.add_argument("--rl-lr", type=float, default=5e-5)
    p.add_argument("--rl-max-new-tokens", type=int, default=64)
    p.add_argument("--rl-micro-batch", type=int, default=8)
    p.add_argument("--rl-temperature", type=float, default=0.9)
    p.add_argument("--gamma", type=float, default=0.5)
    p.add_argument("--kl-beta", type=float, default=0.01)
    # evaluation
    p.add_argument("--eval-max-new-tokens", type=int, default=96)
    p.add_argument("--eval-batch", type=int, default=8)
    p.add_argument("--eval-dtype", default="bfloat16", help="weights dtype for greedy evaluation (training: fp32)")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--wall-budget-min", type=float, default=30.0, help="skip remaining arms past this (0: no cap)")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------- helpers
def _key(values: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:12]


def _atomic_json(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


class Tracker:
    """MLflow when configured, else nothing. One parent run; a child run per stage."""

    def __init__(self, enabled: bool, experiment: str, run_key: str) -> None:
        self.enabled = enabled
        self.parent = ""
        if enabled:
            from cocos import tracking

            tracking.configure()
            self.parent = tracking.parent_run(
                experiment, f"learning-signal-{run_key}-{int(time.time())}", run_name="learning-signal"
            )

    def stage(self, name: str, params: dict[str, Any], body: Callable[[], Any]) -> Any:
        if not self.enabled:
            return body()
        from cocos import tracking

        with tracking.stage_run(self.parent, name, params):
            return body()

    def metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if self.enabled:
            from cocos import tracking

            tracking.log_metrics(
                {k: v for k, v in metrics.items() if isinstance(v, int | float) and math.isfinite(v)}, step=step
            )

    def artifact(self, path: Path) -> None:
        if self.enabled:
            from cocos import tracking

            tracking.log_artifact(path)

    def close(self, status: str = "FINISHED") -> None:
        if self.enabled:
            from cocos import tracking

            tracking.end_parent_run(self.parent, status)


# ---------------------------------------------------------------------------- data
def load_data(args: argparse.Namespace) -> dict[str, Any]:
    from cocos.data import load_problems, synthetic

    parts = synthetic.splits(args.seed, args.synthetic_train, args.synthetic_validation, args.synthetic_test)
    evals: dict[str, list[Any]] = {"synthetic": parts["test"]}
    mbpp_present = MBPP_FILE.exists()
    if mbpp_present and args.mbpp_test:
        evals["mbpp"] = load_problems("mbpp", "test", str(MBPP_FILE))[: args.mbpp_test]
    if args.humaneval:
        evals["humaneval"] = load_problems("humaneval", "test")[: args.humaneval]
    eval_ids = {p.task_id for problems in evals.values() for p in problems}
    boost_train = synthetic.synthetic_boost_examples(
        [p for p in parts["train"] if p.task_id not in eval_ids], args.seed
    )
    if mbpp_present and args.mbpp_boost:
        mbpp_train = load_problems("mbpp", "train", str(MBPP_FILE))
        boost_train += synthetic.synthetic_boost_examples(
            [p for p in mbpp_train if p.task_id not in eval_ids], args.seed
        )
    boost_val = synthetic.synthetic_boost_examples(parts["validation"], args.seed)
    rl_train = list(parts["train"]) if args.rl_source in ("synthetic", "both") else []
    if args.rl_source in ("mbpp", "both"):
        if not mbpp_present:
            raise SystemExit(f"--rl-source {args.rl_source}: {MBPP_FILE} is not present")
        rl_train += [p for p in load_problems("mbpp", "train", str(MBPP_FILE)) if p.task_id not in eval_ids]
    return {
        "train": rl_train,
        "validation": parts["validation"],
        "evals": evals,
        "boost_train": [{"prompt": e["prompt"], "completion": e["completion"]} for e in boost_train],
        "boost_validation": [{"prompt": e["prompt"], "completion": e["completion"]} for e in boost_val][
            : args.sft_val_examples
        ],
        "mbpp_present": mbpp_present,
    }


# ---------------------------------------------------------------------------- stages
def boost_sft(args: argparse.Namespace, base_dir: Path, data: dict[str, Any], work: Path, tracker: Tracker) -> dict:
    from cocos.config import SFTConfig, to_dict
    from cocos.train.sft import run_sft

    config = SFTConfig(
        learning_rate=args.sft_lr,
        max_steps=args.sft_steps,
        per_device_batch_size=args.sft_batch,
        gradient_accumulation_steps=1,
        max_length=args.sft_max_length,
        seed=args.seed,
        warmup_ratio=0.05,
        logging_steps=max(1, args.sft_steps // 20),
    )
    # keyed on this script's own settings (not on SFTConfig's field list, which may grow)
    sft_settings = {k: v for k, v in vars(args).items() if k.startswith("sft_") and k != "sft_val_examples"}
    key = _key(
        {
            "model": args.model,
            "seed": args.seed,
            "sft": sft_settings,
            "n": len(data["boost_train"]),
            "mbpp": bool(args.mbpp_boost and data["mbpp_present"]),
            "syn": args.synthetic_train,
        }
    )
    out = work / f"boost-{key}"
    done = out / "boost.json"
    if done.exists():
        print(f"[boost] cached {out}", flush=True)
        cached = json.loads(done.read_text())

        def log_cached() -> dict:
            for entry in cached["history"]:
                tracker.metrics({k: v for k, v in entry.items() if k != "step"}, step=int(entry["step"]))
            tracker.metrics({k.replace("/", "_") + "_final": v for k, v in cached["metrics"].items()})
            return cached

        return tracker.stage("boost_sft", {**to_dict(config), "cached": True}, log_cached)
    history: list[dict[str, float]] = []

    def on_log(step: int, metrics: dict[str, float]) -> None:
        history.append({"step": step, **metrics})
        tracker.metrics(metrics, step=step)
        if "sft/loss" in metrics:
            print(f"[boost] step {step} loss {metrics['sft/loss']:.4f}", flush=True)

    def body() -> dict:
        started = time.monotonic()
        metrics = run_sft(
            config, base_dir, data["boost_train"], out / "model", eval_examples=data["boost_validation"], on_log=on_log
        )
        shutil.rmtree(out / "model.trainer", ignore_errors=True)
        result = {
            "model_dir": str(out / "model"),
            "config": to_dict(config),
            "examples": len(data["boost_train"]),
            "validation_examples": len(data["boost_validation"]),
            "wall_s": time.monotonic() - started,
            "metrics": {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)},
            "history": history,
        }
        tracker.metrics({k.replace("/", "_") + "_final": v for k, v in result["metrics"].items()})
        _atomic_json(result, done)
        return result

    return tracker.stage("boost_sft", {**to_dict(config), "examples": len(data["boost_train"])}, body)


def evaluate_model(
    args: argparse.Namespace, model_dir: str, data: dict[str, Any], executor: Any, datasets: dict[str, list[Any]]
) -> dict[str, Any]:
    import torch

    from cocos.config import EvalConfig
    from cocos.evaluate import evaluate_problems
    from cocos.models import load_model_and_tokenizer
    from cocos.report import bootstrap_intervals, turn_distribution

    model, tokenizer = load_model_and_tokenizer(model_dir, dtype=args.eval_dtype)
    config = EvalConfig(turns=2, max_new_tokens=args.eval_max_new_tokens, batch_size=args.eval_batch)
    out: dict[str, Any] = {}
    for name, problems in datasets.items():
        started = time.monotonic()
        with torch.no_grad():
            result = evaluate_problems(model, tokenizer, problems, config, executor, name)
        intervals = bootstrap_intervals(result.records, 2, n_boot=args.n_boot, seed=args.seed)
        out[name] = {
            "metrics": result.metrics,
            "intervals": {k: list(v) for k, v in intervals.items()},
            "distribution": turn_distribution(result.records, 2),
            "records": [
                {k: r[k] for k in ("task_id", "correct", "passed", "total", "tokens", "codes")} for r in result.records
            ],
            "wall_s": time.monotonic() - started,
        }
        m = result.metrics
        print(
            f"  [eval] {name}: n={len(problems)} t1 {100 * m['acc_t1']:.1f} t2 {100 * m['acc_t2']:.1f} "
            f"delta {100 * m['delta_t1_t2']:+.1f} ({out[name]['wall_s']:.0f}s)",
            flush=True,
        )
    del model
    return out


def train_arm(
    args: argparse.Namespace,
    arm: str,
    boost_dir: str,
    data: dict[str, Any],
    executor: Any,
    arm_dir: Path,
    tracker_metrics: Callable[[dict[str, float], int], None],
) -> dict[str, Any]:
    import torch

    from cocos.config import RLOOConfig, to_dict
    from cocos.models import load_model_and_tokenizer
    from cocos.train.rloo import RLOOTrainer, StepCallbacks

    preset, overrides = ARMS[arm]
    config = RLOOConfig.preset(
        preset,
        **overrides,
        steps=args.rl_steps,
        prompts_per_step=args.rl_prompts,
        group_size=args.rl_k,
        learning_rate=args.rl_lr,
        max_new_tokens=args.rl_max_new_tokens,
        micro_batch_size=args.rl_micro_batch,
        temperature=args.rl_temperature,
        gamma=args.gamma,
        kl_beta=args.kl_beta,
        seed=args.seed,
        checkpoint_every=args.rl_steps,
        keep_checkpoints=1,
        log_rollouts_every=max(1, args.rl_steps),
    )
    model, tokenizer = load_model_and_tokenizer(boost_dir)
    history: list[dict[str, float]] = []

    def on_step(step: int, metrics: dict[str, float]) -> None:
        history.append({"step": step, **metrics})
        tracker_metrics(metrics, step)
        print(
            f"  [{arm}] step {step}/{config.steps} reward {metrics['rollout/reward_mean']:.3f} "
            f"acc_t1 {metrics['rollout/acc_t1']:.2f} acc_t2 {metrics['rollout/acc_t2']:.2f} "
            f"kl {metrics['rollout/kl']:.3f} tokens {int(metrics['rollout/generated_tokens'])} "
            f"({metrics['train/step_time_s']:.0f}s)",
            flush=True,
        )

    started = time.monotonic()
    trainer = RLOOTrainer(
        config, model, tokenizer, data["train"], executor, arm_dir / "trainer", callbacks=StepCallbacks(on_step=on_step)
    )
    torch.manual_seed(args.seed)
    trainer.train()
    trainer.save_final(arm_dir / "model")
    shutil.rmtree(arm_dir / "trainer", ignore_errors=True)  # checkpoints (optimizer state) are not needed
    return {
        "config": to_dict(config),
        "history": history,
        "train_wall_s": time.monotonic() - started,
        "model_dir": str(arm_dir / "model"),
    }


# ---------------------------------------------------------------------------- report
def table_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for model_name, entry in results["models"].items():
        for dataset, ev in entry.get("eval", {}).items():
            row: dict[str, Any] = {"model": model_name, "dataset": dataset, "n": int(ev["metrics"]["problems"])}
            for key, _ in METRICS:
                row[key] = ev["metrics"][key]
                row[key + "_ci"] = ev["intervals"][key]
            rows.append(row)
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    header = ["dataset", "model", "n"] + [label for _, label in METRICS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in sorted(rows, key=lambda r: (r["dataset"], r["model"] != "boost", r["model"])):
        cells = [r["dataset"], r["model"], str(r["n"])]
        for key, _ in METRICS:
            lo, hi = r[key + "_ci"]
            cells.append(f"{100 * r[key]:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    arms = [a for a in results["models"] if a != "boost" and results["models"][a].get("history")]
    datasets = list(results["datasets"])
    fig = plt.figure(figsize=(max(15, 6 * len(datasets)), 9), dpi=110)
    top, bottom = fig.subfigures(2, 1)
    panels = [
        ("rollout/reward_mean", "reward mean"),
        ("rollout/acc_t1", "rollout Acc@t1 (%)"),
        ("rollout/acc_t2", "rollout Acc@t2 (%)"),
    ]
    for ax, (key, label) in zip(top.subplots(1, 3), panels, strict=True):
        for arm in arms:
            hist = results["models"][arm]["history"]
            scale = 100 if "acc" in key else 1
            ax.plot([h["step"] for h in hist], [scale * h[key] for h in hist], marker="o", markersize=3, label=arm)
        ax.set_title(label)
        ax.set_xlabel("RL step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    models = list(results["models"])
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    bar_axes = bottom.subplots(1, len(datasets), squeeze=False)[0]
    for ax, dataset in zip(bar_axes, datasets, strict=True):
        width = 0.8 / max(1, len(models))
        x = np.arange(len(METRICS))
        for m_index, model_name in enumerate(models):
            ev = results["models"][model_name].get("eval", {}).get(dataset)
            if not ev:
                continue
            values = [100 * ev["metrics"][k] for k, _ in METRICS]
            lows = [100 * (ev["metrics"][k] - ev["intervals"][k][0]) for k, _ in METRICS]
            highs = [100 * (ev["intervals"][k][1] - ev["metrics"][k]) for k, _ in METRICS]
            ax.bar(
                x + (m_index - (len(models) - 1) / 2) * width,
                values,
                width,
                yerr=[lows, highs],
                capsize=2,
                label=model_name,
                color=colors[m_index % len(colors)],
            )
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_xticks(x, [label for _, label in METRICS])
        n = next(
            (
                int(results["models"][m]["eval"][dataset]["metrics"]["problems"])
                for m in models
                if dataset in results["models"][m].get("eval", {})
            ),
            0,
        )
        ax.set_title(f"held-out {dataset} (n={n}), greedy, 95% bootstrap CI")
        ax.set_ylabel("% of problems")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    top.suptitle(f"Learning signal: boost SFT then RL ({results['settings']['model']}, CPU); rollout curves")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


# ---------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    from cocos.models import resolve_model
    from cocos.sandbox import get_executor

    started = time.monotonic()
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise SystemExit(f"--arms: unknown {unknown}; known: {', '.join(ARMS)}")
    if args.mlflow:
        from cocos import services

        os.environ.update(services.up().env())
    settings = {k: v for k, v in vars(args).items() if k not in ("work_dir", "out_dir", "mlflow")}
    run_key = _key({k: v for k, v in settings.items() if k not in ("arms", "wall_budget_min")})
    tracker = Tracker(bool(os.environ.get("MLFLOW_TRACKING_URI")), args.experiment, run_key)
    work = Path(args.work_dir)
    out_dir = Path(args.out_dir)
    json_path, png_path = out_dir / "learning_signal.json", out_dir / "learning_signal.png"
    base_dir = resolve_model(args.model)
    data = load_data(args)
    executor = get_executor(None)
    datasets = data["evals"]
    print(
        f"[data] boost train {len(data['boost_train'])} examples, boost validation "
        f"{len(data['boost_validation'])}, RL train {len(data['train'])} problems, eval "
        + ", ".join(f"{k} {len(v)}" for k, v in datasets.items()),
        flush=True,
    )
    results: dict[str, Any] = {
        "settings": settings,
        "command": "python benchmarks/learning_signal.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "datasets": {k: [p.task_id for p in v] for k, v in datasets.items()},
        "mbpp_present": data["mbpp_present"],
        "models": {},
        "torch_threads": torch.get_num_threads(),
    }

    def save() -> None:
        results["wall_s"] = time.monotonic() - started
        results["table"] = table_rows(results)
        _atomic_json(results, json_path)
        if any(m.get("eval") for m in results["models"].values()):
            plot(results, png_path)

    status = "FINISHED"
    try:
        boost = boost_sft(args, base_dir, data, work, tracker)
        boost_dir = boost["model_dir"]
        results["boost_sft"] = {k: v for k, v in boost.items() if k != "model_dir"}
        rl_key = _key(
            {"boost": boost_dir, **{k: v for k, v in settings.items() if k.startswith(("rl_", "gamma", "kl_"))}}
        )
        eval_key = _key(
            {
                k: v
                for k, v in settings.items()
                if k.startswith(("eval_", "synthetic_", "humaneval", "mbpp_test", "n_boot"))
            }
        )

        def cached_eval(name: str, model_dir: str, folder: Path, params: dict[str, Any]) -> dict[str, Any]:
            path = folder / f"eval-{eval_key}.json"
            cached = path.exists()
            if cached:
                print(f"[{name}] eval cached", flush=True)

            def body() -> dict[str, Any]:
                if cached:
                    ev = json.loads(path.read_text())
                else:
                    ev = evaluate_model(args, model_dir, data, executor, datasets)
                for dataset, entry in ev.items():
                    tracker.metrics({f"{dataset}/{k}": v for k, v in entry["metrics"].items()})
                    tracker.metrics(
                        {
                            f"{dataset}/{k}_ci_{side}": entry["intervals"][k][i]
                            for k, _ in METRICS
                            for i, side in enumerate(("low", "high"))
                        }
                    )
                if not cached:
                    _atomic_json(ev, path)
                return ev

            return tracker.stage(f"eval_{name}", {**params, "cached": cached}, body)

        print("[boost] evaluating", flush=True)
        boost_eval = cached_eval("boost", boost_dir, Path(boost_dir).parent, {"model": "boost"})
        results["models"]["boost"] = {"eval": boost_eval}
        if args.val_problems:
            val_path = Path(boost_dir).parent / f"validation-{eval_key}-{args.val_problems}.json"
            if not val_path.exists():
                val = evaluate_model(
                    args, boost_dir, data, executor, {"synthetic_validation": data["validation"][: args.val_problems]}
                )
                _atomic_json(val, val_path)
            val = json.loads(val_path.read_text())
            results["boost_validation_eval"] = {k: v["metrics"] for k, v in val.items()}
        save()
        for arm in arms:
            elapsed_min = (time.monotonic() - started) / 60
            if args.wall_budget_min and elapsed_min > args.wall_budget_min:
                print(f"[{arm}] skipped: {elapsed_min:.1f} min elapsed > --wall-budget-min", flush=True)
                results["models"][arm] = {"skipped": "wall budget"}
                continue
            arm_dir = Path(boost_dir).parent / f"{arm}-{rl_key}"
            train_path = arm_dir / "train.json"
            if train_path.exists():
                print(f"[{arm}] training cached", flush=True)
                trained = json.loads(train_path.read_text())
            else:
                print(f"[{arm}] training", flush=True)
                trained = tracker.stage(
                    f"rl_{arm}",
                    {"arm": arm, **settings},
                    lambda arm=arm, arm_dir=arm_dir: train_arm(
                        args, arm, boost_dir, data, executor, arm_dir, lambda m, s: tracker.metrics(m, step=s)
                    ),
                )
                _atomic_json(trained, train_path)
            ev = cached_eval(arm, trained["model_dir"], arm_dir, {"model": arm})
            results["models"][arm] = {
                "eval": ev,
                "history": trained["history"],
                "train_wall_s": trained["train_wall_s"],
                "config": trained["config"],
            }
            save()
    except BaseException:
        status = "FAILED"
        raise
    finally:
        save()
        if tracker.enabled:
            from cocos import tracking

            with tracking.stage_run(tracker.parent, "report", {"status": status}):
                tracking.log_artifact(json_path)
                if png_path.exists():
                    tracking.log_artifact(png_path)
                tracking.log_text(markdown_table(results["table"]), "learning_signal.md")
            tracker.close(status)
    print(f"\nwall time {results['wall_s'] / 60:.1f} min\n")
    print(markdown_table(results["table"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
