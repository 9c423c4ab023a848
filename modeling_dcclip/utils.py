"""Small helpers shared by code that accepts any CLIP-like model (ours or transformers' own)."""

from __future__ import annotations

import torch


def as_embedding(features) -> torch.Tensor:
    """Return the embedding tensor of `get_image_features` / `get_text_features`.

    transformers 5 CLIP-family models return a `BaseModelOutputWithPooling` whose `pooler_output` is the projected
    embedding; `DCCLIPModel` and transformers 4 return the tensor itself.
    """
    if isinstance(features, torch.Tensor):
        return features
    pooled = getattr(features, "pooler_output", None)
    if pooled is None:
        raise TypeError(f"cannot find an embedding in {type(features).__name__}: expected a tensor or pooler_output")
    return pooled
