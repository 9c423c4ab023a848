"""The demo's judgements on hand-made results: means over seeds and their spread, standard errors, retention,
chance, and claim verdicts that need a difference beyond twice its seed spread and twice its test-set noise."""

from __future__ import annotations

import math
import statistics

import pytest

from dcclip.demo import analysis
from dcclip.demo.comparison import model_name, split_model_name, student_seeds
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


def _seeded(variant: str, *per_seed: tuple[float, float]) -> dict[str, dict[tuple[str, str], float]]:
    """`variant@seed0`, `variant@seed1`, ... with uniform scores (a, b) per seed."""
    return {model_name(variant, seed): _uniform(a, b) for seed, (a, b) in enumerate(per_seed)}


def test_model_names_carry_the_variant_and_the_student_seed():
    assert model_name("logits+align", 2) == "logits+align@seed2"
    assert split_model_name("logits+align@seed2") == ("logits+align", 2)
    assert split_model_name("teacher") == ("teacher", None)
    assert student_seeds(5, 3) == [5, 6, 7]


def test_language_mean_is_the_average_over_zero_shot_tasks_with_its_binomial_standard_error():
    results = _results({"teacher": _uniform(0.9, 0.5)})
    mean = analysis.language_mean(results, "teacher", "en")
    assert mean.mean == pytest.approx(0.7)
    assert mean.standard_error == pytest.approx(math.sqrt(0.9 * 0.1 / 100 + 0.5 * 0.5 / 100) / 2)


def test_a_variant_is_summarised_by_its_mean_and_sample_standard_deviation_over_seeds():
    results = _results({"teacher": _uniform(0.8, 0.4), **_seeded("s", (0.6, 0.4), (0.7, 0.5), (0.8, 0.6))})
    values = analysis.variant_mean(results, "s", "en")
    assert values.values == pytest.approx([50.0, 60.0, 70.0])
    assert values.mean == pytest.approx(60.0) and values.spread == pytest.approx(10.0)
    assert values.text() == "60.0 ± 10.0"
    assert analysis.variants(results) == ["teacher", "s"]
    teacher = analysis.variant_mean(results, "teacher", "zh")
    assert teacher.values == pytest.approx([60.0]) and teacher.spread == 0.0 and teacher.text() == "60.0"


def test_retention_divides_each_seed_mean_by_the_teacher_mean():
    results = _results({"teacher": _uniform(0.8, 0.4), **_seeded("s", (0.8, 0.2), (0.6, 0.6))})
    assert analysis.variant_retention(results, "s", "zh").values == pytest.approx([100 * 0.5 / 0.6, 100 * 0.6 / 0.6])
    # the mean of per-task retentions weighs the weak task as much as the strong one
    assert analysis.mean_task_retention(results, "s", "zh").values == pytest.approx([(100 + 50) / 2, (75 + 150) / 2])


def test_teacher_against_chance_measures_the_distance_in_standard_errors_at_chance():
    results = _results({"teacher": _uniform(0.6, 0.25)})
    rows = {(row.task, row.language): row for row in analysis.teacher_against_chance(results)}
    assert rows["a", "en"].chance == 0.5
    assert rows["a", "en"].z == pytest.approx((0.6 - 0.5) / math.sqrt(0.25 / 100))
    assert rows["b", "zh"].z == pytest.approx(0.0)


def test_a_comparison_pairs_the_seeds_and_reports_the_spread_of_the_per_seed_differences():
    results = _results({
        "teacher": _uniform(0.9, 0.9),
        **_seeded("x", (0.80, 0.60), (0.70, 0.50), (0.60, 0.40)),
        **_seeded("y", (0.70, 0.60), (0.60, 0.50), (0.50, 0.40)),
    }, images=10_000)  # fmt: skip
    comparison = analysis.compare(results, "x", "y")
    # each seed: x is 5 points above y, although the seeds themselves spread by 10 points
    assert comparison.difference["en"].values == pytest.approx([5.0, 5.0, 5.0])
    assert comparison.difference["en"].spread == pytest.approx(0.0, abs=1e-9)
    assert comparison.verdict() == "supported"


def test_a_difference_within_twice_its_seed_spread_is_not_resolved_however_many_images():
    results = _results({
        "teacher": _uniform(0.9, 0.9),
        **_seeded("x", (0.80, 0.80), (0.60, 0.60), (0.75, 0.75)),
        **_seeded("y", (0.60, 0.60), (0.70, 0.70), (0.65, 0.65)),
    }, images=1_000_000)  # fmt: skip
    comparison = analysis.compare(results, "x", "y")
    differences = [20.0, -10.0, 10.0]
    assert comparison.difference["en"].values == pytest.approx(differences)
    assert comparison.margin("en") == pytest.approx(2 * statistics.stdev(differences))
    assert comparison.difference["en"].mean < comparison.margin("en")
    assert comparison.verdict() == "not resolved"


def test_a_difference_within_twice_its_test_set_error_is_not_resolved_however_steady_the_seeds():
    results = _results({"teacher": _uniform(0.9, 0.9), **_seeded("x", (0.72, 0.7), (0.72, 0.7)),
                        **_seeded("y", (0.7, 0.7), (0.7, 0.7))}, images=100)  # fmt: skip
    comparison = analysis.compare(results, "x", "y")
    assert comparison.difference["en"].spread == pytest.approx(0.0, abs=1e-9)
    se_x = math.sqrt(0.72 * 0.28 / 100 + 0.7 * 0.3 / 100) / 2
    se_y = math.sqrt(2 * 0.7 * 0.3 / 100) / 2
    assert comparison.test_standard_error["en"] == pytest.approx(100 * math.sqrt(se_x**2 + se_y**2))
    assert comparison.verdict() == "not resolved"


def test_the_teacher_trained_once_is_compared_with_every_seed_of_a_student():
    results = _results({"teacher": _uniform(0.9, 0.7), **_seeded("s", (0.6, 0.4), (0.7, 0.5))}, images=10_000)
    comparison = analysis.compare(results, "teacher", "s")
    assert comparison.difference["zh"].values == pytest.approx([30.0, 20.0])
    assert comparison.verdict() == "supported"


@pytest.mark.parametrize(
    ("directions", "verdict"),
    [([1, 1], "supported"), ([-1, -1], "contradicted"), ([1, -1], "mixed"), ([0, 0], "not resolved"),
     ([1, 0], "supported in one language, not resolved in the other"),
     ([0, -1], "contradicted in one language, not resolved in the other")],
)  # fmt: skip
def test_verdicts_combine_the_two_languages(directions, verdict):
    assert analysis.verdict(directions) == verdict


def test_paper_claims_cover_the_set_up_retention_each_ablation_and_bilinguality():
    steady = lambda a, b: ((a, b), (a, b), (a, b))  # noqa: E731 - three seeds with the same scores
    scores = {
        "teacher": _uniform(0.9, 0.7),
        **_seeded("dc-clip", *steady(0.88, 0.7)),  # 98.75% of the teacher
        **_seeded("fm-only", *steady(0.88, 0.7)),
        **_seeded("logits+align", *steady(0.5, 0.4)),
        **_seeded("logits-only", *steady(0.9, 0.9)),
        **_seeded("align-only", *steady(0.6, 0.5)),
    }
    claims = analysis.paper_claims(_results(scores, images=1000), "dc-clip", parameter_ratio=6.0)
    verdicts = [claim.verdict for claim in claims]
    # set-up, retention, vs align-only, stage 2, fm vs logits (+ stage 2), fm vs logits (stage 1), bilingual
    assert verdicts == ["supported", "supported", "supported", "not resolved", "supported", "contradicted", "supported"]
    assert "6.0x smaller" in claims[1].claim and "EN 98.8%" in claims[1].evidence
    assert all(claim.verdict in analysis.VERDICTS for claim in claims)


def test_retention_below_the_target_by_more_than_twice_its_spread_is_not_supported():
    scores = {"teacher": _uniform(0.9, 0.7), **_seeded("dc-clip", (0.7, 0.7), (0.71, 0.69), (0.7, 0.7))}
    assert analysis.retention_claim(_results(scores), "dc-clip", parameter_ratio=2.0).verdict == "not supported"
    noisy = {"teacher": _uniform(0.9, 0.7), **_seeded("dc-clip", (0.5, 0.5), (0.9, 0.9), (0.72, 0.72))}
    assert analysis.retention_claim(_results(noisy), "dc-clip", parameter_ratio=2.0).verdict == "not resolved"


def test_align_only_gets_the_steps_of_both_stages_and_every_scale_has_seeds_for_a_spread():
    for scale in SCALES.values():
        assert scale.align_only_steps == scale.stage1.steps + scale.stage2.steps
        assert scale.seeds >= 2 and 0 < scale.pair_fraction <= 1
        assert all(0 < fraction <= 1 for fraction in scale.study_pair_fractions)
    assert get_scale("small").seeds >= 3 and len(get_scale("small").study_pair_fractions) >= 4
    with pytest.raises(ValueError, match="unknown demo scale 'huge'"):
        get_scale("huge")
