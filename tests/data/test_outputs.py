"""Outputs and guards: canonical hashes, atomic writes, malformed input errors, decontamination,
the validation gate, DataConfig checks, and `prepare` writing a manifest last.

Run: pytest tests/data/test_outputs.py -q
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from cocos.data import (
    DataConfig,
    DataError,
    dataset_hash,
    decontaminate,
    load_problems,
    prepare,
    read_split,
    validate,
    write_split,
)
from cocos.data.validate import ValidationError
from cocos.records import Problem
from tests.data._executor import executor

P1 = Problem("a/1", "Add one to x.", ("assert f(1) == 2",), "", "def f(x):\n    return x + 1", "f", "synthetic")
P2 = Problem("a/2", "Double x: é.", ("assert g(2) == 4",), "import math", "def g(x):\n    return 2 * x", "g")


def test_same_inputs_same_hash_changed_record_other_hash(tmp_path: Path) -> None:
    h1 = write_split([P1, P2], tmp_path / "a.jsonl")
    h2 = write_split([P1, P2], tmp_path / "b.jsonl")
    assert h1 == h2 == dataset_hash([P1, P2])
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert write_split([P1, replace(P2, text="Double x.")], tmp_path / "c.jsonl") != h1
    assert read_split(tmp_path / "a.jsonl") == [P1, P2]
    line = (tmp_path / "a.jsonl").read_text(encoding="utf-8").splitlines()[1]
    assert list(json.loads(line)) == sorted(json.loads(line)) and "é" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "b.jsonl", "c.jsonl"]  # no temp files


def test_failed_write_leaves_no_file(tmp_path: Path) -> None:
    class Boom(Problem):
        def to_dict(self):  # type: ignore[override]
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_split([P1, Boom("b", "t", ("assert 1",))], tmp_path / "x.jsonl")
    assert list(tmp_path.iterdir()) == []


MBPP_OK = {"task_id": 2, "text": "t", "code": "def f():\n    return 1", "test_list": ["assert f() == 1"]}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (json.dumps(MBPP_OK) + "\n{broken\n", r"bad\.jsonl:2: broken JSON"),
        (json.dumps({**MBPP_OK, "test_list": []}) + "\n", r"bad\.jsonl: record mbpp/2: .*no tests"),
        (json.dumps({**MBPP_OK, "test_list": ["assert f( == 1"]}) + "\n", r"record mbpp/2: test 0 is not valid"),
        (b"\xff\xfe" + b"x", r"bad\.jsonl:1: not UTF-8"),
        ("", r"bad\.jsonl: file is empty"),
    ],
)
def test_malformed_input_names_file_and_record(tmp_path: Path, content: str | bytes, expected: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DataError, match=expected):
        load_problems("mbpp", "prompt", str(path))


def test_malformed_odex_and_split_files(tmp_path: Path) -> None:
    record = {
        "task_id": 7,
        "intent": "i",
        "prompt": "def f_7():\n\treturn ",
        "canonical_solution": "1",
        "suffix": "",
        "test_start": "\ndef check(candidate):",
        "test": ["\n    assert candidate( ==\n"],
        "entry_point": "f_7",
    }
    (tmp_path / "odex.jsonl").write_text(json.dumps(record) + "\n")
    with pytest.raises(DataError, match=r"odex\.jsonl: record odex/7_0: test 0 is not valid Python"):
        load_problems("odex", "test", str(tmp_path / "odex.jsonl"))
    (tmp_path / "split.jsonl").write_text(json.dumps({"task_id": "x", "text": "t", "tests": []}) + "\n")
    with pytest.raises(DataError, match=r"split\.jsonl:1: problem x: has no tests"):
        read_split(tmp_path / "split.jsonl")
    with pytest.raises(DataError, match="no such file"):
        load_problems("mbpp", "test", str(tmp_path / "missing.jsonl"))


def test_decontamination_drops_overlapping_item() -> None:
    text = "Write a python function to find the sum of all even natural numbers within the range l and r."
    evalp = Problem("e/1", text, ("assert 1",), reference="def sum_even(l, r): pass")
    copy = Problem("t/1", "Please " + text, ("assert 1",))
    other = Problem("t/2", "Reverse a string.", ("assert 1",))
    kept, report = decontaminate([copy, other], {"mbpp": [evalp]}, n=13)
    assert kept == [other]
    assert report.dropped == {"mbpp": ["t/1"]} and report.to_dict()["dropped_count"] == {"mbpp": 1}


def test_validation_gate_drops_and_raises() -> None:
    bad = replace(P2, task_id="a/3", reference="def g(x):\n    return x")
    report = validate([P1, P2, bad], 0.5, executor())
    assert [p.task_id for p in report.problems] == ["a/1", "a/2"]
    assert list(report.dropped) == ["a/3"] and "failed" in report.dropped["a/3"]
    assert report.to_dict()["kept"] == 2
    with pytest.raises(ValidationError, match=r"1/3 problems .* max_drop_share=10\.0%"):
        validate([P1, P2, bad], 0.1, executor())


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"train_source": "imagenet"}, "train_source='imagenet'"),
        ({"eval_sources": ("mbpp", "nope")}, "eval_sources contains 'nope'"),
        ({"eval_sources": ("mbpp",), "eval_paths": ("a", "b")}, "eval_paths has 2 entries"),
        ({"boost_source": "mbpp"}, "boost_source='mbpp'"),
        ({"max_drop_share": 2.0}, "max_drop_share=2.0"),
        ({"eval_limit": 0}, "eval_limit=0"),
    ],
)
def test_data_config_errors_name_the_parameter(kwargs: dict, word: str) -> None:
    with pytest.raises(ValueError, match="Fix") as err:
        DataConfig(**kwargs)
    assert word in str(err.value)


def test_prepare_writes_splits_boost_and_manifest_last(tmp_path: Path) -> None:
    config = DataConfig(
        train_source="synthetic",
        eval_sources=("synthetic", "humaneval"),
        eval_limit=10,
        synthetic_train=30,
        synthetic_validation=10,
        synthetic_test=10,
    )
    (tmp_path / "manifest.json").write_text("{}")  # stale manifest of an earlier run
    result = prepare(config, tmp_path, executor=executor())
    manifest = json.loads(Path(result.manifest).read_text())
    assert manifest["counts"]["train"] == 30 and manifest["counts"]["test_humaneval"] == 10
    assert manifest["counts"]["boost_train"] % 2 == 0 and manifest["counts"]["boost_train"] > 0
    for name, file in manifest["files"].items():
        assert (tmp_path / file).exists()
        assert manifest["sha256"][name] == result.hashes[name]
    assert Path(result.manifest).stat().st_mtime_ns >= max(Path(f).stat().st_mtime_ns for f in result.files.values())
    assert dataset_hash(read_split(result.files["train"])) == result.hashes["train"]
    again = prepare(config, tmp_path / "again", executor=executor())
    assert again.hashes == result.hashes
