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
# The chart's pixels per inch: at 100 dpi its 10-point text is about 14 px high, readable at 100% zoom.
PLOT_DPI = 100
LANGUAGE_NAMES = {"en": "English", "zh": "Chinese"}
_METRIC_NAMES = {"mean-per-class": "mean per-class accuracy", "mean_recall": "mean recall@1/5/10"}


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
    """`scores_figure` saved as PNG at `PLOT_DPI`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scores_figure(results).savefig(path, dpi=PLOT_DPI)
    return path


def scores_figure(results: EvaluationResults):
    """Dot plot of every model's score (%) per task, one panel per language (a matplotlib `Figure`).

    Tasks are rows (named with their metric), models are dots with one colour per model in every panel (the teacher a
    black bar, the reference the students are read against), and the figure is sized to be read at 100% on a laptop
    screen: about 1,100 px wide for two languages, 34 px per task.
    """
    from matplotlib.figure import Figure  # not pyplot: no display and no global figure state on servers

    languages = [language for language in LANGUAGES if any(language in t.languages for t in results.tasks)]
    languages += sorted({language for t in results.tasks for language in t.languages} - set(languages))
    models = [info.name for info in results.models]
    rows = np.arange(len(results.tasks))
    spread = min(0.6 / max(len(models), 1), 0.12)  # models' dots side by side within a task's row
    figure = Figure(figsize=(1.5 + 4.8 * len(languages), 1.5 + 0.34 * len(results.tasks)), dpi=PLOT_DPI)
    axes = figure.subplots(1, len(languages), sharey=True, squeeze=False)
    students = [model for model in models if model != results.teacher]
    teacher_style = {"color": "black", "marker": "|", "s": 220, "linewidths": 2.5}
    styles = {model: {"color": _student_colour(i), "marker": "o", "s": 36, "edgecolors": "white", "linewidths": 0.5}
              for i, model in enumerate(students)}  # fmt: skip
    for panel, language in zip(axes[0], languages):
        for index, model in enumerate(models):
            entries = [results.score(model, task.name, language) for task in results.tasks]
            scores = [100 * entry.score if entry else np.nan for entry in entries]
            offsets = rows + (index - (len(models) - 1) / 2) * spread
            style = styles.get(model, teacher_style)
            # clip_on=False: a score of 0% or 100% is drawn whole on the panel's edge
            panel.scatter(scores, offsets, label=_model_label(results, model), zorder=3, clip_on=False, **style)
        panel.set_title(LANGUAGE_NAMES.get(language, language), fontsize=11)
        panel.set_xlim(0, 100)
        panel.set_xlabel("score (%)")
        panel.grid(axis="x", color="0.88", zorder=0)
        panel.set_yticks(rows[:-1] + 0.5, minor=True)  # a thin line between tasks, to follow a row across
        panel.grid(axis="y", which="minor", color="0.93", zorder=0)
        panel.tick_params(axis="y", which="minor", length=0)
        panel.set_axisbelow(True)
    first = axes[0][0]
    first.set_yticks(rows, [f"{task.name} ({_METRIC_NAMES.get(task.metric, task.metric)})" for task in results.tasks])
    first.set_ylim(len(results.tasks) - 0.5, -0.5)  # first task on top
    first.set_ylabel("task (metric)")
    handles, labels = first.get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper center", ncol=min(len(models), 4), frameon=False, fontsize=9)
    legend_rows = -(-len(models) // 4)
    figure.tight_layout(rect=(0, 0, 1, 1 - (0.25 + 0.22 * legend_rows) / figure.get_figheight()))
    return figure


def _student_colour(index: int) -> tuple[float, ...]:
    """The `index`-th student's colour: matplotlib's `tab10`, then `tab20`'s lighter shades (black is the teacher's)."""
    import matplotlib

    palette = [*matplotlib.colormaps["tab10"].colors[:7], *matplotlib.colormaps["tab10"].colors[8:]]  # no grey
    palette += list(matplotlib.colormaps["tab20"].colors[1::2])
    return palette[index % len(palette)]


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
    """A model's name in tables and legends; the teacher's says it is the teacher unless its name already does."""
    if name == results.teacher and "teacher" not in name.lower():
        return f"{name} (teacher)"
    return name


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"
