"""Argument parsing shared by the entry scripts: a YAML/JSON config file plus command-line overrides.

`python trainers/distill.py config.yaml --learning_rate 1e-4` reads the file, then lets any flag override it; the
same works under torchrun, accelerate launch and deepspeed, which append their own flags (e.g. --local_rank).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser

# <output_dir>/final: the exported student of a stage script, beside checkpoints and run records
FINAL_MODEL_DIR = "final"


def _load_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping of argument names to values")
    return data


def _to_flags(values: dict[str, Any]) -> list[str]:
    """Turn a config mapping into CLI flags so that file values and overrides go through one parser."""
    flags: list[str] = []
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            flags += [f"--{key}", *[str(v) for v in value]]
        elif isinstance(value, dict):
            flags += [f"--{key}", json.dumps(value)]
        else:
            flags += [f"--{key}", str(value)]
    return flags


def _drop_local_rank(argv: list[str]) -> list[str]:
    kept: list[str] = []
    skip_value = False
    for arg in argv:
        if skip_value:
            skip_value = False
            continue
        if arg in ("--local_rank", "--local-rank"):
            skip_value = True
        elif not arg.startswith(("--local_rank=", "--local-rank=")):
            kept.append(arg)
    return kept


def parse_config_and_overrides(dataclass_types: tuple, argv: list[str]) -> tuple:
    """Parse `[config.yaml|config.json] [--flag value ...]` into instances of `dataclass_types`.

    Flags given on the command line win over the file. Unknown keys (in the file or on the command line) are an
    error that names them.
    """
    parser = HfArgumentParser(dataclass_types)
    # The deepspeed launcher puts --local_rank=N before everything else; TrainingArguments reads LOCAL_RANK from the
    # environment, so the flag is dropped here, before looking for the config file.
    argv = _drop_local_rank(list(argv))
    file_values: dict[str, Any] = {}
    if argv and not argv[0].startswith("-") and Path(argv[0]).suffix in (".yaml", ".yml", ".json"):
        file_values = _load_config_file(Path(argv[0]))
        argv = argv[1:]
    known = {action.dest for action in parser._actions}
    unknown = sorted(set(file_values) - known)
    if unknown:
        raise ValueError(f"unknown key(s) in config file: {', '.join(unknown)}")
    outputs = parser.parse_args_into_dataclasses(args=_to_flags(file_values) + list(argv), return_remaining_strings=True)
    *parsed, remaining = outputs
    if remaining:
        raise ValueError(f"unknown command-line argument(s): {' '.join(remaining)}")
    return tuple(parsed)


def check_launcher(args) -> None:
    """Fail when the launcher started more processes than the Trainer (`args`: its TrainingArguments) sees:
    accelerate sets up multi-process runs on CPU only when asked, otherwise each process would train alone."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != args.world_size:
        raise RuntimeError(
            f"the launcher started {launched} processes but the Trainer sees {args.world_size}: on a machine "
            "without GPUs add --use_cpu true (torchrun, accelerate launch, and deepspeed with DS_ACCELERATOR=cpu)"
        )
