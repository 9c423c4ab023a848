"""How the teacher cache shrinks a feature map to what stage 1's loss reads (`docs/distillation.md`, "Teacher cache"):

- `pool_grid`: an image map averaged onto a coarser grid (the student map is resampled to the same grid by its adapter);
- `standardize_channels` (the loss's own target transform) applied before storage, so that the low-rank basis spends
  its rank on the directions the loss weighs, not on the few huge channels of a transformer's residual stream;
- `FeatureCodec`: a per-layer principal-component basis; each feature vector is stored as its `rank` coordinates and
  decoded as `mean + codes @ basis.T`;
- `code_dtype`: the coordinates in float16, or in int8 with one float16 scale per vector (each coordinate first divided
  by its spread in the fitted sample, so that the 255 levels serve the weak coordinates as well as the strong).
- `text_token_positions`: which real tokens of a caption a cache keeps (at most a fixed number, evenly spaced).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

CODE_DTYPES = ("float16", "int8")
INT8_LEVELS = 127


def pool_grid(feature_map: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """`(B, C, H, W)` -> `(B, C, h, w)` by area averaging (unchanged when the grid is already `grid`)."""
    if tuple(feature_map.shape[-2:]) == tuple(grid):
        return feature_map
    return F.adaptive_avg_pool2d(feature_map.float(), grid)


def text_token_positions(attention_mask: torch.Tensor, tokens: int) -> torch.Tensor:
    """`(batch, length)` bool: the real tokens (`attention_mask` 1) that a cache keeps of each caption.

    `tokens` 0 keeps every real token; otherwise a caption of n > `tokens` real tokens keeps `tokens` of them, evenly
    spaced from its first to its last (the real tokens of rank round(i (n - 1) / (tokens - 1))). The positions follow
    from the mask alone, so training finds them again without their being stored.
    """
    real = attention_mask.bool()
    if tokens <= 0:
        return real
    if tokens < 2:
        raise ValueError(f"a cache keeps 0 (every) or at least 2 tokens per caption, got {tokens}")
    lengths = real.sum(dim=1, keepdim=True)  # (batch, 1)
    rank = real.long().cumsum(dim=1) - 1  # each token's position among its caption's real tokens
    steps = torch.arange(tokens, dtype=torch.float64, device=real.device).unsqueeze(0)
    picked = (steps * (lengths - 1).double() / (tokens - 1)).round().long()  # (batch, tokens)
    chosen = (rank.unsqueeze(-1) == picked.unsqueeze(1)).any(dim=-1)
    return real & (chosen | (lengths <= tokens))


class FeatureCodec:
    """A linear code for `channels`-wide feature vectors: `rank` principal components of a sample of them, stored in
    float16 or int8.

    `basis` is `(channels, rank)` with orthonormal columns, `mean` is `(channels,)`; `basis=None` stores the vectors
    themselves. With `code_dtype="int8"`, `spread` `(width,)` is each coordinate's standard deviation in the fitted
    sample: coordinates are divided by it, then each vector is rounded to int8 against its own largest magnitude
    (stored as a float16 scale per vector), so no value is clipped and every coordinate keeps about the same relative
    precision (the rounding error is below 0.5% of a vector's largest normalised coordinate).
    """

    def __init__(
        self,
        channels: int,
        mean: torch.Tensor | None = None,
        basis: torch.Tensor | None = None,
        code_dtype: str = "float16",
        spread: torch.Tensor | None = None,
    ):
        if code_dtype not in CODE_DTYPES:
            raise ValueError(f"code dtype must be one of {CODE_DTYPES}, got {code_dtype!r}")
        self.channels = channels
        self.mean = mean
        self.basis = basis
        self.code_dtype = code_dtype
        self.spread = spread

    @property
    def width(self) -> int:
        """Numbers stored per feature vector."""
        return self.channels if self.basis is None else int(self.basis.shape[1])

    @property
    def scaled(self) -> bool:
        """Whether each vector's codes come with a scale (`encode` returns it, `decode` needs it)."""
        return self.code_dtype == "int8"

    @classmethod
    def fit(cls, vectors: torch.Tensor, rank: int | None, code_dtype: str = "float16") -> FeatureCodec:
        """The top-`rank` principal components of `vectors` `(n, channels)` (`rank` None or >= channels: no basis),
        and for int8 codes each coordinate's spread in `vectors`."""
        channels = int(vectors.shape[-1])
        data = vectors.reshape(-1, channels).double()
        mean = basis = None
        if rank is not None and rank < channels:
            mean = data.mean(dim=0)
            centred = data - mean
            covariance = centred.T @ centred / max(len(data), 1)
            _, eigenvectors = torch.linalg.eigh(covariance)  # ascending eigenvalues
            basis = eigenvectors[:, -rank:].flip(-1)
            data = centred @ basis
            mean, basis = mean.float(), basis.float().contiguous()
        spread = None
        if code_dtype == "int8":
            spread = data.std(dim=0, correction=0).clamp(min=1e-6).float() if len(data) else torch.ones(data.shape[-1])
        return cls(channels, mean, basis, code_dtype, spread)

    def encode(self, vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`(..., channels)` -> codes `(..., width)` (float16 or int8) and, for int8, scales `(..., 1)` float16."""
        vectors = vectors.float()
        if self.basis is not None:
            vectors = (vectors - self.mean) @ self.basis
        if not self.scaled:
            return vectors.to(torch.float16), None
        normalised = vectors / self.spread
        scale = (normalised.abs().amax(dim=-1, keepdim=True) / INT8_LEVELS).to(torch.float16).float().clamp(min=1e-8)
        codes = (normalised / scale).round().clamp(-INT8_LEVELS, INT8_LEVELS).to(torch.int8)
        return codes, scale.to(torch.float16)

    def decode(self, codes: torch.Tensor, scales: torch.Tensor | None = None) -> torch.Tensor:
        """`(..., width)` codes (and their scales, for int8) -> `(..., channels)` float32."""
        codes = codes.float()
        if self.scaled:
            if scales is None:
                raise ValueError("int8 codes need their per-vector scales to decode")
            codes = codes * scales.float() * self.spread
        if self.basis is None:
            return codes
        return codes @ self.basis.T + self.mean

    def state(self, prefix: str) -> dict[str, torch.Tensor]:
        """The tensors to save (empty for float16 codes without a basis), named `<prefix>.mean` / `.basis` /
        `.spread`."""
        tensors = {}
        if self.basis is not None:
            tensors.update({f"{prefix}.mean": self.mean, f"{prefix}.basis": self.basis})
        if self.spread is not None:
            tensors[f"{prefix}.spread"] = self.spread
        return tensors

    @classmethod
    def from_state(cls, tensors: Mapping[str, torch.Tensor], prefix: str, channels: int) -> FeatureCodec:
        """The codec saved by `state(prefix)`."""
        mean, basis = tensors.get(f"{prefix}.mean"), tensors.get(f"{prefix}.basis")
        spread = tensors.get(f"{prefix}.spread")
        return cls(
            channels,
            None if mean is None else mean.float(),
            None if basis is None else basis.float(),
            "float16" if spread is None else "int8",
            None if spread is None else spread.float(),
        )
