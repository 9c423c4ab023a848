"""``dcclip eval``: evaluate a teacher and students on zero-shot and retrieval tasks in English and Chinese, and write
``results.json``, ``results.md`` and ``scores.png``.

Example::

    dcclip eval --teacher BAAI/AltCLIP --student outputs/align/final \\
        --benchmark data/eval --retrieval data/eval/retrieval \\
        --elevater_root /data/elevater --elevater_tasks cifar-10 dtd \\
        --prompts_en ../shared/elevater/elevater_en.json --prompts_zh ../shared/elevater/elevater_zh.json \\
        --output_dir outputs/eval
"""

from __future__ import annotations

import logging
from pathlib import Path

from dcclip.command_line import CommandParser
from dcclip.evaluation.model_loading import load_evaluated_model
from dcclip.evaluation.prompts import default_catalog
from dcclip.languages import LANGUAGES
from dcclip.evaluation.report import build_report, write_report
from dcclip.evaluation.tasks import (
    ELEVATER_TEST_INDEX_NAMES,
    load_builtin_benchmark,
    load_elevater_task,
    load_retrieval_split,
    load_task_specs,
)

logger = logging.getLogger(__name__)


def build_parser() -> CommandParser:
    parser = CommandParser(prog="dcclip eval", description=__doc__.split("\n\n")[0])
    models = parser.add_argument_group("models (folders or Hub ids)")
    models.add_argument("--teacher", help="the teacher (an AltCLIP folder / Hub id); students get a retention score")
    models.add_argument("--student", action="append", default=[], help="a student model; repeat for several")
    tasks = parser.add_argument_group("tasks")
    tasks.add_argument("--benchmark", type=Path, help="built-in benchmark folder (imagefolder + tasks.json)")
    tasks.add_argument(
        "--retrieval", type=Path, action="append", default=[], help="retrieval imagefolder (captions_<lang>); repeatable"
    )
    tasks.add_argument("--elevater_root", type=Path, help="folder of ELEVATER datasets, one sub-folder per dataset key")
    tasks.add_argument("--tasks_file", type=Path, help="JSON list of task specs (elevater / imagefolder / hub sources)")
    tasks.add_argument("--benchmark_tasks", nargs="+", help="only these tasks of --benchmark (default: all)")
    tasks.add_argument("--elevater_tasks", nargs="+", help="only these datasets of --elevater_root (default: all)")
    prompts = parser.add_argument_group("class names and templates")
    prompts.add_argument("--prompts_en", type=Path, action="append", default=[], help="ELEVATER-format JSON (English)")
    prompts.add_argument("--prompts_zh", type=Path, action="append", default=[], help="ELEVATER-format JSON (Chinese)")
    run = parser.add_argument_group("run")
    run.add_argument("--languages", nargs="+", default=list(LANGUAGES), choices=LANGUAGES)
    run.add_argument("--batch_size", type=int, default=64)
    run.add_argument("--device", default="cpu")
    run.add_argument("--output_dir", type=Path, required=True)
    run.add_argument("--no_progress", action="store_true", help="hide progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``dcclip eval``; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not args.teacher and not args.student:
        raise SystemExit("dcclip eval: give --teacher and/or --student")
    if not (args.benchmark or args.retrieval or args.elevater_root or args.tasks_file):
        raise SystemExit("dcclip eval: give at least one of --benchmark, --retrieval, --elevater_root, --tasks_file")

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
        models.append(load_evaluated_model(args.teacher, "teacher", device=args.device))
    models += [load_evaluated_model(path, "student", device=args.device) for path in args.student]
    logger.info("evaluating %d models on %d tasks", len(models), len(zero_shot_tasks) + len(retrieval_tasks))

    results = build_report(
        models, zero_shot_tasks, retrieval_tasks, args.languages, args.batch_size, show_progress=not args.no_progress
    )
    paths = write_report(results, args.output_dir)
    print(paths["markdown"].read_text(encoding="utf-8"))
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


def _elevater_datasets(root: Path) -> list[str]:
    """Sub-folders of ``root`` that hold an ELEVATER test index."""
    names = sorted(
        folder.name
        for folder in root.iterdir()
        if folder.is_dir() and any((folder / index).is_file() for index in ELEVATER_TEST_INDEX_NAMES)
    )
    if not names:
        raise SystemExit(f"dcclip eval: no ELEVATER dataset folders with a test index under {root}")
    return names


if __name__ == "__main__":
    raise SystemExit(main())
