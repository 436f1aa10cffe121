"""Shared fixtures: real local services (tests/fixtures_services.py) and a tiny random model built offline."""

from pathlib import Path

import pytest

pytest_plugins = ["tests.fixtures_services"]

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2 causal LM with a BPE tokenizer trained offline (no download)."""
    from cocos.models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-qwen2", seed=0)
