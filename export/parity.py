"""How close two sets of embeddings are: the exported (or quantized) model against its reference."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ParityReport:
    """`max_abs_error`: largest element-wise difference of the raw embeddings; `min_cosine` / `mean_cosine`: row-wise
    cosine similarity between the two embeddings of each input (1.0 = same direction, what retrieval depends on)."""

    max_abs_error: float
    min_cosine: float
    mean_cosine: float
    num_inputs: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def compare_embeddings(candidate: torch.Tensor, reference: torch.Tensor) -> ParityReport:
    """Compare `candidate` embeddings (e.g. onnxruntime's) with `reference` ones (e.g. PyTorch's), row by row."""
    if candidate.shape != reference.shape:
        raise ValueError(f"compare_embeddings: shapes differ, {tuple(candidate.shape)} vs {tuple(reference.shape)}")
    candidate, reference = candidate.double(), reference.double()
    cosine = F.cosine_similarity(candidate, reference, dim=-1)
    return ParityReport(
        max_abs_error=float((candidate - reference).abs().max()),
        min_cosine=float(cosine.min()),
        mean_cosine=float(cosine.mean()),
        num_inputs=int(candidate.shape[0]),
    )
