"""Resume after SIGKILL: a run killed after its step-2 checkpoint reached S3 restarts from that
checkpoint, keeps the step counter, the learning-rate schedule and the data order, loses and repeats no
step, ignores a newer upload that has no manifest, and ends with the same weights as an uninterrupted run.
Uses real SeaweedFS (fixture) and the tiny model. Run: pytest tests/cocos/test_resume.py -q
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cocos import storage

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
STEPS = 4


def _worker(model_dir, work, uri, log, hang_after=None):
    args = [
        sys.executable,
        str(REPO / "tests/cocos/resume_worker.py"),
        str(model_dir),
        str(work),
        uri,
        str(log),
        str(STEPS),
    ]
    if hang_after is not None:
        args.append(str(hang_after))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(args, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _lines(log):
    return [json.loads(line) for line in Path(log).read_text().splitlines()]


def _weights(folder):
    return load_file(str(Path(folder) / "model.safetensors"))


def test_resume_after_sigkill(tiny_model_dir, tmp_path, s3_prefix):
    # An uninterrupted run: the reference for steps, schedule, data order and final weights.
    straight = _worker(tiny_model_dir, tmp_path / "straight", f"{s3_prefix}/straight", tmp_path / "straight.log")
    out, _ = straight.communicate(timeout=600)
    assert straight.returncode == 0, out[-3000:]

    uri = f"{s3_prefix}/killed"
    log = tmp_path / "killed.log"
    first = _worker(tiny_model_dir, tmp_path / "killed", uri, log, hang_after=2)
    hang = Path(str(log) + ".hang")
    deadline = time.monotonic() + 600
    while not hang.exists():
        assert first.poll() is None, first.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "the first run never reached its step-2 checkpoint"
        time.sleep(0.2)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    assert [line["step"] for line in _lines(log)] == [1, 2]

    # A newer upload without a manifest (an interrupted upload) must be ignored.
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "trainer_state.json").write_text(json.dumps({"step": 9}))
    storage.upload_file(partial / "trainer_state.json", f"{uri}/step-000009/trainer_state.json")
    assert storage.latest_complete(uri).rstrip("/").endswith("step-000002")

    # Restart in a fresh folder, as a rescheduled pod would: everything comes back from S3.
    second = _worker(tiny_model_dir, tmp_path / "restarted", uri, log)
    out, _ = second.communicate(timeout=600)
    assert second.returncode == 0, out[-3000:]
    assert json.loads((tmp_path / "restarted" / "result.json").read_text()) == {"resumed_from": 2, "steps": STEPS}

    resumed, reference = _lines(log), _lines(tmp_path / "straight.log")
    assert [line["step"] for line in resumed] == [1, 2, 3, 4]  # none lost, none repeated
    assert [line["lr"] for line in resumed] == pytest.approx([line["lr"] for line in reference])
    assert [line["tasks"] for line in resumed] == [line["tasks"] for line in reference]
    final, expected = _weights(tmp_path / "restarted" / "final"), _weights(tmp_path / "straight" / "final")
    assert final.keys() == expected.keys()
    for name in final:
        assert torch.allclose(final[name], expected[name], atol=1e-6), name
