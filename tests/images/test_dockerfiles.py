"""The Dockerfiles under images/ and the pins they build from, checked offline (no docker needed).

Covers: every COPY/ADD source exists; requirements are installed before any code is copied and the project
after it; every requirement line is pinned with `==`; the CPU lock matches the installed venv (the versions
the tests ran with); requirements/train-cuda.txt differs from the lock only in torch's CUDA build, which
matches the CUDA base image; every image ends as a non-root USER; the sandbox image sets no credentials;
components/images.py, its DOCKERFILES mapping and images/README.md agree.
Run: pytest tests/images -q
"""

from __future__ import annotations

import re
import shlex
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name
from packaging.version import Version

from components import images

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((REPO / "images").glob("*/Dockerfile"))
CODE = ("cocos", "components", "pipelines", "pyproject.toml")
CREDENTIAL_WORDS = ("KEY", "SECRET", "TOKEN", "PASSWORD", "CREDENTIAL", "AWS_", "MLFLOW_TRACKING")


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def copy_sources(args: str) -> tuple[list[str], str]:
    words = [w for w in shlex.split(args) if not w.startswith("--")]
    if words and words[0].startswith("["):  # JSON form
        import json

        words = json.loads(args)
    return words[:-1], words[-1]


def lock(path: Path) -> dict[str, str]:
    """{canonical name: version} of a requirements file; fails on any line that is not an exact pin."""
    pins = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("--"):
            continue
        assert re.fullmatch(r"[A-Za-z0-9._-]+==[A-Za-z0-9.+!_-]+", line), f"{path.name}: not an exact pin: {raw!r}"
        name, pinned = line.split("==")
        pins[canonicalize_name(name)] = pinned
    return pins


def test_there_are_the_three_images() -> None:
    assert {p.parent.name for p in DOCKERFILES} == {"base", "train", "sandbox"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_copy_sources_exist(dockerfile: Path) -> None:
    for keyword, args in instructions(dockerfile):
        if keyword in ("COPY", "ADD") and "--from=" not in args:
            sources, _ = copy_sources(args)
            for source in sources:
                assert (REPO / source).exists(), f"{dockerfile.relative_to(REPO)}: {keyword} source {source} is missing"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_requirements_installed_before_code_is_copied(dockerfile: Path) -> None:
    steps = instructions(dockerfile)
    installs = [i for i, (k, a) in enumerate(steps) if k == "RUN" and "pip install" in a and "--no-deps" not in a]
    code_copies = [
        i
        for i, (k, a) in enumerate(steps)
        if k in ("COPY", "ADD") and any(s.rstrip("/").startswith(CODE) for s in copy_sources(a)[0])
    ]
    project = [i for i, (k, a) in enumerate(steps) if k == "RUN" and re.search(r"pip install --no-deps (-e )?\.", a)]
    assert installs and code_copies and project, f"{dockerfile}: expected requirement install, code copy, project"
    assert installs[0] < code_copies[0], "requirements must be installed before the code is copied (layer cache)"
    assert max(installs) < code_copies[0], "no requirement install may follow the code copy"
    assert project[0] > max(code_copies), "the project is installed (without deps) after its code is copied"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_ends_as_non_root_user(dockerfile: Path) -> None:
    users = [a for k, a in instructions(dockerfile) if k == "USER"]
    assert users, f"{dockerfile.relative_to(REPO)} has no USER"
    uid = users[-1].split(":")[0]
    assert uid not in ("0", "root"), f"{dockerfile.relative_to(REPO)} ends as root"
    assert uid.isdigit(), "a numeric uid lets Kubernetes verify runAsNonRoot"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_requirement_files_copied_are_pinned(dockerfile: Path) -> None:
    for keyword, args in instructions(dockerfile):
        if keyword == "COPY":
            for source in copy_sources(args)[0]:
                if source.startswith("requirements/"):
                    assert lock(REPO / source)


def test_sandbox_inline_pins_match_the_lock() -> None:
    pins = lock(REPO / "requirements/lock.txt")
    steps = instructions(REPO / "images/sandbox/Dockerfile")
    inline = [w for k, a in steps if k == "RUN" and "pip install" in a for w in a.split() if "==" in w]
    assert inline
    for word in inline:
        name, pinned = word.split("==")
        assert pins.get(canonicalize_name(name)) == pinned, f"sandbox pins {word}, the lock does not"


def test_sandbox_image_sets_no_credentials() -> None:
    for keyword, args in instructions(REPO / "images/sandbox/Dockerfile"):
        if keyword in ("ENV", "ARG"):
            names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", args) or [args.split()[0]]
            for name in names:
                assert not any(w in name.upper() for w in CREDENTIAL_WORDS), f"sandbox image sets {keyword} {name}"
        assert "secret" not in args.lower() or keyword == "RUN", f"sandbox {keyword} mentions a secret: {args}"


def test_cpu_lock_is_what_this_venv_runs() -> None:
    """Offline stand-in for resolving the lock: every pin is installed here, at that version."""
    wrong = []
    for name, pinned in lock(REPO / "requirements/lock.txt").items():
        try:
            installed = Version(version(name))
        except PackageNotFoundError:
            wrong.append(f"{name}=={pinned} (not installed)")
            continue
        # torch from the CPU index is 2.13.0+cpu: the local label names the build, the pin the release.
        if installed.public != Version(pinned).public or (installed.local and Version(pinned).local):
            wrong.append(f"{name}=={pinned} (installed {installed})")
    assert not wrong, "lock and venv disagree: " + ", ".join(wrong)


def test_train_cuda_requirements_differ_from_the_lock_only_in_torch_build() -> None:
    cpu = lock(REPO / "requirements/lock.txt")
    cuda_path = REPO / "requirements/train-cuda.txt"
    cuda = lock(cuda_path)
    assert cuda.keys() == cpu.keys()
    differ = {name for name in cpu if cpu[name] != cuda[name]}
    assert differ == {"torch"}
    torch = Version(cuda["torch"])
    assert torch.public == Version(cpu["torch"]).public and torch.local and torch.local.startswith("cu")
    index = re.search(r"--extra-index-url https://download.pytorch.org/whl/(cu\d+)", cuda_path.read_text())
    assert index and index.group(1) == torch.local, "torch's local label and the index it comes from agree"
    base = next(a for k, a in instructions(REPO / "images/train/Dockerfile") if k == "FROM")
    cuda_version = re.search(r"nvidia/cuda:(\d+)\.(\d+)", base)
    assert cuda_version, base
    assert torch.local == f"cu{cuda_version.group(1)}{cuda_version.group(2)}", "torch build matches the CUDA base"
    steps = instructions(REPO / "images/train/Dockerfile")
    assert any(k == "ENV" and "DS_BUILD_OPS=0" in a for k, a in steps)


def test_image_refs_dockerfiles_and_readme_agree() -> None:
    readme = (REPO / "images/README.md").read_text()
    assert set(images.DOCKERFILES) == {"BASE", "TRAIN", "SANDBOX"}
    for constant, dockerfile in images.DOCKERFILES.items():
        assert (REPO / dockerfile).is_file(), dockerfile
        ref = getattr(images, constant)
        row = next((line for line in readme.splitlines() if line.startswith(f"| `{constant}` |")), None)
        assert row is not None, f"images/README.md has no row for {constant}"
        assert f"`{dockerfile}`" in row
        repository = ref.rsplit(":", 1)[0].rsplit("/", 1)[-1]
        assert repository in row, f"README row for {constant} does not name {repository}"
