"""The ``results.json`` schema (read by the Hub model card and the demo), with its writer and reader.

Documented in ``docs/results_schema.md``. Scores are fractions in [0, 1]; ``teacher_retention_pct`` is a percentage.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

SCHEMA_VERSION = 1

Role = Literal["teacher", "student"]
TaskKind = Literal["zero_shot", "retrieval"]


@dataclass
class ModelInfo:
    """One evaluated model."""

    name: str  # unique label used in every other table
    path: str  # folder or Hub id it was loaded from
    role: Role
    model_type: str  # config.model_type, e.g. "altclip", "dcclip"
    num_parameters: int
    num_parameters_vision: int  # image tower + visual projection
    num_parameters_text: int  # text tower + text projection


@dataclass
class TaskInfo:
    """One evaluation task."""

    name: str
    kind: TaskKind
    metric: str  # "accuracy" | "mean-per-class" | "roc_auc" | "11point_mAP" | "mean_recall"
    languages: list[str]
    num_images: int
    num_classes: int | None = None  # zero-shot only
    description: str = ""


@dataclass
class ScoreEntry:
    """The result of one model on one task in one language."""

    model: str
    task: str
    language: str
    metric: str
    score: float  # the task's metric, in [0, 1]
    scores: dict[str, float]  # every metric computed (top-1/top-5 accuracy, each Recall@K, ...)
    teacher_retention_pct: float | None = None  # 100 * score / teacher score; None for the teacher or without one


@dataclass
class CrossLingualEntry:
    """English vs Chinese for one model on one task."""

    model: str
    task: str
    en_minus_zh: float  # score(en) - score(zh), in score units
    agreement: float | None = None  # zero-shot: share of images whose top-1 class is the same in en and zh


@dataclass
class EvaluationResults:
    """Everything one ``dcclip eval`` run measured."""

    models: list[ModelInfo]
    tasks: list[TaskInfo]
    scores: list[ScoreEntry]
    cross_lingual: list[CrossLingualEntry] = field(default_factory=list)
    teacher: str | None = None  # name of the teacher model, if one was evaluated
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    schema_version: int = SCHEMA_VERSION

    def score(self, model: str, task: str, language: str) -> ScoreEntry | None:
        """The entry for ``model`` on ``task`` in ``language``, or ``None``."""
        for entry in self.scores:
            if (entry.model, entry.task, entry.language) == (model, task, language):
                return entry
        return None

    def model(self, name: str) -> ModelInfo:
        """The model called ``name``."""
        for info in self.models:
            if info.name == name:
                return info
        raise KeyError(f"no model {name!r} in the results; models: {[m.name for m in self.models]}")

    def students(self) -> list[ModelInfo]:
        return [info for info in self.models if info.role == "student"]

    def to_dict(self) -> dict:
        return asdict(self)


def write_results(results: EvaluationResults, path: str | Path) -> Path:
    """Write ``results`` as UTF-8 JSON (Chinese text unescaped) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results.to_dict(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path


def read_results(path: str | Path) -> EvaluationResults:
    """Read a ``results.json`` written by :func:`write_results`; a wrong version or a missing field is an error."""
    path = Path(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ValueError(f"{path}: schema_version {version!r}, this reader understands {SCHEMA_VERSION}")
    return EvaluationResults(
        models=[_build(ModelInfo, item, path) for item in data.get("models", [])],
        tasks=[_build(TaskInfo, item, path) for item in data.get("tasks", [])],
        scores=[_build(ScoreEntry, item, path) for item in data.get("scores", [])],
        cross_lingual=[_build(CrossLingualEntry, item, path) for item in data.get("cross_lingual", [])],
        teacher=data.get("teacher"),
        created_at=data.get("created_at", ""),
        schema_version=version,
    )


def _build(cls: type, item: dict, path: Path):
    known = {f.name for f in fields(cls)}
    required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
    missing = sorted(required - set(item))
    if missing:
        raise ValueError(f"{path}: a {cls.__name__} entry lacks {missing}: {item}")
    # Fields added by a later minor writer are ignored rather than rejected.
    return cls(**{key: value for key, value in item.items() if key in known})
