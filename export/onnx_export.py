"""Export the image tower and the text tower of a CLIP-like model to two ONNX files (the usual deployment split).

Each file maps the tower's inputs to its projected, unnormalised embedding, exactly what `get_image_features` /
`get_text_features` return: `pixel_values -> image_embeds` and `(input_ids, attention_mask) -> text_embeds`. Batch size
and sequence length are dynamic. The export uses torch's `torch.export`-based exporter (`dynamo=True`, needs
onnxscript); the older TorchScript exporter bakes transformers' attention-mask shape checks into the graph as
constants and gives wrong text embeddings for padded batches of another shape.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from modeling_dcclip import as_embedding

# The opset torch's exporter emits natively (onnxscript's torchlib); newer opsets go through onnx's version converter,
# which adds risk and no operator these towers need. onnxruntime >= 1.14 runs opset 18.
DEFAULT_OPSET = 18
IMAGE_ENCODER_FILE = "image_encoder.onnx"
TEXT_ENCODER_FILE = "text_encoder.onnx"
IMAGE_INPUT_NAMES = ("pixel_values",)
TEXT_INPUT_NAMES = ("input_ids", "attention_mask")
# A protobuf file cannot exceed 2 GiB; larger towers keep their weights in an external data file beside the graph.
_SINGLE_FILE_LIMIT_BYTES = 2 * 1024**3 - 64 * 1024**2
# Warnings torch's exporter passes on from its own internals (a deprecation, dynamic axes that share a constraint).
_EXPORTER_NOTICES = (r"`isinstance\(treespec, LeafSpec\)` is deprecated", r"# The axis name: .* will not be used")


class ImageTower(nn.Module):
    """`pixel_values -> projected image embedding` of any model with `get_image_features` (ours or AltCLIP)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return as_embedding(self.model.get_image_features(pixel_values=pixel_values))


class TextTower(nn.Module):
    """`(input_ids, attention_mask) -> projected text embedding` of any model with `get_text_features`."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return as_embedding(self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask))


def _parameter_bytes(module: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def _export(tower: nn.Module, args: tuple[torch.Tensor, ...], input_names: tuple[str, ...], output_name: str,
            dynamic_shapes: dict[str, dict[int, torch.export.Dim]], path: Path, opset: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # The exporter warns at every export that torchvision's detection ops (nms, roi_align, ...) cannot be registered
    # without torchvision, and passes on two torch-internal notices; none concerns these towers.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with torch.no_grad(), warnings.catch_warnings():
        for notice in _EXPORTER_NOTICES:
            warnings.filterwarnings("ignore", message=notice)
        torch.onnx.export(
            tower.eval(),
            args,
            str(path),
            input_names=list(input_names),
            output_names=[output_name],
            dynamic_shapes=dynamic_shapes,
            opset_version=opset,
            dynamo=True,
            external_data=_parameter_bytes(tower) > _SINGLE_FILE_LIMIT_BYTES,
            verbose=False,  # no "[torch.onnx] ..." progress lines on stdout
        )
    return path


def image_size_of(model: nn.Module) -> int:
    """The square input resolution of a CLIP-like model's image tower (`DCCLIPConfig.image_size` or the vision config's)."""
    return int(getattr(model.config, "image_size", 0) or model.config.vision_config.image_size)


def export_image_tower(model: nn.Module, path: str | Path, image_size: int | None = None,
                       opset: int = DEFAULT_OPSET) -> Path:
    """Write the image tower of `model` to `path` as ONNX: input `pixel_values` (batch, 3, H, W) with a dynamic batch,
    output `image_embeds` (batch, projection_dim).

    Args:
        model: a `DCCLIPModel` or any model with `get_image_features` (e.g. transformers' `AltCLIPModel`).
        path: the `.onnx` file to write.
        image_size: the square input resolution; defaults to the model config's `image_size`.
        opset: ONNX opset version.
    """
    size = image_size or image_size_of(model)
    channels = int(getattr(model.config.vision_config, "num_channels", 3))
    example = torch.randn(2, channels, size, size)
    batch = torch.export.Dim("batch")
    return _export(ImageTower(model), (example,), IMAGE_INPUT_NAMES, "image_embeds",
                   {"pixel_values": {0: batch}}, Path(path), opset)


def export_text_tower(model: nn.Module, path: str | Path, opset: int = DEFAULT_OPSET) -> Path:
    """Write the text tower of `model` to `path` as ONNX: inputs `input_ids` and `attention_mask` (batch, sequence),
    both int64 with dynamic batch and sequence length, output `text_embeds` (batch, projection_dim).

    Args:
        model: a `DCCLIPModel` or any model with `get_text_features`.
        path: the `.onnx` file to write.
        opset: ONNX opset version.
    """
    # Example ids avoid the special ids 0-3 and include padding, so no value-dependent branch is specialised on.
    vocab_size = int(model.config.text_config.vocab_size)
    input_ids = torch.randint(4, vocab_size, (2, 8))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 5:] = 0
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    return _export(TextTower(model), (input_ids, attention_mask), TEXT_INPUT_NAMES, "text_embeds",
                   {"input_ids": {0: batch, 1: sequence}, "attention_mask": {0: batch, 1: sequence}}, Path(path), opset)
