"""Stage-1 distillation losses, as plain functions: feature maps, final embeddings and image-text logits.

The Trainer only wires these (`DistillationTrainer.compute_loss`); each is unit-tested against hand-computed values in
`tests/distill/test_distillation_losses.py`. Every function takes tensors the caller has already brought to matching
shapes (adapters, resampling and pooling live in `feature_adapters.py`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


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
