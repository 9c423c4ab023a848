"""`dcclip demo`: the whole DC-CLIP method end to end, offline, on the built-in bilingual benchmark, in the data regime
of the paper: a teacher pre-trained on a large pair corpus, stage 1 on unpaired images and texts, stage 2 on a small
set of image-text pairs.

Steps (each prints one line when it starts and one with its time when it ends):

1. render the benchmark: the teacher's pair corpus, unpaired images and texts, the student's pairs, evaluation splits;
2. pre-train a small AltCLIP-architecture teacher on the corpus (skipped with `--teacher`);
3. train the students, once per student seed: stage 1 (`dcclip distill`) with feature maps, and with logits for the
   ablation; stage 2 (`dcclip align`) after each, and alone from scratch for the ablation;
4. zero-shot classification (EN, ZH) of the teacher and every student, seen and held-out compositions, + retrieval;
5. the first seed's final student as a Hub-ready folder, reloaded with `AutoModel` in a fresh process and compared;
6. `report.md`, `results.json`, `demo_summary.json` and PNG plots, and the summary table on the console.

`--study data-efficiency` runs steps 1-4 at several sizes of the stage-2 pair set and writes the study's table and
figure instead of steps 5-6. See docs/demo.md for the outputs and how to read them.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path

import datasets
import torch
import transformers

from dcclip.command_errors import UsageError
from dcclip.evaluation.model_loading import EvaluatedModel, load_evaluated_model
from dcclip.evaluation.report import add_teacher_retention, build_report
from dcclip.evaluation.results import EvaluationResults
from dcclip.evaluation.tasks import load_builtin_benchmark, load_retrieval_split
from dcclip.trainers.data import BenchmarkPaths, benchmark_text_corpus, generate_benchmark, load_image_text_data
from dcclip.trainers.data.tokenizer import build_bilingual_tokenizer

from . import report
from .comparison import (
    FINAL_STUDENT,
    TEACHER,
    VARIANT_NAMES,
    VARIANTS,
    ComparisonData,
    StudentComparison,
    model_name,
    split_model_name,
    student_seeds,
)
from .console import LOG_FORMAT, StepClock, cpu_seconds, minutes, peak_memory_mb, training_run_output
from .data_efficiency import write_study
from .hub_export import check_reload, describe_reload, export_for_hub, reload_probe
from .options import DEFAULT_OUT
from .output_folder import prepare_output_folder, record_output_files
from .scales import DemoScale, get_scale
from .teacher_pretraining import pretrain_teacher

logger = logging.getLogger("demo")

DEMO_STEPS = 6
STUDY_STEPS = 5


def resolve_device(name: str) -> str:
    """`auto` -> `cuda` when a GPU is visible, else `cpu`. `cuda:N` narrows CUDA_VISIBLE_DEVICES to GPU N (before CUDA
    starts), so that the Trainer's own `cuda` is that GPU; a GPU name without a GPU is an error."""
    if name.startswith("cuda:"):
        index = int(name.split(":")[1])
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        ids = visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]
        if index >= len(ids):
            raise UsageError(f"--device {name}: torch sees {len(ids)} GPU(s)")
        os.environ["CUDA_VISIBLE_DEVICES"] = ids[index]
        name = "cuda"
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name} but torch sees no GPU (torch {torch.__version__})")
    return name


def configure_logging(log_file: Path) -> None:
    """Everything (INFO and up) to `demo.log`; only warnings on the console, beside the step lines and bars."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    file_handler = logging.FileHandler(log_file, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING)
    root.handlers[:] = [file_handler, console]
    # Bars of short operations (loading a split, reading or writing weights); the training and evaluation bars stay.
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()


def training_options(scale: DemoScale, device: str, seed: int) -> dict:
    """`TrainingArguments` fields shared by every training run of the demo (teacher pre-training and the stages)."""
    workers = scale.dataloader_workers
    return {
        "use_cpu": device == "cpu",
        "logging_steps": scale.logging_steps,
        "dataloader_num_workers": workers,
        "dataloader_persistent_workers": workers > 0,
        "seed": seed,
        "lr_scheduler_type": "cosine",
        "weight_decay": 0.1,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,  # the demo shows its own labelled bar; the log dicts go to each run's train.log
    }


def render_benchmark(out: Path, scale: DemoScale, seed: int, fractions: tuple[float, ...]) -> BenchmarkPaths:
    """Step 1: write the data regime with a pair subset per fraction in `fractions`, then read every data spec back
    through the loaders and print what it holds."""
    paths = generate_benchmark(
        out / "benchmark", seed=seed, pair_fractions=fractions, **dataclasses.asdict(scale.benchmark)
    )
    specs = [
        ("teacher's pair corpus", paths.corpus_spec),
        ("stage 1, image tower: unpaired images", paths.unpaired_images_spec),
        ("stage 1, text tower: unpaired captions", paths.unpaired_texts_spec),
        *((f"stage 2: {100 * f:g}% of the student's pairs", paths.pair_subset_specs[f]) for f in fractions),
    ]
    for title, spec in specs:
        data = load_image_text_data(spec)
        for quality in data.quality_reports().values():
            print(f"  {title} ({spec.name}): {quality.kept:,} {data.modality} kept of {quality.seen:,}, "
                  f"skipped {quality.skipped or 0}")  # fmt: skip
    colours = ", ".join(scale.benchmark.corpus_only_colours)
    print(f"  the student's pairs never show these colours, the teacher's corpus does: {colours}")
    return paths


def prepare_teacher(args: argparse.Namespace, out: Path, scale: DemoScale, paths: BenchmarkPaths, common: dict) -> str:
    """Step 2: the teacher's folder or Hub id: `--teacher`, or a small AltCLIP pre-trained on the corpus."""
    if args.teacher:
        return args.teacher
    tokenizer = build_bilingual_tokenizer(
        benchmark_text_corpus(), vocab_size=scale.tokenizer_vocab_size, save_dir=out / "tokenizer",
        model_max_length=scale.max_text_length,
    )  # fmt: skip
    label = f"teacher pre-training ({scale.benchmark.n_corpus:,} pairs)"
    command = "AltCLIPModel with TeacherPretrainingTrainer (demo/teacher_pretraining.py)"
    with training_run_output(label, out / "teacher" / "train.log", command) as callbacks:
        final = pretrain_teacher(
            paths.corpus_spec, tokenizer, scale.teacher, out / "teacher", args.seed, scale.max_text_length, common,
            extra_callbacks=callbacks,
        )  # fmt: skip
    return str(final)


def train_students(
    comparison: StudentComparison, seeds: list[int], fractions: tuple[float, ...]
) -> dict[float, dict[str, Path]]:
    """Step 3: every variant for every seed, stage 2 at every fraction: fraction -> model name -> student folder."""
    folders: dict[float, dict[str, Path]] = {fraction: {} for fraction in fractions}
    for seed in seeds:
        for fraction, students in comparison.train_seed(seed, fractions).items():
            folders[fraction].update({model_name(variant, seed): folder for variant, folder in students.items()})
    return folders


def evaluate(
    teacher: str, students: dict[float, dict[str, Path]], paths: BenchmarkPaths, scale: DemoScale, device: str
) -> tuple[dict[float, EvaluationResults], dict[float, dict[str, EvaluatedModel]]]:
    """Step 4: zero-shot (seen and held-out compositions) and retrieval scores of the teacher and every student; one
    `EvaluationResults` per pair-set fraction (the teacher and the students trained without pairs are evaluated
    once and appear in each). Also returns the loaded models per fraction, by name."""
    zero_shot_tasks = load_builtin_benchmark(paths.eval_dir)
    zero_shot_tasks += [
        dataclasses.replace(task, name=f"{task.name}_unseen") for task in load_builtin_benchmark(paths.eval_unseen_dir)
    ]
    retrieval_tasks = [load_retrieval_split(paths.retrieval_dir, "retrieval")]

    def score(models: list[EvaluatedModel]) -> EvaluationResults:
        print(f"  scoring {len(models)} model(s) on {len(zero_shot_tasks)} zero-shot tasks and retrieval, EN and ZH",
              flush=True)  # fmt: skip
        return build_report(
            models, zero_shot_tasks, retrieval_tasks, batch_size=scale.eval_batch_size, show_progress=False
        )

    def load(folder: Path, name: str) -> EvaluatedModel:
        return load_evaluated_model(str(folder), "student", name=name, device=device)

    # A model name (variant and seed) stands for one folder at every fraction only when stage 2 did not train it.
    shared_folders = dict(set.intersection(*(set(folders.items()) for folders in students.values())))
    shared_models = [load_evaluated_model(teacher, "teacher", name=TEACHER, device=device)]
    shared_models += [load(folder, name) for name, folder in sorted(shared_folders.items())]
    shared = score(shared_models)
    results, models = {}, {}
    for fraction, folders in students.items():
        own = [load(folder, name) for name, folder in folders.items() if name not in shared_folders]
        order = [TEACHER, *sorted(folders, key=_by_variant)]
        results[fraction] = combine(shared, score(own) if own else None, order)
        models[fraction] = {model.name: model for model in (*shared_models, *own)}
    return results, models


def _by_variant(name: str) -> tuple[int, int]:
    """Sort key of a student's model name: variants in `VARIANTS` order, then seeds."""
    variant, seed = split_model_name(name)
    return VARIANT_NAMES.index(variant), seed


def combine(shared: EvaluationResults, own: EvaluationResults | None, order: list[str]) -> EvaluationResults:
    """One report of the models in `order` from two evaluations of the same tasks (`own`, without a teacher, may be
    None)."""
    parts = [shared] if own is None else [shared, own]
    models = {info.name: info for part in parts for info in part.models}
    results = EvaluationResults(
        models=[models[name] for name in order],
        tasks=shared.tasks,
        scores=[entry for part in parts for entry in part.scores if entry.model in order],
        cross_lingual=[entry for part in parts for entry in part.cross_lingual if entry.model in order],
        teacher=shared.teacher,
    )
    add_teacher_retention(results)
    return results


def _record_resources(run: report.RunRecord, clock: StepClock) -> None:
    """Time and memory so far, into the run's record (up to the report itself, which takes a few seconds)."""
    run.timings = [dataclasses.asdict(timing) for timing in clock.timings]
    run.peak_memory = peak_memory_mb()
    run.total_wall_s, run.total_cpu_s = clock.elapsed(), cpu_seconds()
    run.load_average["end"] = os.getloadavg()[0]


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo with the options of `demo/options.py`; returns the exit status."""
    scale = get_scale(args.scale)
    seeds = student_seeds(args.seed, args.seeds or scale.seeds)
    device = resolve_device(args.device)
    out = prepare_output_folder(args.out or DEFAULT_OUT[args.study])
    configure_logging(out / "demo.log")
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the data loader forks after the tokenizer ran
    fractions = scale.study_pair_fractions if args.study else (scale.pair_fraction,)
    clock = StepClock(STUDY_STEPS if args.study else DEMO_STEPS)
    load_at_start = os.getloadavg()[0]
    what = f"study {args.study}" if args.study else "demo"
    print(f"dcclip demo ({what}): scale {scale.name}, data and teacher seed {args.seed}, student seeds "
          f"{', '.join(map(str, seeds))}, device {device}, {args.threads} thread(s) -> {out}")  # fmt: skip

    common = training_options(scale, device, args.seed)
    with clock.step(1, "benchmark: render the data regime and read it back"):
        paths = render_benchmark(out, scale, args.seed, fractions)
    record_output_files(out, finished=False)
    teacher_title = "teacher: " + (args.teacher or "contrastive pre-training of a small AltCLIP")
    with clock.step(2, teacher_title):
        teacher = prepare_teacher(args, out, scale, paths, common)
    record_output_files(out, finished=False)
    data = ComparisonData(paths.unpaired_images_spec, paths.unpaired_texts_spec, paths.pair_subset_specs)
    comparison = StudentComparison(out, scale, teacher, data, common)
    pairs = ", ".join(f"{scale.num_pairs(f):,}" for f in fractions)
    with clock.step(3, f"students: {len(VARIANTS)} variants x {len(seeds)} seed(s), stage 2 on {pairs} pairs"):
        students = train_students(comparison, seeds, fractions)
    record_output_files(out, finished=False)
    with clock.step(4, "evaluation: zero-shot EN/ZH (seen + held-out compositions) and retrieval"):
        results, loaded = evaluate(teacher, students, paths, scale, device)
    record_output_files(out, finished=False)

    run = report.RunRecord(
        scale=scale.to_dict(), seed=args.seed, student_seeds=seeds, device=device, threads=args.threads,
        teacher=teacher, teacher_trained_here=not args.teacher, variants=[dataclasses.asdict(v) for v in VARIANTS],
        final_student=FINAL_STUDENT, corpus_only_colours=list(scale.benchmark.corpus_only_colours),
        pairs={f"{100 * f:g}%": scale.num_pairs(f) for f in fractions}, load_average={"start": load_at_start},
    )  # fmt: skip
    if args.study:
        with clock.step(5, "report: the data-efficiency table and figure"):
            _record_resources(run, clock)
            files = write_study(out, results, {f: scale.num_pairs(f) for f in fractions}, run)
        print()
        print(report.read_file(files[0]))
    else:
        (results,) = results.values()
        with clock.step(5, "final student: Hub-ready folder, reload with AutoModel in a fresh process"):
            hub_folder = out / "final_student"
            final_name = model_name(FINAL_STUDENT, seeds[0])
            folder_report = export_for_hub(
                students[fractions[0]][final_name], results, final_name, hub_folder,
                report.card_limitations(scale, run.pairs, args.teacher),
            )  # fmt: skip
            probe = reload_probe(paths.eval_dir, "colour_shape", limit=64)
            final = loaded[fractions[0]][final_name]
            reload = check_reload(
                hub_folder, final.model, final.processor, probe.image_paths, probe.prompts, probe.labels,
                out / "reload_check",
            )  # fmt: skip
            files_ready = len(folder_report.upload_files)
            print(f"  {final_name}: {files_ready} files ready to upload; reload: {describe_reload(reload)}")
        record_output_files(out, finished=False)
        with clock.step(6, "report: report.md, results.json, plots"):
            _record_resources(run, clock)
            run.reload_check, run.hub_folder = dataclasses.asdict(reload), str(hub_folder)
            run.hub_files = folder_report.upload_files
            files = report.write_demo_report(out, results, run)
        print()
        print(report.console_summary(results, run))
    print(f"\ndcclip demo finished in {minutes(clock.elapsed())} (CPU {cpu_seconds():.0f} s); it wrote {out}: "
          f"{', '.join(str(path.relative_to(out)) for path in files)} and the folders behind them")  # fmt: skip
    logging.shutdown()
    record_output_files(out, finished=True)
    return 0
