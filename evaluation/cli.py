"""``dcclip eval``: evaluate a teacher and students on zero-shot and retrieval tasks in English and Chinese, and write
``results.json``, ``results.md`` and ``scores.png``.

Example::

    dcclip eval --teacher BAAI/AltCLIP --student outputs/align/final --name dc-clip=outputs/align/final \\
        --benchmark data/eval --retrieval data/eval/retrieval \\
        --elevater_root /data/elevater --elevater_tasks cifar-10 dtd \\
        --prompts_en ../shared/elevater/elevater_en.json --prompts_zh ../shared/elevater/elevater_zh.json \\
        --output_dir outputs/eval
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from dcclip.command_errors import UsageError, run_command
from dcclip.command_line import CommandParser, check_model_location, positive_int, report_written
from dcclip.languages import LANGUAGES

logger = logging.getLogger(__name__)

DESCRIPTION = """Every model sees the same images and prompts; each student's score is also given as a share of
the teacher's. Writes results.json (docs/results_schema.md), results.md (the tables) and scores.png
(a bar chart) to --output_dir, and prints the tables. The scores do not depend on --batch_size."""
EPILOG = """example:
  dcclip eval --teacher runs/teacher --student runs/align/final --name dc-clip=runs/align/final \\
      --benchmark runs/benchmark/eval --retrieval runs/benchmark/retrieval --output_dir runs/eval
More: docs/evaluation.md"""


def build_parser() -> CommandParser:
    """The options of `dcclip eval`."""
    parser = CommandParser(
        "eval",
        usage="dcclip eval --teacher MODEL --student MODEL ... --benchmark DIR --output_dir DIR [--option value ...]",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    models = parser.add_argument_group("models (saved folders or Hub ids)")
    models.add_argument("--teacher", metavar="MODEL",
                        help="the teacher (an AltCLIP folder or Hub id); students get a retention score")  # fmt: skip
    models.add_argument("--student", metavar="MODEL", action="append", default=[],
                        help="a student model; repeat for several")  # fmt: skip
    models.add_argument(
        "--name", metavar="LABEL=MODEL", action="append", default=[],
        help="name a model in the report, e.g. dc-clip=runs/align/final (default: the folder's name, with its "
        "parent's for final/ and checkpoint-N/ folders; a Hub id as it is); repeatable",
    )  # fmt: skip
    tasks = parser.add_argument_group("tasks (at least one)")
    tasks.add_argument(
        "--benchmark", type=Path, metavar="DIR",
        help="built-in benchmark folder (imagefolder + tasks.json, from `dcclip make-benchmark`)",
    )  # fmt: skip
    tasks.add_argument("--retrieval", type=Path, action="append", default=[], metavar="DIR",
                       help="retrieval imagefolder (captions_en, captions_zh lists); repeatable")  # fmt: skip
    tasks.add_argument("--elevater_root", type=Path, metavar="DIR",
                       help="folder of ELEVATER datasets, one sub-folder per dataset key")  # fmt: skip
    tasks.add_argument("--tasks_file", type=Path, metavar="FILE",
                       help="JSON list of task specs (elevater / imagefolder / hub sources)")  # fmt: skip
    tasks.add_argument("--benchmark_tasks", nargs="+", metavar="TASK",
                       help="only these tasks of --benchmark (default: all)")  # fmt: skip
    tasks.add_argument("--elevater_tasks", nargs="+", metavar="DATASET",
                       help="only these datasets of --elevater_root (default: all)")  # fmt: skip
    prompts = parser.add_argument_group("class names and templates")
    prompts.add_argument("--prompts_en", type=Path, action="append", default=[], metavar="FILE",
                         help="ELEVATER-format JSON (English); repeatable")  # fmt: skip
    prompts.add_argument("--prompts_zh", type=Path, action="append", default=[], metavar="FILE",
                         help="ELEVATER-format JSON (Chinese); repeatable")  # fmt: skip
    run = parser.add_argument_group("run")
    run.add_argument("--languages", nargs="+", default=list(LANGUAGES), choices=LANGUAGES,
                     help="prompt and caption languages (default: en zh)")  # fmt: skip
    run.add_argument("--batch_size", type=positive_int, default=64, metavar="N",
                     help="images or texts per forward pass; the scores do not depend on it (default: 64)")  # fmt: skip
    run.add_argument("--device", default="cpu", help="where to run the models: cpu, cuda, cuda:1, ... (default: cpu)")
    run.add_argument("--output_dir", type=Path, required=True, metavar="DIR",
                     help="where results.json, results.md and scores.png go")  # fmt: skip
    run.add_argument("--no_progress", action="store_true", help="hide progress bars")
    return parser


def model_names(teacher: str | None, students: list[str], names: list[str]) -> dict[str, str]:
    """Each model's label in the report: `--name LABEL=MODEL` where given, else `default_model_name(MODEL)`.

    Raises `UsageError` for a `--name` without `=`, one that names no `--teacher`/`--student`, and two models that
    would share a label.
    """
    from dcclip.evaluation.model_loading import default_model_name

    paths = ([teacher] if teacher else []) + students
    labels = {path: default_model_name(path) for path in paths}
    for entry in names:
        label, equals, path = entry.partition("=")
        if not equals or not label or not path:
            raise UsageError(f"--name takes LABEL=MODEL, got {entry!r}")
        matches = [p for p in paths if os.path.normpath(p) == os.path.normpath(path)]
        if not matches:
            raise UsageError(f"--name {entry!r}: {path} is not one of the models (--teacher, --student)")
        for match in matches:
            labels[match] = label
    shared = sorted({label for label in labels.values() if list(labels.values()).count(label) > 1})
    if shared:
        raise UsageError(f"two models would both be named {', '.join(shared)} in the report; name them with "
                         "--name LABEL=MODEL")  # fmt: skip
    return labels


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``dcclip eval``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.teacher and not args.student:
        parser.error("give --teacher and/or --student")
    if not (args.benchmark or args.retrieval or args.elevater_root or args.tasks_file):
        parser.error("give at least one of --benchmark, --retrieval, --elevater_root, --tasks_file")
    for option, value in [("--teacher", args.teacher), *(("--student", path) for path in args.student)]:
        if value:
            check_model_location(value, option)
    labels = model_names(args.teacher, args.student, args.name)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # Imported once the arguments are checked, so that --help and a bad option answer without waiting for torch.
    from dcclip.evaluation.model_loading import load_evaluated_model
    from dcclip.evaluation.prompts import default_catalog
    from dcclip.evaluation.report import build_report, write_report
    from dcclip.evaluation.tasks import (
        load_builtin_benchmark,
        load_elevater_task,
        load_retrieval_split,
        load_task_specs,
    )

    catalog = default_catalog({"en": args.prompts_en, "zh": args.prompts_zh})
    zero_shot_tasks = []
    if args.benchmark:
        zero_shot_tasks += load_builtin_benchmark(args.benchmark, args.languages, args.benchmark_tasks)
    if args.elevater_root:
        for name in args.elevater_tasks or _elevater_datasets(args.elevater_root):
            zero_shot_tasks.append(load_elevater_task(args.elevater_root / name, name, catalog, args.languages))
    if args.tasks_file:
        zero_shot_tasks += load_task_specs(args.tasks_file, catalog, args.languages)
    retrieval_tasks = [load_retrieval_split(root, root.name, args.languages) for root in args.retrieval]

    models = []
    if args.teacher:
        models.append(load_evaluated_model(args.teacher, "teacher", labels[args.teacher], device=args.device))
    models += [load_evaluated_model(path, "student", labels[path], device=args.device) for path in args.student]
    logger.info("evaluating %d models on %d tasks", len(models), len(zero_shot_tasks) + len(retrieval_tasks))

    results = build_report(
        models, zero_shot_tasks, retrieval_tasks, args.languages, args.batch_size, show_progress=not args.no_progress
    )
    paths = write_report(results, args.output_dir)
    print(paths["markdown"].read_text(encoding="utf-8"))
    report_written("eval", f"{', '.join(path.name for path in paths.values())} to {args.output_dir}")
    return 0


def _elevater_datasets(root: Path) -> list[str]:
    """Sub-folders of ``root`` that hold an ELEVATER test index."""
    from dcclip.evaluation.tasks import ELEVATER_TEST_INDEX_NAMES

    if not root.is_dir():
        raise UsageError(f"--elevater_root {root} is not a folder")
    names = sorted(
        folder.name
        for folder in root.iterdir()
        if folder.is_dir() and any((folder / index).is_file() for index in ELEVATER_TEST_INDEX_NAMES)
    )
    if not names:
        raise UsageError(f"no ELEVATER dataset folders with a test index under {root}")
    return names


if __name__ == "__main__":
    sys.exit(run_command("eval", main))
