"""benchmarks/gpu_rloo_step.py: without CUDA it exits 0 and says it skipped (run as a subprocess, as CI
would); its model config has the Qwen2.5-1.5B architecture (parameter count built on the meta device).
Run: pytest tests/benchmarks/test_gpu_benchmark.py -q
"""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import gpu_rloo_step  # noqa: E402


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only path")
def test_skips_cleanly_without_cuda(tmp_path):
    out = tmp_path / "result.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_rloo_step.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert "skipped: no CUDA device" in done.stdout
    assert not out.exists()


def test_config_has_the_qwen25_15b_architecture():
    from transformers import Qwen2ForCausalLM

    config = gpu_rloo_step.qwen25_15b_config()
    assert (config.hidden_size, config.intermediate_size, config.num_hidden_layers) == (1536, 8960, 28)
    assert (config.num_attention_heads, config.num_key_value_heads, config.vocab_size) == (12, 2, 151936)
    assert config.tie_word_embeddings
    with torch.device("meta"):
        model = Qwen2ForCausalLM(config)
    parameters = sum(p.numel() for p in model.parameters())
    assert parameters == pytest.approx(1.54e9, rel=0.01)  # 1,543,714,304 with tied embeddings
