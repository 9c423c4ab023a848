"""Command-line arguments shared by the entry scripts: a YAML/JSON config file plus overrides, the student's options
(one set of names and one validation for stage 1, stage 2 and the teacher cache), each stage's data options, and the
launcher check.

`python trainers/distill.py config.yaml --learning_rate 1e-4` reads the file, then lets any flag override it; the
same works under torchrun, accelerate launch and deepspeed, which append their own flags (e.g. --local_rank). Every
option is accepted as `--a_b` and as `--a-b`.

The module imports no torch: `--help` is answered before the stage's options (which subclass `TrainingArguments`)
are imported (`parse_stage_arguments`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import yaml

from dcclip.command_errors import UsageError
from dcclip.command_line import check_model_location
from dcclip.languages import LANGUAGES
from dcclip.option_help import wants_help
from dcclip.stage_help import stage_help, stage_usage

if TYPE_CHECKING:
    from transformers import TrainingArguments

# <output_dir>/final: the exported student of a stage script, beside checkpoints and run records
FINAL_MODEL_DIR = "final"
# CLIP's text context length: the default truncation of every caption in both stages
DEFAULT_MAX_TEXT_LENGTH = 77
# Options that name a model or tokenizer folder (or Hub id), checked before a run loads anything
_MODEL_OPTIONS = ("student", "tokenizer", "teacher")


@dataclass
class StudentArguments:
    """Where the student comes from: a trained DC-CLIP folder (`--student`) or a fresh preset (`--student_preset`)."""

    help_title: ClassVar[str] = "student"

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
            raise UsageError(f"--student_preset {self.student_preset!r} is not a preset; choose from {presets}")
        if self.max_text_length < 1:
            raise UsageError(f"--max_text_length must be >= 1, got {self.max_text_length}")
        if self.image_size is not None and self.image_size < 1:
            raise UsageError(f"--image_size must be >= 1, got {self.image_size}")


@dataclass
class DistillationDataArguments:
    """Stage 1's data: one data spec per tower, each distilled on its own data."""

    help_title: ClassVar[str] = "data"

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

    help_title: ClassVar[str] = "data"

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
            raise UsageError("zero-shot evaluation runs at each evaluation, which needs --eval_data")


def _load_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UsageError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as error:
        raise UsageError(f"cannot read config file {path}: {error}") from error
    if not isinstance(data, dict):
        raise UsageError(f"config file {path} must hold a mapping of option names to values")
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


def get_available_reporting_integrations() -> list[str]:
    """The loggers (`report_to` names) installed here, as transformers finds them (imported when asked: torch)."""
    from transformers.integrations import get_available_reporting_integrations as installed

    return installed()


def check_reporting_integrations(args: TrainingArguments) -> None:
    """Fail at start-up when `report_to` names a logger that is not installed, instead of when the Trainer starts."""
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    wanted = [name for name in (args.report_to or []) if name not in ("none", "all")]
    unknown = sorted(set(wanted) - set(INTEGRATION_TO_CALLBACK))
    if unknown:
        raise UsageError(f"report_to names {', '.join(unknown)}, which transformers does not know; it knows "
                         f"{', '.join(sorted(INTEGRATION_TO_CALLBACK))}")  # fmt: skip
    missing = sorted(set(wanted) - set(get_available_reporting_integrations()))
    if missing:
        raise UsageError(
            f"report_to names {', '.join(missing)}, which is not installed here: install it (e.g. pip install "
            f"{missing[0]}) or set report_to to none"
        )


def parse_config_and_overrides(dataclass_types: tuple, argv: list[str], command: str | None = None) -> tuple:
    """Parse `[config.yaml|config.json] [--flag value ...]` into instances of `dataclass_types`.

    Flags given on the command line win over the file. Unknown keys (in the file or on the command line), values a
    dataclass rejects and a `report_to` logger that is not installed are a `UsageError` that names them; `command`
    names the command in argparse's own messages (`dcclip distill: error: ...`).
    """
    from transformers import HfArgumentParser, TrainingArguments

    prog = f"dcclip {command}" if command else None
    parser = HfArgumentParser(dataclass_types, prog=prog, usage=stage_usage(command) if command else None)
    # The deepspeed launcher puts --local_rank=N before everything else; TrainingArguments reads LOCAL_RANK from the
    # environment, so the flag is dropped here, before looking for the config file.
    argv = _drop_local_rank(list(argv))
    file_values: dict[str, Any] = {}
    if argv and not argv[0].startswith("-"):
        if Path(argv[0]).suffix not in (".yaml", ".yml", ".json"):
            raise UsageError(f"the config file must end in .yaml, .yml or .json: {argv[0]}")
        file_values = _load_config_file(Path(argv[0]))
        argv = argv[1:]
    known = {action.dest for action in parser._actions}
    unknown = sorted(set(file_values) - known)
    if unknown:
        hint = f" (`dcclip {command} --help` lists the options)" if command else ""
        raise UsageError(f"unknown key(s) in config file: {', '.join(unknown)}{hint}")
    try:
        outputs = parser.parse_args_into_dataclasses(
            args=_to_flags(file_values) + list(argv), return_remaining_strings=True, look_for_args_file=False
        )
    except (ValueError, TypeError) as error:  # a dataclass's own check of its values (__post_init__)
        raise UsageError(str(error)) from error
    *parsed, remaining = outputs
    if remaining:
        raise UsageError(f"unknown command-line argument(s): {' '.join(remaining)}")
    for values in parsed:
        if isinstance(values, TrainingArguments):
            check_reporting_integrations(values)
    return tuple(parsed)


def check_model_locations(*option_groups: object) -> None:
    """Before a run loads anything: every model or tokenizer option (`--student`, `--tokenizer`, `--teacher`) given as
    a local folder exists (`command_line.check_model_location`). Not part of parsing, so that a recipe that names
    stage 1's output still parses before stage 1 has run."""
    for values in option_groups:
        for option in _MODEL_OPTIONS:
            if getattr(values, option, None):
                check_model_location(getattr(values, option), f"--{option}")


def parse_stage_arguments(
    command: str, option_classes: Callable[[], Sequence[type]], argv: list[str], examples: str | None = None
) -> tuple:
    """The options of a stage command: `--help` prints the grouped help (then `examples`) and exits without importing
    the option classes (they pull in torch); otherwise `option_classes()` are imported and parsed
    (`parse_config_and_overrides`)."""
    if wants_help(argv):
        print(stage_help(command, option_classes, examples).render())
        raise SystemExit(0)
    return parse_config_and_overrides(tuple(option_classes()), argv, command)


def check_launcher(args: TrainingArguments) -> None:
    """Fail when the launcher started more processes than the Trainer (`args`: its TrainingArguments) sees:
    accelerate sets up multi-process runs on CPU only when asked, otherwise each process would train alone."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != args.world_size:
        raise UsageError(
            f"the launcher started {launched} processes but the Trainer sees {args.world_size}: on a machine "
            "without GPUs add --use_cpu true (torchrun, accelerate launch, and deepspeed with DS_ACCELERATOR=cpu)"
        )
