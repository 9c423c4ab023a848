"""`dcclip demo --study data-efficiency`: every variant at several sizes of the stage-2 pair set, over the student
seeds, with the teacher and stage 1 shared (stage 1 reads no pairs); writes a table, a figure and the claims judged
at each size.

Outputs (in `--out`): `data_efficiency.md` (the table and the claims per size), `data_efficiency.json` (every number),
`data_efficiency.png` (one line per variant, error bars: seed spread) and `results/<pair subset>.json` (the
evaluation at each size, `results.json` schema).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from dcclip.evaluation.results import EvaluationResults, write_results
from dcclip.hub.model_card import markdown_table
from dcclip.trainers.data.synthetic_scenes import pair_subset_name

from . import analysis
from .comparison import FINAL_STUDENT, TEACHER
from .plots import COLOURS, DPI, FONT_SIZE, pyplot
from .report import RunRecord, load_text, regime_text, seed_text, seed_values_dict


TABLE_FILE = "data_efficiency.md"
DATA_FILE = "data_efficiency.json"
FIGURE_FILE = "data_efficiency.png"
# The variants of the figure: the method, stage 1 alone, logits + alignment, alignment from scratch.
PLOTTED = (FINAL_STUDENT, "fm-only", "logits+align", "align-only")
DODGE = 1.06  # x factor between neighbouring lines on the log axis
# The comparisons judged at each size: (claim, better, worse).
STUDY_CLAIMS = (
    ("teacher above alignment alone (knowledge to distil)", TEACHER, "align-only"),
    ("distillation beats alignment alone from scratch", FINAL_STUDENT, "align-only"),
    ("feature maps beat logits (both + stage 2)", FINAL_STUDENT, "logits+align"),
    ("stage 2 improves on stage 1 alone", FINAL_STUDENT, "fm-only"),
)


def study_table(results: dict[float, EvaluationResults]) -> dict[float, dict[str, dict[str, analysis.SeedValues]]]:
    """Fraction -> variant -> language -> mean zero-shot accuracy over the seeds."""
    return {
        fraction: {
            variant: {language: analysis.variant_mean(result, variant, language) for language in analysis.LANGUAGES}
            for variant in analysis.variants(result)
        }
        for fraction, result in results.items()
    }


def plot_data_efficiency(
    table: dict[float, dict[str, dict[str, analysis.SeedValues]]], pairs: dict[float, int], path: Path
) -> Path:
    """Mean zero-shot accuracy against the number of stage-2 pairs, one line per variant (error bars: seed spread),
    the teacher as a dashed line, one panel per prompt language."""
    plt = pyplot()
    fractions = sorted(table)
    x = [pairs[f] for f in fractions]
    figure, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    for axis, language in zip(axes, analysis.LANGUAGES):
        teacher = table[fractions[0]][TEACHER][language].mean
        axis.axhline(teacher, color=COLOURS[TEACHER], linestyle="--", label=TEACHER)
        for index, variant in enumerate(PLOTTED):
            values = [table[f][variant][language] for f in fractions]
            label = variant + (" (reads no pairs)" if variant == "fm-only" else "")
            # Each line a little to the side (a few % on the log axis), so that error bars at one size do not overlap.
            shifted = [n * DODGE ** (index - (len(PLOTTED) - 1) / 2) for n in x]
            axis.errorbar(shifted, [v.mean for v in values], yerr=[v.spread for v in values], color=COLOURS[variant],
                          marker="o", capsize=3, label=label)  # fmt: skip
        axis.set_xscale("log")
        axis.set_xticks(x, [f"{n:,}" for n in x])
        axis.minorticks_off()
        axis.set_xlabel("image-text pairs in stage 2 (log scale)")
        axis.set_title("English prompts" if language == "en" else "Chinese prompts")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("mean zero-shot accuracy (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper center", ncol=len(labels), frameon=False)
    figure.text(0.01, 0.01, "points: mean over student seeds; error bars: seed spread (s.d.)", fontsize=FONT_SIZE - 1)
    figure.tight_layout(rect=(0, 0.03, 1, 0.92))
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path


def render_study(
    results: dict[float, EvaluationResults], table: dict, pairs: dict[float, int], run: RunRecord
) -> str:
    """`data_efficiency.md`: the table (every variant at every size, ± seed spread) and the claims judged per size."""
    fractions = sorted(table)
    variants = analysis.variants(results[fractions[0]])
    header = ["variant", *(f"{pairs[f]:,} pairs ({100 * f:g}%) {lang.upper()}" for f in fractions
                           for lang in analysis.LANGUAGES)]  # fmt: skip
    rows = [[f"`{v}`", *(table[f][v][lang].text() for f in fractions for lang in analysis.LANGUAGES)] for v in variants]
    claim_rows = []
    for claim, better, worse in STUDY_CLAIMS:
        cells = [claim]
        for fraction in fractions:
            comparison = analysis.compare(results[fraction], better, worse)
            differences = ", ".join(
                f"{lang.upper()} {comparison.difference[lang].mean:+.1f} (±{comparison.margin(lang):.1f})"
                for lang in analysis.LANGUAGES
            )
            cells.append(f"{differences}: **{comparison.verdict()}**")
        claim_rows.append(cells)
    lines = [
        "# Data efficiency: zero-shot accuracy against the size of the stage-2 pair set",
        "",
        f"Scale `{run.scale['name']}`. " + regime_text(run.scale, run.pairs, run.corpus_only_colours),
        "",
        seed_text(run) + " Stage 1 reads no pairs, so `fm-only` and `logits-only` are the same models at every size.",
        "",
        "## Mean zero-shot accuracy over the six zero-shot tasks (%)",
        "",
        *markdown_table(header, rows).splitlines(),
        "",
        "## Claims at each size",
        "",
        "Difference of the mean zero-shot accuracy in points (± the margin it must exceed: twice the larger of its "
        "seed spread and its test-set standard error).",
        "",
        *markdown_table(["claim", *(f"{pairs[f]:,} pairs" for f in fractions)], claim_rows).splitlines(),
        "",
        f"Time: {run.total_wall_s / 60:.1f} min wall, {run.total_cpu_s / 60:.1f} min CPU ({load_text(run)}). Figure: "
        f"`{FIGURE_FILE}`; "
        f"every number: `{DATA_FILE}`; each size's evaluation: `results/`.",
    ]
    return "\n".join(lines) + "\n"


def write_study(
    out: Path, results: dict[float, EvaluationResults], pairs: dict[float, int], run: RunRecord
) -> list[Path]:
    """Write the study's table, data, figure and per-size results into `out`; returns the table first."""
    results_dir = out / "results"
    results_dir.mkdir(exist_ok=True)
    for fraction, result in results.items():
        write_results(result, results_dir / f"{pair_subset_name(fraction)}.json")
    table = study_table(results)
    markdown = out / TABLE_FILE
    markdown.write_text(render_study(results, table, pairs, run), encoding="utf-8")
    data = {
        **asdict(run),
        "sizes": [
            {
                "fraction": fraction,
                "pairs": pairs[fraction],
                "mean_zero_shot_pct": {
                    variant: {lang: seed_values_dict(v) for lang, v in by_lang.items()}
                    for variant, by_lang in table[fraction].items()
                },
                "claims": [
                    {"claim": claim, "better": better, "worse": worse, "verdict": comparison.verdict(),
                     "difference_points": {lang: comparison.difference[lang].mean for lang in analysis.LANGUAGES},
                     "margin_points": {lang: comparison.margin(lang) for lang in analysis.LANGUAGES}}
                    for claim, better, worse in STUDY_CLAIMS
                    for comparison in [analysis.compare(results[fraction], better, worse)]
                ],
            }
            for fraction in sorted(table)
        ],
    }  # fmt: skip
    data_file = out / DATA_FILE
    data_file.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=float) + "\n", encoding="utf-8")
    figure = plot_data_efficiency(table, pairs, out / FIGURE_FILE)
    return [markdown, data_file, figure, results_dir]

