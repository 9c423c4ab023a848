"""Stage 2's options: `AlignmentConfig`, the `TrainingArguments` of bilingual image-text alignment (TRL's config shape).

`trainers/align.py` parses it beside `StudentArguments` and `AlignmentDataArguments` (trainers/arguments.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal, get_args

from transformers import TrainingArguments

from dcclip.trainers.losses.contrastive import ImageToTextNegatives


@dataclass
class AlignmentConfig(TrainingArguments):
    """Training arguments of stage 2 (vision-language alignment): the teacher (for the optional teacher term) and the
    stage's own fields below. Every `TrainingArguments` field applies too (`learning_rate`, `weight_decay`,
    `activation_checkpointing`, `deepspeed`, ...). The student's options are `StudentArguments`, the data's
    `AlignmentDataArguments`."""

    # How `dcclip align --help` groups this stage's own options (before the inherited Trainer options).
    help_groups: ClassVar[dict[str, tuple[str, ...]]] = {
        "loss": ("bilingual_captions", "image_to_text_negatives", "local_loss", "teacher", "teacher_loss_weight"),
        "freezing and learning rates": (
            "lock_image_tower", "unlocked_image_layers", "lock_text_tower", "unlocked_text_layers",
            "image_tower_learning_rate", "text_tower_learning_rate", "logit_scale_learning_rate",
        ),  # fmt: skip
        "data loading": ("remove_unused_columns",),
    }

    teacher: str | None = field(
        default=None,
        metadata={"help": "Teacher folder or Hub id (e.g. BAAI/AltCLIP), for --teacher_loss_weight; a preset student "
                  "then also takes its tokenizer and image normalisation."},
    )  # fmt: skip

    bilingual_captions: Literal["both", "sample"] = field(
        default="both",
        metadata={
            "help": "For an image with an English and a Chinese caption: 'both' trains on both pairs in the same step "
            "(the image is embedded once and its two captions are never negatives of each other), 'sample' draws "
            "one of the two at random each time the image is seen."
        },
    )
    image_to_text_negatives: ImageToTextNegatives = field(
        default="all_captions",
        metadata={
            "help": "Which captions an image is ranked against in the image -> text term (text -> image always ranks "
            "every image): 'all_captions' every caption of the global batch except the image's other captions "
            "(masked: neither positives nor negatives), which is exactly CLIP's loss when each image has one caption; "
            "'per_language' only the captions in the pair's language, so captions of the other language are never "
            "negatives."
        },
    )
    local_loss: bool = field(
        default=False,
        metadata={
            "help": "Memory-saving form of the global-batch loss: each rank scores only its own pairs against the "
            "gathered batch (O(local x global) logits instead of O(global^2)). Same gradients, same mean loss."
        },
    )
    lock_image_tower: bool = field(
        default=False,
        metadata={"help": "Freeze the image tower (LiT-style); its projection stays trainable."},
    )
    unlocked_image_layers: int = field(
        default=0,
        metadata={"help": "With lock_image_tower: keep the last N blocks (CNN: stages) and the final norm trainable."},
    )
    lock_text_tower: bool = field(
        default=False,
        metadata={"help": "Freeze the text tower; its projection stays trainable."},
    )
    unlocked_text_layers: int = field(
        default=0,
        metadata={"help": "With lock_text_tower: keep the last N transformer layers trainable."},
    )
    image_tower_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of the image tower (default: learning_rate)."}
    )
    text_tower_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of the text tower (default: learning_rate)."}
    )
    logit_scale_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of the learnable temperature (default: learning_rate)."}
    )
    teacher_loss_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of a term that keeps the student's image and text embeddings close to the teacher's "
            "(stage 1's embedding_distillation_loss: cosine distance); needs a teacher. 0 disables it."
        },
    )
    remove_unused_columns: bool = field(
        default=False,
        metadata={"help": "Kept False: the collator needs the raw image and caption columns."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.bilingual_captions not in ("both", "sample"):
            raise ValueError(f"bilingual_captions must be 'both' or 'sample', got {self.bilingual_captions!r}")
        if self.image_to_text_negatives not in get_args(ImageToTextNegatives):
            raise ValueError(
                f"image_to_text_negatives must be one of {get_args(ImageToTextNegatives)}, "
                f"got {self.image_to_text_negatives!r}"
            )
        for tower in ("image", "text"):
            unlocked = getattr(self, f"unlocked_{tower}_layers")
            if unlocked < 0:
                raise ValueError(f"unlocked_{tower}_layers must be >= 0, got {unlocked}")
            if unlocked and not getattr(self, f"lock_{tower}_tower"):
                raise ValueError(f"unlocked_{tower}_layers={unlocked} only applies with lock_{tower}_tower")
        if self.teacher_loss_weight < 0:
            raise ValueError(f"teacher_loss_weight must be >= 0, got {self.teacher_loss_weight}")
