"""Running the two DC-CLIP stages the way a user does: write the run's YAML config, then call the entry point
(`dcclip distill CONFIG` / `dcclip align CONFIG`) with it. The configs stay in the demo's output folder, so any run
can be repeated by hand. The console shows one line and a labelled progress bar per run; the run's Trainer log goes
to `train.log` in its output folder (`demo.console`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml

from dcclip.trainers import align, cache_teacher, distill
from dcclip.trainers.arguments import FINAL_MODEL_DIR

from .console import training_run_output

RUN_LOG_FILE = "train.log"


def write_config(values: dict, path: str | Path) -> Path:
    """Write a stage's options as a YAML config file (the format `trainers/arguments.py` reads)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(values, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def _config_path_value(config_path: Path, key: str) -> Path:
    return Path(yaml.safe_load(config_path.read_text(encoding="utf-8"))[key])


def _run_stage(config_path: str | Path, label: str, command: str, entry: Callable[..., object]) -> Path:
    """Run a stage's entry point (`entry(argv, extra_callbacks=...)`) on `config_path` with the run's console
    treatment; returns the exported student folder (`trainer_state.json` and the run's `train.log` are beside it)."""
    config_path = Path(config_path)
    output_dir = _config_path_value(config_path, "output_dir")
    with training_run_output(label, output_dir / RUN_LOG_FILE, f"dcclip {command} {config_path}") as callbacks:
        entry([str(config_path)], extra_callbacks=callbacks)
    return output_dir / FINAL_MODEL_DIR


def run_distillation(config_path: str | Path, label: str) -> Path:
    """Stage 1 (`dcclip distill CONFIG`); returns the exported student folder."""
    return _run_stage(config_path, label, "distill", distill.run)


def run_alignment(config_path: str | Path, label: str) -> Path:
    """Stage 2 (`dcclip align CONFIG`); returns the aligned student folder."""
    return _run_stage(config_path, label, "align", align.main)


def build_teacher_cache(config_path: str | Path, label: str) -> Path:
    """`dcclip teacher-cache CONFIG` (a stage-1 config with `teacher_cache_dir`); returns the cache folder (its log,
    `<folder>.log`, is beside it: the command needs an empty folder)."""
    config_path = Path(config_path)
    folder = _config_path_value(config_path, "teacher_cache_dir")
    with training_run_output(label, folder.parent / f"{folder.name}.log", f"dcclip teacher-cache {config_path}"):
        cache_teacher.main([str(config_path)])
    return folder
