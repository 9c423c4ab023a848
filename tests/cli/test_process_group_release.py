"""A finished run releases its process group itself (trainers/process_group.py): left to interpreter shutdown, gloo's
worker threads can abort a run that has already succeeded. The two-process runs in tests/distill and tests/align check
that commands run through `run_command` call it; this checks what it does, in a fresh process so no group outlives
the test."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_release_destroys_the_default_group_and_says_so(tmp_path):
    output = _run(f"""
        import logging
        import torch.distributed as dist
        from dcclip.trainers.process_group import release_process_group

        logging.basicConfig(level=logging.INFO)
        dist.init_process_group("gloo", init_method="file://{tmp_path / 'store'}", rank=0, world_size=1)
        release_process_group()
        print("initialized after release:", dist.is_initialized())
        release_process_group()  # a second call finds nothing to do
    """)
    assert "initialized after release: False" in output
    assert output.count("rank 0 of 1 released its process group") == 1


def test_release_without_a_group_does_not_import_torch():
    output = _run("""
        import sys
        from dcclip.trainers.process_group import release_process_group

        release_process_group()
        print("torch imported:", "torch" in sys.modules)
    """)
    assert "torch imported: False" in output
