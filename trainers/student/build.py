"""The student, built in one place for stage 1, stage 2, the teacher cache and the demo: from a trained DC-CLIP folder,
or fresh from a preset (or any `DCCLIPConfig`) with a processor that normalises images as the teacher does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from transformers import AutoTokenizer

from modeling_dcclip import DCCLIPConfig, DCCLIPModel, DCCLIPProcessor, make_image_processor

from dcclip.trainers.arguments import StudentArguments

logger = logging.getLogger(__name__)


def student_processor(image_size: int, tokenizer, teacher_processor=None) -> DCCLIPProcessor:
    """The processor of a fresh student: `tokenizer`, and images at the student's own resolution, normalised as the
    teacher normalises them when there is a teacher (so that both see the same pixel statistics), else as CLIP does."""
    if teacher_processor is None:
        return DCCLIPProcessor(image_processor=make_image_processor(image_size), tokenizer=tokenizer)
    teacher_images = teacher_processor.image_processor
    image_processor = make_image_processor(
        image_size, image_mean=list(teacher_images.image_mean), image_std=list(teacher_images.image_std)
    )
    return DCCLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


@dataclass
class StudentBlueprint:
    """A student resolved from the arguments before any weights exist: its config and processor, and the folder its
    weights load from (None: fresh weights from the config, drawn from the current seed)."""

    config: DCCLIPConfig
    processor: DCCLIPProcessor
    folder: str | None = None

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    def model(self) -> DCCLIPModel:
        """The student model: loaded from `folder`, or freshly initialised."""
        return DCCLIPModel.from_pretrained(self.folder) if self.folder else DCCLIPModel(self.config)


def plan_student(args: StudentArguments, teacher_processor=None) -> StudentBlueprint:
    """Resolve `--student` / `--student_preset` (+ `--tokenizer`, `--image_size`) into a `StudentBlueprint`.

    A folder wins over the preset options, which are then named in a warning. A preset student uses `--tokenizer`,
    else the teacher's tokenizer (so that text feature maps can be distilled token by token); its images are
    normalised as the teacher's.
    """
    if args.student:
        ignored = [f"--{name} {value}" for name, value in (("student_preset", args.student_preset),
                   ("tokenizer", args.tokenizer), ("image_size", args.image_size)) if value is not None]  # fmt: skip
        if ignored:
            logger.warning("--student %s is a trained folder with its own processor; ignoring %s", args.student,
                           ", ".join(ignored))  # fmt: skip
        return StudentBlueprint(
            DCCLIPConfig.from_pretrained(args.student), DCCLIPProcessor.from_pretrained(args.student), args.student
        )
    if not args.student_preset:
        raise ValueError("give --student (a DC-CLIP folder) or --student_preset (e.g. tiny, edge)")
    if args.tokenizer:
        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    elif teacher_processor is not None:
        tokenizer = teacher_processor.tokenizer
    else:
        raise ValueError(
            "--student_preset needs --tokenizer (a folder, e.g. from `dcclip build-tokenizer`) when there is no teacher "
            "to take the tokenizer from"
        )
    config = DCCLIPConfig.from_preset(args.student_preset, vocab_size=len(tokenizer), image_size=args.image_size)
    return StudentBlueprint(config, student_processor(config.image_size, tokenizer, teacher_processor))


def load_or_build_student(args: StudentArguments, teacher_processor=None) -> tuple[DCCLIPModel, DCCLIPProcessor]:
    """The student model and its processor (see `plan_student`)."""
    blueprint = plan_student(args, teacher_processor)
    return blueprint.model(), blueprint.processor
