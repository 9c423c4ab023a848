"""Kill-safe checkpoints: a completion marker written after every rank has finished a save, and the resume lookup.

The HF Trainer writes `checkpoint-N/` in place, file after file, from several ranks (DeepSpeed shards, one RNG file per
rank), so a folder that exists is not yet a checkpoint that can be resumed: a SIGKILL or a preemption in the middle
leaves a partial folder that `transformers.trainer_utils.get_last_checkpoint` would still pick. Here a checkpoint
counts only once `CheckpointCompletionCallback` has written its marker, last, after a barrier across ranks; the marker
lists every file with its size, so a folder later truncated or half-overwritten is refused too.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

logger = logging.getLogger(__name__)

COMPLETION_MARKER = "checkpoint_complete.json"
# `--resume_from_checkpoint auto`: resume from the newest complete checkpoint in output_dir, or start fresh
AUTO_RESUME = "auto"

_CHECKPOINT_NAME = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


_MARKER_FILES = (COMPLETION_MARKER, COMPLETION_MARKER + ".tmp")


def _file_sizes(folder: Path) -> dict[str, int]:
    return {
        path.relative_to(folder).as_posix(): path.stat().st_size
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.relative_to(folder).as_posix() not in _MARKER_FILES
    }


def write_completion_marker(checkpoint_dir: str | os.PathLike) -> None:
    """Mark `checkpoint_dir` complete: record every file and its size, then publish the marker by an atomic rename."""
    folder = Path(checkpoint_dir)
    marker = folder / COMPLETION_MARKER
    tmp = folder / _MARKER_FILES[1]
    tmp.write_text(json.dumps({"files": _file_sizes(folder)}, indent=1), encoding="utf-8")
    os.replace(tmp, marker)


def checkpoint_problem(checkpoint_dir: str | os.PathLike) -> str | None:
    """Why `checkpoint_dir` cannot be resumed from (no marker, a listed file missing or of another size), or None."""
    folder = Path(checkpoint_dir)
    marker = folder / COMPLETION_MARKER
    if not marker.is_file():
        return f"no {COMPLETION_MARKER} (the save did not finish)"
    try:
        listed = json.loads(marker.read_text(encoding="utf-8"))["files"]
    except (ValueError, KeyError, TypeError) as error:
        return f"unreadable {COMPLETION_MARKER}: {error}"
    if "trainer_state.json" not in listed:
        return "trainer_state.json is not part of the checkpoint"
    for name, size in listed.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, {size} when the checkpoint was completed"
    return None


def find_resume_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest complete `checkpoint-N` folder in `output_dir`, or None when there is none (or no folder).

    Incomplete checkpoints (a save cut short by a kill, a folder damaged later) are skipped, each with a warning that
    says why.
    """
    root = Path(output_dir)
    if not root.is_dir():
        return None
    numbered = [
        (int(match.group(1)), path)
        for path in root.iterdir()
        if path.is_dir() and (match := _CHECKPOINT_NAME.match(path.name))
    ]
    for _, path in sorted(numbered, reverse=True):
        problem = checkpoint_problem(path)
        if problem is None:
            return str(path)
        logger.warning("not resuming from %s: %s", path, problem)
    return None


def resolve_resume_checkpoint(resume_from_checkpoint: str | None, output_dir: str | os.PathLike) -> str | None:
    """Turn the `--resume_from_checkpoint` value into what `Trainer.train` takes: `auto` -> the newest complete
    checkpoint of `output_dir` (None: start fresh); an explicit path or None is passed through unchanged."""
    if resume_from_checkpoint != AUTO_RESUME:
        return resume_from_checkpoint
    checkpoint = find_resume_checkpoint(output_dir)
    logger.warning("auto-resume: %s", checkpoint or f"no complete checkpoint in {output_dir}, starting fresh")
    return checkpoint


class CheckpointCompletionCallback(TrainerCallback):
    """Writes the completion marker into each checkpoint once every rank has finished saving it.

    Before a save it removes a stale marker from the folder about to be rewritten (a run restarted in the same
    output_dir), so a half-overwritten checkpoint is never taken as complete.
    """

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if args.save_total_limit == 1:
            # rotation deletes the previous checkpoint before the new one is marked: a kill then leaves none complete
            logger.warning("save_total_limit=1: a kill during a save can leave no complete checkpoint; use 2 or more")

    def _drop_stale_marker(self, args: TrainingArguments, state: TrainerState, control: TrainerControl) -> None:
        if control.should_save and args.should_save:
            marker = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}" / COMPLETION_MARKER
            marker.unlink(missing_ok=True)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        self._drop_stale_marker(args, state, control)

    def on_epoch_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        self._drop_stale_marker(args, state, control)

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        # every rank writes its own files (RNG state, DeepSpeed shards): wait for all of them before marking
        args.distributed_state.wait_for_everyone()
        if args.should_save:
            write_completion_marker(Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
