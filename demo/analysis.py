"""What the demo's measurements say: mean zero-shot accuracy per model and language, its spread over the student
seeds, retention of the teacher's accuracy, chance levels, and the comparisons behind each of the paper's claims.

Everything is computed from `results.json` (`evaluation.results.EvaluationResults`), whose students are named
`<variant>@seed<S>` (`demo.comparison.model_name`); nothing here trains or scores.

Two kinds of noise bound what a difference can show:

- seed spread: the sample standard deviation over the student seeds (initial weights and data order of every student
  stage; the teacher and the data are shared). For a difference between two students it is the spread of the
  per-seed differences (both variants of a seed start from the same initial student);
- test-set noise: a mean over tasks of accuracies measured on n images each has a binomial standard error
  `sqrt(sum_t p_t (1 - p_t) / n_t) / T`; a difference between two models `sqrt(se_a^2 + se_b^2)` (which ignores that
  both see the same images, and so overstates it).

A difference counts as resolved only when it exceeds twice its seed spread and twice its test-set standard error.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from dcclip.evaluation.results import EvaluationResults
from dcclip.languages import LANGUAGES

from .comparison import FINAL_STUDENT, TEACHER, split_model_name

RETENTION_TARGET_PCT = 90.0
# A teacher score counts as well above chance when it is this many binomial standard errors above it.
ABOVE_CHANCE_Z = 5.0


@dataclass
class LanguageMean:
    """Mean zero-shot score of one model over the zero-shot tasks, in one language (fractions)."""

    mean: float
    standard_error: float


@dataclass
class SeedValues:
    """One quantity measured once per student seed (a single value for the shared teacher)."""

    values: list[float]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def spread(self) -> float:
        """Sample standard deviation over the seeds; 0 for a single value (the teacher is trained once)."""
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    def text(self, unit: str = "") -> str:
        """`58.9 ± 0.7` (mean ± spread), or the value alone for a single run."""
        if len(self.values) == 1:
            return f"{self.mean:.1f}{unit}"
        return f"{self.mean:.1f}{unit} ± {self.spread:.1f}"


def zero_shot_tasks(results: EvaluationResults) -> list[str]:
    return [task.name for task in results.tasks if task.kind == "zero_shot"]


def variants(results: EvaluationResults) -> list[str]:
    """The variants evaluated (teacher first), in the order of results.json."""
    names = [split_model_name(info.name)[0] for info in results.models]
    return list(dict.fromkeys(names))


def seed_models(results: EvaluationResults, variant: str) -> dict[int | None, str]:
    """Seed -> model name of every evaluated model of `variant` (the teacher: `{None: "teacher"}`)."""
    found = {}
    for info in results.models:
        name, seed = split_model_name(info.name)
        if name == variant:
            found[seed] = info.name
    if not found:
        raise KeyError(f"results.json has no model of variant {variant!r}")
    return dict(sorted(found.items(), key=lambda item: -1 if item[0] is None else item[0]))


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


def variant_mean(results: EvaluationResults, variant: str, language: str) -> SeedValues:
    """Mean zero-shot accuracy (points) of `variant` in `language`, one value per seed."""
    return SeedValues([100 * language_mean(results, m, language).mean for m in seed_models(results, variant).values()])


def variant_task_score(results: EvaluationResults, variant: str, task: str, language: str) -> SeedValues:
    """Score (points) of `variant` on one task, one value per seed."""
    return SeedValues([100 * results.score(m, task, language).score for m in seed_models(results, variant).values()])


def variant_retrieval(results: EvaluationResults, variant: str, language: str) -> SeedValues | None:
    """Mean recall (points) over the retrieval tasks, one value per seed; None when there are none."""
    names = [task.name for task in results.tasks if task.kind == "retrieval"]
    if not names:
        return None
    return SeedValues([
        100 * statistics.fmean(results.score(model, name, language).score for name in names)
        for model in seed_models(results, variant).values()
    ])  # fmt: skip


def variant_retention(results: EvaluationResults, variant: str, language: str) -> SeedValues | None:
    """100 x the variant's mean zero-shot accuracy / the teacher's (same tasks and language), one value per seed."""
    if results.teacher is None:
        return None
    teacher = language_mean(results, results.teacher, language).mean
    if teacher == 0:
        return None
    models = seed_models(results, variant).values()
    return SeedValues([100 * language_mean(results, model, language).mean / teacher for model in models])


def mean_task_retention(results: EvaluationResults, variant: str, language: str) -> SeedValues | None:
    """Mean over zero-shot tasks of the per-task retention (`teacher_retention_pct` of results.json), per seed."""
    values = []
    for model in seed_models(results, variant).values():
        retentions = [entry.teacher_retention_pct for name in zero_shot_tasks(results)
                      if (entry := results.score(model, name, language)) is not None
                      and entry.teacher_retention_pct is not None]  # fmt: skip
        if retentions:
            values.append(statistics.fmean(retentions))
    return SeedValues(values) if values else None


@dataclass
class Comparison:
    """Variant `better` minus variant `worse` (the claimed order), mean zero-shot accuracy in points, per language."""

    better: str
    worse: str
    difference: dict[str, SeedValues]  # per language: the per-seed differences
    test_standard_error: dict[str, float]  # per language: test-set standard error of one run's difference

    def margin(self, language: str) -> float:
        """Twice the larger of the seed spread and the test-set standard error of the difference."""
        return 2 * max(self.difference[language].spread, self.test_standard_error[language])

    def direction(self, language: str) -> int:
        """+1 resolved in the claimed direction, -1 resolved against it, 0 not resolved."""
        difference = self.difference[language].mean
        margin = self.margin(language)
        return 1 if difference > margin else -1 if difference < -margin else 0

    def verdict(self) -> str:
        """'supported' (resolved in the claimed direction in both languages), 'contradicted' (resolved in the other
        direction in both), 'mixed' (resolved, opposite directions), one-language variants, or 'not resolved'."""
        return verdict([self.direction(language) for language in self.difference])

    def describe(self) -> str:
        parts = [
            f"{language.upper()} {difference.mean:+.1f} (seed spread {difference.spread:.1f}, "
            f"test-set SE {self.test_standard_error[language]:.1f})"
            for language, difference in self.difference.items()
        ]
        return f"`{self.better}` − `{self.worse}`, mean zero-shot accuracy in points: " + "; ".join(parts)


def verdict(directions: list[int]) -> str:
    """The verdict of per-language directions (+1 claimed direction, -1 against, 0 not resolved)."""
    if all(sign == 1 for sign in directions):
        return "supported"
    if all(sign == -1 for sign in directions):
        return "contradicted"
    if 1 in directions and -1 in directions:
        return "mixed"
    if 1 in directions:
        return "supported in one language, not resolved in the other"
    if -1 in directions:
        return "contradicted in one language, not resolved in the other"
    return "not resolved"


VERDICTS = (
    "supported", "contradicted", "mixed", "not resolved", "not supported",
    "supported in one language, not resolved in the other", "contradicted in one language, not resolved in the other",
)  # fmt: skip


def compare(results: EvaluationResults, better: str, worse: str) -> Comparison:
    """Variant `better` minus `worse` per language: per-seed differences (paired by seed; the teacher, trained once,
    is compared with every seed of the other) and the test-set standard error of a difference."""
    first, second = seed_models(results, better), seed_models(results, worse)
    if None in first or None in second:
        pairs = [(a, b) for a in first.values() for b in second.values()]
    else:
        common = sorted(set(first) & set(second))
        if not common:
            raise KeyError(f"no student seed has both {better!r} and {worse!r}")
        pairs = [(first[seed], second[seed]) for seed in common]
    differences, errors = {}, {}
    for language in LANGUAGES:
        values, standard_errors = [], []
        for a, b in pairs:
            mean_a, mean_b = language_mean(results, a, language), language_mean(results, b, language)
            values.append(100 * (mean_a.mean - mean_b.mean))
            standard_errors.append(100 * math.sqrt(mean_a.standard_error**2 + mean_b.standard_error**2))
        differences[language] = SeedValues(values)
        errors[language] = statistics.fmean(standard_errors)
    return Comparison(better, worse, differences, errors)


@dataclass
class Claim:
    """One claim of the paper (or a condition of the demo's set-up), the measured evidence and the verdict."""

    claim: str
    evidence: str
    verdict: str


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


# (claim, better, worse): each compares two variants' mean zero-shot accuracy.
COMPARED_CLAIMS: tuple[tuple[str, str, str], ...] = (
    ("Distillation from the teacher beats alignment alone from scratch on the same pairs and steps (the paper: "
     "good results even with less paired data)", FINAL_STUDENT, "align-only"),
    ("Stage 2 (bilingual alignment) improves on stage 1 alone", FINAL_STUDENT, "fm-only"),
    ("Feature-map distillation beats logit distillation, both followed by stage 2", FINAL_STUDENT, "logits+align"),
    ("Feature-map distillation beats logit distillation, stage 1 alone", "fm-only", "logits-only"),
)  # fmt: skip
SET_UP_CLAIM = (
    "Set-up: the teacher out-scores a student aligned on the student's pairs alone, so there is knowledge to distil",
    TEACHER,
    "align-only",
)


def retention_claim(results: EvaluationResults, final: str, parameter_ratio: float) -> Claim:
    """Whether the final student keeps at least `RETENTION_TARGET_PCT` of the teacher's mean, by more than twice the
    seed spread in both languages ('not supported' when below it by that much in one, else 'not resolved')."""
    retention = {language: variant_retention(results, final, language) for language in LANGUAGES}
    directions = []
    for value in retention.values():
        if value is None:
            directions.append(0)
            continue
        margin = 2 * value.spread
        excess = value.mean - RETENTION_TARGET_PCT
        directions.append(1 if excess > margin else -1 if excess < -margin else 0)
    result = "supported" if all(d == 1 for d in directions) else "not supported" if -1 in directions else "not resolved"
    return Claim(
        f"A student {parameter_ratio:.1f}x smaller than the teacher keeps most of its zero-shot accuracy in both "
        f"languages (demo target: at least {RETENTION_TARGET_PCT:.0f}% of the teacher's mean)",
        "retention of the teacher's mean zero-shot accuracy (± seed spread): "
        + ", ".join(f"{lang.upper()} {value.text('%')}" for lang, value in retention.items() if value is not None),
        result,
    )


def bilingual_claim(results: EvaluationResults, final: str) -> Claim:
    """Whether the final student's EN - ZH gap stays within its noise or within the teacher's own gap."""
    def gap(model: str) -> float:
        return 100 * (language_mean(results, model, "en").mean - language_mean(results, model, "zh").mean)

    def gap_error(model: str) -> float:
        return 100 * math.sqrt(sum(language_mean(results, model, lang).standard_error ** 2 for lang in LANGUAGES))

    per_seed = seed_models(results, final).values()
    gaps, teacher_gap = SeedValues([gap(model) for model in per_seed]), gap(TEACHER)
    test_error = statistics.fmean(gap_error(model) for model in per_seed)
    margin = 2 * max(gaps.spread, test_error)
    return Claim(
        "The student is bilingual: its English and Chinese mean zero-shot accuracies differ by no more than the noise "
        "or the teacher's own gap",
        f"EN − ZH mean gap: teacher {teacher_gap:+.1f} points, `{final}` {gaps.mean:+.1f} (seed spread "
        f"{gaps.spread:.1f}, test-set SE {test_error:.1f})",
        "supported" if abs(gaps.mean) <= max(margin, abs(teacher_gap)) else "not supported",
    )


def paper_claims(results: EvaluationResults, final: str, parameter_ratio: float) -> list[Claim]:
    """The set-up condition and the claims the demo can test, each with its measured evidence and verdict.

    Args:
        results: the evaluation of the teacher and the student variants over the seeds.
        final: the DC-CLIP variant (feature maps, then alignment).
        parameter_ratio: teacher parameters / final student parameters.
    """
    claims = []
    for claim, better, worse in (SET_UP_CLAIM, *COMPARED_CLAIMS):
        comparison = compare(results, better, worse)
        claims.append(Claim(claim, comparison.describe(), comparison.verdict()))
    claims.insert(1, retention_claim(results, final, parameter_ratio))
    claims.append(bilingual_claim(results, final))
    return claims
