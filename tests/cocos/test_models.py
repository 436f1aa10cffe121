"""Model references: the packaged SmolLM2 converts once into a plain HF folder that generates; tiny models
build offline; a missing path or a folder without a config fails naming the reference; the hub path is
real code that fails clearly offline. Run: pytest tests/cocos/test_models.py -q
"""

import pytest

from cocos.models import ModelReferenceError, load_model_and_tokenizer, resolve_model


def test_missing_path_is_named(tmp_path):
    with pytest.raises(ModelReferenceError, match="does not exist"):
        resolve_model(str(tmp_path / "no-such-model"))


def test_folder_without_config_is_refused(tmp_path):
    (tmp_path / "weights").mkdir()
    with pytest.raises(ModelReferenceError, match="no config.json"):
        resolve_model(str(tmp_path / "weights"))


def test_empty_reference_is_refused():
    with pytest.raises(ModelReferenceError, match="empty"):
        resolve_model("")


def test_hub_id_offline_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelReferenceError, match="packaged:smollm2"):
        resolve_model("no-org/no-such-model", cache_dir=tmp_path)


def test_tiny_model_is_built_once(tmp_path):
    first = resolve_model("tiny:3", cache_dir=tmp_path)
    stamp = (first / "config.json").stat().st_mtime_ns
    assert resolve_model("tiny:3", cache_dir=tmp_path) == first
    assert (first / "config.json").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_packaged_smollm2_is_a_plain_hf_folder(tmp_path):
    folder = resolve_model("packaged:smollm2", cache_dir=tmp_path)
    assert (folder / "config.json").exists() and not list(folder.glob("*.gguf"))
    model, tokenizer = load_model_and_tokenizer(folder)
    assert model.config.model_type == "llama" and sum(p.numel() for p in model.parameters()) > 100_000_000
    ids = tokenizer("def add(a, b):", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == ids["input_ids"].shape[1] + 4
