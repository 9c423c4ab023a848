"""How the teacher cache shrinks a feature map to what stage 1's loss reads (`docs/distillation.md`, "Teacher cache"):

- `pool_grid`: an image map averaged onto a coarser grid (the student map is resampled to the same grid by its adapter);
- `standardize_channels` (the loss's own target transform) applied before storage, so that the low-rank basis spends
  its rank on the directions the loss weighs, not on the few huge channels of a transformer's residual stream;
- `FeatureCodec`: a per-layer principal-component basis; each feature vector is stored as its `rank` coordinates in
  float16 and decoded as `mean + codes @ basis.T`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F


def pool_grid(feature_map: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """`(B, C, H, W)` -> `(B, C, h, w)` by area averaging (unchanged when the grid is already `grid`)."""
    if tuple(feature_map.shape[-2:]) == tuple(grid):
        return feature_map
    return F.adaptive_avg_pool2d(feature_map.float(), grid)


class FeatureCodec:
    """A linear code for `channels`-wide feature vectors: `rank` principal components of a sample of them.

    `basis` is `(channels, rank)` with orthonormal columns, `mean` is `(channels,)`; `basis=None` stores the vectors
    themselves (no compression beyond float16).
    """

    def __init__(self, channels: int, mean: torch.Tensor | None = None, basis: torch.Tensor | None = None):
        self.channels = channels
        self.mean = mean
        self.basis = basis

    @property
    def width(self) -> int:
        """Numbers stored per feature vector."""
        return self.channels if self.basis is None else int(self.basis.shape[1])

    @classmethod
    def fit(cls, vectors: torch.Tensor, rank: int | None) -> FeatureCodec:
        """The top-`rank` principal components of `vectors` `(n, channels)`; `rank` None or >= channels: identity."""
        channels = int(vectors.shape[-1])
        if rank is None or rank >= channels:
            return cls(channels)
        data = vectors.reshape(-1, channels).double()
        mean = data.mean(dim=0)
        centred = data - mean
        covariance = centred.T @ centred / max(len(data), 1)
        _, eigenvectors = torch.linalg.eigh(covariance)  # ascending eigenvalues
        basis = eigenvectors[:, -rank:].flip(-1)
        return cls(channels, mean.float(), basis.float().contiguous())

    def encode(self, vectors: torch.Tensor) -> torch.Tensor:
        """`(..., channels)` -> `(..., width)` float16."""
        vectors = vectors.float()
        if self.basis is not None:
            vectors = (vectors - self.mean) @ self.basis
        return vectors.to(torch.float16)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """`(..., width)` -> `(..., channels)` float32."""
        codes = codes.float()
        if self.basis is None:
            return codes
        return codes @ self.basis.T + self.mean

    def state(self, prefix: str) -> dict[str, torch.Tensor]:
        """The tensors to save (empty for the identity code), named `<prefix>.mean` / `<prefix>.basis`."""
        if self.basis is None:
            return {}
        return {f"{prefix}.mean": self.mean, f"{prefix}.basis": self.basis}

    @classmethod
    def from_state(cls, tensors: Mapping[str, torch.Tensor], prefix: str, channels: int) -> FeatureCodec:
        """The codec saved by `state(prefix)` (the identity code when nothing was saved)."""
        if f"{prefix}.basis" not in tensors:
            return cls(channels)
        return cls(channels, tensors[f"{prefix}.mean"].float(), tensors[f"{prefix}.basis"].float())
