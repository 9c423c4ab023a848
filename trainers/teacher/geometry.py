"""Feature-map geometry shared by teacher and student: where a ViT's tokens sit on its patch grid, pooling over real
tokens, and which student layer learns from which teacher layer (the stage-1 layer mapping).

Layer indices are positions in a tower's `hidden_states` tuple as transformers returns it with
`output_hidden_states=True`: for most backbones index 0 is the embedding (stem) output and index i the output of block
(CNN: stage) i, so the last index equals the number of blocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# ----- feature map layout -------------------------------------------------------------------------------------------


def tokens_to_grid(tokens: torch.Tensor) -> torch.Tensor:
    """ViT tokens `(batch, n, channels)` -> spatial map `(batch, channels, g, g)`.

    The patch tokens of a square image form the largest square `g*g <= n`; the `n - g*g` leading tokens (CLS, and
    distillation or register tokens where a model has them) carry no position and are dropped.
    """
    if tokens.dim() != 3:
        raise ValueError(f"tokens_to_grid expects (batch, tokens, channels), got shape {tuple(tokens.shape)}")
    batch, count, channels = tokens.shape
    side = math.isqrt(count)
    prefix = count - side * side
    if side == 0 or prefix > side:
        raise ValueError(f"cannot read {count} tokens as prefix tokens + a square patch grid")
    return tokens[:, prefix:].transpose(1, 2).reshape(batch, channels, side, side)


def as_spatial_map(hidden: torch.Tensor) -> torch.Tensor:
    """An image-tower hidden state as `(batch, channels, height, width)`: CNN maps as they are, ViT tokens on their grid."""
    if hidden.dim() == 4:
        return hidden
    return tokens_to_grid(hidden)


def masked_segment_means(hidden: torch.Tensor, attention_mask: torch.Tensor, segments: int) -> torch.Tensor:
    """Means of `segments` contiguous runs of the real tokens of `(batch, tokens, channels)`: `(batch, segments,
    channels)`. Segment s of a text with n real tokens covers its real tokens floor(s n / S) .. ceil((s + 1) n / S) - 1,
    so the runs are in relative position (two tokenizers of one caption split it alike) and none is empty: where S
    does not divide n, neighbours share a token. One segment is the mean over all real tokens."""
    if segments < 1:
        raise ValueError(f"segments must be >= 1, got {segments}")
    real = attention_mask.bool()
    rank = real.long().cumsum(dim=1) - 1  # position of each real token among its text's real tokens
    count = real.sum(dim=1, keepdim=True).clamp(min=1).unsqueeze(1)  # (batch, 1, 1)
    s = torch.arange(segments, device=hidden.device).view(1, segments, 1)
    start, end = s * count // segments, ((s + 1) * count + segments - 1) // segments
    rank = rank.unsqueeze(1)
    member = (rank >= start) & (rank < end) & real.unsqueeze(1)  # (batch, segments, tokens)
    weights = member.to(hidden.dtype)
    weights = weights / weights.sum(dim=-1, keepdim=True).clamp(min=1.0)
    return weights @ hidden


# ----- layer mapping ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerPair:
    """One distilled pair: the student's hidden state at index `student` learns the teacher's at index `teacher`."""

    student: int
    teacher: int


def default_layer_mapping(num_student_layers: int, num_teacher_layers: int, max_pairs: int) -> list[LayerPair]:
    """Evenly spaced student blocks, each paired with the teacher block at the same relative depth, last to last.

    `min(max_pairs, num_student_layers)` student blocks are taken at depths `ceil(n * j / k)`, j = 1..k, and block
    `s` of `n` learns teacher block `ceil(n_teacher * s / n)`. Matching relative depth pairs features of similar
    abstraction (early edges and textures with early teacher layers, semantics with late ones); pairing the last
    blocks makes the student's final representation, which the projection reads, imitate the teacher's. The cap
    bounds the adapter parameters and the teacher targets held per batch (and stored per sample in a cache).
    Example: a 4-stage CNN and a 24-layer ViT-L teacher give stages 1, 2, 3, 4 -> layers 6, 12, 18, 24.
    """
    if num_student_layers < 1 or num_teacher_layers < 1:
        raise ValueError("default_layer_mapping needs at least one block in each tower")
    count = min(max_pairs, num_student_layers)
    students = sorted({math.ceil(num_student_layers * j / count) for j in range(1, count + 1)})
    return [LayerPair(s, math.ceil(num_teacher_layers * s / num_student_layers)) for s in students]


def resolve_layer_mapping(
    tower: str,
    student_layers: list[int] | None,
    teacher_layers: list[int] | None,
    num_student_layers: int,
    num_teacher_layers: int,
    max_pairs: int,
    cached_teacher_layers: list[int] | None = None,
) -> list[LayerPair]:
    """Check a configured mapping (or build the default) and return its pairs; errors name the option to fix.

    Args:
        tower: "image" or "text", used in messages and option names (`student_image_layers`, ...).
        student_layers / teacher_layers: configured indices, or None. Student layers alone get teachers at the same
            relative depth; teacher layers need student layers of the same length.
        num_student_layers / num_teacher_layers: the last valid index of each tower's `hidden_states`.
        max_pairs: cap of the default mapping.
        cached_teacher_layers: when targets come from a teacher cache, the teacher layers it stores.
    """
    if teacher_layers is not None and student_layers is None:
        raise ValueError(f"teacher_{tower}_layers is set but student_{tower}_layers is not: give both, same length")
    if student_layers is None:
        pairs = default_layer_mapping(num_student_layers, num_teacher_layers, max_pairs)
    else:
        if not student_layers:
            raise ValueError(f"student_{tower}_layers is empty")
        for name, layers, last in (
            (f"student_{tower}_layers", student_layers, num_student_layers),
            (f"teacher_{tower}_layers", teacher_layers or [], num_teacher_layers),
        ):
            bad = [index for index in layers if not 0 <= index <= last]
            if bad:
                raise ValueError(
                    f"{name}: index {bad} out of range; the {name.split('_')[0]} {tower} tower has hidden states "
                    f"0..{last} (0 = embeddings, {last} = last block)"
                )
        if teacher_layers is None:
            teacher_layers = [math.ceil(num_teacher_layers * s / num_student_layers) for s in student_layers]
        if len(teacher_layers) != len(student_layers):
            raise ValueError(
                f"student_{tower}_layers has {len(student_layers)} entries but teacher_{tower}_layers has "
                f"{len(teacher_layers)}; the mapping pairs them one to one"
            )
        pairs = [LayerPair(s, t) for s, t in zip(student_layers, teacher_layers)]
    if cached_teacher_layers is not None:
        missing = sorted({p.teacher for p in pairs} - set(cached_teacher_layers))
        if missing:
            raise ValueError(
                f"teacher {tower} layers {missing} are not in the teacher cache (it stores {cached_teacher_layers}); "
                "rebuild the cache with this configuration or choose cached layers"
            )
    return pairs
