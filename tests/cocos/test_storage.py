"""Tests for cocos.storage: S3 URIs (pure) and, against a live SeaweedFS, folder upload/download with the
manifest written last, refusal of incomplete prefixes, integrity checks and latest_complete.

Run: pytest tests/cocos/test_storage.py -q   (the `slow` ones use the session's live services)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cocos import storage


def _make_folder(root: Path, step: int = 0) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"step": step}))
    (root / "sub" / "weights.bin").write_bytes(bytes(range(256)) * 64)
    return root


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://cocos/a/b.json", ("cocos", "a/b.json")),
        ("s3://cocos/ckpt/", ("cocos", "ckpt/")),
        ("s3://cocos", ("cocos", "")),
    ],
)
def test_parse_s3_uri(uri: str, expected: tuple[str, str]) -> None:
    assert storage.is_s3_uri(uri)
    assert storage.parse_s3_uri(uri) == expected


@pytest.mark.parametrize("bad", ["/tmp/x", "http://host/b/k", "s3://ab/key", "s3:///key", ""])
def test_parse_s3_uri_rejects_bad_uris(bad: str) -> None:
    with pytest.raises(storage.StorageError, match="uri="):
        storage.parse_s3_uri(bad)


@pytest.mark.slow
def test_upload_dir_roundtrip_with_manifest_last(live_services, s3_prefix: str, tmp_path: Path) -> None:
    src = _make_folder(tmp_path / "src")
    manifest_uri = storage.upload_dir(src, f"{s3_prefix}/step-000001", extra={"step": 1})
    assert manifest_uri == f"{s3_prefix}/step-000001/MANIFEST.json"
    manifest = storage.read_json(manifest_uri)
    assert set(manifest["files"]) == {"config.json", "sub/weights.bin"}
    assert manifest["files"]["sub/weights.bin"]["size"] == 256 * 64
    assert manifest["extra"] == {"step": 1}

    dst = tmp_path / "dst"
    got = storage.download_dir(f"{s3_prefix}/step-000001", dst)
    assert got["files"] == manifest["files"]
    assert (dst / "sub" / "weights.bin").read_bytes() == (src / "sub" / "weights.bin").read_bytes()
    assert (dst / "MANIFEST.json").is_file()
    # Re-uploading the downloaded folder does not upload the old manifest as a data file.
    storage.upload_dir(dst, f"{s3_prefix}/copy")
    assert "MANIFEST.json" not in storage.read_json(f"{s3_prefix}/copy/MANIFEST.json")["files"]


@pytest.mark.slow
def test_prefix_without_manifest_is_incomplete(live_services, s3_prefix: str, tmp_path: Path) -> None:
    storage.upload_file(
        _make_folder(tmp_path / "src") / "config.json", f"{s3_prefix}/step-000009/config.json"
    )
    storage.upload_dir(tmp_path / "src", f"{s3_prefix}/step-000002")
    assert storage.list_complete(s3_prefix) == [f"{s3_prefix}/step-000002"]
    with pytest.raises(storage.IncompleteUpload, match="step-000009"):
        storage.download_dir(f"{s3_prefix}/step-000009", tmp_path / "dst")
    assert not (tmp_path / "dst").exists()
    assert storage.latest_complete(s3_prefix) == f"{s3_prefix}/step-000002"


@pytest.mark.slow
def test_latest_complete_picks_highest_step(live_services, s3_prefix: str, tmp_path: Path) -> None:
    assert storage.latest_complete(s3_prefix) is None
    for step in (40, 100, 8):
        storage.upload_dir(_make_folder(tmp_path / f"s{step}", step), f"{s3_prefix}/step-{step:06d}")
    assert storage.latest_complete(s3_prefix) == f"{s3_prefix}/step-000100"
    assert storage.list_complete(s3_prefix + "/") == [
        f"{s3_prefix}/step-000008",
        f"{s3_prefix}/step-000040",
        f"{s3_prefix}/step-000100",
    ]


@pytest.mark.slow
def test_latest_complete_falls_back_to_manifest_time(live_services, s3_prefix: str, tmp_path: Path) -> None:
    storage.upload_dir(_make_folder(tmp_path / "b"), f"{s3_prefix}/zzz-old")
    storage.upload_dir(_make_folder(tmp_path / "a"), f"{s3_prefix}/aaa-new")
    assert storage.latest_complete(s3_prefix) == f"{s3_prefix}/aaa-new"


@pytest.mark.slow
def test_corrupted_object_fails_download_and_leaves_nothing(
    live_services, s3_prefix: str, tmp_path: Path
) -> None:
    src = _make_folder(tmp_path / "src")
    storage.upload_dir(src, f"{s3_prefix}/ckpt")
    (tmp_path / "evil.bin").write_bytes(b"tampered")
    storage.upload_file(tmp_path / "evil.bin", f"{s3_prefix}/ckpt/sub/weights.bin")
    with pytest.raises(storage.IntegrityError, match="sub/weights.bin"):
        storage.download_dir(f"{s3_prefix}/ckpt", tmp_path / "dst")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.bin", "src"]


@pytest.mark.slow
def test_download_dir_refuses_non_empty_target(live_services, s3_prefix: str, tmp_path: Path) -> None:
    storage.upload_dir(_make_folder(tmp_path / "src"), f"{s3_prefix}/ckpt")
    with pytest.raises(storage.StorageError, match="not empty"):
        storage.download_dir(f"{s3_prefix}/ckpt", tmp_path / "src")
    (tmp_path / "empty").mkdir()
    storage.download_dir(f"{s3_prefix}/ckpt", tmp_path / "empty")
    assert (tmp_path / "empty" / "config.json").is_file()


@pytest.mark.slow
def test_json_and_file_roundtrip(live_services, s3_prefix: str, tmp_path: Path) -> None:
    storage.write_json(f"{s3_prefix}/x.json", {"a": [1, 2]})
    assert storage.read_json(f"{s3_prefix}/x.json") == {"a": [1, 2]}
    assert storage.exists(f"{s3_prefix}/x.json") and not storage.exists(f"{s3_prefix}/y.json")
    storage.download_file(f"{s3_prefix}/x.json", tmp_path / "deep" / "x.json")
    assert json.loads((tmp_path / "deep" / "x.json").read_text()) == {"a": [1, 2]}
    with pytest.raises(storage.StorageError, match="does not exist"):
        storage.read_json(f"{s3_prefix}/missing.json")
