"""Small helpers shared by code that accepts any CLIP-like model (ours or transformers' own)."""

from __future__ import annotations

import torch


def as_embedding(features) -> torch.Tensor:
    """Return the embedding tensor of `get_image_features` / `get_text_features`: the projected, not normalised
    embedding, shape `(batch, projection_dim)`. `F.normalize(as_embedding(features), dim=-1)` is the unit-length
    embedding that CLIP-style `forward` outputs call `image_embeds` / `text_embeds`.

    `DCCLIPModel` and transformers 5 CLIP-family models (AltCLIP, the teacher) return a `BaseModelOutputWithPooling`
    whose `pooler_output` is that embedding; transformers 4 models and `export.onnx_model.OnnxCLIPModel` return the
    tensor itself.
    """
    if isinstance(features, torch.Tensor):
        return features
    pooled = getattr(features, "pooler_output", None)
    if pooled is None:
        raise TypeError(f"cannot find an embedding in {type(features).__name__}: expected a tensor or pooler_output")
    return pooled
