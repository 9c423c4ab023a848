"""Stage 1's start-up, shared by `distill.py` (training) and `cache_teacher.py` (building a teacher cache), so that
both resolve the same student, the same layer mapping and the same data: everything is checked before any weights or
data load, and fails with a message naming the option to fix.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from torch.utils.data import Dataset, IterableDataset
from transformers import AutoProcessor

from dcclip.trainers.arguments import DistillationDataArguments, StudentArguments
from dcclip.trainers.data import ImageTextCollator, ImageTextData, load_image_text_data
from dcclip.trainers.data.tower_pairs import pair_tower_data
from dcclip.trainers.distillation_config import DistillationConfig
from dcclip.trainers.student.adapters import DistillationPlan, StudentWithAdapters, plan_distillation
from dcclip.trainers.student.build import StudentBlueprint, plan_student
from dcclip.trainers.teacher.cache import CachedTeacherTargets, TeacherCache
from dcclip.trainers.teacher.model import (
    DistillationTeacher,
    load_teacher_layout,
    processor_digest,
    resolve_dtype,
    shares_tokenizer,
    teacher_checkpoint_digest,
)
from dcclip.trainers.teacher.targets import TeacherLayout

logger = logging.getLogger(__name__)


@dataclass
class DistillationSetup:
    """What stage 1's start-up resolved: the teacher's layout and processor, the student, the layer plan, and the
    teacher cache when targets are read from one."""

    config: DistillationConfig
    student_args: StudentArguments
    data_args: DistillationDataArguments
    layout: TeacherLayout
    teacher_processor: object
    student: StudentBlueprint
    shared_tokenizer: bool
    plan: DistillationPlan
    cache: TeacherCache | None

    def load_teacher(self) -> DistillationTeacher:
        """Load the teacher's weights (not yet placed: the Trainer places or shards it)."""
        config, width = self.config, max(self.layout.image_width, self.layout.text_width)
        dtype = resolve_dtype(config.teacher_dtype, config.bf16, config.fp16, config.device, width)
        return DistillationTeacher.load_for_training(config.teacher, config, processor=self.teacher_processor, dtype=dtype)

    def load_tower_data(self) -> tuple[ImageTextData | None, ImageTextData | None]:
        """The image tower's and the text tower's data (None for a tower without a data spec)."""
        image_data, text_data = self.data_args.image_data, self.data_args.text_data
        images = load_image_text_data(image_data) if image_data else None
        texts = load_image_text_data(text_data) if text_data else None
        if images is not None and images.modality == "texts":
            raise ValueError(f"--image_data {image_data} holds texts only; the image tower needs images")
        if texts is not None and texts.modality == "images":
            raise ValueError(f"--text_data {text_data} holds images only; the text tower needs captions")
        return images, texts

    def student_with_adapters(self) -> StudentWithAdapters:
        """The module stage 1 trains: the student (weights drawn or loaded now) and its adapters."""
        return StudentWithAdapters(
            self.student.model(),
            self.config.distill_target,
            self.layout,
            self.plan.image_pairs,
            self.plan.text_pairs,
            text_token_by_token=self.plan.text_token_by_token,
            embedding_loss=self.config.embedding_loss_weight > 0,
            text_segments=self.plan.text_segments,
        )

    def collator(self) -> ImageTextCollator:
        """Student inputs plus the live teacher's inputs, or the cached targets of the batch."""
        cached = None
        if self.cache is not None:
            cached = CachedTeacherTargets(self.cache, self.plan.teacher_image_layers, self.plan.teacher_text_layers)
        return ImageTextCollator(
            self.student.processor,
            self.teacher_processor,
            max_text_length=self.student_args.max_text_length,
            teacher_shares_tokenizer=self.shared_tokenizer,
            teacher_targets=cached,
        )


def training_rows(images: ImageTextData | None, texts: ImageTextData | None) -> Dataset | IterableDataset:
    """Stage 1's training rows: one image-tower sample beside one text-tower sample (`data.tower_pairs`)."""
    streaming = any(data.streaming for data in (images, texts) if data is not None)
    return pair_tower_data(None if images is None else images.dataset, None if texts is None else texts.dataset, streaming)


def check_cache_matches_run(
    cache: TeacherCache, config: DistillationConfig, student_args: StudentArguments, teacher_processor
) -> None:
    """Refuse, before training, a cache that is not this run's teacher's targets: another teacher checkpoint or
    processor, another truncation, targets standardised when the run's loss does not, or a shard whose files changed
    since they were written (`--teacher_cache_verify false` skips re-hashing the shards)."""
    if cache.max_text_length != student_args.max_text_length:
        raise ValueError(
            f"the teacher cache was built with max_text_length={cache.max_text_length}, this run uses "
            f"{student_args.max_text_length}; use the same value or rebuild the cache"
        )
    if cache.layout.maps_standardized and not config.standardize_teacher_maps:
        raise ValueError(
            "the teacher cache stores maps standardised over channels, but this run sets standardize_teacher_maps "
            "false; rebuild the cache with the same setting"
        )
    cache.check_teacher(teacher_checkpoint_digest(config.teacher), processor_digest(teacher_processor), config.teacher)
    if config.teacher_cache_verify:
        start = time.perf_counter()
        cache.verify_checksums(config.process_index, config.world_size)
        logger.info("teacher cache %s: this process's share of the shard files matches its checksums (%.1f s)",
                    cache.folder, time.perf_counter() - start)  # fmt: skip


def prepare_distillation(
    student_args: StudentArguments,
    data_args: DistillationDataArguments,
    config: DistillationConfig,
    use_cache: bool = True,
) -> DistillationSetup:
    """Resolve teacher layout, student and tokenizers, and check the layer mapping (fails fast).

    `use_cache=False` ignores `--teacher_cache_dir` (the cache builder writes it instead of reading it).
    """
    cache = TeacherCache(config.teacher_cache_dir) if use_cache and config.teacher_cache_dir else None
    teacher_processor = AutoProcessor.from_pretrained(config.teacher)
    if cache is not None:
        check_cache_matches_run(cache, config, student_args, teacher_processor)
    layout = cache.layout if cache is not None else load_teacher_layout(config.teacher)
    student = plan_student(student_args, teacher_processor)
    shared = shares_tokenizer(student.tokenizer, teacher_processor.tokenizer)
    plan = plan_distillation(
        config, layout, student.config, shared,
        distil_image=data_args.image_data is not None, distil_text=data_args.text_data is not None,
    )  # fmt: skip
    return DistillationSetup(config, student_args, data_args, layout, teacher_processor, student, shared, plan, cache)
