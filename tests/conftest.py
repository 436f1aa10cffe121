"""Shared fixtures: real local services (tests/fixtures_services.py) and a tiny random model built offline."""

from pathlib import Path

import pytest
from hypothesis import settings

pytest_plugins = ["tests.fixtures_services"]

# Property tests check values, not speed: a per-example deadline fails them on a busy 2-core CI machine
# (the first torch call in a worker can take longer than hypothesis's default 200 ms).
settings.register_profile("cocos", deadline=None)
settings.load_profile("cocos")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2 causal LM with a BPE tokenizer trained offline (no download)."""
    from cocos.models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-qwen2", seed=0)
