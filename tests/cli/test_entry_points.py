"""Every entry script in trainers/ runs the same three ways: `python trainers/X.py`, `python -m trainers.X` and
`dcclip <command>`, each in a fresh process from the repository root, as a user types them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# script in trainers/ -> its dcclip command
ENTRY_SCRIPTS = {
    "distill": "distill",
    "align": "align",
    "cache_teacher": "teacher-cache",
    "make_benchmark": "make-benchmark",
    "build_tokenizer": "build-tokenizer",
}
DCCLIP = Path(sys.executable).with_name("dcclip")


def _ways(script: str) -> dict[str, list[str]]:
    return {
        "script": [sys.executable, f"trainers/{script}.py"],
        "module": [sys.executable, "-m", f"trainers.{script}"],
        "command": [str(DCCLIP), ENTRY_SCRIPTS[script]],
    }


@pytest.mark.parametrize("way", ["script", "module", "command"])
@pytest.mark.parametrize("script", sorted(ENTRY_SCRIPTS))
def test_entry_script_answers_help(script, way):
    result = subprocess.run(
        [*_ways(script)[way], "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout and "--help" in result.stdout


def test_every_entry_script_in_trainers_is_listed_here():
    scripts = {path.stem for path in (REPO_ROOT / "trainers").glob("*.py") if "__main__" in path.read_text()}
    assert scripts == set(ENTRY_SCRIPTS)
