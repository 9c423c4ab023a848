"""The demo's outputs for people: `report.md`, the training-curve and accuracy plots, `demo_summary.json` and the
console table. The numbers come from `results.json` (the evaluation), the Trainers' `trainer_state.json` files and
the demo's own timings; the judgements from `demo.analysis`."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from dcclip.evaluation.results import EvaluationResults
from dcclip.hub.model_card import markdown_table

from . import analysis

REPORT_FILE = "report.md"
SUMMARY_FILE = "demo_summary.json"
CURVES_FILE = "training_curves.png"
ACCURACY_FILE = "accuracy.png"
SUMMARY_VERSION = 1

TIME_TARGET_S = 600.0  # default scale, on a 2-core CPU machine
MEMORY_TARGET_MB = 6 * 1024.0


@dataclass
class DemoSummary:
    """What the run was and how it went; saved as `demo_summary.json` (schema in docs/demo.md)."""

    scale: dict
    seed: int
    device: str
    threads: int
    teacher: str
    teacher_trained_here: bool
    variants: list[dict]
    final_student: str
    timings: list[dict]
    peak_memory: dict[str, float]
    reload_check: dict
    hub_folder: str
    hub_files: list[str]
    total_wall_s: float = 0.0
    total_cpu_s: float = 0.0
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    summary_version: int = SUMMARY_VERSION


# ----- tables ---------------------------------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return markdown_table(header, rows).splitlines()


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _retention(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def model_rows(results: EvaluationResults, descriptions: dict[str, str]) -> list[list[str]]:
    """One row per model: parameters, mean zero-shot accuracy (EN, ZH), retention of the teacher's mean, retrieval."""
    rows = []
    for info in results.models:
        cells = [f"`{info.name}`", descriptions.get(info.name, ""), f"{info.num_parameters:,}"]
        for language in analysis.LANGUAGES:
            cells.append(_pct(analysis.language_mean(results, info.name, language).mean))
        for language in analysis.LANGUAGES:
            is_teacher = info.name == results.teacher
            cells.append("(teacher)" if is_teacher else _retention(analysis.retention_of_mean_pct(results, info.name, language)))
        for language in analysis.LANGUAGES:
            cells.append(_pct(analysis.retrieval_score(results, info.name, language)))
        rows.append(cells)
    return rows


MODEL_HEADER = ["model", "what it is", "parameters", "zero-shot EN", "zero-shot ZH", "retention EN", "retention ZH",
                "retrieval EN", "retrieval ZH"]  # fmt: skip


def per_task_rows(results: EvaluationResults, student: str) -> list[list[str]]:
    """Teacher vs student on every zero-shot task, in both languages, with the chance level."""
    rows = []
    for task in results.tasks:
        if task.kind != "zero_shot":
            continue
        cells = [task.name, str(task.num_images), _pct(1.0 / task.num_classes) if task.num_classes else "-"]
        for language in analysis.LANGUAGES:
            teacher = results.score(results.teacher, task.name, language)
            entry = results.score(student, task.name, language)
            cells += [_pct(teacher.score), _pct(entry.score), _retention(entry.teacher_retention_pct)]
        rows.append(cells)
    return rows


# ----- plots ----------------------------------------------------------------------------------------------------


def _history(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8")).get("log_history", []) if path.is_file() else []


def _series(history: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(entry["step"], entry[key]) for entry in history if key in entry and "step" in entry]
    return [p[0] for p in points], [p[1] for p in points]


def training_histories(out: Path, runs: Path) -> dict[str, list[dict]]:
    """Log histories (`trainer_state.json`) of every training run, by run folder name."""
    histories = {"teacher": _history(out / "teacher" / "trainer_state.json")}
    for folder in sorted(runs.iterdir()) if runs.is_dir() else []:
        histories[folder.name] = _history(folder / "trainer_state.json")
    return {name: history for name, history in histories.items() if history}


def plot_training_curves(histories: dict[str, list[dict]], path: Path) -> Path:
    """Losses of every run and the zero-shot scores logged during stage 2, one panel per kind of run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 3, figsize=(15, 8))
    panels = [
        (axes[0, 0], "teacher pre-training (CLIP loss)", [("teacher", "loss", "loss")]),
        (axes[0, 1], "stage 1: feature maps (loss parts)",
         [("stage1_feature_maps", key, key) for key in
          ("loss", "image_feature_loss", "text_feature_loss", "image_embedding_loss", "text_embedding_loss")]),
        (axes[0, 2], "stage 1: logit distillation (KL)", [("stage1_logits", "loss", "loss")]),
        (axes[1, 0], "stage 2: InfoNCE (training)",
         [(name, "loss", name.removeprefix("stage2_")) for name in histories if name.startswith("stage2_")]),
        (axes[1, 1], "stage 2: InfoNCE on held-out pairs",
         [(name, "eval_loss", name.removeprefix("stage2_")) for name in histories if name.startswith("stage2_")]),
        (axes[1, 2], "stage 2: mean zero-shot accuracy (eval split)",
         [(name, f"eval_zero_shot_{language}", f"{name.removeprefix('stage2_')} {language.upper()}")
          for name in histories if name.startswith("stage2_") for language in analysis.LANGUAGES]),
    ]  # fmt: skip
    for axis, title, lines in panels:
        for run, key, label in lines:
            steps, values = _series(histories.get(run, []), key)
            if steps:
                axis.plot(steps, values, marker="o" if len(steps) < 8 else None, markersize=3, label=label)
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("step")
        if axis.lines:
            axis.legend(fontsize=7)
        else:
            axis.text(0.5, 0.5, "not logged", ha="center", va="center", transform=axis.transAxes)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_accuracy(results: EvaluationResults, path: Path) -> Path:
    """Zero-shot accuracy by task (and the mean) and retrieval mean recall, one bar per model, one panel per language."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = analysis.zero_shot_tasks(results)
    groups = [*tasks, "zero-shot mean", "retrieval"]
    models = [info.name for info in results.models]
    figure, axes = plt.subplots(1, 2, figsize=(16, 4.8), sharey=True)
    width = 0.8 / len(models)
    positions = np.arange(len(groups))
    for axis, language in zip(axes, analysis.LANGUAGES):
        for index, model in enumerate(models):
            values = [results.score(model, task, language).score for task in tasks]
            values.append(analysis.language_mean(results, model, language).mean)
            values.append(analysis.retrieval_score(results, model, language) or np.nan)
            axis.bar(positions + (index - (len(models) - 1) / 2) * width, 100 * np.asarray(values, dtype=float),
                     width, label=model)  # fmt: skip
        for position, task in enumerate(tasks):
            info = next(t for t in results.tasks if t.name == task)
            if info.num_classes:
                axis.hlines(100 / info.num_classes, position - 0.45, position + 0.45, colors="black", linestyles=":")
        axis.set_xticks(positions, groups, rotation=25, ha="right", fontsize=8)
        axis.set_title(f"{language.upper()} prompts (dotted: chance)")
        axis.set_ylim(0, 100)
    axes[0].set_ylabel("accuracy / mean recall (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=len(models), fontsize=8)
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


# ----- report ---------------------------------------------------------------------------------------------------


def target_rows(results: EvaluationResults, summary: DemoSummary) -> list[list[str]]:
    """The demo's targets, measured."""
    final = summary.final_student
    memory_mb = max(summary.peak_memory.values())
    rows = []
    if summary.scale["name"] == "small":
        met = summary.total_wall_s < TIME_TARGET_S
        rows.append(["default demo finishes in under 10 minutes (2-core CPU)",
                     f"{summary.total_wall_s / 60:.1f} min wall, {summary.total_cpu_s / 60:.1f} min CPU",
                     "yes" if met else "no"])  # fmt: skip
    rows.append(["peak memory under 6 GB", f"{memory_mb / 1024:.2f} GB (largest process)",
                 "yes" if memory_mb < MEMORY_TARGET_MB else "no"])  # fmt: skip
    for language in analysis.LANGUAGES:
        retention = analysis.retention_of_mean_pct(results, final, language)
        met = retention is not None and retention >= analysis.RETENTION_TARGET_PCT
        rows.append([f"`{final}` keeps >= {analysis.RETENTION_TARGET_PCT:.0f}% of the teacher's mean zero-shot "
                     f"accuracy ({language.upper()})", _retention(retention), "yes" if met else "no"])  # fmt: skip
    chance = analysis.teacher_against_chance(results)
    weakest = min(chance, key=lambda row: row.z)
    rows.append([f"teacher well above chance on every task and language (>= {analysis.ABOVE_CHANCE_Z:.0f} SE)",
                 f"weakest: {weakest.task} {weakest.language.upper()} {100 * weakest.score:.1f}% vs chance "
                 f"{100 * weakest.chance:.1f}% ({weakest.z:.1f} SE)",
                 "yes" if weakest.z >= analysis.ABOVE_CHANCE_Z else "no"])  # fmt: skip
    reload = summary.reload_check
    rows.append(["Hub folder reloads with AutoModel (fresh process) and gives the same numbers",
                 f"max logit difference {reload['max_abs_logit_difference']:.2e}, top-1 agreement "
                 f"{100 * reload['top1_agreement']:.0f}%", "yes" if reload["passed"] else "no"])  # fmt: skip
    return rows


def render_report(results: EvaluationResults, summary: DemoSummary) -> str:
    """`report.md`."""
    final = summary.final_student
    descriptions = {v["name"]: v["description"] for v in summary.variants}
    teacher_info = results.model(results.teacher)
    ratio = teacher_info.num_parameters / results.model(final).num_parameters
    teacher_origin = "trained here (step 2)" if summary.teacher_trained_here else "given with --teacher"
    descriptions[results.teacher] = f"AltCLIP architecture, {teacher_origin}"
    scale = summary.scale
    lines = [
        "# DC-CLIP demo report",
        "",
        f"Scale `{scale['name']}` ({scale['notes']}), seed {summary.seed}, device `{summary.device}`, "
        f"{summary.threads} torch thread(s), run {summary.created_at}. Teacher: `{summary.teacher}` "
        f"({teacher_info.num_parameters:,} parameters, {teacher_origin}); final student `{final}` "
        f"({results.model(final).num_parameters:,} parameters, {ratio:.1f}x smaller).",
        "",
        f"Zero-shot tasks: {', '.join(analysis.zero_shot_tasks(results))} (the `_unseen` task holds only "
        "colour+shape compositions that never appear in training), prompts in English and Chinese; retrieval: "
        "mean of Recall@1/5/10 in both directions. Every number below was measured in this run.",
        "",
        "## Targets",
        "",
        *_table(["target", "measured", "met"], target_rows(results, summary)),
        "",
        "## Summary",
        "",
        "Mean zero-shot accuracy over the zero-shot tasks (%), retention = student mean / teacher mean, retrieval "
        "mean recall (%).",
        "",
        *_table(MODEL_HEADER, model_rows(results, descriptions)),
        "",
        f"## Teacher vs `{final}`, per task",
        "",
        *_table(["task", "images", "chance", "teacher EN", "student EN", "retention EN", "teacher ZH", "student ZH",
                 "retention ZH"], per_task_rows(results, final)),  # fmt: skip
        "",
        "## What the numbers say about the paper's claims",
        "",
        "One run, one seed: the ± ranges are the test-set noise (2 binomial standard errors), not the variation "
        "between training runs, which this run does not measure.",
        "",
        *_table(["claim", "evidence", "verdict"],
                [[c.claim, c.evidence, f"**{c.verdict}**"] for c in analysis.paper_claims(results, final, ratio)]),
        "",
        "## Time and memory",
        "",
        *_table(["step", "wall (s)", "CPU (s)"],
                [[f"{t['number']}. {t['title']}", f"{t['wall_s']:.1f}", f"{t['cpu_s']:.1f}"] for t in summary.timings]),
        "",
        f"Total: {summary.total_wall_s:.0f} s wall, {summary.total_cpu_s:.0f} s CPU (this process and its finished "
        f"children). Peak resident memory: {summary.peak_memory['process_mb']:.0f} MB (demo process), "
        f"{summary.peak_memory['largest_child_mb']:.0f} MB (largest child process).",
        "",
        "## Files",
        "",
        f"- `results.json`: every score (model x task x language) with teacher retention, schema "
        f"`docs/results_schema.md`; `results.md` and `scores.png`: the evaluation's own report",
        f"- `{SUMMARY_FILE}`: this run's settings, timings, memory and checks (docs/demo.md)",
        f"- `{CURVES_FILE}`, `{ACCURACY_FILE}`: training curves; accuracy by model, task and language",
        f"- `final_student/`: the Hub-ready folder ({len(summary.hub_files)} files; "
        "`dcclip push --folder final_student --results results.json --student dc-clip --repo_id ORG/NAME`)",
        "- `configs/`: the YAML config of every stage run (`dcclip distill configs/stage1_feature_maps.yaml` "
        "repeats one); `runs/`: their outputs and `trainer_state.json` logs; `demo.log`: the full log",
    ]
    return "\n".join(lines) + "\n"


def write_demo_report(out: Path, results: EvaluationResults, summary: DemoSummary, runs: Path) -> list[Path]:
    """Write `report.md` and the two plots into `out`; returns their paths."""
    curves = plot_training_curves(training_histories(out, runs), out / CURVES_FILE)
    accuracy = plot_accuracy(results, out / ACCURACY_FILE)
    report = out / REPORT_FILE
    report.write_text(render_report(results, summary), encoding="utf-8")
    return [report, curves, accuracy]


def save_summary(out: Path, summary: DemoSummary, results: EvaluationResults) -> Path:
    """Write `demo_summary.json`: the run's record plus the headline numbers computed from `results`."""
    final = summary.final_student
    headline = {
        model.name: {
            language: {
                "mean_zero_shot": analysis.language_mean(results, model.name, language).mean,
                "retention_of_mean_pct": analysis.retention_of_mean_pct(results, model.name, language)
                if model.name != results.teacher else None,
                "mean_task_retention_pct": analysis.mean_task_retention_pct(results, model.name, language),
                "retrieval_mean_recall": analysis.retrieval_score(results, model.name, language),
            }
            for language in analysis.LANGUAGES
        }
        for model in results.models
    }  # fmt: skip
    ratio = results.model(results.teacher).num_parameters / results.model(final).num_parameters
    data = {
        **asdict(summary),
        "headline": headline,
        "claims": [asdict(c) for c in analysis.paper_claims(results, final, ratio)],
        "teacher_against_chance": [asdict(row) for row in analysis.teacher_against_chance(results)],
    }
    path = out / SUMMARY_FILE
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def console_summary(results: EvaluationResults, summary: DemoSummary) -> str:
    """The summary table as plain text for the console."""
    descriptions = {v["name"]: v["description"].split(":")[0] for v in summary.variants}
    descriptions[results.teacher] = "teacher"
    header = ["model", "params", "ZS EN", "ZS ZH", "ret EN", "ret ZH", "R EN", "R ZH"]
    rows = [[r[0].strip("`"), r[2], *r[3:]] for r in model_rows(results, descriptions)]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(cell).rjust(width) if i else str(cell).ljust(width)
                       for i, (cell, width) in enumerate(zip(row, widths))) for row in [header, *rows]]  # fmt: skip
    lines.insert(1, "-" * len(lines[0]))
    note = ("ZS: mean zero-shot accuracy (%) over the tasks; ret: retention of the teacher's mean; "
            "R: retrieval mean recall (%)")  # fmt: skip
    return "\n".join([*lines, note])
