"""Stage-1 distillation losses, as plain functions: feature maps, final embeddings and image-text logits, and the
sum that stage 1 optimises (`distillation_loss_parts`, from the student's `StudentFeatures` and the teacher's
`TeacherTargets`).

The Trainer only wires these (`DistillationTrainer.compute_loss`); each is unit-tested against hand-computed values in
`tests/distill/test_distillation_losses.py`. The student's maps arrive already in the teacher's widths and grids
(adapters, resampling and pooling live in `student/adapters.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from dcclip.trainers.teacher.geometry import masked_segment_means

if TYPE_CHECKING:
    from dcclip.trainers.student.adapters import StudentFeatures
    from dcclip.trainers.teacher.targets import TeacherTargets


def _check_same_shape(name: str, student: torch.Tensor, teacher: torch.Tensor) -> None:
    if student.shape != teacher.shape:
        raise ValueError(
            f"{name}: student shape {tuple(student.shape)} != teacher shape {tuple(teacher.shape)}; "
            "adapt the student output to the teacher's width and grid first"
        )


def standardize_channels(feature_map: torch.Tensor, channel_dim: int) -> torch.Tensor:
    """Zero mean, unit variance over the channels of every position (a layer norm without learned scale or shift).

    Applied to teacher maps: transformer residual streams carry a few channels hundreds of times larger than the
    rest; standardised targets give every position, channel and layer pair a comparable scale.
    """
    moved = feature_map.movedim(channel_dim, -1)
    normalised = F.layer_norm(moved, moved.shape[-1:], eps=1e-6)
    return normalised.movedim(-1, channel_dim)


def masked_smooth_l1(
    student: torch.Tensor, teacher: torch.Tensor, beta: float = 1.0, token_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """SmoothL1 between one student map and one teacher map, averaged over every element.

    With `token_mask` (shape `(batch, tokens)`, 1 = real token, 0 = padding) the maps are `(batch, tokens, channels)`
    and the mean runs over real tokens only, so padding neither adds loss nor dilutes it.
    """
    _check_same_shape("masked_smooth_l1", student, teacher)
    if token_mask is None:
        return F.smooth_l1_loss(student, teacher, beta=beta)
    if token_mask.shape != student.shape[:2]:
        raise ValueError(
            f"token_mask shape {tuple(token_mask.shape)} must be (batch, tokens) = {tuple(student.shape[:2])}"
        )
    per_element = F.smooth_l1_loss(student, teacher, beta=beta, reduction="none")
    mask = token_mask.to(per_element.dtype).unsqueeze(-1)
    # Divide by (real tokens x channels): the same per-element mean as the unmasked case.
    return (per_element * mask).sum() / (mask.sum() * student.shape[-1]).clamp(min=1.0)


def feature_map_loss(
    student_maps: Sequence[torch.Tensor],
    teacher_maps: Sequence[torch.Tensor],
    beta: float = 1.0,
    token_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over distilled layer pairs of the SmoothL1 between adapted student maps and teacher maps.

    Args:
        student_maps: adapted student feature maps, one per pair, each the same shape as its teacher map.
        teacher_maps: teacher feature maps in the same order.
        beta: SmoothL1 threshold between the quadratic and the linear regime; the linear regime keeps the few
            very large channels of transformer residual streams from dominating the gradient.
        token_mask: for token sequences `(batch, tokens, channels)`, a `(batch, tokens)` mask of real tokens.

    Averaging (not summing) over pairs keeps the loss scale independent of how many layers are distilled.
    """
    if len(student_maps) != len(teacher_maps):
        raise ValueError(f"feature_map_loss: {len(student_maps)} student maps but {len(teacher_maps)} teacher maps")
    if not student_maps:
        raise ValueError("feature_map_loss: no feature maps to distil")
    losses = [masked_smooth_l1(s, t, beta, token_mask) for s, t in zip(student_maps, teacher_maps)]
    return torch.stack(losses).mean()


def embedding_distillation_loss(student_embeds: torch.Tensor, teacher_embeds: torch.Tensor) -> torch.Tensor:
    """Mean cosine distance `1 - cos(student, teacher)` between projected embeddings, shape `(batch, dim)`.

    Cosine, not SmoothL1: CLIP scores image-text pairs by the cosine of L2-normalised embeddings, so only the
    direction of an embedding matters downstream; matching the norm too would spend student capacity on a quantity
    that is discarded at inference. Both inputs must already live in the same space (same width).
    """
    _check_same_shape("embedding_distillation_loss", student_embeds, teacher_embeds)
    return (1.0 - F.cosine_similarity(student_embeds, teacher_embeds, dim=-1)).mean()


def logit_distillation_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """KL(teacher || student) between row-wise softmax distributions of similarity logits, at `temperature`.

    Each row (e.g. one image scored against every text of the batch) is one distribution. The KL is averaged over
    rows and multiplied by `temperature**2`, so gradient magnitudes stay comparable across temperatures (Hinton et
    al., 2015).
    """
    _check_same_shape("logit_distillation_loss", student_logits, teacher_logits)
    if temperature <= 0:
        raise ValueError(f"logit_distillation_loss: temperature must be positive, got {temperature}")
    student_log_probs = F.log_softmax(student_logits / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(teacher_logits / temperature, dim=-1)
    kl = F.kl_div(student_log_probs, teacher_log_probs, reduction="batchmean", log_target=True)
    return kl * temperature**2


def clip_logits(image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP similarity logits `(n_images, n_texts)`: `exp(logit_scale)` times the cosine of the embeddings."""
    image_embeds = F.normalize(image_embeds, dim=-1)
    text_embeds = F.normalize(text_embeds, dim=-1)
    return logit_scale.exp() * image_embeds @ text_embeds.t()


def symmetric_logit_distillation_loss(
    student_logits_per_image: torch.Tensor, teacher_logits_per_image: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Mean of the image->text and text->image logit distillation losses, as CLIP's own loss is symmetric."""
    image_to_text = logit_distillation_loss(student_logits_per_image, teacher_logits_per_image, temperature)
    text_to_image = logit_distillation_loss(student_logits_per_image.t(), teacher_logits_per_image.t(), temperature)
    return (image_to_text + text_to_image) / 2.0


# ----- stage 1's loss ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LossWeights:
    """How stage 1 weighs and shapes its loss parts (the `DistillationConfig` fields of the same names).

    Attributes:
        feature: weight of the feature-map SmoothL1 loss.
        embedding: weight of the embedding (cosine) loss.
        smooth_l1_beta: SmoothL1 threshold between the quadratic and the linear regime.
        standardize_teacher_maps: standardise every teacher feature vector over its channels first.
        logit_temperature: softmax temperature of logit distillation.
    """

    feature: float = 1.0
    embedding: float = 1.0
    smooth_l1_beta: float = 1.0
    standardize_teacher_maps: bool = True
    logit_temperature: float = 1.0


def _teacher_maps(maps: Sequence[torch.Tensor], channel_dim: int, standardize: bool) -> list[torch.Tensor]:
    maps = [m.float() for m in maps]
    return [standardize_channels(m, channel_dim) for m in maps] if standardize else maps


def feature_distillation_loss(
    student: StudentFeatures,
    teacher: TeacherTargets,
    weights: LossWeights,
    token_mask: torch.Tensor | None = None,
    text_token_by_token: bool = True,
    text_segments: int = 1,
) -> dict[str, torch.Tensor]:
    """The weighted loss parts of feature-map (and embedding) distillation, by name; stage 1 optimises their sum.

    Args:
        student: the adapted student outputs; a part is computed for each tower whose maps / embeddings it holds.
        teacher: the teacher's targets for the same batch.
        weights: loss weights and shape.
        token_mask: the student's `(batch, tokens)` mask of real tokens (text maps compared token by token),
            narrowed to `teacher.text_target_mask` where a cache kept only some tokens of each caption.
        text_token_by_token: False when student and teacher tokenizers differ (or a cache stores pooled text): the
            teacher's text maps are then pooled into `text_segments` means over runs of its own real tokens, as the
            student's are over the student's (a pooled cache's maps come pooled already).
        text_segments: see `text_token_by_token`.
    """
    parts: dict[str, torch.Tensor] = {}
    if student.image_maps is not None:
        targets = _teacher_maps(teacher.image_maps, 1, weights.standardize_teacher_maps)
        parts["image_feature_loss"] = weights.feature * feature_map_loss(
            [m.float() for m in student.image_maps], targets, weights.smooth_l1_beta
        )
    if student.text_maps is not None:
        maps, mask = teacher.text_maps, token_mask
        targets_at = teacher.text_target_mask  # a cache that kept only some tokens: compare those alone
        if not text_token_by_token:
            if not teacher.text_maps_pooled:
                over = teacher.text_attention_mask if targets_at is None else targets_at
                maps = [masked_segment_means(m.float(), over, text_segments) for m in maps]
            mask = None
        elif targets_at is not None:
            mask = targets_at.to(mask.device) & mask.bool() if mask is not None else targets_at
        parts["text_feature_loss"] = weights.feature * feature_map_loss(
            [m.float() for m in student.text_maps], _teacher_maps(maps, -1, weights.standardize_teacher_maps),
            weights.smooth_l1_beta, token_mask=mask,
        )  # fmt: skip
    for tower in ("image", "text"):
        student_embeds = getattr(student, f"{tower}_embeds")
        if student_embeds is not None:
            parts[f"{tower}_embedding_loss"] = weights.embedding * embedding_distillation_loss(
                student_embeds.float(), getattr(teacher, f"{tower}_embeds").float()
            )
    return parts


def distillation_loss_parts(
    distill_target: str,
    student: StudentFeatures,
    teacher: TeacherTargets,
    weights: LossWeights,
    token_mask: torch.Tensor | None = None,
    text_token_by_token: bool = True,
    text_segments: int = 1,
) -> dict[str, torch.Tensor]:
    """Stage 1's loss parts for `distill_target`: `"logits"` compares image-text similarities (symmetric KL), the
    others feature maps and / or embeddings (`feature_distillation_loss`). Raises when no part can be computed."""
    if distill_target == "logits":
        student_logits = clip_logits(student.image_embeds.float(), student.text_embeds.float(), student.logit_scale.float())
        teacher_logits = clip_logits(teacher.image_embeds.float(), teacher.text_embeds.float(), teacher.logit_scale.float())
        parts = {"logit_loss": symmetric_logit_distillation_loss(student_logits, teacher_logits, weights.logit_temperature)}
    else:
        parts = feature_distillation_loss(student, teacher, weights, token_mask, text_token_by_token, text_segments)
    if not parts:
        raise ValueError("this batch produced no stage-1 loss: check image_data / text_data and distill_target")
    return parts
