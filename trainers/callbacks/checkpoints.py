"""Kill-safe checkpoints: a completion marker written after every rank has finished a save, and the resume lookup.

The HF Trainer writes `checkpoint-N/` in place, file after file, from several ranks (DeepSpeed shards, one RNG file per
rank), so a folder that exists is not yet a checkpoint that can be resumed: a SIGKILL or a preemption in the middle
leaves a partial folder that `transformers.trainer_utils.get_last_checkpoint` would still pick. Here a checkpoint
counts only once `CheckpointCompletionCallback` has written its marker, last, after a barrier across ranks; the marker
lists every file with its size and SHA-256, so a folder later truncated, overwritten in place (even with the same
size) or otherwise damaged is refused too, and auto-resume falls back to the checkpoint before it.
"""

from __future__ import annotations

import hashlib
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
# 2: every file with {"bytes", "sha256"}; markers of format 1 (before content hashes) list sizes only
MARKER_FORMAT = 2
_HASH_CHUNK_BYTES = 1 << 20


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's content, read in 1 MiB chunks (checkpoint files can be many GB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _checkpoint_files(folder: Path) -> list[str]:
    return [
        path.relative_to(folder).as_posix()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.relative_to(folder).as_posix() not in _MARKER_FILES
    ]


def write_completion_marker(checkpoint_dir: str | os.PathLike) -> None:
    """Mark `checkpoint_dir` complete: record every file with its size and SHA-256, then publish the marker by an
    atomic rename."""
    folder = Path(checkpoint_dir)
    files = {
        name: {"bytes": (folder / name).stat().st_size, "sha256": file_sha256(folder / name)}
        for name in _checkpoint_files(folder)
    }
    tmp = folder / _MARKER_FILES[1]
    tmp.write_text(json.dumps({"format": MARKER_FORMAT, "files": files}, indent=1), encoding="utf-8")
    os.replace(tmp, folder / COMPLETION_MARKER)


def _file_problem(folder: Path, name: str, listed: dict | int) -> str | None:
    """Why one listed file does not match the marker (missing, another size, another content), or None."""
    path = folder / name
    if not path.is_file():
        return f"{name} is missing"
    size, digest = (listed, None) if isinstance(listed, int) else (listed["bytes"], listed["sha256"])
    if path.stat().st_size != size:
        return f"{name} has {path.stat().st_size} bytes, {size} when the checkpoint was completed"
    if digest is not None and file_sha256(path) != digest:
        return f"{name} has changed since the checkpoint was completed (SHA-256 differs, same size)"
    return None


def checkpoint_problem(checkpoint_dir: str | os.PathLike) -> str | None:
    """Why `checkpoint_dir` cannot be resumed from (no marker, a listed file missing, of another size or with another
    content), or None. Reads every file once (SHA-256)."""
    folder = Path(checkpoint_dir)
    marker = folder / COMPLETION_MARKER
    if not marker.is_file():
        return f"no {COMPLETION_MARKER} (the save did not finish)"
    try:
        listed = json.loads(marker.read_text(encoding="utf-8"))["files"]
        if not isinstance(listed, dict):
            raise TypeError(f"'files' is a {type(listed).__name__}, not a mapping")
    except (ValueError, KeyError, TypeError) as error:
        return f"unreadable {COMPLETION_MARKER}: {error}"
    if "trainer_state.json" not in listed:
        return "trainer_state.json is not part of the checkpoint"
    if any(isinstance(entry, int) for entry in listed.values()):
        logger.warning("%s lists file sizes only (written before content hashes): contents not checked", marker)
    for name, entry in listed.items():
        try:
            problem = _file_problem(folder, name, entry)
        except (KeyError, TypeError) as error:
            return f"unreadable {COMPLETION_MARKER} entry for {name}: {error!r}"
        if problem is not None:
            return problem
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


def _checked_explicit_checkpoint(path: str) -> str:
    """An explicitly named checkpoint: refused when its marker does not check out; taken with a warning when it has
    no marker at all (a checkpoint written by another program cannot be checked)."""
    if not Path(path).is_dir():
        raise ValueError(f"--resume_from_checkpoint {path}: no such folder")
    problem = checkpoint_problem(path)
    if problem is None:
        return path
    if not (Path(path) / COMPLETION_MARKER).is_file():
        logger.warning("resuming from %s without checking it: it has no %s (written by another program, or a save "
                       "that did not finish)", path, COMPLETION_MARKER)  # fmt: skip
        return path
    raise ValueError(f"cannot resume from {path}: {problem}. Name another checkpoint, or pass "
                     f"--resume_from_checkpoint {AUTO_RESUME} to resume from the newest intact one.")  # fmt: skip


def resolve_resume_checkpoint(resume_from_checkpoint: str | None, output_dir: str | os.PathLike) -> str | None:
    """Turn the `--resume_from_checkpoint` value into what `Trainer.train` takes: `auto` -> the newest complete and
    intact checkpoint of `output_dir` (None: start fresh); an explicit path is checked the same way and refused when
    damaged; None is passed through."""
    if resume_from_checkpoint is None:
        return None
    if resume_from_checkpoint != AUTO_RESUME:
        return _checked_explicit_checkpoint(resume_from_checkpoint)
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
