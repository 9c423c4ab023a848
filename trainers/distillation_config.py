"""Stage 1's options: `DistillationConfig`, the `TrainingArguments` of feature-map distillation (TRL's config shape).

`trainers/distill.py` parses it beside `StudentArguments` and `DistillationDataArguments` (trainers/arguments.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from transformers import TrainingArguments

from dcclip.trainers.losses.distillation import LossWeights
from dcclip.trainers.student.adapters import DISTILL_TARGETS
from dcclip.trainers.teacher.model import DEFAULT_TEACHER


@dataclass
class DistillationConfig(TrainingArguments):
    """Options of a stage-1 run: `TrainingArguments` plus the teacher and the stage's own fields below (each
    documented in `--help`). The student's options are `StudentArguments`, the data's `DistillationDataArguments`."""

    # How `dcclip distill --help` groups this stage's own options (before the inherited Trainer options).
    help_groups: ClassVar[dict[str, tuple[str, ...]]] = {
        "teacher": ("teacher", "teacher_dtype", "teacher_cache_dir"),
        "what the student imitates, and the losses": (
            "distill_target", "feature_loss_weight", "embedding_loss_weight", "smooth_l1_beta",
            "standardize_teacher_maps", "logit_temperature",
        ),  # fmt: skip
        "layer mapping (student layer -> teacher layer)": (
            "student_image_layers", "teacher_image_layers", "student_text_layers", "teacher_text_layers",
            "max_distilled_layers",
        ),  # fmt: skip
    }

    teacher: str = field(
        default=DEFAULT_TEACHER,
        metadata={"help": "Teacher: a Hub id or a local folder of a CLIP-like model with its processor "
                  "(AltCLIP by default; CLIP and Chinese-CLIP work too)."},
    )  # fmt: skip
    teacher_dtype: str = field(
        default="auto",
        metadata={"help": "Teacher dtype: 'auto' follows --bf16/--fp16 and, without either, is bfloat16 where the "
                  "device computes it natively (Ampere+ GPUs; AMX / AVX512-BF16 CPUs for teachers at least 768 "
                  "wide), else float32; or float32, bfloat16, float16."},
    )  # fmt: skip
    distill_target: str = field(
        default="feature_maps",
        metadata={"help": "What the student imitates: 'feature_maps' (intermediate maps through 1x1 adapters, "
                  "plus the embeddings weighted by embedding_loss_weight), 'embeddings' (final projected "
                  "embeddings only) or 'logits' (the teacher's image-text similarities, KL at logit_temperature).",
                  "choices": list(DISTILL_TARGETS)},
    )  # fmt: skip
    student_image_layers: list[int] | None = field(
        default=None,
        metadata={"help": "Student image hidden-state indices to distil (0 = stem, last = last stage). "
                  "Default: up to max_distilled_layers evenly spaced, ending at the last."},
    )  # fmt: skip
    teacher_image_layers: list[int] | None = field(
        default=None,
        metadata={"help": "Teacher vision layer for each student image layer. Default: same relative depth."},
    )
    student_text_layers: list[int] | None = field(
        default=None, metadata={"help": "Student text hidden-state indices to distil (default as for images)."}
    )
    teacher_text_layers: list[int] | None = field(
        default=None,
        metadata={"help": "Teacher text layer for each student text layer. Default: same relative depth."},
    )
    max_distilled_layers: int = field(
        default=4, metadata={"help": "Number of layer pairs per tower in the default mapping (at most)."}
    )
    feature_loss_weight: float = field(default=1.0, metadata={"help": "Weight of the feature-map SmoothL1 loss."})
    embedding_loss_weight: float = field(
        default=1.0, metadata={"help": "Weight of the embedding (cosine) loss; with feature_maps, 0 turns it off."}
    )
    smooth_l1_beta: float = field(
        default=1.0, metadata={"help": "SmoothL1 beta: errors above it are penalised linearly, below quadratically."}
    )
    standardize_teacher_maps: bool = field(
        default=True,
        metadata={"help": "Normalise each teacher feature vector to zero mean, unit variance over channels "
                  "before the loss (parameter-free layer norm), so that a few very large channels of the "
                  "teacher's residual stream do not dominate, and every layer pair weighs the same."},
    )  # fmt: skip
    text_segments: int = field(
        default=1,
        metadata={"help": "Where text maps are pooled (student and teacher tokenizers differ, or a teacher cache "
                  "stores pooled text), each caption's real tokens are split into this many contiguous runs of equal "
                  "relative length and the mean of each run is distilled; 1 distils one mean per caption."},
    )  # fmt: skip
    logit_temperature: float = field(
        default=1.0, metadata={"help": "Softmax temperature of logit distillation (distill_target=logits)."}
    )
    teacher_cache_dir: str | None = field(
        default=None,
        metadata={"help": "Read teacher targets from this cache (built by `dcclip teacher-cache` with the same "
                  "config) instead of running the teacher."},
    )  # fmt: skip
    teacher_cache_verify: bool = field(
        default=True,
        metadata={"help": "Re-hash every teacher-cache shard at start-up and refuse a cache whose files changed since "
                  "they were written (reads the whole cache once, split over the run's processes; false skips it for a "
                  "cache already verified)."},
    )  # fmt: skip

    def __post_init__(self):
        # Stage-1 rows carry raw image cells and captions that only the collator reads.
        self.remove_unused_columns = False
        super().__post_init__()
        if self.distill_target not in DISTILL_TARGETS:
            raise ValueError(f"distill_target must be one of {DISTILL_TARGETS}, got {self.distill_target!r}")
        if min(self.feature_loss_weight, self.embedding_loss_weight) < 0:
            raise ValueError("loss weights must be >= 0")
        if self.distill_target == "embeddings" and self.embedding_loss_weight == 0:
            raise ValueError("distill_target='embeddings' with embedding_loss_weight=0 leaves nothing to learn")
        if self.logit_temperature <= 0:
            raise ValueError(f"logit_temperature must be positive, got {self.logit_temperature}")
        if self.max_distilled_layers < 1:
            raise ValueError(f"max_distilled_layers must be >= 1, got {self.max_distilled_layers}")
        if self.text_segments < 1:
            raise ValueError(f"text_segments must be >= 1, got {self.text_segments}")
        if self.distill_target == "feature_maps" and self.embedding_loss_weight == 0 and self.ddp_find_unused_parameters is None:
            # Without the embedding loss, blocks after the last distilled layer and the towers' final norms get no
            # gradient; DDP must be told, or it waits for them forever.
            self.ddp_find_unused_parameters = True

    @property
    def loss_weights(self) -> LossWeights:
        """The loss options as the loss functions take them."""
        return LossWeights(
            feature=self.feature_loss_weight,
            embedding=self.embedding_loss_weight,
            smooth_l1_beta=self.smooth_l1_beta,
            standardize_teacher_maps=self.standardize_teacher_maps,
            logit_temperature=self.logit_temperature,
        )
