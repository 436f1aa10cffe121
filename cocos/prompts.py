"""Turn prompts and code extraction, exactly as method.md section 2 states (plain text, no chat template).

>>> from cocos.records import Problem
>>> p = Problem("t1", "Add two numbers.", ("assert add(1, 2) == 3",))
>>> turn_prompt(p).endswith("[BEGIN]\\n")
True
>>> extract_code("def f():\\n    return 1\\n[DONE] trailing")
'def f():\\n    return 1'
"""

from __future__ import annotations

import re
from typing import Protocol

DONE = "[DONE]"
BEGIN = "[BEGIN]"
CORRECT = "[CORRECT]"

CORRECTION_INSTRUCTION = (
    "There might be an error in the code above because of lack of understanding of the question. "
    "Please correct the error, if any, and rewrite the solution. Only output the final correct Python program!"
)

# Paper section 8.4 evaluates robustness to the wording of the correction instruction. These five
# rephrasings were written for this project; they keep the meaning and drop no constraint.
INSTRUCTION_REPHRASINGS: tuple[str, ...] = (
    "The code above may contain a mistake caused by misreading the task. "
    "Fix it if needed and write the whole solution again. Output only the final Python program!",
    "Check the code above against the task: it could be wrong. "
    "If it is, correct it; then rewrite the complete solution. Only output the final correct Python program!",
    "Review the previous solution for errors in understanding the problem. "
    "Rewrite a corrected solution if necessary. Only the final Python program should be output!",
    "The solution above might not solve the task correctly. "
    "Correct any error and give the full solution again. Only output the final correct Python program!",
    "There may be a bug in the code above. Please rewrite the solution, correcting the bug if there is one. "
    "Only output the final correct Python program!",
)


class _HasTextAndTests(Protocol):
    text: str
    tests: tuple[str, ...]


def turn_one_header(problem: _HasTextAndTests) -> str:
    tests = "\n".join(problem.tests)
    return (
        f"You are an expert Python programmer, and here is your task: {problem.text} "
        f"Your code should pass these tests:\n\n{tests}\n\n{BEGIN}\n"
    )


def turn_prompt(
    problem: _HasTextAndTests, previous_code: str | None = None, instruction: str | None = None
) -> str:
    """The prompt of turn 1 (no previous code) or of a correction turn (only the latest attempt kept)."""
    header = turn_one_header(problem)
    if previous_code is None:
        if instruction is not None:
            raise ValueError("instruction is only used with previous_code (a correction turn)")
        return header
    instruction = CORRECTION_INSTRUCTION if instruction is None else instruction
    return f"{header}{previous_code}\n{DONE}\n\n{instruction}\n\n{CORRECT}\n"


_FENCE_OPEN = re.compile(r"^\s*```[a-zA-Z0-9_+-]*[ \t]*\n?")
_FENCE_CLOSE = re.compile(r"\n?```\s*$")


def extract_code(text: str) -> str:
    """Code of one model answer: text up to the first [DONE], without fences and markers.

    Without [DONE] the whole text is used (method.md section 2).
    """
    code = text.split(DONE, 1)[0]
    for marker in (BEGIN, CORRECT):
        code = code.replace(marker, "")
    code = code.strip("\n")
    if "```" in code:
        # Keep the first fenced block when the model wrapped its code in a fence.
        match = re.search(r"```[a-zA-Z0-9_+-]*[ \t]*\n(.*?)(?:```|\Z)", code, flags=re.DOTALL)
        if match:
            code = match.group(1)
        code = code.replace("```", "")
    return code.strip("\n").rstrip()


def completion_text(code: str) -> str:
    """The target completion of a turn in boost SFT: the code, then the end marker."""
    return f"{code.rstrip()}\n{DONE}"
