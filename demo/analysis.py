"""What the demo's measurements say: mean zero-shot accuracy per model and language, retention of the teacher's
accuracy, chance levels, and the comparisons behind each of the paper's claims, with their statistical resolution.

Everything is computed from `results.json` (`evaluation.results.EvaluationResults`); nothing here trains or scores.

Resolution: a mean over tasks of accuracies measured on n images each has a binomial standard error
`sqrt(sum_t p_t (1 - p_t) / n_t) / T`. A difference between two models counts as resolved when it exceeds twice the
standard error of the difference (`sqrt(se_a^2 + se_b^2)`, which ignores that both models see the same images and
so overstates the noise). This is the noise of the finite test set only; seed-to-seed variation of training is not
measured by a single run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dcclip.evaluation.results import EvaluationResults
from dcclip.languages import LANGUAGES
RETENTION_TARGET_PCT = 90.0
# A teacher score counts as well above chance when it is this many binomial standard errors above it.
ABOVE_CHANCE_Z = 5.0


@dataclass
class LanguageMean:
    """Mean zero-shot score of one model over the zero-shot tasks, in one language."""

    mean: float
    standard_error: float


@dataclass
class Comparison:
    """Model `better` minus model `worse` (the claimed order), mean zero-shot score in points, per language."""

    difference_points: dict[str, float]
    two_standard_errors_points: dict[str, float]

    def verdict(self) -> str:
        """'supported' (resolved in the claimed direction in both languages), 'contradicted' (resolved in the other
        direction in both), 'mixed' (resolved, opposite directions), or 'not resolved'."""
        signs = []
        for language, difference in self.difference_points.items():
            margin = self.two_standard_errors_points[language]
            signs.append(1 if difference > margin else -1 if difference < -margin else 0)
        if all(sign == 1 for sign in signs):
            return "supported"
        if all(sign == -1 for sign in signs):
            return "contradicted"
        if 1 in signs and -1 in signs:
            return "mixed"
        if 1 in signs:
            return "supported in one language, not resolved in the other"
        if -1 in signs:
            return "contradicted in one language, not resolved in the other"
        return "not resolved"


@dataclass
class Claim:
    """One claim of the paper, the measured evidence for it, and the verdict."""

    claim: str
    evidence: str
    verdict: str


def zero_shot_tasks(results: EvaluationResults) -> list[str]:
    return [task.name for task in results.tasks if task.kind == "zero_shot"]


def language_mean(results: EvaluationResults, model: str, language: str) -> LanguageMean:
    """Mean score of `model` over every zero-shot task in `language`, with its binomial standard error."""
    tasks = {task.name: task for task in results.tasks if task.kind == "zero_shot"}
    scores, variance = [], 0.0
    for name, task in tasks.items():
        entry = results.score(model, name, language)
        if entry is None:
            raise KeyError(f"results.json has no score of {model!r} on {name!r} in {language!r}")
        scores.append(entry.score)
        variance += entry.score * (1 - entry.score) / max(task.num_images, 1)
    return LanguageMean(sum(scores) / len(scores), math.sqrt(variance) / len(scores))


def retention_of_mean_pct(results: EvaluationResults, model: str, language: str) -> float | None:
    """100 x the student's mean zero-shot score / the teacher's (same tasks, same language); None without a teacher."""
    if results.teacher is None:
        return None
    teacher = language_mean(results, results.teacher, language).mean
    return None if teacher == 0 else 100.0 * language_mean(results, model, language).mean / teacher


def mean_task_retention_pct(results: EvaluationResults, model: str, language: str) -> float | None:
    """Mean over zero-shot tasks of the per-task retention (`teacher_retention_pct` of results.json)."""
    values = [
        entry.teacher_retention_pct
        for name in zero_shot_tasks(results)
        if (entry := results.score(model, name, language)) is not None and entry.teacher_retention_pct is not None
    ]
    return sum(values) / len(values) if values else None


def retrieval_score(results: EvaluationResults, model: str, language: str) -> float | None:
    """Mean recall over the retrieval tasks, or None when there are none."""
    values = [
        entry.score
        for task in results.tasks
        if task.kind == "retrieval" and (entry := results.score(model, task.name, language)) is not None
    ]
    return sum(values) / len(values) if values else None


@dataclass
class ChanceRow:
    task: str
    language: str
    score: float
    chance: float
    z: float  # (score - chance) / binomial standard error at chance


def teacher_against_chance(results: EvaluationResults) -> list[ChanceRow]:
    """The teacher's score on every zero-shot task and language beside chance (1 / number of classes)."""
    rows = []
    for task in results.tasks:
        if task.kind != "zero_shot" or not task.num_classes:
            continue
        chance = 1.0 / task.num_classes
        noise = math.sqrt(chance * (1 - chance) / max(task.num_images, 1))
        for language in task.languages:
            entry = results.score(results.teacher, task.name, language)
            if entry is not None:
                rows.append(ChanceRow(task.name, language, entry.score, chance, (entry.score - chance) / noise))
    return rows


def compare(results: EvaluationResults, better: str, worse: str) -> Comparison:
    """Mean zero-shot score of `better` minus `worse`, per language, with twice its standard error."""
    differences, margins = {}, {}
    for language in LANGUAGES:
        a, b = language_mean(results, better, language), language_mean(results, worse, language)
        differences[language] = 100 * (a.mean - b.mean)
        margins[language] = 200 * math.sqrt(a.standard_error**2 + b.standard_error**2)
    return Comparison(differences, margins)


def _describe(comparison: Comparison, better: str, worse: str) -> str:
    parts = [
        f"{language.upper()} {comparison.difference_points[language]:+.1f} ± {comparison.two_standard_errors_points[language]:.1f}"
        for language in LANGUAGES
    ]
    return f"`{better}` − `{worse}`, mean zero-shot accuracy in points (± 2 SE): " + ", ".join(parts)


def paper_claims(results: EvaluationResults, final: str, parameter_ratio: float) -> list[Claim]:
    """The claims the demo can test, each with its measured evidence and verdict.

    Args:
        results: the evaluation of the teacher and the student variants (names as in `demo.run.VARIANTS`).
        final: name of the DC-CLIP student (feature maps, then alignment).
        parameter_ratio: teacher parameters / final student parameters.
    """
    claims = []
    retention = {language: retention_of_mean_pct(results, final, language) for language in LANGUAGES}
    met = all(value is not None and value >= RETENTION_TARGET_PCT for value in retention.values())
    claims.append(
        Claim(
            f"A student {parameter_ratio:.1f}x smaller than the teacher keeps most of its zero-shot accuracy in both "
            f"languages (demo target: at least {RETENTION_TARGET_PCT:.0f}% of the teacher's mean)",
            "retention of the teacher's mean zero-shot accuracy: "
            + ", ".join(f"{lang.upper()} {value:.1f}%" for lang, value in retention.items() if value is not None),
            "supported" if met else "not supported",
        )
    )
    pairs = [
        ("Stage 2 (bilingual alignment) improves on stage 1 alone", final, "fm-only"),
        ("Feature-map distillation beats logit distillation, both followed by stage 2", final, "logits+align"),
        ("Feature-map distillation beats logit distillation, stage 1 alone", "fm-only", "logits-only"),
        ("Distillation from the teacher beats alignment alone from scratch (same number of steps)", final, "align-only"),
    ]
    for claim, better, worse in pairs:
        comparison = compare(results, better, worse)
        claims.append(Claim(claim, _describe(comparison, better, worse), comparison.verdict()))
    gaps = {model: 100 * (language_mean(results, model, "en").mean - language_mean(results, model, "zh").mean)
            for model in (results.teacher, final)}  # fmt: skip
    margin = 200 * math.sqrt(sum(language_mean(results, final, lang).standard_error ** 2 for lang in LANGUAGES))
    claims.append(
        Claim(
            "The student is bilingual: Chinese zero-shot accuracy close to English, as the teacher's",
            f"EN − ZH mean gap: teacher {gaps[results.teacher]:+.1f} points, `{final}` {gaps[final]:+.1f} points "
            f"(± {margin:.1f} at 2 SE)",
            "supported" if abs(gaps[final]) <= max(margin, abs(gaps[results.teacher])) else "not supported",
        )
    )
    return claims
