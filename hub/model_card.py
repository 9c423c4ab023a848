"""The model card of a DC-CLIP student, built only from measured numbers.

Inputs: the folder check's report (tower sizes from the weights), `results.json` from `dcclip eval`
(`evaluation.results`), the training record the trainers leave in the folder (`dcclip_training.json`), and optionally a
latency JSON from `benchmarks/latency.py`. The metadata goes through `huggingface_hub.ModelCardData`, the evaluation
scores through `EvalResult` into the Hub's `model-index`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from dcclip.evaluation.results import EvaluationResults, ModelInfo, ScoreEntry

from .folder_check import FolderReport
from dcclip.trainers.records import TrainingRecord

TEMPLATE_PATH = Path(__file__).with_name("model_card_template.md")
# Marks a README.md written by this module, so `dcclip push` may replace it but never a hand-written one.
GENERATED_MARKER = "dcclip-model-card"
ZERO_SHOT_TASK_TYPE = "zero-shot-image-classification"
# A Hub repo id: "namespace/name".
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class CardInputs:
    """Everything the card is made of, already read and checked."""

    repo_id: str
    folder: FolderReport
    results: EvaluationResults
    student: ModelInfo
    training: TrainingRecord | None
    latency: dict | None = None
    revision: str | None = None  # branch the card's usage snippet loads, when not the default branch
    license: str | None = None
    limitations: str | None = None  # Markdown: what the model was trained on and where it will not work


def select_student(results: EvaluationResults, folder: FolderReport, name: str | None = None) -> ModelInfo:
    """The student of `results` that the folder holds: the one called `name`, else the one evaluated from this folder,
    else the only student. Its measured tower sizes must equal the folder's, so a card never shows another model's
    numbers."""
    students = results.students()
    if name is not None:
        chosen = [s for s in students if s.name == name]
    else:
        chosen = [s for s in students if Path(s.path).resolve() == folder.folder.resolve()] or (
            students if len(students) == 1 else []
        )
    if len(chosen) != 1:
        raise ValueError(
            f"cannot tell which student of results.json is {folder.folder}: students are "
            f"{[s.name for s in students]}; pass --student NAME"
        )
    student = chosen[0]
    for tower, measured in (("image", student.num_parameters_vision), ("text", student.num_parameters_text)):
        if folder.towers[tower].parameters != measured:
            raise ValueError(
                f"results.json student {student.name!r} has {measured:,} {tower}-tower parameters but {folder.folder} "
                f"holds {folder.towers[tower].parameters:,}: the results describe a different model"
            )
    return student


def teacher_hub_id(inputs: CardInputs) -> str | None:
    """The teacher's Hub id (for `base_model`): from the training record, else from the evaluated teacher's path."""
    candidates = [inputs.training.teacher if inputs.training else None]
    if inputs.results.teacher is not None:
        candidates.append(inputs.results.model(inputs.results.teacher).path)
    for candidate in candidates:
        if candidate and _HUB_ID.match(candidate) and not Path(candidate).exists():
            return candidate
    return None


def eval_results(inputs: CardInputs) -> list[EvalResult]:
    """The student's zero-shot scores as Hub `model-index` entries, one per task and language (as fractions, the
    unit of results.json)."""
    return [
        EvalResult(
            task_type=ZERO_SHOT_TASK_TYPE,
            task_name="Zero-shot image classification",
            dataset_type=entry.task,
            dataset_name=f"{entry.task} ({entry.language})",
            dataset_config=entry.language,
            metric_type=entry.metric,
            metric_name=f"{entry.metric} ({entry.language})",
            metric_value=entry.score,
        )
        for entry in _student_scores(inputs, "zero_shot")
    ]


def card_data(inputs: CardInputs) -> ModelCardData:
    """The card's YAML metadata."""
    teacher = teacher_hub_id(inputs)
    results = eval_results(inputs)
    metrics = sorted({result.metric_type for result in results})
    return ModelCardData(
        language=["zh", "en"],
        license=inputs.license,
        library_name="transformers",
        pipeline_tag=ZERO_SHOT_TASK_TYPE,
        tags=["dc-clip", "clip", "knowledge-distillation", "bilingual", "custom_code"],
        # The Hub's base_model_relation accepts only adapter / merge / quantized / finetune; a student distilled from
        # the teacher is none of those, so the relation is left for the card text to state (see docs/hub.md).
        base_model=teacher,
        datasets=(inputs.training.hub_datasets() or None) if inputs.training else None,
        metrics=metrics or None,
        model_name=inputs.repo_id.split("/")[-1],
        eval_results=results or None,
    )


def build_model_card(inputs: CardInputs) -> ModelCard:
    """Render the whole card (metadata + text) from `inputs`."""
    # imported here: the shipped model's package pulls in torch, which `dcclip push --help` must not load
    from modeling_dcclip.configuration_dcclip import MINIMUM_TRANSFORMERS_VERSION_KEY

    config = inputs.folder.config
    teacher = teacher_hub_id(inputs)
    teacher_name = inputs.results.teacher
    if teacher:
        teacher_link = f"[{teacher}](https://huggingface.co/{teacher})"
    elif teacher_name:
        teacher_link = f"`{inputs.results.model(teacher_name).path}`"
    elif inputs.training and inputs.training.teacher:
        teacher_link = f"`{inputs.training.teacher}`"
    else:
        teacher_link = "(not recorded)"
    return ModelCard.from_template(
        card_data(inputs),
        template_path=str(TEMPLATE_PATH),
        generated_marker=GENERATED_MARKER,
        model_name=inputs.repo_id.split("/")[-1],
        repo_id=inputs.repo_id,
        revision_argument=f'revision="{inputs.revision}", ' if inputs.revision else "",
        teacher_link=teacher_link,
        vision_type=config.get("vision_config", {}).get("model_type", "(unknown)"),
        text_type=config.get("text_config", {}).get("model_type", "(unknown)"),
        projection_dim=config.get("projection_dim"),
        minimum_transformers_version=config[MINIMUM_TRANSFORMERS_VERSION_KEY],  # the folder check requires it
        evaluated_at=inputs.results.created_at,
        zero_shot_table=zero_shot_table(inputs),
        retrieval_table=retrieval_table(inputs),
        size_table=size_table(inputs),
        weights_dtype=config.get("dtype", "float32"),
        training_section=training_section(inputs.training),
        limitations=inputs.limitations or "",
        **latency_section(inputs),
    )


def is_generated_card(text: str) -> bool:
    """Whether a README.md was written by `build_model_card` (and may be regenerated)."""
    return GENERATED_MARKER in text


def zero_shot_table(inputs: CardInputs) -> str:
    """Task | Language | Metric | Student | Teacher | Retention, scores in percent."""
    rows = []
    for entry in _student_scores(inputs, "zero_shot"):
        teacher_entry = _teacher_score(inputs, entry)
        rows.append([
            entry.task,
            entry.language,
            entry.metric,
            format_percent(entry.score),
            format_percent(teacher_entry.score) if teacher_entry else "not evaluated",
            format_retention(entry.teacher_retention_pct),
        ])
    if not rows:
        return ""
    return markdown_table(["Task", "Language", "Metric", "Student (%)", _teacher_column(inputs), "Retention (%)"], rows)


def retrieval_table(inputs: CardInputs) -> str:
    """Task | Language | Recall | Student | Teacher, one row per Recall@K the evaluation computed."""
    rows = []
    for entry in _student_scores(inputs, "retrieval"):
        teacher_entry = _teacher_score(inputs, entry)
        for key, value in entry.scores.items():
            teacher_value = teacher_entry.scores.get(key) if teacher_entry else None
            rows.append([entry.task, entry.language, key, format_percent(value),
                         format_percent(teacher_value) if teacher_value is not None else "not evaluated"])
    if not rows:
        return ""
    return markdown_table(["Task", "Language", "Recall", "Student (%)", _teacher_column(inputs)], rows)


def size_table(inputs: CardInputs) -> str:
    """Parameters and stored size of each student tower, beside the teacher's parameters when it was evaluated."""
    towers = inputs.folder.towers
    teacher = inputs.results.model(inputs.results.teacher) if inputs.results.teacher else None
    rows = [
        ["image tower", f"{towers['image'].parameters:,}", format_bytes(towers["image"].bytes),
         f"{teacher.num_parameters_vision:,}" if teacher else "not evaluated"],
        ["text tower", f"{towers['text'].parameters:,}", format_bytes(towers["text"].bytes),
         f"{teacher.num_parameters_text:,}" if teacher else "not evaluated"],
        ["whole model", f"{sum(t.parameters for t in towers.values()):,}",
         format_bytes(sum(t.bytes for t in towers.values())), f"{teacher.num_parameters:,}" if teacher else "not evaluated"],
    ]
    return markdown_table(["Part", "Student parameters", "Student stored size", "Teacher parameters"], rows)


def latency_section(inputs: CardInputs) -> dict[str, str]:
    """Latency table and notes from the report of `benchmarks/latency.py` (its `latency.json`); empty without one.

    That benchmark times a student built from a preset with random weights: a student row is this model's only when
    its tower has exactly this folder's parameter count. Teacher rows are kept; other students' rows are named as left
    out; a report without any row of this model's size is an error.
    """
    report = inputs.latency
    if report is None:
        return {}
    try:
        measurements = report["measurements"]
        environment, settings = report["environment"], report["settings"]
    except (KeyError, TypeError) as error:
        raise ValueError(f"latency JSON is not a benchmarks/latency.py report (missing {error})") from error
    towers = inputs.folder.towers
    rows, left_out = [], []
    for m in measurements:
        if m["model"] != "teacher" and m["parameters"] != towers[m["tower"]].parameters:
            left_out.append(f"{m['model']} {m['tower']} ({m['backend']}, {m['parameters']:,} parameters)")
            continue
        rows += [[m["model"] if m["model"] == "teacher" else "this model", m["tower"], m["backend"], str(r["batch_size"]),
                  f"{r['p50_ms']:.2f}", f"{r['p90_ms']:.2f}", f"{r['items_per_s']:.1f}", f"{r['peak_rss_mb']:.0f}"]
                 for r in m["results"]]
    if not any(row[0] == "this model" for row in rows):
        raise ValueError(
            f"latency JSON measured no tower of this model's size (image {towers['image'].parameters:,}, text "
            f"{towers['text'].parameters:,} parameters); it benchmarked preset {settings.get('preset')!r}"
        )
    table = markdown_table(
        ["Model", "Tower", "Backend", "Batch", "p50 (ms)", "p90 (ms)", "Items/s", "Peak RSS (MB)"], rows)
    machine = (f"{environment.get('processor')} ({environment.get('cpu_count')} CPUs), {settings.get('threads')} "
               f"threads, torch {environment.get('torch')}, onnxruntime {environment.get('onnxruntime')}")
    notes = [f"Measured by `benchmarks/latency.py` on {machine}; peak RSS includes the Python, torch and onnxruntime "
             f"runtime (~{report.get('runtime_rss_mb', 0):.0f} MB). The teacher has random weights at its real sizes: "
             f"speed depends on the sizes, not on the weights."]
    if left_out:
        notes.append(f"Also measured, but not at this model's size, so left out: {'; '.join(left_out)}.")
    return {"latency_table": table, "latency_notes": " ".join(notes)}


def training_section(training: TrainingRecord | None) -> str:
    """The recipe: teacher, starting preset, and per stage its data sources and hyperparameters."""
    if training is None:
        return "Training recipe: not recorded (the folder has no `dcclip_training.json`)."
    lines = [f"- Teacher: `{training.teacher or 'not recorded'}`"]
    if training.student_preset:
        lines.append(f"- Student preset: `{training.student_preset}`")
    for number, stage in enumerate(training.stages, start=1):
        lines += ["", f"### Stage {number}: {stage.stage.replace('_', ' ')}", ""]
        sources = [
            f"`{source.name}` ({source.kind}: {source.path or ', '.join(source.data_files or [])})"
            for source in stage.data_sources
        ]
        lines.append(f"Data: {', '.join(sources) if sources else 'not recorded'}")
        if stage.hyperparameters:
            lines += ["", markdown_table(["Hyperparameter", "Value"],
                                         [[key, _format_cell(value)] for key, value in stage.hyperparameters.items()])]
    return "\n".join(lines)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured markdown table ('|' in cells escaped)."""
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *(line(row) for row in rows)])


def format_percent(fraction: float) -> str:
    """A score in [0, 1] as a percentage with two decimals."""
    return f"{100 * fraction:.2f}"


def format_retention(percent: float | None) -> str:
    return "n/a" if percent is None else f"{percent:.1f}"


def format_bytes(size: int) -> str:
    """Bytes in binary units (the unit `ls -lh` and the Hub's file list use)."""
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.2f} GiB"


def read_latency(path: str | Path | None) -> dict | None:
    """The latency JSON of `benchmarks/latency.py`, or `None` when no path is given."""
    return None if path is None else json.loads(Path(path).read_text(encoding="utf-8"))


def _student_scores(inputs: CardInputs, kind: str) -> list[ScoreEntry]:
    """The student's entries for tasks of `kind`, in the order tasks and languages appear in results.json."""
    task_kinds = {task.name: task.kind for task in inputs.results.tasks}
    order = {task.name: i for i, task in enumerate(inputs.results.tasks)}
    entries = [e for e in inputs.results.scores if e.model == inputs.student.name and task_kinds.get(e.task) == kind]
    return sorted(entries, key=lambda e: order[e.task])


def _teacher_column(inputs: CardInputs) -> str:
    teacher = inputs.results.teacher
    return f"Teacher {inputs.results.model(teacher).path} (%)" if teacher else "Teacher (%)"


def _teacher_score(inputs: CardInputs, entry: ScoreEntry) -> ScoreEntry | None:
    if inputs.results.teacher is None:
        return None
    return inputs.results.score(inputs.results.teacher, entry.task, entry.language)


def _format_cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)
