"""Command-line arguments shared by the entry scripts: a YAML/JSON config file plus overrides, the student's options
(one set of names and one validation for stage 1, stage 2 and the teacher cache), each stage's data options, and the
launcher check.

`python trainers/distill.py config.yaml --learning_rate 1e-4` reads the file, then lets any flag override it; the
same works under torchrun, accelerate launch and deepspeed, which append their own flags (e.g. --local_rank). Every
option is accepted as `--a_b` and as `--a-b`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser, TrainingArguments
from transformers.integrations import get_available_reporting_integrations
from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

from dcclip.languages import LANGUAGES

# <output_dir>/final: the exported student of a stage script, beside checkpoints and run records
FINAL_MODEL_DIR = "final"
# CLIP's text context length: the default truncation of every caption in both stages
DEFAULT_MAX_TEXT_LENGTH = 77


@dataclass
class StudentArguments:
    """Where the student comes from: a trained DC-CLIP folder (`--student`) or a fresh preset (`--student_preset`)."""

    student: str | None = field(
        default=None,
        metadata={"help": "Start from this DC-CLIP folder or Hub id (model + processor), e.g. stage 1's output. Takes "
                  "precedence over --student_preset, --tokenizer and --image_size, which a warning then names."},
    )  # fmt: skip
    student_preset: str | None = field(
        default=None,
        metadata={"help": "Build a fresh student from this DCCLIPConfig preset (tiny, tiny-vit, edge, edge-mobilevit)."},
    )
    tokenizer: str | None = field(
        default=None,
        metadata={"help": "Tokenizer folder of a preset student. Default: the teacher's tokenizer (text feature maps "
                  "are then distilled token by token); stage 2 without a teacher needs it."},
    )  # fmt: skip
    image_size: int | None = field(
        default=None, metadata={"help": "Input resolution of a preset student. Default: the preset's."}
    )
    max_text_length: int = field(
        default=DEFAULT_MAX_TEXT_LENGTH,
        metadata={"help": "Truncate every caption to this many tokens (student, and teacher where it reads text)."},
    )

    def __post_init__(self):
        from modeling_dcclip import DCCLIPConfig  # the shipped model owns the preset names

        presets = DCCLIPConfig.preset_names()
        if self.student_preset is not None and self.student_preset not in presets:
            raise ValueError(f"--student_preset {self.student_preset!r} is not a preset; choose from {presets}")
        if self.max_text_length < 1:
            raise ValueError(f"--max_text_length must be >= 1, got {self.max_text_length}")
        if self.image_size is not None and self.image_size < 1:
            raise ValueError(f"--image_size must be >= 1, got {self.image_size}")


@dataclass
class DistillationDataArguments:
    """Stage 1's data: one data spec per tower, each distilled on its own data."""

    image_data: str | None = field(
        default=None,
        metadata={"help": "Data spec (YAML/JSON, see docs/data.md) of the image tower's data: image-only or "
                  "image-text sources. Omit to distil the text tower alone."},
    )  # fmt: skip
    text_data: str | None = field(
        default=None,
        metadata={"help": "Data spec of the text tower's data: bilingual text-only or image-text sources. "
                  "Omit to distil the image tower alone."},
    )  # fmt: skip


@dataclass
class AlignmentDataArguments:
    """Stage 2's data: training pairs, evaluation pairs and the zero-shot tasks scored at each evaluation."""

    train_data: str | None = field(
        default=None, metadata={"help": "Data spec (YAML/JSON) of the training image-text pairs (required)."}
    )
    eval_data: str | None = field(
        default=None, metadata={"help": "Data spec of evaluation pairs (eval loss, and when zero-shot tasks run)."}
    )
    zero_shot_benchmark: str | None = field(
        default=None,
        metadata={"help": "Built-in benchmark folder (imagefolder + tasks.json) scored zero-shot at each evaluation."},
    )
    zero_shot_tasks: list[str] | None = field(
        default=None, metadata={"help": "Only these tasks of --zero_shot_benchmark (default: all)."}
    )
    zero_shot_languages: list[str] = field(
        default_factory=lambda: list(LANGUAGES), metadata={"help": "Prompt languages of the zero-shot evaluation."}
    )

    def __post_init__(self):
        if self.zero_shot_benchmark and not self.eval_data:
            raise ValueError("zero-shot evaluation runs at each evaluation, which needs --eval_data")


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


def check_reporting_integrations(args: TrainingArguments) -> None:
    """Fail at start-up when `report_to` names a logger that is not installed, instead of when the Trainer starts."""
    wanted = [name for name in (args.report_to or []) if name not in ("none", "all")]
    unknown = sorted(set(wanted) - set(INTEGRATION_TO_CALLBACK))
    if unknown:
        raise ValueError(f"report_to names {', '.join(unknown)}, which transformers does not know; it knows "
                         f"{', '.join(sorted(INTEGRATION_TO_CALLBACK))}")  # fmt: skip
    missing = sorted(set(wanted) - set(get_available_reporting_integrations()))
    if missing:
        raise ValueError(
            f"report_to names {', '.join(missing)}, which is not installed here: install it (e.g. pip install "
            f"{missing[0]}) or set report_to to none"
        )


def parse_config_and_overrides(dataclass_types: tuple, argv: list[str]) -> tuple:
    """Parse `[config.yaml|config.json] [--flag value ...]` into instances of `dataclass_types`.

    Flags given on the command line win over the file. Unknown keys (in the file or on the command line) are an
    error that names them; so is a `report_to` logger that is not installed.
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
    for values in parsed:
        if isinstance(values, TrainingArguments):
            check_reporting_integrations(values)
    return tuple(parsed)


def check_launcher(args: TrainingArguments) -> None:
    """Fail when the launcher started more processes than the Trainer (`args`: its TrainingArguments) sees:
    accelerate sets up multi-process runs on CPU only when asked, otherwise each process would train alone."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != args.world_size:
        raise RuntimeError(
            f"the launcher started {launched} processes but the Trainer sees {args.world_size}: on a machine "
            "without GPUs add --use_cpu true (torchrun, accelerate launch, and deepspeed with DS_ACCELERATOR=cpu)"
        )
