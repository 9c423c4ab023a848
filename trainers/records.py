"""`dcclip_training.json`: the training recipe a trained folder carries, written by the trainers, read by the model card
(`hub/`).

The Trainer's own `training_args.bin` is a pickle and is never read here. Instead each stage (feature distillation,
then alignment) appends one entry to this JSON file in its output folder; the alignment stage starts from the
distilled folder and copies the earlier entries forward. Schema: docs/hub.md.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from transformers import TrainingArguments

TRAINING_RECORD_NAME = "dcclip_training.json"
TRAINING_RECORD_VERSION = 1

Scalar = str | int | float | bool | None

# The `TrainingArguments` fields every stage records; the rest of `TrainingArguments` is plumbing (paths, logging,
# hardware). A stage config's own fields are all recorded (`stage_hyperparameters`).
RECORDED_TRAINING_ARGUMENTS = (
    "learning_rate", "weight_decay", "lr_scheduler_type", "warmup_steps", "max_steps", "num_train_epochs",
    "per_device_train_batch_size", "gradient_accumulation_steps", "bf16", "fp16", "seed",
)  # fmt: skip
# Fields that say where something comes from (recorded elsewhere in the record, or local paths), not how it trains.
NOT_HYPERPARAMETERS = frozenset({"teacher", "teacher_cache_dir", "student", "student_preset", "tokenizer"})
_TRAINING_ARGUMENT_NAMES = frozenset(f.name for f in fields(TrainingArguments))


@dataclass
class DataSource:
    """One training data source, as the data spec names it."""

    name: str
    kind: str  # "hub" | "imagefolder" | "parquet" | "csv" | "json" | "webdataset"
    path: str | None = None  # hub: dataset id; imagefolder: folder
    data_files: list[str] | None = None  # file kinds: paths or glob patterns

    @classmethod
    def from_spec(cls, source) -> DataSource:
        """From a data spec's source (`data.spec.SourceSpec`)."""
        return cls(source.name, source.kind, source.path, source.data_files)


@dataclass
class TrainingStage:
    """One training stage and the hyperparameters it ran with."""

    stage: str  # "feature_distillation" | "alignment"
    data_sources: list[DataSource]
    hyperparameters: dict[str, Scalar]  # flat: learning_rate, per_device_train_batch_size, max_steps, loss weights...


@dataclass
class TrainingRecord:
    """The whole recipe of one trained folder."""

    teacher: str | None  # Hub id (or local path) of the teacher
    student_preset: str | None = None  # DCCLIPConfig preset the student started from, if any
    stages: list[TrainingStage] = field(default_factory=list)
    schema_version: int = TRAINING_RECORD_VERSION

    def hub_datasets(self) -> list[str]:
        """Hub dataset ids among the data sources (for the card's `datasets` metadata), in first-seen order."""
        ids = [s.path for stage in self.stages for s in stage.data_sources if s.kind == "hub" and s.path]
        return [i for i in dict.fromkeys(ids) if not Path(i).exists()]


def read_training_record(folder: str | Path) -> TrainingRecord | None:
    """Read `dcclip_training.json` from `folder`; `None` when the folder has none. A malformed file is an error."""
    path = Path(folder) / TRAINING_RECORD_NAME
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("schema_version") != TRAINING_RECORD_VERSION:
        raise ValueError(f"{path}: schema_version {data.get('schema_version')!r}, this reader understands "
                         f"{TRAINING_RECORD_VERSION}")
    try:
        stages = [
            TrainingStage(
                stage=item["stage"],
                data_sources=[DataSource(**source) for source in item["data_sources"]],
                hyperparameters=_check_flat(item["hyperparameters"], path, item["stage"]),
            )
            for item in data["stages"]
        ]
        return TrainingRecord(teacher=data["teacher"], student_preset=data.get("student_preset"), stages=stages)
    except (KeyError, TypeError) as error:
        raise ValueError(f"{path}: does not follow the dcclip_training.json schema (docs/hub.md): {error!r}") from error


def record_training_stage(
    output_dir: str | Path,
    stage: TrainingStage,
    teacher: str | None,
    student_preset: str | None = None,
    previous_folder: str | Path | None = None,
) -> Path:
    """Write `output_dir/dcclip_training.json`: the stages recorded in `previous_folder` (the folder this stage
    started from, if any) followed by `stage`. Call it from the trainer's main process after saving the model."""
    previous = read_training_record(previous_folder) if previous_folder is not None else None
    record = TrainingRecord(
        teacher=teacher if teacher is not None else (previous.teacher if previous else None),
        student_preset=student_preset if student_preset is not None else (previous.student_preset if previous else None),
        stages=[*(previous.stages if previous else []), stage],
    )
    _check_flat(stage.hyperparameters, TRAINING_RECORD_NAME, stage.stage)
    path = Path(output_dir) / TRAINING_RECORD_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(record), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path


def record_student_stage(output_dir: str | Path, stage: TrainingStage, teacher: str | None, student_args: Any) -> Path:
    """`record_training_stage` for a stage whose student came from `student_args` (`arguments.StudentArguments`):
    a local `--student` folder's record is carried forward, a fresh preset is named."""
    previous = student_args.student if student_args.student and Path(student_args.student).is_dir() else None
    preset = None if student_args.student else student_args.student_preset
    return record_training_stage(output_dir, stage, teacher, preset, previous)


def _scalar(value: Any) -> Scalar:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(item) for item in value)
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


def stage_hyperparameters(config: TrainingArguments, *option_groups: Any) -> dict[str, Scalar]:
    """A stage's hyperparameters for its record: `RECORDED_TRAINING_ARGUMENTS`, every field the stage's config class
    adds to `TrainingArguments`, and every field of the other option dataclasses given (e.g. `StudentArguments`),
    except those in `NOT_HYPERPARAMETERS`; lists become comma-separated strings. A new config field is thus recorded
    (and shown on the model card) without being listed anywhere."""
    names = [*RECORDED_TRAINING_ARGUMENTS]
    names += [f.name for f in fields(config) if f.name not in _TRAINING_ARGUMENT_NAMES]
    values = {name: _scalar(getattr(config, name)) for name in names if name not in NOT_HYPERPARAMETERS}
    values["global_batch_size"] = config.per_device_train_batch_size * config.world_size
    for group in option_groups:
        values.update({f.name: _scalar(getattr(group, f.name)) for f in fields(group) if f.name not in NOT_HYPERPARAMETERS})
    return values


def _check_flat(hyperparameters: Any, source: Any, stage: str) -> dict[str, Scalar]:
    if not isinstance(hyperparameters, dict):
        raise ValueError(f"{source}: stage {stage!r} hyperparameters must be an object, got {type(hyperparameters)}")
    nested = [key for key, value in hyperparameters.items() if not isinstance(value, (str, int, float, bool, type(None)))]
    if nested:
        raise ValueError(f"{source}: stage {stage!r} hyperparameters must be flat scalars; {nested} are not")
    return hyperparameters
