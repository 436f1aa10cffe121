"""The README opens with the two set-up commands and its file tree lists every file in git (package
markers `__init__.py` under tests/ excepted), and nothing that is gone. Run: pytest tests/test_readme.py -q
"""

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _tree() -> set[str]:
    text = (REPO / "README.md").read_text()
    block = text.split("## Files", 1)[1].split("```")[1]
    return {line.split()[0] for line in block.strip().splitlines() if line.strip()}


def test_readme_opens_with_the_commands():
    head = (REPO / "README.md").read_text()[:400]
    assert "make demo" in head and "make test" in head


def test_file_tree_matches_the_repository():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    files = {f for f in tracked if not re.fullmatch(r"tests/(.+/)?__init__\.py", f)}
    listed = _tree()
    assert sorted(files - listed) == [], "add these files to the README tree"
    assert sorted(listed - files - {"tests/test_readme.py"}) == [], "these README entries no longer exist"
