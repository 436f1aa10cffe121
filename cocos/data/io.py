"""File I/O of the data stage: source resolution, strict readers, canonical JSON-lines writer, hashes.

Search order for a source file when `load_problems(..., path=None)`:
1. `$COCOS_DATA_DIR/<relative file>` when the variable is set and the file exists;
2. `<repo root>/../shared/data/<relative file>` (the benchmark copies kept beside the repository);
3. the dataset hub by id (`datasets.load_dataset`), as production does.
A given `path` is used alone: a local file or folder, or an `s3://` URI downloaded through
`cocos.storage` first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cocos.records import Problem, RecordError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR_ENV = "COCOS_DATA_DIR"


class DataError(ValueError):
    """Input data that cannot be used; the message names the file and the line or record id."""


def default_data_dirs() -> list[Path]:
    """Local folders searched, in order, when no path is given."""
    dirs = []
    if os.environ.get(DATA_DIR_ENV):
        dirs.append(Path(os.environ[DATA_DIR_ENV]))
    dirs.append(REPO_ROOT.parent / "shared" / "data")
    return dirs


def find_local(relative: str) -> Path | None:
    for folder in default_data_dirs():
        candidate = folder / relative
        if candidate.exists():
            return candidate
    return None


def is_s3(path: str) -> bool:
    return path.startswith("s3://")


def fetch(path: str, workdir: str) -> Path:
    """A local path for `path`: itself, or a download of an S3 URI into `workdir`."""
    if is_s3(path):
        from cocos import storage  # lazy: boto3 is only needed for S3 inputs

        local = Path(workdir) / Path(path.rstrip("/")).name
        storage.download_file(path, str(local))
        return local
    local = Path(path)
    if not local.exists():
        raise DataError(f"{path}: no such file or folder")
    return local


def _read_text(path: Path) -> str:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 ({err.reason} at byte {err.start})") from err
    if not text.strip():
        raise DataError(f"{path}: file is empty")
    return text


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{number}: broken JSON line ({err.msg})") from err
        if not isinstance(record, dict):
            raise DataError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        records.append(record)
    return records


def read_records(path: Path) -> list[dict[str, Any]]:
    """Records of a `.jsonl` file, a `.json` array, or every such file of a folder (sorted by name)."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".json", ".jsonl"))
        if not files:
            raise DataError(f"{path}: folder has no .json or .jsonl file")
        return [record for file in files for record in read_records(file)]
    if path.suffix == ".json":
        text = _read_text(path)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{err.lineno}: broken JSON ({err.msg})") from err
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise DataError(f"{path}: expected a JSON array of objects")
        return data
    return read_jsonl(path)


def canonical_line(record: Mapping[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def canonical_bytes(records: Iterable[Mapping[str, Any]]) -> bytes:
    return "".join(canonical_line(r) + "\n" for r in records).encode("utf-8")


def dataset_hash(problems: Iterable[Problem | Mapping[str, Any]]) -> str:
    """sha256 of the canonical JSON lines of `problems` in the given order; equals `write_split`'s hash."""
    records = [p.to_dict() if isinstance(p, Problem) else p for p in problems]
    return hashlib.sha256(canonical_bytes(records)).hexdigest()


def atomic_write_bytes(data: bytes, path: str | Path) -> None:
    """Write to a temporary file beside `path`, then rename: a reader never sees a partial file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_jsonl(records: Iterable[Mapping[str, Any]], path: str | Path) -> str:
    """Canonical JSON lines (sorted keys, given order, utf-8, '\\n'), written atomically; returns sha256."""
    data = canonical_bytes(list(records))
    atomic_write_bytes(data, path)
    return hashlib.sha256(data).hexdigest()


def write_split(problems: Iterable[Problem], path: str | Path) -> str:
    """Write problems as canonical JSON lines; returns the sha256 of the file's content."""
    return write_jsonl([p.to_dict() for p in problems], path)


def read_split(path: str | Path) -> list[Problem]:
    """Problems written by `write_split`; a bad line raises DataError naming the file and line."""
    problems = []
    for number, record in enumerate(read_jsonl(Path(path)), start=1):
        try:
            problems.append(Problem.from_dict(record))
        except (RecordError, TypeError, AttributeError) as err:
            raise DataError(f"{path}:{number}: {err}") from err
    return problems
