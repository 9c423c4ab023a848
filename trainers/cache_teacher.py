"""Teacher-cache entry script: run the frozen teacher once over stage 1's data and store what stage 1's loss reads, so
that stage 1 reads it instead of running the teacher every epoch (`distill.py --teacher_cache_dir`).

    python trainers/cache_teacher.py configs/distill_tiny.yaml --teacher_cache_dir runs/cache
    python -m trainers.cache_teacher ...        (or `dcclip teacher-cache ...`)
    torchrun --nproc_per_node 8 trainers/cache_teacher.py CONFIG --teacher_cache_dir FOLDER     (8 shards)
    sbatch --array=0-31 slurm/cache_teacher.sh CONFIG --teacher_cache_dir FOLDER                (32 shards)

It takes the stage-1 config (so that cache and training agree on student, layer mapping, data, max_text_length and
the loss's target standardisation) plus the options of `TeacherCacheArguments`. Each process writes its shard of
both towers; a restarted process keeps its complete shards and rewrites half-written ones. The format and what it
stores: `teacher/cache.py`, `teacher/cache_writer.py`, docs/distillation.md.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from dcclip.command_errors import UsageError, run_command
from dcclip.trainers.arguments import (
    DistillationDataArguments,
    StudentArguments,
    check_model_locations,
    parse_stage_arguments,
)

if TYPE_CHECKING:
    import datasets

    from dcclip.trainers.distillation_config import DistillationConfig
    from dcclip.trainers.distillation_setup import DistillationSetup
    from dcclip.trainers.teacher.cache_writer import CacheCompression

logger = logging.getLogger(__name__)

EXAMPLES = """examples:
  dcclip teacher-cache configs/distill_edge.yaml --teacher_cache_dir runs/cache
  torchrun --nproc_per_node 8 trainers/cache_teacher.py configs/distill_edge.yaml --teacher_cache_dir runs/cache
  sbatch --array=0-31 slurm/cache_teacher.sh configs/distill_edge.yaml --teacher_cache_dir runs/cache
  dcclip distill configs/distill_edge.yaml --teacher_cache_dir runs/cache      (then train from it)

Writes the cache folder (--teacher_cache_dir). More: docs/distillation.md"""


@dataclass
class TeacherCacheArguments:
    """Options of the cache command only (the rest comes from the stage-1 config, so both agree on layers)."""

    help_title: ClassVar[str] = "teacher cache"

    pool_grid: int | None = field(
        default=None,
        metadata={"help": "Grid (N x N) that every cached image map is average-pooled to; 0 keeps the teacher's patch "
                  "grid. Default: the grid of the student's last stage (7 x 7 for edge at 224 px), at most the "
                  "teacher's grid."},
    )  # fmt: skip
    cache_rank: int | None = field(
        default=None,
        metadata={"help": "Principal components stored per feature vector (a per-layer basis fitted on each shard's "
                  "first vectors), image and text unless --cache_text_rank is given; 0 stores every channel. Default: "
                  "the width of the student layer paired with it (its 1x1 adapter's outputs span no more "
                  "directions), at most the teacher's."},
    )  # fmt: skip
    cache_text_rank: int | None = field(
        default=None,
        metadata={"help": "The same for text feature vectors; 0 stores every channel. Default: as --cache_rank."},
    )
    cache_text_tokens: int = field(
        default=4,
        metadata={"help": "Text stored token by token: the real tokens kept per caption, evenly spaced from first to "
                  "last (training compares only those; 6,974 bytes per caption for edge at 4); 0 keeps every token."},
    )  # fmt: skip
    cache_dtype: str = field(
        default="int8",
        metadata={"help": "Stored codes: int8 (with a float16 scale per vector) or float16.",
                  "choices": ["int8", "float16"]},
    )  # fmt: skip
    pool_text: bool = field(
        default=False,
        metadata={"help": "Store text maps pooled over real tokens, --text_segments means per caption (training then "
                  "distils pooled text features), instead of token by token at --cache_text_tokens tokens."},
    )  # fmt: skip
    cache_batch_size: int = field(default=32, metadata={"help": "Teacher batch size while building the cache."})
    overwrite_cache: bool = field(
        default=False,
        metadata={"help": "Replace a previous build in --teacher_cache_dir (only a folder that holds nothing but a "
                  "teacher cache; in a sharded build, only this task's shards)."},
    )  # fmt: skip
    num_shards: int | None = field(
        default=None,
        metadata={"help": "Number of shards of the build. Default: SLURM array tasks x torchrun processes (1 alone)."},
    )
    shard_index: int | None = field(
        default=None, metadata={"help": "This process's shard, 0-based. Default: from the SLURM array and torchrun."}
    )

    def __post_init__(self):
        if self.pool_grid is not None and self.pool_grid < 0:
            raise UsageError(f"--pool_grid must be >= 0, got {self.pool_grid}")
        for name in ("cache_rank", "cache_text_rank"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise UsageError(f"--{name} must be >= 0, got {getattr(self, name)}")
        if self.cache_text_tokens < 0 or self.cache_text_tokens == 1:
            raise UsageError(f"--cache_text_tokens must be 0 (every token) or at least 2, got {self.cache_text_tokens}")


def resolve_shard(num_shards: int | None, shard_index: int | None) -> tuple[int, int]:
    """`(num_shards, shard_index)`: as given, else one shard per SLURM array task and torchrun process."""
    if (num_shards is None) != (shard_index is None):
        raise UsageError("give both --num_shards and --shard_index, or neither (they then come from SLURM / torchrun)")
    if num_shards is None:
        if int(os.environ.get("SLURM_ARRAY_TASK_STEP", "1")) != 1:
            raise UsageError("run the cache's SLURM array without a step (--array=0-N), one shard per task")
        array_tasks = int(os.environ.get("SLURM_ARRAY_TASK_COUNT", "1"))
        array_index = int(os.environ.get("SLURM_ARRAY_TASK_ID", "0")) - int(os.environ.get("SLURM_ARRAY_TASK_MIN", "0"))
        world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
        num_shards, shard_index = array_tasks * world, array_index * world + rank
    if not 0 <= shard_index < num_shards:
        raise UsageError(f"--shard_index must be in 0..{num_shards - 1}, got {shard_index}")
    return num_shards, shard_index


def cache_compression(setup: DistillationSetup, args: TeacherCacheArguments) -> CacheCompression:
    """What the cache stores for this run's plan (`TeacherCacheArguments`, and the loss's standardisation)."""
    from dcclip.trainers.student.adapters import student_hidden_widths, student_image_grids
    from dcclip.trainers.teacher.cache_writer import CacheCompression

    layout, plan = setup.layout, setup.plan
    teacher_grid = tuple(layout.image_grid)
    student_grids = student_image_grids(setup.student.config)
    image_widths, text_widths = student_hidden_widths(setup.student.config)

    def rank(student_width: int, teacher_width: int, option: int | None) -> int | None:
        wanted = student_width if option is None else option
        return None if wanted == 0 or wanted >= teacher_width else wanted

    grids, image_ranks = {}, {}
    for pair in plan.image_pairs or []:
        wanted = student_grids[-1] if args.pool_grid is None else (args.pool_grid or max(teacher_grid),) * 2
        grids[pair.teacher] = (min(wanted[0], teacher_grid[0]), min(wanted[1], teacher_grid[1]))
        image_ranks[pair.teacher] = rank(image_widths[pair.student], layout.image_width, args.cache_rank)
    text_rank = args.cache_rank if args.cache_text_rank is None else args.cache_text_rank
    text_ranks = {p.teacher: rank(text_widths[p.student], layout.text_width, text_rank) for p in plan.text_pairs or []}
    config = setup.config
    return CacheCompression(
        grids, image_ranks, text_ranks, args.pool_text, config.standardize_teacher_maps, config.text_segments,
        args.cache_text_tokens, args.cache_dtype,
    )  # fmt: skip


def shard_of(data: datasets.Dataset | datasets.IterableDataset, index: int, num_shards: int):
    """Shard `index` of `num_shards` of a tower's samples (contiguous rows, or every shard-th item of a stream)."""
    import datasets
    from datasets.distributed import split_dataset_by_node

    if num_shards == 1:
        return data
    if isinstance(data, datasets.IterableDataset):
        return split_dataset_by_node(data, rank=index, world_size=num_shards)
    return data.shard(num_shards, index, contiguous=True)


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
    # Imported once the arguments are checked, so that --help and a bad option answer without waiting for torch.
    from dcclip.trainers.distillation_setup import prepare_distillation
    from dcclip.trainers.teacher.cache import shard_name
    from dcclip.trainers.teacher.cache_writer import (
        cache_description,
        check_cache_folder,
        prepare_cache_folder,
        write_cache_shards,
    )
    from dcclip.trainers.teacher.model import processor_digest, teacher_checkpoint_digest

    folder = config.teacher_cache_dir
    check_cache_folder(folder)  # before minutes of loading: a folder of other files is never written into
    num_shards, shard_index = resolve_shard(cache_args.num_shards, cache_args.shard_index)
    # The plan is the training run's: same student, same mapping, so the cache holds exactly the layers it reads.
    setup = prepare_distillation(student_args, data_args, config, use_cache=False)
    compression = cache_compression(setup, cache_args)
    image_data, text_data = setup.load_tower_data()
    identity = {
        "name": config.teacher,
        "checkpoint_sha256": teacher_checkpoint_digest(config.teacher),
        "processor_sha256": processor_digest(setup.teacher_processor),
    }
    teacher = setup.load_teacher().to(config.device)
    description = cache_description(
        setup.layout, setup.plan.teacher_image_layers, setup.plan.teacher_text_layers, compression,
        student_args.max_text_length, num_shards, identity, float(teacher.logit_scale),
    )  # fmt: skip
    towers = {"images": image_data, "texts": text_data}
    names = {tower: shard_name(tower, shard_index, num_shards) for tower, data in towers.items() if data is not None}
    todo = prepare_cache_folder(folder, description, list(names.values()), cache_args.overwrite_cache, num_shards)
    samples = {
        tower: shard_of(data.dataset, shard_index, num_shards) if names.get(tower) in todo else None
        for tower, data in towers.items()
        if data is not None
    }
    manifests = write_cache_shards(
        teacher, folder, description, samples.get("images"), samples.get("texts"), compression, shard_index,
        cache_args.cache_batch_size,
    )  # fmt: skip
    summary = {
        tower: {"shard": names[tower], "rows": m["rows"], "build_seconds": m["build_seconds"],
                "bytes_per_row": round(sum(f["bytes"] for n, f in m["files"].items() if n.endswith(".bin")) / max(m["rows"], 1))}
        for tower, m in manifests.items()
    }  # fmt: skip
    logger.info("teacher cache %s, shard %d of %d: %s", folder, shard_index, num_shards, summary)
    print(json.dumps(summary))
    print(f"dcclip teacher-cache: wrote shard {shard_index + 1} of {num_shards} of the teacher's targets to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command("teacher-cache", main))
