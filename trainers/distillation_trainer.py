"""Stage 1: `DistillationConfig` (the run's options) and `DistillationTrainer` (a `Trainer` that wires the losses).

The maths lives in `distillation_losses.py`, the adapters in `feature_adapters.py`, the teacher in `teacher.py`. The
Trainer adds only what stage 1 needs: the loss (`compute_loss`), per-part loss logging (`log`), placing the teacher
(sharded under ZeRO-3), and the export of the student alone (`save_model`); checkpoints keep the adapters.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from modeling_dcclip import DCCLIPConfig

from .distillation_losses import (
    clip_logits,
    embedding_distillation_loss,
    feature_map_loss,
    standardize_channels,
    symmetric_logit_distillation_loss,
)
from .feature_adapters import (
    DISTILL_TARGETS,
    LayerPair,
    StudentFeatures,
    masked_mean_tokens,
    resolve_layer_mapping,
    student_hidden_widths,
)
from .teacher import DEFAULT_TEACHER, DistillationTeacher, TeacherLayout, TeacherTargets, teacher_weights_digest

logger = logging.getLogger(__name__)

TEACHER_DIGEST_FILE = "teacher_digest.json"


@dataclass
class DistillationConfig(TrainingArguments):
    """Options of a stage-1 run: `TrainingArguments` plus the fields below (each documented in `--help`)."""

    teacher: str = field(
        default=DEFAULT_TEACHER,
        metadata={"help": "Teacher: a Hub id or a local folder of a CLIP-like model with its processor "
                  "(AltCLIP by default; CLIP and Chinese-CLIP work too)."},
    )  # fmt: skip
    teacher_dtype: str = field(
        default="auto",
        metadata={"help": "Teacher weights dtype: 'auto' follows --bf16/--fp16, else float32, bfloat16 or float16."},
    )
    student_preset: str = field(
        default="edge", metadata={"help": "Student preset of DCCLIPConfig.from_preset (ignored with --student)."}
    )
    student: str | None = field(
        default=None, metadata={"help": "Start from this DC-CLIP folder (model + processor) instead of a preset."}
    )
    student_tokenizer: str | None = field(
        default=None,
        metadata={"help": "Tokenizer folder of a preset student. Default: the teacher's tokenizer, so that text "
                  "feature maps are distilled token by token."},
    )  # fmt: skip
    student_image_size: int | None = field(
        default=None, metadata={"help": "Input resolution of a preset student. Default: the preset's."}
    )
    image_data: str | None = field(
        default=None,
        metadata={"help": "Data spec (YAML/JSON, see docs/data.md) of the image tower's data: image-only or "
                  "image-text sources. Omit to distil the text tower alone."},
    )  # fmt: skip
    text_data: str | None = field(
        default=None,
        metadata={"help": "Data spec of the text tower's data: bilingual text-only or image-text sources. "
                  "Omit to distil the image tower alone."},
    )  # fmt: skip
    max_text_length: int = field(default=77, metadata={"help": "Token truncation length (student and teacher)."})
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
    logit_temperature: float = field(
        default=1.0, metadata={"help": "Softmax temperature of logit distillation (distill_target=logits)."}
    )
    teacher_cache_dir: str | None = field(
        default=None,
        metadata={"help": "Read teacher targets from this cache (built by `dcclip teacher-cache` with the same "
                  "config) instead of running the teacher."},
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
        if self.distill_target == "feature_maps" and self.embedding_loss_weight == 0 and self.ddp_find_unused_parameters is None:
            # Without the embedding loss, blocks after the last distilled layer and the towers' final norms get no
            # gradient; DDP must be told, or it waits for them forever.
            self.ddp_find_unused_parameters = True


@dataclass
class DistillationPlan:
    """What start-up decided: the layer pairs of each tower (None: tower not distilled) and how text is compared."""

    image_pairs: list[LayerPair] | None
    text_pairs: list[LayerPair] | None
    text_token_by_token: bool

    @property
    def teacher_image_layers(self) -> list[int]:
        return [pair.teacher for pair in self.image_pairs or []]

    @property
    def teacher_text_layers(self) -> list[int]:
        return [pair.teacher for pair in self.text_pairs or []]


def plan_distillation(
    args: DistillationConfig, layout: TeacherLayout, student_config: DCCLIPConfig, shared_tokenizer: bool
) -> DistillationPlan:
    """Check the run's options against the teacher and student shapes and resolve the layer mappings.

    Everything here fails at start-up, before weights or data load, with a message naming the option to fix.
    """
    distil_image, distil_text = args.image_data is not None, args.text_data is not None
    if not (distil_image or distil_text):
        raise ValueError("stage 1 needs --image_data, --text_data or both (one data spec per tower)")
    if args.distill_target == "logits" and not (distil_image and distil_text):
        raise ValueError("distill_target='logits' scores images against texts: give both --image_data and --text_data")
    uses_maps = args.distill_target == "feature_maps"
    image_pairs = text_pairs = None
    if distil_image:
        image_pairs = []
        if uses_maps:
            num_student = len(student_hidden_widths(student_config)[0]) - 1
            image_pairs = resolve_layer_mapping(
                "image", args.student_image_layers, args.teacher_image_layers, num_student,
                layout.num_image_layers, args.max_distilled_layers, layout.cached_image_layers,
            )  # fmt: skip
    if distil_text:
        text_pairs = []
        if uses_maps:
            text_pairs = resolve_layer_mapping(
                "text", args.student_text_layers, args.teacher_text_layers,
                int(student_config.text_config.num_hidden_layers), layout.num_text_layers,
                args.max_distilled_layers, layout.cached_text_layers,
            )  # fmt: skip
    token_by_token = shared_tokenizer and not layout.text_pooled
    if distil_text and uses_maps and not token_by_token:
        reason = "the teacher cache stores pooled text maps" if shared_tokenizer else "student and teacher tokenizers differ"
        logger.warning(
            "%s: text feature maps are distilled as vectors mean-pooled over real tokens, NOT token by token", reason
        )
    logger.info("stage-1 layer mapping (student -> teacher): image %s, text %s", image_pairs, text_pairs)
    return DistillationPlan(image_pairs=image_pairs, text_pairs=text_pairs, text_token_by_token=token_by_token)


class TeacherFrozenCheck(TrainerCallback):
    """Fingerprints the teacher's weights before and after training and fails the run if they changed.

    The digests are written to `output_dir/teacher_digest.json`. Under ZeRO-3 every rank takes part (gathers).
    """

    def __init__(self, teacher: DistillationTeacher, output_dir: str):
        self.teacher = teacher
        self.output_dir = output_dir
        self.before: str | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.before = teacher_weights_digest(self.teacher.model)

    def on_train_end(self, args, state, control, **kwargs):
        after = teacher_weights_digest(self.teacher.model)
        if state.is_world_process_zero:
            os.makedirs(self.output_dir, exist_ok=True)
            with open(os.path.join(self.output_dir, TEACHER_DIGEST_FILE), "w", encoding="utf-8") as file:
                json.dump({"before": self.before, "after": after}, file, indent=2)
        if after != self.before:
            raise RuntimeError("the teacher's weights changed during stage 1; the teacher must stay frozen")
        logger.info("teacher weights unchanged (sha256 %s)", after)


class DistillationTrainer(Trainer):
    """Trains `StudentWithAdapters` to imitate a frozen teacher (live, or read from a teacher cache).

    Args:
        model: the student with its adapters (`feature_adapters.StudentWithAdapters`).
        args: a `DistillationConfig`.
        plan: the layer mapping and text comparison mode from `plan_distillation`.
        teacher: the live teacher; None when the batches carry cached targets.
        cached_logit_scale: the teacher's log temperature stored in the cache (logit distillation from a cache).
        kwargs: the usual `Trainer` arguments (`train_dataset`, `data_collator`, `processing_class`, ...).
    """

    def __init__(
        self,
        model,
        args: DistillationConfig,
        plan: DistillationPlan,
        teacher: DistillationTeacher | None = None,
        cached_logit_scale: float | None = None,
        **kwargs,
    ):
        super().__init__(model=model, args=args, **kwargs)
        self.plan = plan
        self.teacher = teacher
        self.cached_logit_scale = cached_logit_scale
        self._loss_sums: dict[str, float] = {}
        self._loss_steps = 0
        if teacher is not None:
            teacher.place(self.accelerator.state.deepspeed_plugin if self.is_deepspeed_enabled else None, self.args.device)
            self.add_callback(TeacherFrozenCheck(teacher, args.output_dir))

    # ----- loss --------------------------------------------------------------------------------------------------

    def _teacher_targets(self, inputs: dict) -> TeacherTargets:
        # The collator adds the teacher's own token ids only when its tokenizer differs from the student's.
        text_ids = inputs.get("teacher_input_ids", inputs.get("input_ids"))
        text_mask = inputs.get("teacher_attention_mask", inputs.get("attention_mask"))
        if self.teacher is None:
            logit_scale = self.cached_logit_scale
            return TeacherTargets(
                image_maps=inputs.get("cached_image_maps"),
                text_maps=inputs.get("cached_text_maps"),
                text_attention_mask=text_mask,
                image_embeds=inputs.get("cached_image_embeds"),
                text_embeds=inputs.get("cached_text_embeds"),
                logit_scale=None if logit_scale is None else torch.tensor(logit_scale, device=self.args.device),
            )
        return self.teacher(
            pixel_values=inputs.get("teacher_pixel_values"),
            input_ids=text_ids,
            attention_mask=text_mask,
            image_layers=self.plan.teacher_image_layers,
            text_layers=self.plan.teacher_text_layers,
        )

    def _standardized(self, maps: list[torch.Tensor], channel_dim: int) -> list[torch.Tensor]:
        maps = [m.float() for m in maps]
        if self.args.standardize_teacher_maps:
            maps = [standardize_channels(m, channel_dim) for m in maps]
        return maps

    def distillation_losses(
        self, student: StudentFeatures, teacher: TeacherTargets, attention_mask: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """The weighted loss parts of one batch, by name; the training loss is their sum."""
        args = self.args
        parts: dict[str, torch.Tensor] = {}
        if args.distill_target == "logits":
            student_logits = clip_logits(student.image_embeds.float(), student.text_embeds.float(), student.logit_scale.float())
            teacher_logits = clip_logits(teacher.image_embeds.float(), teacher.text_embeds.float(), teacher.logit_scale.float())
            parts["logit_loss"] = symmetric_logit_distillation_loss(student_logits, teacher_logits, args.logit_temperature)
            return parts
        if student.image_maps is not None:
            targets = self._standardized(teacher.image_maps, channel_dim=1)
            parts["image_feature_loss"] = args.feature_loss_weight * feature_map_loss(
                [m.float() for m in student.image_maps], targets, args.smooth_l1_beta
            )
        if student.text_maps is not None:
            maps, mask = teacher.text_maps, attention_mask
            if not self.plan.text_token_by_token:
                maps = [masked_mean_tokens(m.float(), teacher.text_attention_mask) if m.dim() == 3 else m for m in maps]
                mask = None
            parts["text_feature_loss"] = args.feature_loss_weight * feature_map_loss(
                [m.float() for m in student.text_maps], self._standardized(maps, channel_dim=-1),
                args.smooth_l1_beta, token_mask=mask,
            )  # fmt: skip
        for tower in ("image", "text"):
            student_embeds = getattr(student, f"{tower}_embeds")
            if student_embeds is not None:
                parts[f"{tower}_embedding_loss"] = args.embedding_loss_weight * embedding_distillation_loss(
                    student_embeds.float(), getattr(teacher, f"{tower}_embeds").float()
                )
        return parts

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Teacher targets (live or cached) vs the student's adapted outputs; returns the sum of the loss parts."""
        targets = self._teacher_targets(inputs)
        student = model(
            pixel_values=inputs.get("pixel_values"),
            input_ids=inputs.get("input_ids"),
            attention_mask=inputs.get("attention_mask"),
        )
        parts = self.distillation_losses(student, targets, inputs.get("attention_mask"))
        if not parts:
            raise ValueError("this batch produced no stage-1 loss: check image_data / text_data and distill_target")
        loss = torch.stack(list(parts.values())).sum()
        if model.training:
            for name, value in parts.items():
                self._loss_sums[name] = self._loss_sums.get(name, 0.0) + float(value.detach())
            self._loss_steps += 1
        return (loss, student) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the mean of each loss part since the last log (this rank's batches) to the training logs."""
        if "loss" in logs and self._loss_steps:
            logs.update({name: round(total / self._loss_steps, 6) for name, total in self._loss_sums.items()})
            self._loss_sums, self._loss_steps = {}, 0
        super().log(logs, start_time)

    # ----- saving ------------------------------------------------------------------------------------------------

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Checkpoints (internal calls) keep student + adapters so that resume restores both; an explicit call
        exports the student alone as a `DCCLIPModel` folder with its processor, loadable with `AutoModel`."""
        if _internal_call:
            super().save_model(output_dir, _internal_call=True)
            return
        output_dir = output_dir or self.args.output_dir
        # Under ZeRO-3 the full state dict is gathered collectively: every rank must call this.
        if self.is_deepspeed_enabled:
            state_dict = self.accelerator.get_state_dict(self.deepspeed)
        else:
            state_dict = self.accelerator.unwrap_model(self.model).state_dict()
        if not self.args.should_save:
            return
        prefix = "student."
        student_state = {name[len(prefix) :]: value for name, value in state_dict.items() if name.startswith(prefix)}
        student = self.accelerator.unwrap_model(self.model).student
        student.save_pretrained(output_dir, state_dict=student_state)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        logger.info("distilled student saved to %s (adapters left out)", output_dir)
