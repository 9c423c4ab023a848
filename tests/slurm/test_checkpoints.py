"""Kill-safe checkpoints: only checkpoints whose completion marker checks out (every file there, of its size and
SHA-256) are resumed from; a run SIGKILLed in the middle of a save, or whose newest checkpoint was damaged later, resumes
from the checkpoint before and ends with the weights of an uninterrupted run."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import TrainerControl, TrainerState, TrainingArguments

from dcclip.trainers.callbacks.checkpoints import (
    AUTO_RESUME,
    COMPLETION_MARKER,
    CheckpointCompletionCallback,
    find_resume_checkpoint,
    resolve_resume_checkpoint,
)

HERE = Path(__file__).resolve().parent
TINY_TRAINER = HERE / "tiny_trainer.py"
TINY_CONFIG = HERE / "tiny_trainer.yaml"

# Runs tiny_trainer.py in a process that SIGKILLs itself during the save of step 8: after the weights are written,
# before the optimizer, RNG and trainer state are.
KILL_DURING_SAVE = f"""
import os, runpy, signal, sys
from transformers import Trainer
save_optimizer = Trainer._save_optimizer_and_scheduler
def save_or_die(self, output_dir):
    if self.state.global_step == 8:
        os.kill(os.getpid(), signal.SIGKILL)
    save_optimizer(self, output_dir)
Trainer._save_optimizer_and_scheduler = save_or_die
sys.argv = [{str(TINY_TRAINER)!r}, *sys.argv[1:]]
runpy.run_path({str(TINY_TRAINER)!r}, run_name="__main__")
"""


def _train_in_process(*flags: str) -> None:
    spec = importlib.util.spec_from_file_location("tiny_trainer", TINY_TRAINER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main([str(TINY_CONFIG), *flags])


@pytest.fixture(scope="module")
def uninterrupted_run(tmp_path_factory) -> Path:
    """8 steps of tiny_trainer.py with checkpoints at steps 4 and 8, never interrupted."""
    output_dir = tmp_path_factory.mktemp("uninterrupted") / "out"
    _train_in_process("--output_dir", str(output_dir))
    return output_dir


@pytest.fixture
def run_copy(uninterrupted_run, tmp_path) -> Path:
    """A copy of the uninterrupted run's folder that a test may damage."""
    return Path(shutil.copytree(uninterrupted_run, tmp_path / "out"))


def test_newest_complete_checkpoint_is_found(run_copy):
    assert find_resume_checkpoint(run_copy) == str(run_copy / "checkpoint-8")


def test_marker_lists_every_file_of_the_checkpoint_with_its_size_and_sha256(uninterrupted_run):
    folder = uninterrupted_run / "checkpoint-8"
    marker = json.loads((folder / COMPLETION_MARKER).read_text())
    on_disk = {
        p.name: {"bytes": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
        for p in folder.iterdir()
        if p.name != COMPLETION_MARKER
    }
    assert marker == {"format": 2, "files": on_disk}
    assert {"model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"} <= on_disk.keys()


def _overwrite_second_half_with_noise(path: Path) -> None:
    """Same-size damage: the safetensors header stays readable, half the tensor bytes become random."""
    content = bytearray(path.read_bytes())
    half = len(content) // 2
    content[half:] = random.Random(0).randbytes(len(content) - half)
    path.write_bytes(bytes(content))


def test_checkpoint_overwritten_in_place_with_the_same_size_is_skipped(run_copy, caplog):
    weights = run_copy / "checkpoint-8" / "model.safetensors"
    size = weights.stat().st_size
    _overwrite_second_half_with_noise(weights)
    assert weights.stat().st_size == size
    with caplog.at_level(logging.WARNING, logger="dcclip.trainers.callbacks.checkpoints"):
        assert find_resume_checkpoint(run_copy) == str(run_copy / "checkpoint-4")
    assert "model.safetensors has changed since the checkpoint was completed" in caplog.text


def test_marker_of_sizes_only_is_still_accepted_with_a_warning(run_copy, caplog):
    marker = run_copy / "checkpoint-8" / COMPLETION_MARKER
    sizes = {name: entry["bytes"] for name, entry in json.loads(marker.read_text())["files"].items()}
    marker.write_text(json.dumps({"files": sizes}))  # as written before content hashes
    with caplog.at_level(logging.WARNING, logger="dcclip.trainers.callbacks.checkpoints"):
        assert find_resume_checkpoint(run_copy) == str(run_copy / "checkpoint-8")
    assert "sizes only" in caplog.text


def test_unreadable_marker_is_skipped(run_copy, caplog):
    (run_copy / "checkpoint-8" / COMPLETION_MARKER).write_text('{"files": {"trainer_state.json": {"bytes": 1}}}')
    with caplog.at_level(logging.WARNING, logger="dcclip.trainers.callbacks.checkpoints"):
        assert find_resume_checkpoint(run_copy) == str(run_copy / "checkpoint-4")
    assert "unreadable checkpoint_complete.json entry for trainer_state.json" in caplog.text


def test_checkpoint_without_marker_is_skipped(run_copy, caplog):
    (run_copy / "checkpoint-8" / COMPLETION_MARKER).unlink()
    with caplog.at_level(logging.WARNING, logger="trainers.checkpoints"):
        assert find_resume_checkpoint(run_copy) == str(run_copy / "checkpoint-4")
    assert "checkpoint-8" in caplog.text and "did not finish" in caplog.text


def test_checkpoint_with_truncated_file_is_skipped(run_copy, caplog):
    optimizer = run_copy / "checkpoint-8" / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[:100])
    with caplog.at_level(logging.WARNING, logger="trainers.checkpoints"):
        assert find_resume_checkpoint(run_copy) == str(run_copy / "checkpoint-4")
    assert "optimizer.pt has 100 bytes" in caplog.text


def test_checkpoint_with_missing_file_is_skipped(run_copy):
    (run_copy / "checkpoint-8" / "trainer_state.json").unlink()
    assert find_resume_checkpoint(run_copy) == str(run_copy / "checkpoint-4")


def test_no_complete_checkpoint_means_start_fresh(run_copy, tmp_path):
    for step in (4, 8):
        (run_copy / f"checkpoint-{step}" / COMPLETION_MARKER).unlink()
    assert find_resume_checkpoint(run_copy) is None
    assert find_resume_checkpoint(tmp_path / "never-created") is None
    assert resolve_resume_checkpoint(AUTO_RESUME, run_copy) is None


def test_resolve_resume_checkpoint_passes_intact_explicit_values_through(run_copy):
    assert resolve_resume_checkpoint(AUTO_RESUME, run_copy) == str(run_copy / "checkpoint-8")
    assert resolve_resume_checkpoint(str(run_copy / "checkpoint-4"), run_copy) == str(run_copy / "checkpoint-4")
    assert resolve_resume_checkpoint(None, run_copy) is None


def test_an_explicitly_named_damaged_checkpoint_is_refused_with_the_reason(run_copy):
    _overwrite_second_half_with_noise(run_copy / "checkpoint-8" / "optimizer.pt")
    with pytest.raises(ValueError, match=r"cannot resume from .*checkpoint-8: optimizer.pt has changed .*auto"):
        resolve_resume_checkpoint(str(run_copy / "checkpoint-8"), run_copy)
    with pytest.raises(ValueError, match="no such folder"):
        resolve_resume_checkpoint(str(run_copy / "checkpoint-12"), run_copy)


def test_an_explicitly_named_checkpoint_without_marker_is_taken_with_a_warning(run_copy, caplog):
    (run_copy / "checkpoint-8" / COMPLETION_MARKER).unlink()
    with caplog.at_level(logging.WARNING, logger="dcclip.trainers.callbacks.checkpoints"):
        assert resolve_resume_checkpoint(str(run_copy / "checkpoint-8"), run_copy) == str(run_copy / "checkpoint-8")
    assert "without checking it" in caplog.text


def test_callback_drops_the_stale_marker_of_a_checkpoint_about_to_be_rewritten(run_copy):
    args = TrainingArguments(output_dir=str(run_copy), report_to="none", use_cpu=True)
    callback = CheckpointCompletionCallback()
    callback.on_step_end(args, TrainerState(global_step=4), TrainerControl(should_save=False))
    assert (run_copy / "checkpoint-4" / COMPLETION_MARKER).exists()
    callback.on_step_end(args, TrainerState(global_step=4), TrainerControl(should_save=True))
    assert not (run_copy / "checkpoint-4" / COMPLETION_MARKER).exists()
    assert (run_copy / "checkpoint-8" / COMPLETION_MARKER).exists()


def test_sigkill_during_a_save_resumes_from_the_previous_checkpoint_with_the_same_result(
    uninterrupted_run, tmp_path, assert_same_weights
):
    output_dir = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = subprocess.run(
        [sys.executable, "-c", KILL_DURING_SAVE, str(TINY_CONFIG), "--output_dir", str(output_dir)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert killed.returncode == -9, killed.stderr[-3000:]
    half_written = output_dir / "checkpoint-8"
    assert (half_written / "model.safetensors").exists() and not (half_written / COMPLETION_MARKER).exists()
    assert find_resume_checkpoint(output_dir) == str(output_dir / "checkpoint-4")

    _train_in_process("--output_dir", str(output_dir), "--resume_from_checkpoint", AUTO_RESUME)

    assert find_resume_checkpoint(output_dir) == str(output_dir / "checkpoint-8")
    assert_same_weights(output_dir, uninterrupted_run)


def test_same_size_damage_to_the_newest_checkpoints_weights_resumes_from_the_one_before_with_the_same_result(
    uninterrupted_run, tmp_path, assert_same_weights
):
    output_dir = Path(shutil.copytree(uninterrupted_run, tmp_path / "damaged"))
    (output_dir / "model.safetensors").unlink()  # the final weights, so that the resumed run must write them anew
    _overwrite_second_half_with_noise(output_dir / "checkpoint-8" / "model.safetensors")

    _train_in_process("--output_dir", str(output_dir), "--resume_from_checkpoint", AUTO_RESUME)

    assert find_resume_checkpoint(output_dir) == str(output_dir / "checkpoint-8")  # rewritten, intact
    assert_same_weights(output_dir, uninterrupted_run)
