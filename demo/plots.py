"""The demo's figures, made to be read at 100% on a laptop screen: one colour per model in every figure, axes labelled
with units, percentages everywhere, error bars and bands showing the spread over the student seeds."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dcclip.evaluation.results import EvaluationResults

from . import analysis
from .comparison import TEACHER, VARIANT_NAMES

# One colour per model in every figure: distilled variants in blues (feature maps) and oranges (logits).
COLOURS = {
    TEACHER: "#4d4d4d",
    "dc-clip": "#1f5fa8",
    "fm-only": "#7fb2e5",
    "logits+align": "#d9620b",
    "logits-only": "#f6b47a",
    "align-only": "#2e9d48",
}
FONT_SIZE = 11
DPI = 100


def pyplot():
    """matplotlib's pyplot on the file-only backend, with the demo's font size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": FONT_SIZE, "axes.titlesize": FONT_SIZE + 1, "legend.fontsize": FONT_SIZE})
    return plt


def _legend_above(figure, handles, labels) -> None:
    figure.legend(handles, labels, loc="upper center", ncol=len(labels), frameon=False, bbox_to_anchor=(0.5, 1.0))


def plot_accuracy(results: EvaluationResults, path: Path) -> Path:
    """Zero-shot accuracy per task, its mean over tasks, and retrieval mean recall, per model (bars: mean over seeds,
    error bars: seed spread), one panel per prompt language; chance as a dotted line per task."""
    plt = pyplot()
    tasks = analysis.zero_shot_tasks(results)
    groups = [*(task.replace("_", " ") for task in tasks), "mean of tasks", "retrieval\n(mean recall)"]
    variants = analysis.variants(results)
    figure, axes = plt.subplots(2, 1, figsize=(13, 8), sharex=True)
    width = 0.84 / len(variants)
    positions = np.arange(len(groups))
    for axis, language in zip(axes, analysis.LANGUAGES):
        for index, variant in enumerate(variants):
            values = [analysis.variant_task_score(results, variant, task, language) for task in tasks]
            values.append(analysis.variant_mean(results, variant, language))
            values.append(analysis.variant_retrieval(results, variant, language))
            means = [np.nan if v is None else v.mean for v in values]
            spreads = [0.0 if v is None else v.spread for v in values]
            axis.bar(positions + (index - (len(variants) - 1) / 2) * width, means, width, yerr=spreads, capsize=2,
                     color=COLOURS.get(variant), label=variant, error_kw={"elinewidth": 1})  # fmt: skip
        for position, task in enumerate(tasks):
            info = next(t for t in results.tasks if t.name == task)
            if info.num_classes:
                axis.hlines(100 / info.num_classes, position - 0.45, position + 0.45, colors="black", linestyles=":")
        axis.set_title("English prompts" if language == "en" else "Chinese prompts")
        axis.set_ylabel("accuracy (%)")
        axis.set_ylim(0, 100)
        axis.grid(axis="y", alpha=0.3)
    axes[-1].set_xticks(positions, groups)
    handles, labels = axes[0].get_legend_handles_labels()
    _legend_above(figure, handles, labels)
    figure.text(0.01, 0.005, "bars: mean over student seeds; error bars: seed spread (s.d.); dotted: chance; "
                "retrieval panel value is mean recall (%)", fontsize=FONT_SIZE - 1)  # fmt: skip
    figure.tight_layout(rect=(0, 0.02, 1, 0.95))
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path


def _history(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8")).get("log_history", []) if path.is_file() else []


def _mean_curve(paths: Sequence[Path], key: str) -> tuple[list[int], list[float], list[float], list[float]]:
    """Steps, mean, min and max over runs of a logged value (runs of one kind log at the same steps)."""
    series: dict[int, list[float]] = {}
    for path in paths:
        for entry in _history(path):
            if key in entry and "step" in entry:
                series.setdefault(entry["step"], []).append(entry[key])
    steps = sorted(series)
    return (steps, [statistics.fmean(series[s]) for s in steps], [min(series[s]) for s in steps],
            [max(series[s]) for s in steps])  # fmt: skip


def plot_training_curves(out: Path, path: Path) -> Path:
    """Training loss of every run (mean over the student seeds, band: min to max): teacher pre-training, stage 1
    with feature maps and with logits, stage 2 of each aligned variant."""
    plt = pyplot()
    runs = out / "runs"
    panels = [
        ("teacher pre-training", "CLIP loss (nats)", [(TEACHER, [out / "teacher" / "trainer_state.json"])]),
        ("stage 1: feature maps", "SmoothL1 + embedding loss",
         [("fm-only", sorted(runs.glob("seed*/stage1_feature_maps/trainer_state.json")))]),
        ("stage 1: logits", "KL divergence (nats)",
         [("logits-only", sorted(runs.glob("seed*/stage1_logits/trainer_state.json")))]),
        ("stage 2: alignment", "InfoNCE loss (nats)",
         [(variant, sorted(runs.glob(f"seed*/*/stage2_{variant}/trainer_state.json")))
          for variant in VARIANT_NAMES if variant in ("dc-clip", "logits+align", "align-only")]),
    ]  # fmt: skip
    figure, axes = plt.subplots(1, len(panels), figsize=(15, 4.6))
    for axis, (title, unit, lines) in zip(axes, panels):
        for model, files in lines:
            steps, mean, low, high = _mean_curve(files, "loss")
            if steps:
                axis.plot(steps, mean, color=COLOURS[model], label=model)
                axis.fill_between(steps, low, high, color=COLOURS[model], alpha=0.25, linewidth=0)
        axis.set_title(title)
        axis.set_xlabel("training step")
        axis.set_ylabel(unit)
        axis.grid(alpha=0.3)
        if not axis.lines:
            axis.text(0.5, 0.5, "not logged", ha="center", va="center", transform=axis.transAxes)
    handles = {label: handle for axis in axes for handle, label in zip(*axis.get_legend_handles_labels())}
    _legend_above(figure, list(handles.values()), list(handles))
    figure.text(0.01, 0.01, "lines: mean over student seeds; bands: lowest to highest seed", fontsize=FONT_SIZE - 1)
    figure.tight_layout(rect=(0, 0.03, 1, 0.92))
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path
