"""`dcclip demo`: the whole DC-CLIP method end to end, offline, on the built-in bilingual benchmark.

Steps (each prints one line when it starts and one with its time when it ends):

1. generate the benchmark (image folders + webdataset shards) and read it back through the data loaders;
2. train a small AltCLIP-architecture teacher contrastively (skipped with `--teacher`);
3. stage 1: feature-map distillation into a smaller student (`dcclip distill`);
4. stage 2: bilingual InfoNCE alignment (`dcclip align`);
5. ablations on the same data and budget: logit distillation instead of feature maps (then the same stage 2),
   and alignment alone from scratch; stage 1 alone is scored as it is;
6. zero-shot classification (EN, ZH) of the teacher and every student, seen and held-out compositions, + retrieval;
7. the final student as a Hub-ready folder, reloaded with `AutoModel` in a fresh process and compared;
8. `report.md`, `results.json`, `demo_summary.json` and PNG plots, and the summary table on the console.

See docs/demo.md for the outputs and how to read them.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import resource
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import datasets
import torch
import transformers

from dcclip.command_line import CommandParser
from dcclip.evaluation.model_loading import load_evaluated_model
from dcclip.evaluation.report import build_report, write_report
from dcclip.evaluation.tasks import load_builtin_benchmark, load_retrieval_split
from dcclip.trainers.data import DataSpec, SourceSpec, benchmark_text_corpus, generate_benchmark, load_image_text_data
from dcclip.trainers.data.tokenizer import build_bilingual_tokenizer

from . import report
from .hub_export import check_reload, describe_reload, export_for_hub, reload_probe
from .scales import SCALES, DemoScale, get_scale
from .stages import run_alignment, run_distillation, write_config
from .student import save_initial_student
from .teacher_pretraining import pretrain_teacher

logger = logging.getLogger("demo")

TOTAL_STEPS = 8
# Written first into the output folder: a later run may clear only a folder that carries it.
OUTPUT_MARKER = ".dcclip-demo"

TEACHER = "teacher"
FINAL_STUDENT = "dc-clip"


@dataclass(frozen=True)
class Variant:
    """One student of the comparison: what it is and how it was trained."""

    name: str
    description: str
    stage1: str | None  # distill_target of stage 1, None: no stage 1
    aligned: bool  # went through stage 2


VARIANTS: tuple[Variant, ...] = (
    Variant(FINAL_STUDENT, "DC-CLIP: feature-map distillation, then bilingual alignment", "feature_maps", True),
    Variant("fm-only", "ablation: feature-map distillation alone (no stage 2)", "feature_maps", False),
    Variant("logits+align", "ablation: logit distillation instead of feature maps, then the same stage 2", "logits", True),
    Variant("logits-only", "ablation: logit distillation alone (no stage 2)", "logits", False),
    Variant("align-only", "ablation: bilingual alignment alone from the same initial student, no teacher", None, True),
)


@dataclass
class StepTiming:
    """Wall-clock and CPU time of one demo step (CPU: this process and its finished children)."""

    number: int
    title: str
    wall_s: float
    cpu_s: float


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def peak_memory_mb() -> dict[str, float]:
    """Peak resident memory so far (MB): this process, and the largest of its finished child processes."""
    # ru_maxrss is in kilobytes on Linux
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"process_mb": own, "largest_child_mb": children}


class StepClock:
    """Prints a line when a step starts and one with its wall / CPU time when it ends; keeps the timings."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.timings: list[StepTiming] = []

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    @contextmanager
    def step(self, number: int, title: str) -> Iterator[None]:
        print(f"\n[demo {number}/{TOTAL_STEPS}] {title} ...", flush=True)
        wall, cpu = time.perf_counter(), _cpu_seconds()
        yield
        timing = StepTiming(number, title, time.perf_counter() - wall, _cpu_seconds() - cpu)
        self.timings.append(timing)
        print(
            f"[demo {number}/{TOTAL_STEPS}] {title}: done in {timing.wall_s:.1f} s "
            f"(CPU {timing.cpu_s:.1f} s; {_minutes(self.elapsed())} since start)",
            flush=True,
        )


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def build_parser() -> CommandParser:
    parser = CommandParser(
        prog="dcclip demo", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("dcclip-demo"), help="output folder (default: ./dcclip-demo)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data, every model's weights and data order")
    parser.add_argument("--scale", choices=sorted(SCALES), default="small", help="sizes and budgets (demo/scales.py)")
    parser.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto", help="where to train and evaluate (auto: a GPU if any)"
    )
    parser.add_argument(
        "--teacher",
        help="use this teacher (Hub id such as BAAI/AltCLIP, or a folder with model + processor) instead of "
        "training the small one; the student then uses its tokenizer",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads. The demo's models are small: one thread runs them faster than two on a 2-core "
        "machine, and leaves the other core to the data loader",
    )
    return parser


def resolve_device(name: str) -> str:
    """`auto` -> `cuda` when a GPU is visible, else `cpu`; `cuda` without a GPU is an error."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"dcclip demo: --device {name} but torch sees no GPU (torch {torch.__version__})")
    return name


def prepare_output_dir(out: Path) -> Path:
    """Create the output folder; clear it only when it holds an earlier demo run (it carries `OUTPUT_MARKER`)."""
    if out.exists() and any(out.iterdir()):
        if not (out / OUTPUT_MARKER).is_file():
            raise SystemExit(f"dcclip demo: {out} exists, is not empty and is not a demo output folder; choose --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / OUTPUT_MARKER).write_text("written by `dcclip demo`; the next run into this folder replaces it\n")
    return out.resolve()


def configure_logging(log_file: Path) -> None:
    """Everything (INFO and up) to `demo.log`; only warnings on the console, beside the step lines and bars."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    file_handler = logging.FileHandler(log_file, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
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
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point of `dcclip demo`; returns the exit status (0 also when a quality target is missed: the report
    says which)."""
    args = build_parser().parse_args(argv)
    scale = get_scale(args.scale)
    device = resolve_device(args.device)
    out = prepare_output_dir(args.out)
    configure_logging(out / "demo.log")
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the data loader forks after the tokenizer ran
    clock = StepClock()
    print(f"dcclip demo: scale {scale.name}, seed {args.seed}, device {device}, {args.threads} thread(s) -> {out}")

    common = training_options(scale, device, args.seed)
    bench = out / "benchmark"
    with clock.step(1, "benchmark: render, write and read back"):
        paths = generate_benchmark(bench, seed=args.seed, **dataclasses.asdict(scale.benchmark))
        retrieval_pairs = DataSpec(
            sources=[SourceSpec(name="retrieval", kind="imagefolder", path="retrieval",
                                caption_columns={"en": "captions_en", "zh": "captions_zh"})]
        ).save(bench / "retrieval_pairs.yaml")  # fmt: skip
        for spec in (paths.train_spec_imagefolder, retrieval_pairs):
            data = load_image_text_data(spec)
            for name, quality in data.quality_reports().items():
                print(f"  {spec.name} ({name}): {quality.kept} of {quality.seen} samples kept, skipped {quality.skipped}")

    with clock.step(2, "teacher" + (f": {args.teacher}" if args.teacher else ": contrastive pre-training of a small AltCLIP")):
        if args.teacher:
            teacher = args.teacher
        else:
            tokenizer = build_bilingual_tokenizer(
                benchmark_text_corpus(), vocab_size=scale.tokenizer_vocab_size, save_dir=out / "tokenizer",
                model_max_length=scale.max_text_length,
            )  # fmt: skip
            teacher = str(
                pretrain_teacher(
                    paths.train_spec_imagefolder, tokenizer, scale.teacher, out / "teacher", args.seed,
                    scale.max_text_length, common,
                )  # fmt: skip
            )

    configs = out / "configs"
    runs = out / "runs"

    def stage1(target: str, student: Path) -> Path:
        config = {
            "teacher": teacher,
            "student": str(student),
            "image_data": str(paths.train_spec_imagefolder),
            "text_data": str(paths.train_spec_imagefolder),
            "distill_target": target,
            "max_text_length": scale.max_text_length,
            "output_dir": str(runs / f"stage1_{target}"),
            "max_steps": scale.stage1.steps,
            "per_device_train_batch_size": scale.stage1.batch_size,
            "learning_rate": scale.stage1.learning_rate,
            "warmup_steps": max(1, scale.stage1.steps // 10),
            **common,
        }
        return run_distillation(write_config(config, configs / f"stage1_{target}.yaml"))

    def stage2(name: str, student: Path, steps: int) -> Path:
        evals = max(1, scale.zero_shot_evals_in_stage2)
        config = {
            "student": str(student),
            "train_data": str(paths.train_spec_imagefolder),
            "eval_data": str(retrieval_pairs),
            "zero_shot_benchmark": str(paths.eval_dir),
            "max_text_length": scale.max_text_length,
            "output_dir": str(runs / f"stage2_{name}"),
            "max_steps": steps,
            "per_device_train_batch_size": scale.stage2.batch_size,
            "per_device_eval_batch_size": scale.eval_batch_size,
            "learning_rate": scale.stage2.learning_rate,
            "warmup_steps": max(1, steps // 10),
            "eval_strategy": "steps",
            "eval_steps": max(1, steps // evals),
            **common,
        }
        return run_alignment(write_config(config, configs / f"stage2_{name}.yaml"))

    students: dict[str, Path] = {}
    with clock.step(3, "stage 1: feature-map distillation (dcclip distill)"):
        # every variant starts from these weights
        initial_student = save_initial_student(
            teacher, scale.student, scale.max_text_length, args.seed, out / "student_init"
        )
        students["fm-only"] = stage1("feature_maps", initial_student)
    with clock.step(4, "stage 2: bilingual InfoNCE alignment (dcclip align)"):
        students[FINAL_STUDENT] = stage2(FINAL_STUDENT, students["fm-only"], scale.stage2.steps)
    with clock.step(5, "ablations: logit distillation (+ alignment); alignment alone from scratch"):
        students["logits-only"] = stage1("logits", initial_student)
        students["logits+align"] = stage2("logits+align", students["logits-only"], scale.stage2.steps)
        students["align-only"] = stage2("align-only", initial_student, scale.align_only_steps)

    with clock.step(6, "evaluation: zero-shot EN/ZH (seen + held-out compositions) and retrieval"):
        models = [load_evaluated_model(teacher, "teacher", name=TEACHER, device=device)]
        models += [load_evaluated_model(str(students[v.name]), "student", name=v.name, device=device) for v in VARIANTS]
        zero_shot_tasks = load_builtin_benchmark(paths.eval_dir)
        zero_shot_tasks += [
            dataclasses.replace(task, name=f"{task.name}_unseen") for task in load_builtin_benchmark(paths.eval_unseen_dir)
        ]
        retrieval_tasks = [load_retrieval_split(paths.retrieval_dir, "retrieval")]
        results = build_report(models, zero_shot_tasks, retrieval_tasks, batch_size=scale.eval_batch_size)
        write_report(results, out)  # results.json, results.md, scores.png

    with clock.step(7, "final student: Hub-ready folder, reload with AutoModel in a fresh process"):
        hub_folder = out / "final_student"
        folder_report = export_for_hub(students[FINAL_STUDENT], results, FINAL_STUDENT, hub_folder)
        final = next(m for m in models if m.name == FINAL_STUDENT)
        probe = reload_probe(paths.eval_dir, "colour_shape", limit=64)
        reload = check_reload(
            hub_folder, final.model, final.processor, probe.image_paths, probe.prompts, probe.labels, out / "reload_check"
        )
        print(f"  {len(folder_report.upload_files)} files ready to upload; reload: {describe_reload(reload)}")

    with clock.step(8, "report: report.md, results.json, plots"):
        summary = report.DemoSummary(
            scale=scale.to_dict(),
            seed=args.seed,
            device=device,
            threads=args.threads,
            teacher=teacher,
            teacher_trained_here=not args.teacher,
            variants=[dataclasses.asdict(v) for v in VARIANTS],
            final_student=FINAL_STUDENT,
            timings=[dataclasses.asdict(t) for t in clock.timings],
            peak_memory=peak_memory_mb(),
            reload_check=dataclasses.asdict(reload),
            hub_folder=str(hub_folder),
            hub_files=folder_report.upload_files,
            total_wall_s=clock.elapsed(),  # up to the report itself, which takes a few seconds
            total_cpu_s=_cpu_seconds(),
        )
        files = report.write_demo_report(out, results, summary, runs)
        files.append(report.save_summary(out, summary, results))
    print()
    print(report.console_summary(results, summary))
    print(f"\ndcclip demo finished in {_minutes(clock.elapsed())} (CPU {_cpu_seconds():.0f} s); outputs in {out}:")
    for path in [*files, out / "results.json"]:
        print(f"  {path.relative_to(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
