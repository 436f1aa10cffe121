"""Prompts of method.md section 2, verbatim, and code extraction with and without [DONE] and fences.
Run: pytest tests/cocos/test_prompts.py -q
"""

import pytest

from cocos.prompts import CORRECTION_INSTRUCTION, INSTRUCTION_REPHRASINGS, extract_code, turn_prompt
from cocos.records import Problem

PROBLEM = Problem("mbpp/2", "Write a function to add.", ("assert add(1, 2) == 3", "assert add(0, 0) == 0"))


def test_turn_one_prompt_is_verbatim():
    assert turn_prompt(PROBLEM) == (
        "You are an expert Python programmer, and here is your task: Write a function to add. "
        "Your code should pass these tests:\n\nassert add(1, 2) == 3\nassert add(0, 0) == 0\n\n[BEGIN]\n"
    )


def test_turn_two_prompt_is_verbatim():
    code = "def add(a, b):\n    return a - b"
    expected = (
        turn_prompt(PROBLEM)
        + code
        + "\n[DONE]\n\nThere might be an error in the code above because of lack of understanding of the question."
        " Please correct the error, if any, and rewrite the solution. Only output the final correct Python program!"
        "\n\n[CORRECT]\n"
    )
    assert turn_prompt(PROBLEM, previous_code=code) == expected


def test_instruction_is_a_parameter():
    prompt = turn_prompt(PROBLEM, previous_code="x = 1", instruction=INSTRUCTION_REPHRASINGS[0])
    assert INSTRUCTION_REPHRASINGS[0] in prompt and CORRECTION_INSTRUCTION not in prompt
    assert len(set(INSTRUCTION_REPHRASINGS)) == 5


def test_instruction_without_previous_code_is_refused():
    with pytest.raises(ValueError, match="previous_code"):
        turn_prompt(PROBLEM, instruction="fix it")


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("def f():\n    return 1\n[DONE]", "def f():\n    return 1"),
        ("def f():\n    return 1\n[DONE]\nmore text [DONE]", "def f():\n    return 1"),
        ("def f():\n    return 1", "def f():\n    return 1"),  # no [DONE]: the whole text
        ("```python\ndef f():\n    return 1\n```\n[DONE]", "def f():\n    return 1"),
        ("```\ndef f():\n    return 1\n```", "def f():\n    return 1"),
        ("[BEGIN]\ndef f():\n    return 1\n[DONE]", "def f():\n    return 1"),
        ("[CORRECT]\ndef f():\n    return 2\n[DONE]\n", "def f():\n    return 2"),
        ("```python\ndef f():\n    return 1\n", "def f():\n    return 1"),  # unterminated fence
        ("", ""),
    ],
)
def test_extract_code(text, code):
    assert extract_code(text) == code


def test_extracted_code_goes_into_the_next_prompt():
    raw = "```python\ndef add(a, b):\n    return a + b\n```\n[DONE] chatter"
    prompt = turn_prompt(PROBLEM, previous_code=extract_code(raw))
    assert "```" not in prompt and "chatter" not in prompt
