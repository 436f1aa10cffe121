"""Synthetic source: short Python function tasks written for this project, no download needed.

35 templates (arithmetic, strings, lists, dicts, recursion), each with one parameter; a (template,
parameter) pair is one problem. Asserts are computed by running the reference on fixed inputs, so
they are right by construction. Splits are disjoint by (template, parameter): the pairs are
shuffled with the seed and cut into train / validation / test. Buggy variants (off-by-one, wrong
operator, swapped comparison) come from single AST mutations of the reference that fail a test in
the sandbox; they are the wrong first attempts of the two-turn boost examples.
Problems are short on purpose: the demo model writes about 60 tokens/s on CPU.
"""

from __future__ import annotations

import ast
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cocos.records import Problem

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
DEFAULT_SIZES = {"train": 200, "validation": 40, "test": 40}


@dataclass(frozen=True)
class Template:
    name: str
    fn: str
    text: str  # format string over {fn}, {k}
    code: str  # format string over {fn}, {k}
    params: tuple[Any, ...]
    inputs: tuple[tuple[Any, ...], ...]  # three argument tuples
    difficulty: str

    def render(self, k: Any) -> tuple[str, str]:
        return self.text.format(fn=self.fn, k=k), self.code.format(fn=self.fn, k=k)


def _t(name: str, text: str, code: str, params: Any, inputs: Any, difficulty: str = "easy") -> Template:
    fn = name
    return Template(name, fn, text, code, tuple(params), tuple(inputs), difficulty)


_LETTERS = tuple("aeiostnrlm")
_WORDS = (["apple", "kiwi", "banana", "fig"], ["a", "bb", "ccc", "dddd"], ["hello", "to", "world"])
_NUMS = (([3, 8, 1, 12, 5, 7, 2],), ([10, -4, 6, 0, 9, 11, 3],), ([1, 2, 3, 4, 5, 6, 7, 8],))

TEMPLATES: tuple[Template, ...] = (
    _t(
        "add_k",
        "Write a function {fn}(x) that returns x plus {k}.",
        "def {fn}(x):\n    return x + {k}",
        range(1, 13),
        [(1,), (10,), (-3,)],
    ),
    _t(
        "times_k",
        "Write a function {fn}(x) that returns x multiplied by {k}.",
        "def {fn}(x):\n    return x * {k}",
        range(2, 14),
        [(0,), (7,), (-2,)],
    ),
    _t(
        "is_multiple",
        "Write a function {fn}(x) that returns True if x is divisible by {k}, else False.",
        "def {fn}(x):\n    return x % {k} == 0",
        range(2, 14),
        [(24,), (30,), (35,)],
    ),
    _t(
        "sum_multiples",
        "Write a function {fn}(n) that returns the sum of the multiples of {k} from 1 to n.",
        "def {fn}(n):\n    return sum(i for i in range(1, n + 1) if i % {k} == 0)",
        range(2, 12),
        [(10,), (24,), (35,)],
        "medium",
    ),
    _t(
        "clamp",
        "Write a function {fn}(x) that limits x to the range 0 to {k}.",
        "def {fn}(x):\n    return min(max(x, 0), {k})",
        range(5, 65, 5),
        [(-4,), (3,), (100,)],
    ),
    _t(
        "power_sum",
        "Write a function {fn}(n) that returns the sum of i**{k} for i from 1 to n.",
        "def {fn}(n):\n    return sum(i ** {k} for i in range(1, n + 1))",
        range(1, 7),
        [(1,), (3,), (5,)],
    ),
    _t(
        "count_char",
        "Write a function {fn}(s) that counts how often '{k}' occurs in s.",
        "def {fn}(s):\n    return s.count('{k}')",
        _LETTERS,
        [("banana",), ("reassessment",), ("",)],
    ),
    _t(
        "repeat_str",
        "Write a function {fn}(s) that returns s repeated {k} times.",
        "def {fn}(s):\n    return s * {k}",
        range(2, 10),
        [("ab",), ("x",), ("",)],
    ),
    _t(
        "first_k",
        "Write a function {fn}(s) that returns the first {k} characters of s.",
        "def {fn}(s):\n    return s[:{k}]",
        range(1, 11),
        [("programming",), ("abcdefghijklm",), ("hi",)],
    ),
    _t(
        "last_k",
        "Write a function {fn}(s) that returns the last {k} characters of s.",
        "def {fn}(s):\n    return s[-{k}:]",
        range(1, 11),
        [("programming",), ("abcdefghijklm",), ("xyzxyzxyzxyz",)],
    ),
    _t(
        "remove_char",
        "Write a function {fn}(s) that removes every '{k}' from s.",
        "def {fn}(s):\n    return s.replace('{k}', '')",
        _LETTERS,
        [("banana",), ("mississippi",), ("salt",)],
    ),
    _t(
        "pad_left",
        "Write a function {fn}(s) that pads s on the left with '*' to length {k}.",
        "def {fn}(s):\n    return s.rjust({k}, '*')",
        range(4, 14),
        [("ab",), ("hello",), ("",)],
    ),
    _t(
        "every_kth",
        "Write a function {fn}(xs) that returns every {k}th element of xs, starting at index 0.",
        "def {fn}(xs):\n    return xs[::{k}]",
        range(2, 11),
        _NUMS,
    ),
    _t(
        "count_greater",
        "Write a function {fn}(xs) that counts the elements of xs greater than {k}.",
        "def {fn}(xs):\n    return sum(1 for x in xs if x > {k})",
        range(0, 11),
        _NUMS,
    ),
    _t(
        "filter_less",
        "Write a function {fn}(xs) that returns the elements of xs less than {k}, in order.",
        "def {fn}(xs):\n    return [x for x in xs if x < {k}]",
        range(1, 11),
        _NUMS,
    ),
    _t(
        "scale_list",
        "Write a function {fn}(xs) that multiplies every element of xs by {k}.",
        "def {fn}(xs):\n    return [x * {k} for x in xs]",
        range(2, 12),
        _NUMS,
    ),
    _t(
        "shift_list",
        "Write a function {fn}(xs) that adds {k} to every element of xs.",
        "def {fn}(xs):\n    return [x + {k} for x in xs]",
        range(1, 11),
        _NUMS,
    ),
    _t(
        "rotate_left",
        "Write a function {fn}(xs) that rotates xs left by {k} positions.",
        "def {fn}(xs):\n    if not xs:\n        return []\n    k = {k} % len(xs)\n    return xs[k:] + xs[:k]",
        range(1, 11),
        [([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],), ([4, 5, 6],), ([],)],
        "medium",
    ),
    _t(
        "chunk_sums",
        "Write a function {fn}(xs) that returns the sums of consecutive chunks of {k} elements.",
        "def {fn}(xs):\n    return [sum(xs[i:i + {k}]) for i in range(0, len(xs), {k})]",
        range(2, 8),
        _NUMS,
        "medium",
    ),
    _t(
        "max_window",
        "Write a function {fn}(xs) that returns the largest sum of {k} consecutive elements.",
        "def {fn}(xs):\n    return max(sum(xs[i:i + {k}]) for i in range(len(xs) - {k} + 1))",
        range(2, 7),
        _NUMS,
        "medium",
    ),
    _t(
        "long_words",
        "Write a function {fn}(words) that maps each word of at least {k} letters to its length.",
        "def {fn}(words):\n    return {{w: len(w) for w in words if len(w) >= {k}}}",
        range(1, 7),
        [(w,) for w in _WORDS],
        "medium",
    ),
    _t(
        "keys_above",
        "Write a function {fn}(d) that returns the sorted keys of d whose value is above {k}.",
        "def {fn}(d):\n    return sorted(key for key, v in d.items() if v > {k})",
        range(0, 10),
        [({"a": 3, "b": 9, "c": 5},), ({"x": 1, "y": 12},), ({"p": 7, "q": 4, "r": 10, "s": 0},)],
        "medium",
    ),
    _t(
        "group_by_mod",
        "Write a function {fn}(xs) that groups xs into a dict keyed by x % {k}.",
        "def {fn}(xs):\n    groups = {{}}\n    for x in xs:\n        groups.setdefault(x % {k}, []).append(x)\n"
        "    return groups",
        range(2, 8),
        _NUMS,
        "medium",
    ),
    _t(
        "word_lengths",
        "Write a function {fn}(s) that maps each word of s longer than {k} letters to its length.",
        "def {fn}(s):\n    return {{w: len(w) for w in s.split() if len(w) > {k}}}",
        range(0, 6),
        [("the quick brown fox",), ("a bb ccc dddd eeeee",), ("python is fun to write",)],
        "medium",
    ),
    _t(
        "fact_mod",
        "Write a recursive function {fn}(n) that returns n factorial modulo {k}.",
        "def {fn}(n):\n    if n <= 1:\n        return 1 % {k}\n    return n * {fn}(n - 1) % {k}",
        (7, 11, 13, 17, 19, 23, 29, 31, 37, 41),
        [(1,), (5,), (10,)],
        "hard",
    ),
    _t(
        "gen_fib",
        "Write a recursive function {fn}(n) with f(0)=0, f(1)=1, f(n)=f(n-1)+{k}*f(n-2).",
        "def {fn}(n):\n    if n < 2:\n        return n\n    return {fn}(n - 1) + {k} * {fn}(n - 2)",
        range(1, 8),
        [(0,), (5,), (8,)],
        "hard",
    ),
    _t(
        "digit_sum_base",
        "Write a recursive function {fn}(n) that returns the sum of the digits of n in base {k}.",
        "def {fn}(n):\n    if n < {k}:\n        return n\n    return n % {k} + {fn}(n // {k})",
        range(2, 11),
        [(0,), (37,), (1000,)],
        "hard",
    ),
    _t(
        "count_down",
        "Write a function {fn}(n) that returns the list n, n-{k}, ... down to 0 or above.",
        "def {fn}(n):\n    return list(range(n, -1, -{k}))",
        range(1, 7),
        [(10,), (7,), (0,)],
        "medium",
    ),
    _t(
        "step_sum",
        "Write a recursive function {fn}(n) that returns n + (n-{k}) + (n-2*{k}) + ... over positive terms.",
        "def {fn}(n):\n    if n <= 0:\n        return 0\n    return n + {fn}(n - {k})",
        range(1, 7),
        [(0,), (10,), (13,)],
        "hard",
    ),
    _t(
        "gcd_with",
        "Write a recursive function {fn}(a) that returns the greatest common divisor of a and {k}.",
        "def {fn}(a, b={k}):\n    if b == 0:\n        return a\n    return {fn}(b, a % b)",
        (12, 18, 24, 30, 36, 42, 48, 60, 72, 84),
        [(8,), (45,), (7,)],
        "hard",
    ),
    _t(
        "is_palindrome_without",
        "Write a function {fn}(s) that checks if s is a palindrome after removing '{k}'.",
        "def {fn}(s):\n    t = s.replace('{k}', '')\n    return t == t[::-1]",
        _LETTERS,
        [("racecar",), ("abca",), ("noon",)],
        "medium",
    ),
    _t(
        "caesar",
        "Write a function {fn}(s) that shifts each lowercase letter of s forward by {k} in the alphabet.",
        "def {fn}(s):\n    return ''.join(chr((ord(c) - 97 + {k}) % 26 + 97) if c.islower() else c for c in s)",
        range(1, 13),
        [("abc",), ("xyz",), ("Hello, World",)],
        "hard",
    ),
    _t(
        "digits_above",
        "Write a function {fn}(n) that counts the digits of n that are greater than {k}.",
        "def {fn}(n):\n    return sum(1 for d in str(n) if int(d) > {k})",
        range(0, 9),
        [(123456789,), (5050,), (999,)],
    ),
    _t(
        "powers",
        "Write a function {fn}(n) that returns [i**{k} for i from 0 to n-1].",
        "def {fn}(n):\n    return [i ** {k} for i in range(n)]",
        range(1, 6),
        [(0,), (3,), (5,)],
    ),
    _t(
        "stride_sum",
        "Write a function {fn}(xs) that sums the elements of xs at indices divisible by {k}.",
        "def {fn}(xs):\n    return sum(x for i, x in enumerate(xs) if i % {k} == 0)",
        range(1, 7),
        _NUMS,
        "medium",
    ),
)


def _run(code: str, fn: str, args: tuple[Any, ...]) -> Any:
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # our own reference code, never model output
    return namespace[fn](*args)


def _args(args: tuple[Any, ...]) -> str:
    return ", ".join(repr(a) for a in args)


def make_problem(template: Template, k: Any) -> Problem:
    text, code = template.render(k)
    tests = tuple(f"assert {template.fn}({_args(a)}) == {_run(code, template.fn, a)!r}" for a in template.inputs)
    return Problem(
        task_id=f"synthetic/{template.name}/{k}",
        text=text,
        tests=tests,
        reference=code,
        entry_point=template.fn,
        source="synthetic",
    )


def universe() -> list[tuple[Template, Any]]:
    return [(t, k) for t in TEMPLATES for k in t.params]


def generate(n: int, seed: int) -> list[Problem]:
    """`n` distinct problems: the first `n` of all (template, parameter) pairs shuffled by `seed`."""
    pairs = universe()
    if not 0 <= n <= len(pairs):
        raise ValueError(f"n={n}: the synthetic source has {len(pairs)} distinct problems; ask for at most that")
    random.Random(seed).shuffle(pairs)
    return [make_problem(t, k) for t, k in pairs[:n]]


def splits(seed: int, train: int = 200, validation: int = 40, test: int = 40) -> dict[str, list[Problem]]:
    """Train / validation / test, disjoint by (template, parameter), deterministic from `seed`."""
    problems = generate(train + validation + test, seed)
    return {
        "train": problems[:train],
        "validation": problems[train : train + validation],
        "test": problems[train + validation :],
    }


class _Mutator(ast.NodeTransformer):
    """Applies the `target`-th single-point mutation (in ast.walk order) and nothing else."""

    SWAPS: dict[type, type] = {
        ast.Add: ast.Sub,
        ast.Sub: ast.Add,
        ast.Mult: ast.Add,
        ast.FloorDiv: ast.Mult,
        ast.Mod: ast.FloorDiv,
        ast.Pow: ast.Mult,
        ast.Lt: ast.LtE,
        ast.LtE: ast.Lt,
        ast.Gt: ast.GtE,
        ast.GtE: ast.Gt,
        ast.Eq: ast.NotEq,
        ast.NotEq: ast.Eq,
    }

    def __init__(self, target: int) -> None:
        self.target = target
        self.seen = 0

    def _hit(self) -> bool:
        self.seen += 1
        return self.seen - 1 == self.target

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        if type(node.op) in self.SWAPS and self._hit():
            node.op = self.SWAPS[type(node.op)]()
        return node

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        if type(node.ops[0]) in self.SWAPS and self._hit():
            node.ops = [self.SWAPS[type(node.ops[0])](), *node.ops[1:]]
        return node

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if isinstance(node.value, int) and not isinstance(node.value, bool) and self._hit():
            return ast.copy_location(ast.Constant(node.value + 1), node)  # off-by-one
        return node


def _mutants(code: str) -> Iterator[str]:
    target = 0
    while True:
        mutator = _Mutator(target)
        tree = mutator.visit(ast.parse(code))
        if mutator.seen <= target:
            return
        yield ast.unparse(ast.fix_missing_locations(tree))
        target += 1


MUTANT_TIMEOUT_S = 2.0


def _fails(code: str, problem: Problem) -> bool:
    """Whether the mutant fails a test, run in the sandbox: mutants of MBPP references (--mbpp-boost)
    are not ours, and one that turns `i += 1` into `i -= 1` loops forever. No verdict is no use."""
    from cocos.sandbox import execute

    result = execute(code, list(problem.tests), problem.setup, timeout_s=MUTANT_TIMEOUT_S)
    return not result.sandbox_error and not result.all_passed


def buggy_variants(problem: Problem, limit: int = 3) -> list[str]:
    """Up to `limit` single-mutation variants of the reference that fail at least one of its tests."""
    found: list[str] = []
    for mutant in _mutants(problem.reference):
        if mutant not in found and _fails(mutant, problem):
            found.append(mutant)
            if len(found) == limit:
                break
    return found


def synthetic_boost_examples(problems: list[Problem], seed: int) -> list[dict[str, Any]]:
    """Two-turn boost examples 1:1 (as `kodcode.boost_examples`), a seeded buggy variant as turn 1."""
    from cocos.prompts import completion_text, turn_prompt

    rng = random.Random(seed)
    examples: list[dict[str, Any]] = []
    for problem in problems:
        variants = buggy_variants(problem)
        if not variants:
            log.info("synthetic %s: no failing mutant, skipped from boost examples", problem.task_id)
            continue
        completion = completion_text(problem.reference)
        wrong = rng.choice(variants)
        examples.append(
            {"prompt": turn_prompt(problem), "completion": completion, "turn": 1, "task_id": problem.task_id}
        )
        examples.append(
            {
                "prompt": turn_prompt(problem, previous_code=wrong),
                "completion": completion,
                "turn": 2,
                "task_id": problem.task_id,
            }
        )
    return examples


def load(split: str, seed: int = 0, sizes: dict[str, int] | None = None) -> list[Problem]:
    return splits(seed, **(sizes or DEFAULT_SIZES))[split]


__all__ = ["TEMPLATES", "buggy_variants", "generate", "splits", "synthetic_boost_examples"]
