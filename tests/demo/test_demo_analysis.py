"""The demo's judgements on hand-made results: means, standard errors, retention, chance, and claim verdicts."""

from __future__ import annotations

import math

import pytest

from dcclip.demo import analysis
from dcclip.demo.run import prepare_output_dir
from dcclip.demo.scales import SCALES, get_scale
from dcclip.evaluation.report import add_teacher_retention
from dcclip.evaluation.results import EvaluationResults, ModelInfo, ScoreEntry, TaskInfo


def _results(scores: dict[str, dict[tuple[str, str], float]], images: int = 100) -> EvaluationResults:
    """Results with two zero-shot tasks (`a`: 2 classes, `b`: 4 classes) of `images` images each."""
    tasks = [
        TaskInfo("a", "zero_shot", "accuracy", ["en", "zh"], images, 2),
        TaskInfo("b", "zero_shot", "accuracy", ["en", "zh"], images, 4),
    ]
    models = [ModelInfo(name, name, "teacher" if name == "teacher" else "student", "x", 10, 5, 5) for name in scores]
    entries = [
        ScoreEntry(model, task, language, "accuracy", value, {"accuracy": value})
        for model, by_task in scores.items()
        for (task, language), value in by_task.items()
    ]
    results = EvaluationResults(models=models, tasks=tasks, scores=entries, teacher="teacher")
    add_teacher_retention(results)
    return results


def _uniform(a: float, b: float) -> dict[tuple[str, str], float]:
    return {("a", "en"): a, ("a", "zh"): a, ("b", "en"): b, ("b", "zh"): b}


def test_language_mean_is_the_average_over_zero_shot_tasks_with_its_binomial_standard_error():
    results = _results({"teacher": _uniform(0.9, 0.5)})
    mean = analysis.language_mean(results, "teacher", "en")
    assert mean.mean == pytest.approx(0.7)
    assert mean.standard_error == pytest.approx(math.sqrt(0.9 * 0.1 / 100 + 0.5 * 0.5 / 100) / 2)


def test_retention_of_mean_divides_the_student_mean_by_the_teacher_mean():
    results = _results({"teacher": _uniform(0.8, 0.4), "s": _uniform(0.8, 0.2)})
    assert analysis.retention_of_mean_pct(results, "s", "zh") == pytest.approx(100 * 0.5 / 0.6)
    # the mean of per-task retentions weighs the weak task as much as the strong one
    assert analysis.mean_task_retention_pct(results, "s", "zh") == pytest.approx((100 + 50) / 2)


def test_teacher_against_chance_measures_the_distance_in_standard_errors_at_chance():
    results = _results({"teacher": _uniform(0.6, 0.25)})
    rows = {(row.task, row.language): row for row in analysis.teacher_against_chance(results)}
    assert rows["a", "en"].chance == 0.5
    assert rows["a", "en"].z == pytest.approx((0.6 - 0.5) / math.sqrt(0.25 / 100))
    assert rows["b", "zh"].z == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("better", "worse", "verdict"),
    [
        (_uniform(0.9, 0.9), _uniform(0.5, 0.5), "supported"),
        (_uniform(0.5, 0.5), _uniform(0.9, 0.9), "contradicted"),
        (_uniform(0.71, 0.7), _uniform(0.7, 0.7), "not resolved"),
        ({("a", "en"): 0.9, ("b", "en"): 0.9, ("a", "zh"): 0.5, ("b", "zh"): 0.5},
         {("a", "en"): 0.5, ("b", "en"): 0.5, ("a", "zh"): 0.9, ("b", "zh"): 0.9}, "mixed"),
        ({("a", "en"): 0.9, ("b", "en"): 0.9, ("a", "zh"): 0.7, ("b", "zh"): 0.7},
         _uniform(0.7, 0.7), "supported in one language, not resolved in the other"),
    ],
)  # fmt: skip
def test_a_comparison_is_judged_against_twice_its_standard_error_in_each_language(better, worse, verdict):
    results = _results({"teacher": _uniform(0.9, 0.9), "x": better, "y": worse})
    comparison = analysis.compare(results, "x", "y")
    assert comparison.verdict() == verdict


def test_comparison_reports_points_and_the_two_standard_error_margin():
    results = _results({"teacher": _uniform(0.9, 0.9), "x": _uniform(0.8, 0.6), "y": _uniform(0.6, 0.6)})
    comparison = analysis.compare(results, "x", "y")
    assert comparison.difference_points["en"] == pytest.approx(10.0)
    se_x = math.sqrt(0.8 * 0.2 / 100 + 0.6 * 0.4 / 100) / 2
    se_y = math.sqrt(2 * 0.6 * 0.4 / 100) / 2
    assert comparison.two_standard_errors_points["en"] == pytest.approx(200 * math.sqrt(se_x**2 + se_y**2))


def test_paper_claims_cover_retention_each_ablation_and_bilinguality():
    scores = {
        "teacher": _uniform(0.9, 0.7),
        "dc-clip": _uniform(0.88, 0.7),  # 98.75% of the teacher
        "fm-only": _uniform(0.88, 0.7),
        "logits+align": _uniform(0.5, 0.4),
        "logits-only": _uniform(0.9, 0.9),
        "align-only": _uniform(0.6, 0.5),
    }
    claims = analysis.paper_claims(_results(scores, images=1000), "dc-clip", parameter_ratio=4.0)
    verdicts = [claim.verdict for claim in claims]
    assert verdicts == ["supported", "not resolved", "supported", "contradicted", "supported", "supported"]
    assert "4.0x smaller" in claims[0].claim and "EN 98.8%" in claims[0].evidence


def test_retention_claim_fails_below_ninety_percent():
    scores = {name: _uniform(0.9, 0.7) for name in ("teacher", "fm-only", "logits+align", "logits-only", "align-only")}
    scores["dc-clip"] = _uniform(0.7, 0.7)  # 87.5% of the teacher
    claims = analysis.paper_claims(_results(scores), "dc-clip", parameter_ratio=2.0)
    assert claims[0].verdict == "not supported"


def test_align_only_gets_the_steps_of_both_stages_at_every_scale():
    for scale in SCALES.values():
        assert scale.align_only_steps == scale.stage1.steps + scale.stage2.steps
    with pytest.raises(ValueError, match="unknown demo scale 'huge'"):
        get_scale("huge")


def test_output_folder_is_cleared_only_when_an_earlier_demo_wrote_it(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(SystemExit, match="not a demo output folder"):
        prepare_output_dir(foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"

    earlier = prepare_output_dir(tmp_path / "demo")
    (earlier / "stale.txt").write_text("from the earlier run")
    again = prepare_output_dir(tmp_path / "demo")
    assert again == earlier and not (again / "stale.txt").exists()
