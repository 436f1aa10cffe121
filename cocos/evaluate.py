"""Greedy multi-turn evaluation (method.md section 7): per-problem records and the metrics table."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cocos.config import EvalConfig
from cocos.metrics import assert_transitions, self_correction_metrics
from cocos.prompts import extract_code, turn_prompt
from cocos.records import ExecutionJob, ExecutionResult, Problem
from cocos.train.generation import generate

log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    dataset: str
    records: list[dict[str, Any]]
    metrics: dict[str, float]


def evaluate_problems(
    model: Any,
    tokenizer: Any,
    problems: Sequence[Problem],
    config: EvalConfig,
    executor: Any,
    dataset: str,
    instruction: str | None = None,
) -> EvalResult:
    """Turn 1 from the task alone; each later turn sees only the latest extracted code and the instruction."""
    if not problems:
        raise ValueError(f"eval dataset {dataset!r} has no problems")
    codes: list[list[str]] = [[] for _ in problems]
    results: list[list[ExecutionResult]] = [[] for _ in problems]
    tokens: list[list[int]] = [[] for _ in problems]
    for turn in range(config.turns):
        prompts = [
            turn_prompt(p) if turn == 0 else turn_prompt(p, previous_code=codes[i][-1], instruction=instruction)
            for i, p in enumerate(problems)
        ]
        completions = generate(
            model,
            tokenizer,
            prompts,
            max_new_tokens=config.max_new_tokens,
            temperature=0.0,
            stop_at_done=config.stop_at_done,
            batch_size=config.batch_size,
        )
        for i, completion in enumerate(completions):
            codes[i].append(extract_code(completion.text))
            tokens[i].append(len(completion.completion_ids))
        jobs = [ExecutionJob(codes[i][-1], p.tests, p.setup, config.test_timeout_s) for i, p in enumerate(problems)]
        for i, result in enumerate(executor.execute_many(jobs)):
            results[i].append(result)
        log.info(
            "eval %s turn %d: %d/%d correct", dataset, turn + 1, sum(r[-1].all_passed for r in results), len(problems)
        )
    correct = [[r.all_passed for r in per_problem] for per_problem in results]
    metrics = self_correction_metrics(correct)
    if config.turns > 1:
        verdicts = [[[o.status.value == "passed" for o in r.outcomes] for r in per_problem] for per_problem in results]
        metrics.update({k: float(v) for k, v in assert_transitions(verdicts).items()})
    metrics["problems"] = float(len(problems))
    metrics["sandbox_errors"] = float(sum(r.sandbox_error for per_problem in results for r in per_problem))
    metrics["generated_tokens"] = float(sum(sum(t) for t in tokens))
    records = [
        {
            "dataset": dataset,
            "task_id": p.task_id,
            "codes": codes[i],
            "passed": [r.passed for r in results[i]],
            "total": len(p.tests),
            "correct": correct[i],
            "verdicts": [[o.status.value for o in r.outcomes] for r in results[i]],
            "tokens": tokens[i],
        }
        for i, p in enumerate(problems)
    ]
    return EvalResult(dataset, records, metrics)


def format_table(results: Sequence[EvalResult], turns: int) -> str:
    """A Markdown table: one row per dataset, Acc@t for every turn and i2c / c2i / delta for turn 1 -> 2."""
    header = ["dataset", "n"] + [f"Acc@t{t + 1}" for t in range(turns)]
    if turns > 1:
        header += ["D_i->c", "D_c->i", "Delta"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for result in results:
        m = result.metrics
        row = [result.dataset, str(int(m["problems"]))] + [f"{100 * m[f'acc_t{t + 1}']:.1f}" for t in range(turns)]
        if turns > 1:
            row += [f"{100 * m['i2c_t1_t2']:.1f}", f"{100 * m['c2i_t1_t2']:.1f}", f"{100 * m['delta_t1_t2']:.1f}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)
