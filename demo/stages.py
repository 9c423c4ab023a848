"""Running the two DC-CLIP stages the way a user does: write the run's YAML config, then call the entry point
(`dcclip distill CONFIG` / `dcclip align CONFIG`) with it. The configs stay in the demo's output folder, so any run
can be repeated by hand."""

from __future__ import annotations

from pathlib import Path

import yaml

from dcclip.trainers import align, distill


def write_config(values: dict, path: str | Path) -> Path:
    """Write a stage's options as a YAML config file (the format `trainers/arguments.py` reads)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(values, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def run_distillation(config_path: str | Path) -> Path:
    """Stage 1 (`dcclip distill CONFIG`); returns the exported student folder (`trainer_state.json` is beside it)."""
    trainer = distill.run([str(config_path)])
    return Path(trainer.args.output_dir) / distill.FINAL_MODEL_DIR


def run_alignment(config_path: str | Path) -> Path:
    """Stage 2 (`dcclip align CONFIG`); returns the aligned student folder (`trainer_state.json` is beside it)."""
    align.main([str(config_path)])
    output_dir = yaml.safe_load(Path(config_path).read_text(encoding="utf-8"))["output_dir"]
    return Path(output_dir) / align.FINAL_MODEL_DIR
