"""`OnnxCLIPModel`: the exported towers behind the same `get_image_features` / `get_text_features` API as the PyTorch
model, run by onnxruntime, so parity checks, benchmarks and zero-shot evaluation use one code path for both."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from .onnx_export import IMAGE_ENCODER_FILE, TEXT_ENCODER_FILE


def make_session(path: str | Path, intra_op_threads: int | None = None) -> ort.InferenceSession:
    """An onnxruntime CPU session with all graph optimisations; `intra_op_threads=None` lets onnxruntime choose."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if intra_op_threads is not None:
        options.intra_op_num_threads = intra_op_threads
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


class OnnxCLIPModel(nn.Module):
    """Image and text encoders exported by `export_image_tower` / `export_text_tower`, either one optional.

    Returns torch tensors, like `DCCLIPModel`, so code written for the PyTorch model runs unchanged on it. It is a
    torch `Module` only for that code's sake (`eval()`; it has no parameters, so the evaluation feeds it CPU float32
    inputs): onnxruntime runs on the CPU in float32 whatever `.to()` is given.
    """

    def __init__(self, image_encoder: str | Path | None = None, text_encoder: str | Path | None = None,
                 intra_op_threads: int | None = None):
        super().__init__()
        if image_encoder is None and text_encoder is None:
            raise ValueError("OnnxCLIPModel needs an image encoder, a text encoder, or both")
        self.image_session = make_session(image_encoder, intra_op_threads) if image_encoder is not None else None
        self.text_session = make_session(text_encoder, intra_op_threads) if text_encoder is not None else None

    @classmethod
    def from_folder(cls, folder: str | Path, suffix: str = "", intra_op_threads: int | None = None) -> "OnnxCLIPModel":
        """Load `image_encoder{suffix}.onnx` and `text_encoder{suffix}.onnx` from an export folder
        (`suffix=".int8"` for the quantized pair)."""
        folder = Path(folder)
        paths = [folder / name.replace(".onnx", f"{suffix}.onnx") for name in (IMAGE_ENCODER_FILE, TEXT_ENCODER_FILE)]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"OnnxCLIPModel.from_folder: missing {missing}; run `dcclip export` first")
        return cls(*paths, intra_op_threads=intra_op_threads)

    def get_image_features(self, pixel_values: torch.Tensor | np.ndarray, **unused) -> torch.Tensor:
        """Projected (not normalised) image embeddings, shape `(batch, projection_dim)`."""
        if self.image_session is None:
            raise ValueError("this OnnxCLIPModel has no image encoder")
        pixels = np.ascontiguousarray(_to_numpy(pixel_values), dtype=np.float32)
        return torch.from_numpy(self.image_session.run(None, {"pixel_values": pixels})[0])

    def get_text_features(self, input_ids: torch.Tensor | np.ndarray,
                          attention_mask: torch.Tensor | np.ndarray | None = None, **unused) -> torch.Tensor:
        """Projected (not normalised) text embeddings, shape `(batch, projection_dim)`."""
        if self.text_session is None:
            raise ValueError("this OnnxCLIPModel has no text encoder")
        ids = _to_numpy(input_ids).astype(np.int64)
        mask = np.ones_like(ids) if attention_mask is None else _to_numpy(attention_mask).astype(np.int64)
        return torch.from_numpy(self.text_session.run(None, {"input_ids": ids, "attention_mask": mask})[0])


def _to_numpy(array: torch.Tensor | np.ndarray) -> np.ndarray:
    return array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
