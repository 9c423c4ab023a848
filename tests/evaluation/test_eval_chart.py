"""`scores.png` reads at 100% on a laptop screen: one panel per language, scores in % on a labelled axis, tasks named
with their metric, and each model one colour in every panel, named once."""

from __future__ import annotations

import numpy as np
from PIL import Image

from dcclip.evaluation.report import plot_scores, scores_figure
from dcclip.evaluation.results import EvaluationResults, ModelInfo, ScoreEntry, TaskInfo

MODELS = ["teacher", "dc-clip", "fm-only", "align-only"]
TASKS = ["colour", "shape", "count", "position", "colour_unseen", "shape_unseen"]


def demo_like_results(teacher: str = "teacher") -> EvaluationResults:
    """Scores of a teacher and three students on six zero-shot tasks and retrieval, EN and ZH (the demo's shape)."""
    names = [teacher, *MODELS[1:]]
    models = [ModelInfo(m, m, "teacher" if m == teacher else "student", "dcclip", 1, 1, 1) for m in names]
    tasks = [TaskInfo(t, "zero_shot", "accuracy", ["en", "zh"], 100, 5) for t in TASKS]
    tasks.append(TaskInfo("retrieval", "retrieval", "mean_recall", ["en", "zh"], 200))
    rng = np.random.default_rng(0)
    scores = [ScoreEntry(m, t.name, language, t.metric, float(rng.uniform(0.2, 0.9)), {})
              for m in names for t in tasks for language in ("en", "zh")]  # fmt: skip
    return EvaluationResults(models, tasks, scores, teacher=teacher)


def test_one_panel_per_language_with_scores_in_percent_and_tasks_named_with_their_metric():
    figure = scores_figure(demo_like_results())
    panels = [axes for axes in figure.axes if axes.get_title()]
    assert [panel.get_title() for panel in panels] == ["English", "Chinese"]
    for panel in panels:
        assert panel.get_xlabel() == "score (%)" and panel.get_xlim() == (0.0, 100.0)
        for collection in panel.collections:  # every dot is a score in %, not a fraction
            scores = collection.get_offsets()[:, 0]
            assert np.nanmin(scores) >= 20 and np.nanmax(scores) <= 90
    assert panels[0].get_ylabel() == "task (metric)"
    labels = [label.get_text() for label in panels[0].get_yticklabels()]
    assert labels == [f"{task} (accuracy)" for task in TASKS] + ["retrieval (mean recall@1/5/10)"]


def test_each_model_has_one_colour_in_every_panel_and_is_named_once_in_the_legend():
    figure = scores_figure(demo_like_results())
    panels = [axes for axes in figure.axes if axes.get_title()]
    colours = [[tuple(c.get_facecolor()[0]) for c in panel.collections] for panel in panels]
    assert colours[0] == colours[1] and len(set(colours[0])) == len(MODELS)
    assert [text.get_text() for text in figure.legends[0].get_texts()] == MODELS  # not "teacher (teacher)"
    named = scores_figure(demo_like_results(teacher="altclip"))
    assert named.legends[0].get_texts()[0].get_text() == "altclip (teacher)"


def test_the_png_fits_a_laptop_screen_at_100_percent(tmp_path):
    path = plot_scores(demo_like_results(), tmp_path / "scores.png")
    width, height = Image.open(path).size
    assert 900 <= width <= 1280 and height <= 40 * (len(TASKS) + 1) + 250
