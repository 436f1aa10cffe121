"""Test conversion into standalone asserts (method.md section 1), with `ast`, keeping source formatting.

The sandbox runs each test as `setup + "\\n" + code + "\\n" + test`, in a fresh process. So:
- `setup` runs BEFORE the candidate code: only imports, constants and helper definitions go there.
- a statement that needs names the candidate code defines (the entry point, a class) cannot go to
  setup; it is prefixed to every test that follows it ("prelude" rule; used for HumanEval check
  bodies, KodCode module statements and MBPP tasks 367/927).
- a test is one standalone statement or block that raises AssertionError when it fails: a single
  `assert`, or a whole loop / `with` / multi-statement body containing asserts.
"""

from __future__ import annotations

import ast
import textwrap
from collections import Counter
from dataclasses import dataclass, field


class ConversionError(ValueError):
    """A test that cannot be turned into standalone asserts; the caller adds the file and record id."""


def parse(source: str, what: str) -> ast.Module:
    try:
        return ast.parse(source)
    except SyntaxError as err:
        raise ConversionError(f"{what} is not valid Python (line {err.lineno}: {err.msg})") from err


def rename(source: str, old: str, new: str) -> str:
    """`source` with every variable `old` renamed to `new`; strings, comments and attributes untouched."""
    if old == new or old not in source:
        return source
    tree = parse(source, "test")
    spots = sorted(
        {(n.lineno, n.col_offset) for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == old},
        reverse=True,
    )
    lines = source.splitlines(keepends=True)
    for lineno, col in spots:
        raw = lines[lineno - 1].encode("utf-8")  # ast offsets count utf-8 bytes
        lines[lineno - 1] = (raw[:col] + new.encode("utf-8") + raw[col + len(old.encode("utf-8")) :]).decode()
    return "".join(lines)


def segment(source: str, node: ast.AST) -> str:
    """Source text of one statement, dedented (falls back to ast.unparse for `a; b` on one line)."""
    text = ast.get_source_segment(source, node, padded=True)
    if text is None:
        return ast.unparse(node)
    text = textwrap.dedent(text)
    try:
        ast.parse(text)
    except SyntaxError:
        return ast.unparse(node)
    return text.strip("\n")


def names_used(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def defined_names(source: str) -> set[str]:
    """Top-level names a module defines (functions, classes, assignments, imports)."""
    names: set[str] = set()
    for node in parse(source, "code").body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def has_assert(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Assert) for n in ast.walk(node))


def is_trivial_assert(node: ast.stmt) -> bool:
    """`assert True, "..."`: passes for any program that runs, so it carries no signal."""
    return isinstance(node, ast.Assert) and isinstance(node.test, ast.Constant) and node.test.value is True


def join(*parts: str) -> str:
    return "\n".join(p for p in parts if p.strip())


def check_to_tests(test_source: str, entry_point: str) -> tuple[str, tuple[str, ...]]:
    """HumanEval-style `def check(candidate): ...` module -> (setup, tests), candidate := entry point.

    Module statements other than `check` (imports, METADATA, helpers) and check-body statements that
    do not use `candidate` go to setup; check-body statements that use `candidate` without asserting
    are preludes, prefixed to each later test; each assert, or compound statement holding asserts,
    is one test. `assert True` is dropped.
    """
    tree = parse(test_source, "test")
    checks = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "check"]
    if not checks:
        raise ConversionError("test defines no `def check(candidate):`")
    check = checks[-1]
    if len(check.args.args) != 1:
        raise ConversionError("`check` must take exactly one argument (the candidate)")
    arg = check.args.args[0].arg
    setup = [segment(test_source, n) for n in tree.body if n is not check]
    preludes: list[str] = []
    tests: list[str] = []
    for node in check.body:
        text = rename(segment(test_source, node), arg, entry_point)
        if is_trivial_assert(node):
            continue
        if has_assert(node):
            tests.append(join(*preludes, text))
        elif arg in names_used(node) or preludes:
            # After a prelude, later statements may depend on it, so they stay in the prelude too.
            preludes.append(text)
        else:
            setup.append(text)
    if not tests:
        raise ConversionError("`check` holds no assert")
    return join(*setup), tuple(tests)


def odex_to_tests(test_start: str, tests: list[str], entry_point: str) -> tuple[str, tuple[str, ...]]:
    """ODEX: `test_start` (imports + `def check(<arg>):` header) and body snippets -> (setup, tests).

    Each snippet becomes one test (dedented, its `<arg>` renamed to the entry point); it may hold
    several statements around its asserts. `test_start` without its check header is the setup.
    """
    tree = parse(test_start.rstrip() + "\n    pass\n", "test_start")
    checks = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "check"]
    if not checks or len(checks[-1].args.args) != 1:
        raise ConversionError("test_start does not end with `def check(<candidate>):`")
    check = checks[-1]
    arg = check.args.args[0].arg
    setup = "\n".join(test_start.splitlines()[: check.lineno - 1 - len(check.decorator_list)]).strip("\n")
    converted = []
    for i, snippet in enumerate(tests):
        body = textwrap.dedent(snippet).strip("\n")
        parse(body, f"test {i}")
        try:
            compile(body, "<test>", "exec")
        except SyntaxError:
            # A check() body that may `return` early ('return' outside function): keep its meaning.
            body = f"def _check():\n{textwrap.indent(body, '    ')}\n\n\n_check()"
            parse(body, f"test {i}")
        converted.append(rename(body, arg, entry_point))
    if not converted:
        raise ConversionError("record has no tests")
    return setup, tuple(converted)


@dataclass
class PytestConversion:
    setup: str
    tests: tuple[str, ...]
    skipped: Counter[str] = field(default_factory=Counter)  # test functions not converted, per reason


def _returns(nodes: list[ast.AST]) -> bool:
    """A return or yield outside nested scopes: invalid or meaningless at module level."""
    for node in nodes:
        if isinstance(node, ast.Return | ast.Yield | ast.YieldFrom | ast.Await):
            return True
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            continue
        if _returns(list(ast.iter_child_nodes(node))):
            return True
    return False


def _skip_reason(func: ast.FunctionDef) -> str | None:
    if func.decorator_list:
        return "decorated (parametrize, fixture, mark)"
    if func.args.args or func.args.vararg or func.args.kwarg or func.args.kwonlyargs:
        return "takes fixtures"
    if "pytest" in names_used(func):
        return "uses pytest (raises, approx, ...)"
    if not has_assert(func):
        return "no assert"
    if _returns(func.body):
        return "returns or yields"
    return None


def pytest_to_tests(test_code: str, module: str = "solution") -> PytestConversion:
    """A pytest file importing from `module` -> setup and standalone tests.

    `from <module> import f` lines are dropped (the candidate code defines f; `as` aliases become a
    prelude); other imports and non-test helpers go to setup (`import pytest` is dropped). A test
    function of asserts only gives one test per assert; a plain function with other statements
    (no fixtures, decorators, pytest helpers or return) gives its whole body as one test.
    """
    tree = parse(test_code, "test file")
    setup: list[str] = []
    preludes: list[str] = []
    tests: list[str] = []
    skipped: Counter[str] = Counter()
    solution_names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == module:
            for alias in node.names:
                if alias.name == "*":
                    continue
                solution_names.add(alias.asname or alias.name)
                if alias.asname and alias.asname != alias.name:
                    preludes.append(f"{alias.asname} = {alias.name}")
        elif isinstance(node, ast.Import) and any(a.name.split(".")[0] == module for a in node.names):
            skipped["imports the solution module by name"] += 1
            return PytestConversion("", (), skipped)
        elif isinstance(node, ast.Import) and all(a.name == "pytest" for a in node.names):
            continue
        elif isinstance(node, ast.Import | ast.ImportFrom):
            setup.append(segment(test_code, node))
        elif isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
            reason = _skip_reason(node)
            if reason:
                skipped[reason] += 1
            elif all(isinstance(s, ast.Assert) for s in node.body):
                tests.extend(join(*preludes, segment(test_code, s)) for s in node.body)
            else:
                body = "\n".join(segment(test_code, s) for s in node.body)
                tests.append(join(*preludes, body))
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            skipped["test class"] += sum(
                isinstance(s, ast.FunctionDef) and s.name.startswith("test") for s in node.body
            )
        elif isinstance(node, ast.FunctionDef | ast.ClassDef) and any(
            "fixture" in ast.unparse(d) for d in node.decorator_list
        ):
            continue  # fixtures only serve test functions that take them, which are skipped
        elif (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name)
            and node.value.func.id.startswith("test")
        ):
            continue  # a direct call of a test function: the test itself is converted
        elif isinstance(node, ast.If) and "__name__" in names_used(node.test):
            continue
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # module docstring
        elif names_used(node) & solution_names:
            # Needs the candidate's names (also in annotations, evaluated at def time): after the code.
            preludes.append(segment(test_code, node))
        else:
            setup.append(segment(test_code, node))
    return PytestConversion(join(*setup), tuple(tests), skipped)
