"""What the teacher hands stage 1: `TeacherLayout` (the shapes of its targets, known before any weights load) and
`TeacherTargets` (one batch of them). The live teacher (`model.py`) and the teacher cache (`cache.py`) produce the same
types, so the trainer cannot tell them apart.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from transformers import PreTrainedConfig


@dataclass
class TeacherLayout:
    """Shapes of a teacher's targets, known before any weights load (from its config, or from a cache's metadata).

    Attributes:
        num_image_layers / num_text_layers: last index of each tower's `hidden_states` (= number of blocks).
        image_width / text_width: channels of the vision / text hidden states.
        image_grid: `(height, width)` of the vision patch grid the targets come on (pooled grid for a pooled cache).
        projection_dim: width of the projected embeddings.
        cached_image_layers / cached_text_layers: for a cache, the only teacher layers it stores.
        cached_image_grids: for a cache, the grid each cached image layer is stored on (same order as the layers).
        text_pooled: for a cache that stores text maps pooled over tokens, `text_segments` means per caption.
        text_segments: runs of tokens each pooled caption keeps a mean of (`geometry.masked_segment_means`); caches
            written before segments existed hold one.
        maps_standardized: for a cache that stores maps already standardised over channels (the loss's transform).
        text_tokens: for a cache that stores text token by token, the real tokens it keeps per caption
            (`compression.text_token_positions`); 0: every token.
    """

    num_image_layers: int
    num_text_layers: int
    image_width: int
    text_width: int
    image_grid: tuple[int, int]
    projection_dim: int
    cached_image_layers: list[int] | None = None
    cached_text_layers: list[int] | None = None
    cached_image_grids: list[tuple[int, int]] | None = None
    text_pooled: bool = False
    text_segments: int = 1
    maps_standardized: bool = False
    text_tokens: int = 0

    def image_grid_of(self, layer: int) -> tuple[int, int]:
        """The grid teacher image layer `layer`'s targets come on: its cached grid, else the patch grid."""
        if self.cached_image_grids is not None and layer in (self.cached_image_layers or []):
            return tuple(self.cached_image_grids[self.cached_image_layers.index(layer)])
        return tuple(self.image_grid)

    @classmethod
    def from_config(cls, config: PreTrainedConfig) -> TeacherLayout:
        """Layout of any CLIP-family config with `vision_config`, `text_config` and `projection_dim`."""
        vision, text = config.vision_config, config.text_config
        side = int(vision.image_size) // int(vision.patch_size)
        return cls(
            num_image_layers=int(vision.num_hidden_layers),
            num_text_layers=int(text.num_hidden_layers),
            image_width=int(vision.hidden_size),
            text_width=int(text.hidden_size),
            image_grid=(side, side),
            projection_dim=int(config.projection_dim),
        )


@dataclass
class TeacherTargets:
    """The teacher's outputs for one batch, from the live teacher or read from a teacher cache: what stage 1's loss
    compares the student with.

    Cached targets cross the DataLoader inside the collated batch as a plain dict (`as_batch_entry`), which pinning,
    device placement and multi-process dispatch handle like any other entry; the trainer turns it back into this type
    (`from_batch_entry`).

    Attributes:
        image_embeds / text_embeds: projected, unnormalised embeddings `(B, projection_dim)`.
        image_maps: selected vision hidden states on their patch grid, `(B, C, h, w)` each (CLS token dropped).
        text_maps: selected text hidden states, `(B, T, C)` each, or `(B, segments, C)` when read from a cache that
            stores pooled text (`text_maps_pooled`).
        text_attention_mask: the teacher's own token mask (differs from the student's when tokenizers differ).
        text_target_mask: `(B, T)`, the tokens that carry a target when a cache keeps only some of each caption's
            tokens (`TeacherLayout.text_tokens`); None: every real token does.
        text_maps_pooled: whether `text_maps` are already segment means (a pooled cache), not tokens.
        logit_scale: the teacher's log temperature (0-dim tensor).
    """

    image_embeds: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    image_maps: list[torch.Tensor] | None = None
    text_maps: list[torch.Tensor] | None = None
    text_attention_mask: torch.Tensor | None = None
    text_target_mask: torch.Tensor | None = None
    text_maps_pooled: bool = False
    logit_scale: torch.Tensor | None = None

    def as_batch_entry(self) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """The targets that are set, as a plain dict for the collated batch."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_batch_entry(cls, entry: dict[str, torch.Tensor | list[torch.Tensor]]) -> TeacherTargets:
        """The inverse of `as_batch_entry`."""
        return cls(**entry)
