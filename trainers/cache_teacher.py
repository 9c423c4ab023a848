"""Teacher-cache entry script: run the frozen teacher once over stage 1's data and store its targets, so that stage 1
reads them instead of running the teacher every epoch (`distill.py --teacher_cache_dir`).

    python trainers/cache_teacher.py configs/distill_tiny.yaml --teacher_cache_dir runs/cache [--pool_grid 4]
    python -m trainers.cache_teacher ...        (or `dcclip teacher-cache ...`)

It takes the stage-1 config (so that cache and training agree on student, layer mapping, data and max_text_length)
plus the options of `TeacherCacheArguments`. The cache's layout: `teacher/cache.py`.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from dcclip.command_errors import UsageError, run_command
from dcclip.trainers.arguments import (
    DistillationDataArguments,
    StudentArguments,
    check_model_locations,
    parse_stage_arguments,
)

if TYPE_CHECKING:
    from dcclip.trainers.distillation_config import DistillationConfig

logger = logging.getLogger(__name__)

EXAMPLES = """examples:
  dcclip teacher-cache configs/distill_edge.yaml --teacher_cache_dir runs/cache --pool_grid 4
  dcclip distill configs/distill_edge.yaml --teacher_cache_dir runs/cache      (then train from it)

Writes the cache folder (--teacher_cache_dir). More: docs/distillation.md"""


@dataclass
class TeacherCacheArguments:
    """Options of the cache command only (the rest comes from the stage-1 config, so both agree on layers)."""

    help_title: ClassVar[str] = "teacher cache"

    pool_grid: int | None = field(
        default=None,
        metadata={"help": "Average-pool cached image maps to a pool_grid x pool_grid grid to bound disk use "
                  "(training then distils on that grid). Default: keep the teacher's patch grid."},
    )  # fmt: skip
    pool_text: bool = field(
        default=False,
        metadata={"help": "Store text maps mean-pooled over real tokens (training then distils pooled text features)."},
    )
    cache_batch_size: int = field(default=32, metadata={"help": "Teacher batch size while building the cache."})
    overwrite_cache: bool = field(default=False, metadata={"help": "Replace an existing cache folder."})


def option_classes() -> tuple[type, ...]:
    """The stage-1 option groups plus the cache's (`DistillationConfig` imported here: it pulls in torch)."""
    from dcclip.trainers.distillation_config import DistillationConfig

    return StudentArguments, DistillationDataArguments, DistillationConfig, TeacherCacheArguments


def parse_args(
    argv: list[str],
) -> tuple[StudentArguments, DistillationDataArguments, DistillationConfig, TeacherCacheArguments]:
    """`<stage-1 config> --teacher_cache_dir FOLDER [cache options]` -> the stage-1 option groups + the cache's."""
    return parse_stage_arguments("teacher-cache", option_classes, argv, EXAMPLES)


def main(argv: list[str] | None = None) -> int:
    """`dcclip teacher-cache <stage-1 config> --teacher_cache_dir FOLDER [cache options]`."""
    student_args, data_args, config, cache_args = parse_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    check_model_locations(student_args, config)
    if not config.teacher_cache_dir:
        raise UsageError("teacher-cache needs --teacher_cache_dir (the folder to write)")
    folder = Path(config.teacher_cache_dir)
    if folder.exists() and any(folder.iterdir()):
        if not cache_args.overwrite_cache:
            raise FileExistsError(f"{folder} is not empty; pass --overwrite_cache to replace it")
        shutil.rmtree(folder)
    # Imported once the arguments are checked, so that --help and a bad option answer without waiting for torch.
    from dcclip.trainers.distillation_setup import prepare_distillation
    from dcclip.trainers.teacher.cache import build_teacher_cache

    # The plan is the training run's: same student, same mapping, so the cache holds exactly the layers it reads.
    setup = prepare_distillation(student_args, data_args, config, use_cache=False)
    teacher = setup.load_teacher().to(config.device)
    image_data, text_data = setup.load_tower_data()
    metadata = build_teacher_cache(
        teacher,
        folder,
        image_samples=None if image_data is None else image_data.dataset,
        text_samples=None if text_data is None else text_data.dataset,
        image_layers=setup.plan.teacher_image_layers,
        text_layers=setup.plan.teacher_text_layers,
        max_text_length=student_args.max_text_length,
        teacher_name=config.teacher,
        pool_grid=cache_args.pool_grid,
        pool_text=cache_args.pool_text,
        batch_size=cache_args.cache_batch_size,
    )
    sizes = {key: metadata[key] for key in ("num_images", "bytes_per_image", "num_texts", "bytes_per_text") if key in metadata}
    logger.info("teacher cache written to %s: %s", folder, sizes)
    print(json.dumps(sizes))
    print(f"dcclip teacher-cache: wrote the teacher's targets to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command("teacher-cache", main))
