"""The student side of stage 1: which student layers learn from which teacher layers (`plan_distillation`), and the
module stage 1 trains, `StudentWithAdapters`: the student plus 1x1 adapters that bring each student map to the
teacher's width and grid, returning `StudentFeatures`.

The adapters are training-only: they live in `StudentWithAdapters` next to the student, are saved in Trainer
checkpoints (so resume restores them), and never enter the exported `DCCLIPModel` folder.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from transformers.integrations import is_deepspeed_zero3_enabled
from transformers.utils import ModelOutput

from modeling_dcclip import DCCLIPConfig, DCCLIPModel

from dcclip.trainers.teacher.geometry import LayerPair, as_spatial_map, masked_segment_means, resolve_layer_mapping

if TYPE_CHECKING:
    from dcclip.trainers.distillation_config import DistillationConfig
    from dcclip.trainers.teacher.targets import TeacherLayout

logger = logging.getLogger(__name__)

DISTILL_TARGETS: tuple[str, ...] = ("feature_maps", "embeddings", "logits")


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
            # In float32: the antialiased kernel has no bfloat16 implementation on CPU, and area weights summed in
            # bfloat16 lose precision anyway; the 1x1 conv then runs in the autocast dtype again.
            resized = F.interpolate(
                spatial.float(), size=self.teacher_grid, mode="bilinear", align_corners=False, antialias=True
            )
            spatial = resized.to(spatial.dtype)
        return self.conv(spatial)


class TokenAdapter(nn.Module):
    """Student token map `(B, T, C)` (or pooled `(B, segments, C)`) -> teacher width: a per-token linear map (= 1x1
    Conv1d)."""

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
    image_widths = [h.shape[1] if h.dim() == 4 else h.shape[-1] for h in _image_hidden_states_on_meta(config)]
    text_widths = [int(config.text_config.hidden_size)] * (int(config.text_config.num_hidden_layers) + 1)
    return image_widths, text_widths


def student_image_grids(config: DCCLIPConfig) -> list[tuple[int, int]]:
    """The spatial grid `(height, width)` of every image hidden state of a student built from `config` (ViT tokens
    counted on their patch grid), probed on the meta device like `student_hidden_widths`."""
    return [tuple(as_spatial_map(h).shape[-2:]) for h in _image_hidden_states_on_meta(config)]


def _image_hidden_states_on_meta(config: DCCLIPConfig) -> tuple[torch.Tensor, ...]:
    with torch.device("meta"):
        probe = DCCLIPModel(config)
        size = config.image_size
        pixels = torch.zeros(1, int(getattr(config.vision_config, "num_channels", 3)), size, size)
        return probe.vision_model(pixel_values=pixels, output_hidden_states=True).hidden_states


@dataclass
class StudentFeatures(ModelOutput):
    """What the student side of stage 1 produces for one batch, already in the teacher's widths and grids.

    Attributes:
        image_maps: adapted image feature maps `(B, C_teacher, h, w)`, one per image layer pair.
        text_maps: adapted text maps, `(B, T, C_teacher)` per pair (token by token) or `(B, segments, C_teacher)`
            (pooled).
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
        text_token_by_token: False when student and teacher tokenizers differ (or a cache stores pooled text): text
            maps are then pooled into `text_segments` means over runs of real tokens before the adapter.
        text_segments: see `text_token_by_token`.
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
        text_segments: int = 1,
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
        self.text_token_by_token, self.text_segments = text_token_by_token, text_segments
        uses_maps = distill_target == "feature_maps"
        self.uses_embeddings = distill_target in ("embeddings", "logits") or (uses_maps and embedding_loss)

        image_widths, text_widths = student_hidden_widths(student.config)
        self.image_adapters = nn.ModuleList(
            SpatialAdapter(image_widths[p.student], teacher_layout.image_width, teacher_layout.image_grid_of(p.teacher))
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
                    maps = [masked_segment_means(hidden, attention_mask, self.text_segments) for hidden in maps]
                features.text_maps = [adapter(hidden) for hidden, adapter in zip(maps, self.text_adapters)]
            if self.uses_embeddings:
                features.text_embeds = self._to_teacher_space(embeds)
        if self.distill_target == "logits":
            features.logit_scale = self.student.logit_scale.clamp(max=self.student.config.max_logit_scale)
        return features

    def _to_teacher_space(self, embeds: torch.Tensor) -> torch.Tensor:
        return embeds if self.embedding_adapter is None else self.embedding_adapter(embeds)


# ----- layer plan ---------------------------------------------------------------------------------------------------


@dataclass
class DistillationPlan:
    """What start-up decided: the layer pairs of each tower (None: tower not distilled), how text is compared, and
    whether any loss reads the teacher's final embeddings (if not, the live teacher stops at its deepest mapped layer)."""

    image_pairs: list[LayerPair] | None
    text_pairs: list[LayerPair] | None
    text_token_by_token: bool
    teacher_embeddings: bool = True
    text_segments: int = 1

    @property
    def teacher_image_layers(self) -> list[int]:
        return [pair.teacher for pair in self.image_pairs or []]

    @property
    def teacher_text_layers(self) -> list[int]:
        return [pair.teacher for pair in self.text_pairs or []]


def plan_distillation(
    args: DistillationConfig,
    layout: TeacherLayout,
    student_config: DCCLIPConfig,
    shared_tokenizer: bool,
    distil_image: bool,
    distil_text: bool,
) -> DistillationPlan:
    """Check the run's options against the teacher and student shapes and resolve the layer mappings.

    `distil_image` / `distil_text`: whether the run has data for that tower (`--image_data`, `--text_data`).
    Everything here fails at start-up, before weights or data load, with a message naming the option to fix.
    """
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
    if distil_text and layout.text_pooled and layout.text_segments != args.text_segments:
        raise ValueError(
            f"the teacher cache stores text maps pooled into {layout.text_segments} segment(s) per caption but "
            f"--text_segments is {args.text_segments}: set --text_segments {layout.text_segments}, or build the cache "
            f"again with --text_segments {args.text_segments}"
        )
    if distil_text and uses_maps and not token_by_token:
        reason = "the teacher cache stores pooled text maps" if shared_tokenizer else "student and teacher tokenizers differ"
        logger.warning(
            "%s: text feature maps are distilled as %d mean(s) over runs of real tokens per caption, NOT token by "
            "token", reason, args.text_segments,
        )  # fmt: skip
    if distil_text and uses_maps and token_by_token and layout.text_tokens:
        logger.info(
            "the teacher cache keeps at most %d evenly spaced tokens per caption: text feature maps are distilled "
            "token by token at those tokens", layout.text_tokens,
        )  # fmt: skip
    logger.info("stage-1 layer mapping (student -> teacher): image %s, text %s", image_pairs, text_pairs)
    teacher_embeddings = not uses_maps or args.embedding_loss_weight > 0
    return DistillationPlan(image_pairs, text_pairs, token_by_token, teacher_embeddings, args.text_segments)
