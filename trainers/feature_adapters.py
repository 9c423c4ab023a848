"""Student feature maps for stage 1: which student layer learns from which teacher layer, and the 1x1 adapters that
bring each student map to the teacher's width and grid.

Layer indices are positions in the tower's `hidden_states` tuple as transformers returns it with
`output_hidden_states=True`: for most backbones index 0 is the embedding (stem) output and index i the output of block
(CNN: stage) i, so the last index equals the number of blocks.

The adapters are training-only: they live in `StudentWithAdapters` next to the student, are saved in Trainer
checkpoints (so resume restores them), and never enter the exported `DCCLIPModel` folder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from transformers.integrations import is_deepspeed_zero3_enabled
from transformers.utils import ModelOutput

from modeling_dcclip import DCCLIPConfig, DCCLIPModel

if TYPE_CHECKING:
    from .teacher import TeacherLayout

DISTILL_TARGETS: tuple[str, ...] = ("feature_maps", "embeddings", "logits")


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


def masked_mean_tokens(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean over the real tokens of `(batch, tokens, channels)`, ignoring padding: `(batch, channels)`."""
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


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


# ----- adapters -----------------------------------------------------------------------------------------------------


class SpatialAdapter(nn.Module):
    """Student image map (CNN `(B, C, H, W)` or ViT tokens) -> teacher width and grid: resample, then a 1x1 Conv2d.

    Both steps are linear and act on different axes (positions vs channels; resampling weights sum to one), so their
    order does not change the result; resampling first is cheaper when the student grid is finer than the teacher's.
    Downsampling is antialiased (area-weighted) so that fine student maps are averaged, not subsampled.
    """

    def __init__(self, student_channels: int, teacher_channels: int, teacher_grid: tuple[int, int]):
        super().__init__()
        self.teacher_grid = tuple(teacher_grid)
        self.conv = nn.Conv2d(student_channels, teacher_channels, kernel_size=1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        spatial = as_spatial_map(hidden)
        if tuple(spatial.shape[-2:]) != self.teacher_grid:
            spatial = F.interpolate(spatial, size=self.teacher_grid, mode="bilinear", align_corners=False, antialias=True)
        return self.conv(spatial)


class TokenAdapter(nn.Module):
    """Student token map `(B, T, C)` (or pooled `(B, C)`) -> teacher width: a per-token linear map (= 1x1 Conv1d)."""

    def __init__(self, student_channels: int, teacher_channels: int):
        super().__init__()
        self.linear = nn.Linear(student_channels, teacher_channels)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden)


def student_hidden_widths(config: DCCLIPConfig) -> tuple[list[int], list[int]]:
    """Channel width of every image and text hidden state of a student built from `config`.

    The image tower is probed with one forward pass on the meta device (shapes only: no memory, no compute, no
    weights needed, so it also works before DeepSpeed partitions the real model); text encoders keep one width.
    """
    with torch.device("meta"):
        probe = DCCLIPModel(config)
        size = config.image_size
        pixels = torch.zeros(1, int(getattr(config.vision_config, "num_channels", 3)), size, size)
        hidden_states = probe.vision_model(pixel_values=pixels, output_hidden_states=True).hidden_states
    image_widths = [h.shape[1] if h.dim() == 4 else h.shape[-1] for h in hidden_states]
    text_widths = [int(config.text_config.hidden_size)] * (int(config.text_config.num_hidden_layers) + 1)
    return image_widths, text_widths


@dataclass
class StudentFeatures(ModelOutput):
    """What the student side of stage 1 produces for one batch, already in the teacher's widths and grids.

    Attributes:
        image_maps: adapted image feature maps `(B, C_teacher, h, w)`, one per image layer pair.
        text_maps: adapted text maps, `(B, T, C_teacher)` per pair (token by token) or `(B, C_teacher)` (pooled).
        image_embeds / text_embeds: projected embeddings, mapped to the teacher's projection width when it differs.
        logit_scale: the student's log temperature (clamped as in `DCCLIPModel.forward`), for logit distillation.
    """

    image_maps: list[torch.Tensor] | None = None
    text_maps: list[torch.Tensor] | None = None
    image_embeds: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    logit_scale: torch.Tensor | None = None


class StudentWithAdapters(nn.Module):
    """The module stage 1 trains: the student `DCCLIPModel` plus its training-only adapters.

    Only the parts some loss reaches stay trainable: the towers being distilled, the projections when an
    embedding or logit loss is on, `logit_scale` only for logit distillation. Frozen parts are skipped by the
    optimizer and DDP does not wait for their gradients.

    Args:
        student: the student model.
        distill_target: "feature_maps", "embeddings" or "logits".
        teacher_layout: widths and grids of the teacher's hidden states and embeddings.
        image_pairs / text_pairs: the layer mapping of each tower; None leaves that tower out of training.
        text_token_by_token: False when student and teacher tokenizers differ: text maps are then mean-pooled over
            real tokens before the adapter.
        embedding_loss: whether an embedding loss is computed (it needs the projections, and an adapter on them
            when the student's projection width differs from the teacher's).
    """

    def __init__(
        self,
        student: DCCLIPModel,
        distill_target: str,
        teacher_layout: TeacherLayout,
        image_pairs: list[LayerPair] | None,
        text_pairs: list[LayerPair] | None,
        text_token_by_token: bool = True,
        embedding_loss: bool = True,
    ):
        super().__init__()
        if distill_target not in DISTILL_TARGETS:
            raise ValueError(f"distill_target must be one of {DISTILL_TARGETS}, got {distill_target!r}")
        self.student = student
        # The Trainer's DeepSpeed set-up sizes its "auto" buckets from `model.config` (the text tower's width).
        self.config = student.config
        self.distill_target = distill_target
        self.distil_image = image_pairs is not None
        self.distil_text = text_pairs is not None
        self.image_pairs = list(image_pairs or [])
        self.text_pairs = list(text_pairs or [])
        self.text_token_by_token = text_token_by_token
        uses_maps = distill_target == "feature_maps"
        self.uses_embeddings = distill_target in ("embeddings", "logits") or (uses_maps and embedding_loss)

        image_widths, text_widths = student_hidden_widths(student.config)
        self.image_adapters = nn.ModuleList(
            SpatialAdapter(image_widths[p.student], teacher_layout.image_width, teacher_layout.image_grid)
            for p in (self.image_pairs if uses_maps else [])
        )
        self.text_adapters = nn.ModuleList(
            TokenAdapter(text_widths[p.student], teacher_layout.text_width)
            for p in (self.text_pairs if uses_maps else [])
        )
        # One adapter shared by both towers keeps the student's image-text geometry: both embeddings go through the
        # same linear map into the teacher's space. Logit distillation compares similarities, so it needs none.
        projection_dim = student.config.projection_dim
        self.embedding_adapter = (
            nn.Linear(projection_dim, teacher_layout.projection_dim, bias=False)
            if self.uses_embeddings and distill_target != "logits" and projection_dim != teacher_layout.projection_dim
            else None
        )
        self._freeze_unreached_parameters()
        if distill_target == "logits" and is_deepspeed_zero3_enabled():
            # ZeRO-3 gathers a module's own parameters when its forward runs; logit_scale is read from here, not
            # from DCCLIPModel.forward, so it must be gathered with this module.
            import deepspeed

            deepspeed.zero.register_external_parameter(self, student.logit_scale)

    def _freeze_unreached_parameters(self) -> None:
        student = self.student
        student.vision_model.requires_grad_(self.distil_image)
        student.text_model.requires_grad_(self.distil_text)
        student.visual_projection.requires_grad_(self.distil_image and self.uses_embeddings)
        student.text_projection.requires_grad_(self.distil_text and self.uses_embeddings)
        student.logit_scale.requires_grad_(self.distill_target == "logits")

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> StudentFeatures:
        """Run the towers that have inputs and return adapted maps and embeddings (see `StudentFeatures`)."""
        features = StudentFeatures()
        if pixel_values is not None and self.distil_image:
            embeds, tower = self.student.encode_image(pixel_values, output_hidden_states=bool(self.image_adapters))
            if self.image_adapters:
                features.image_maps = [
                    adapter(tower.hidden_states[pair.student])
                    for pair, adapter in zip(self.image_pairs, self.image_adapters)
                ]
            if self.uses_embeddings:
                features.image_embeds = self._to_teacher_space(embeds)
        if input_ids is not None and self.distil_text:
            embeds, tower = self.student.encode_text(
                input_ids, attention_mask, output_hidden_states=bool(self.text_adapters)
            )
            if self.text_adapters:
                maps = [tower.hidden_states[pair.student] for pair in self.text_pairs]
                if not self.text_token_by_token:
                    maps = [masked_mean_tokens(hidden, attention_mask) for hidden in maps]
                features.text_maps = [adapter(hidden) for hidden, adapter in zip(maps, self.text_adapters)]
            if self.uses_embeddings:
                features.text_embeds = self._to_teacher_space(embeds)
        if self.distill_target == "logits":
            features.logit_scale = self.student.logit_scale.clamp(max=self.student.config.max_logit_scale)
        return features

    def _to_teacher_space(self, embeds: torch.Tensor) -> torch.Tensor:
        return embeds if self.embedding_adapter is None else self.embedding_adapter(embeds)
