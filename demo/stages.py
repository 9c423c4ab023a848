"""Running the two DC-CLIP stages the way a user does: write the run's YAML config, then call the entry point
(`dcclip distill CONFIG` / `dcclip align CONFIG`) with it. The configs stay in the demo's output folder, so any run
can be repeated by hand. The console shows one line and a labelled progress bar per run; the run's Trainer log goes
to `train.log` in its output folder (`demo.console`)."""

from __future__ import annotations

from pathlib import Path

import yaml

from dcclip.trainers import align, cache_teacher, distill

from .console import training_run_output

RUN_LOG_FILE = "train.log"


def write_config(values: dict, path: str | Path) -> Path:
    """Write a stage's options as a YAML config file (the format `trainers/arguments.py` reads)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(values, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def _output_dir(config_path: Path) -> Path:
    return Path(yaml.safe_load(config_path.read_text(encoding="utf-8"))["output_dir"])


def run_distillation(config_path: str | Path, label: str) -> Path:
    """Stage 1 (`dcclip distill CONFIG`); returns the exported student folder (`trainer_state.json` and the run's
    `train.log` are beside it)."""
    config_path = Path(config_path)
    output_dir = _output_dir(config_path)
    with training_run_output(label, output_dir / RUN_LOG_FILE, f"dcclip distill {config_path}") as callbacks:
        distill.run([str(config_path)], extra_callbacks=callbacks)
    return output_dir / distill.FINAL_MODEL_DIR


def build_teacher_cache(config_path: str | Path, label: str) -> Path:
    """`dcclip teacher-cache CONFIG` (a stage-1 config with `teacher_cache_dir`); returns the cache folder (its log,
    `<folder>.log`, is beside it: the command needs an empty folder)."""
    config_path = Path(config_path)
    folder = Path(yaml.safe_load(config_path.read_text(encoding="utf-8"))["teacher_cache_dir"])
    with training_run_output(label, folder.parent / f"{folder.name}.log", f"dcclip teacher-cache {config_path}"):
        cache_teacher.main([str(config_path)])
    return folder


def run_alignment(config_path: str | Path, label: str) -> Path:
    """Stage 2 (`dcclip align CONFIG`); returns the aligned student folder (`trainer_state.json` and the run's
    `train.log` are beside it)."""
    config_path = Path(config_path)
    output_dir = _output_dir(config_path)
    with training_run_output(label, output_dir / RUN_LOG_FILE, f"dcclip align {config_path}") as callbacks:
        align.main([str(config_path)], extra_callbacks=callbacks)
    return output_dir / align.FINAL_MODEL_DIR
