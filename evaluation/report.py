"""Teacher-vs-student reports: run every model on every task and language, then write ``results.json``, a Markdown
table and a bar chart.

Per task and language the report gives each model's score and each student's retention of the teacher's score;
per task and model, the English-minus-Chinese gap and, for zero-shot tasks, how often the English and Chinese
classifiers pick the same class for an image (cross-lingual agreement).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from dcclip.languages import LANGUAGES

from dcclip.evaluation.model_loading import EvaluatedModel
from dcclip.evaluation.results import CrossLingualEntry, EvaluationResults, ScoreEntry, TaskInfo, write_results
from dcclip.evaluation.task_evaluation import evaluate_task
from dcclip.evaluation.tasks import RetrievalTask, ZeroShotTask

RESULTS_FILE = "results.json"
MARKDOWN_FILE = "results.md"
CHART_FILE = "scores.png"


def build_report(
    models: Sequence[EvaluatedModel],
    zero_shot_tasks: Sequence[ZeroShotTask] = (),
    retrieval_tasks: Sequence[RetrievalTask] = (),
    languages: Sequence[str] = LANGUAGES,
    batch_size: int = 64,
    show_progress: bool = True,
) -> EvaluationResults:
    """Evaluate every model on every task in every language; same images and prompts for all models.

    Each model embeds a task's images once and reuses them for all languages. At most one model may be the teacher;
    students' scores then carry ``teacher_retention_pct``.
    """
    _check_models(models)
    _check_languages(zero_shot_tasks, retrieval_tasks, languages)
    scores: list[ScoreEntry] = []
    cross_lingual: list[CrossLingualEntry] = []
    jobs = [(m, t) for m in models for t in (*zero_shot_tasks, *retrieval_tasks)]
    for model, task in tqdm(jobs, desc="evaluation", unit="task", disable=not show_progress):
        by_language = evaluate_task(model.model, model.processor, task, languages, batch_size, show_progress)
        for language, outcome in by_language.items():
            scores.append(ScoreEntry(model.name, task.name, language, outcome.metric, outcome.score, outcome.scores))
        if "en" in by_language and "zh" in by_language:
            en, zh = by_language["en"], by_language["zh"]
            agreement = None
            if isinstance(task, ZeroShotTask):
                agreement = float(np.mean(np.array(en.predictions) == np.array(zh.predictions)))
            cross_lingual.append(CrossLingualEntry(model.name, task.name, en.score - zh.score, agreement))
    teacher = next((m.name for m in models if m.role == "teacher"), None)
    results = EvaluationResults(
        models=[m.info() for m in models],
        tasks=[_task_info(t, languages) for t in (*zero_shot_tasks, *retrieval_tasks)],
        scores=scores,
        cross_lingual=cross_lingual,
        teacher=teacher,
    )
    add_teacher_retention(results)
    return results


def add_teacher_retention(results: EvaluationResults) -> None:
    """Set each student entry's ``teacher_retention_pct`` = 100 x student score / teacher score (same task, language).

    Left ``None`` without a teacher, and where the teacher scored 0.
    """
    if results.teacher is None:
        return
    students = {info.name for info in results.students()}
    for entry in results.scores:
        reference = results.score(results.teacher, entry.task, entry.language)
        if entry.model in students and reference is not None and reference.score > 0:
            entry.teacher_retention_pct = 100.0 * entry.score / reference.score


def render_markdown(results: EvaluationResults) -> str:
    """The report as Markdown: scores (with retention), English vs Chinese, and the models."""
    models = [info.name for info in results.models]
    students = [info.name for info in results.students()]
    header = ["Task", "Metric", "Lang"] + [_model_label(results, m) for m in models]
    header += [f"{s} retention" for s in students] if results.teacher else []
    lines = [
        "# Evaluation results",
        "",
        "Scores in %. Retention = student score / teacher score on the same task and language.",
        "",
        "## Scores",
        "",
        _row(header),
        _row(["---"] * len(header)),
    ]
    for task in results.tasks:
        for language in task.languages:
            entries = [results.score(m, task.name, language) for m in models]
            cells = [task.name, task.metric, language] + [_percent(e.score if e else None) for e in entries]
            if results.teacher:
                for student in students:
                    entry = results.score(student, task.name, language)
                    retention = entry.teacher_retention_pct if entry else None
                    cells.append("-" if retention is None else f"{retention:.1f}%")
            lines.append(_row(cells))
    if results.cross_lingual:
        note = "EN-ZH gap in points; agreement: share of images with the same top-1 class in EN and ZH."
        lines += ["", "## English vs Chinese", "", note, ""]
        lines += [_row(["Task", "Model", "EN", "ZH", "EN-ZH gap", "Agreement"]), _row(["---"] * 6)]
        for entry in results.cross_lingual:
            en, zh = results.score(entry.model, entry.task, "en"), results.score(entry.model, entry.task, "zh")
            gap = f"{100 * entry.en_minus_zh:+.2f}"
            cells = [entry.task, entry.model, _percent(en.score), _percent(zh.score), gap, _percent(entry.agreement)]
            lines.append(_row(cells))
    lines += ["", "## Models", ""]
    lines += [_row(["Model", "Role", "Type", "Parameters", "Vision", "Text", "Path"]), _row(["---"] * 7)]
    for info in results.models:
        counts = [f"{info.num_parameters:,}", f"{info.num_parameters_vision:,}", f"{info.num_parameters_text:,}"]
        lines.append(_row([info.name, info.role, info.model_type, *counts, f"`{info.path}`"]))
    return "\n".join(lines) + "\n"


def plot_scores(results: EvaluationResults, path: str | Path) -> Path:
    """Grouped bar chart of every model's score per task and language, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on servers
    import matplotlib.pyplot as plt

    groups = [(task.name, language) for task in results.tasks for language in task.languages]
    models = [info.name for info in results.models]
    width = 0.8 / max(len(models), 1)
    positions = np.arange(len(groups))
    figure, axes = plt.subplots(figsize=(max(6.0, 1.1 * len(groups) * max(len(models), 1) ** 0.5), 4.0))
    for index, model in enumerate(models):
        values = []
        for task, language in groups:
            entry = results.score(model, task, language)
            values.append(100 * entry.score if entry else np.nan)
        axes.bar(positions + (index - (len(models) - 1) / 2) * width, values, width, label=_model_label(results, model))
    axes.set_xticks(positions, [f"{task}\n{language}" for task, language in groups], fontsize=8)
    axes.set_ylabel("score (%)")
    axes.set_ylim(0, 100)
    axes.set_title("Zero-shot and retrieval scores")
    axes.legend(fontsize=8)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_report(results: EvaluationResults, output_dir: str | Path) -> dict[str, Path]:
    """Write ``results.json``, ``results.md`` and ``scores.png`` into ``output_dir``; returns their paths."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    markdown = output_dir / MARKDOWN_FILE
    markdown.write_text(render_markdown(results), encoding="utf-8")
    return {
        "results": write_results(results, output_dir / RESULTS_FILE),
        "markdown": markdown,
        "chart": plot_scores(results, output_dir / CHART_FILE),
    }


def _task_info(task: ZeroShotTask | RetrievalTask, languages: Sequence[str]) -> TaskInfo:
    if isinstance(task, ZeroShotTask):
        return TaskInfo(
            task.name, "zero_shot", task.metric, list(languages), len(task.images), task.num_classes, task.description
        )
    return TaskInfo(task.name, "retrieval", "mean_recall", list(languages), len(task.images))


def _check_models(models: Sequence[EvaluatedModel]) -> None:
    if not models:
        raise ValueError("no models to evaluate")
    names = [m.name for m in models]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"model names must be unique; repeated: {duplicates}")
    teachers = [m.name for m in models if m.role == "teacher"]
    if len(teachers) > 1:
        raise ValueError(f"at most one teacher per report; got {teachers}")


def _check_languages(
    zero_shot_tasks: Sequence[ZeroShotTask], retrieval_tasks: Sequence[RetrievalTask], languages: Sequence[str]
) -> None:
    if not zero_shot_tasks and not retrieval_tasks:
        raise ValueError("no tasks to evaluate")
    for task in (*zero_shot_tasks, *retrieval_tasks):
        missing = [language for language in languages if language not in task.languages]
        if missing:
            raise KeyError(f"task {task.name!r} has no data for languages {missing}; it has {task.languages}")


def _model_label(results: EvaluationResults, name: str) -> str:
    return f"{name} (teacher)" if name == results.teacher else name


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"
