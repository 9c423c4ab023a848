"""Reproducible random draws of the data pipeline: every training sample carries its own draw seed, a pure function of
(data seed, epoch, position), and the collator makes that sample's random choices (the caption's language, which of
several captions) from a generator seeded with it.

Why not torch's global generator: a resumed run builds its first batches before the Trainer restores the saved RNG
state (the DataLoader prefetches, and DataLoader workers are seeded from the generator as it was before the restore),
so draws from the global stream differ after every mid-epoch resume, and draws made in the main process shift the
dropout masks that follow. A seed computed from (data seed, epoch, position) needs no state beyond what a checkpoint
already restores before any batch is built (the epoch, from `trainer_state.json`; the seed, from the run's arguments),
and gives the same draws whatever the number of DataLoader workers or ranks and whichever process builds the batch.

Position: for map-style data, the row index (each row is read once per epoch, whatever the sampler's order); for
streamed data, (DataLoader worker id, ordinal of the sample in that worker's stream), which a resume that replays the
stream with the same number of workers reproduces.
"""

from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Callable, Iterator, Sequence

import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

# The key under which a sample carries its draw seed (read by `collators.ImageTextCollator`).
DRAW_SEED = "draw_seed"


def draw_seed(data_seed: int, epoch: int, *position: int) -> int:
    """The 64-bit seed of one sample's draws: a hash of (data seed, epoch, position), so that neighbouring rows and
    epochs get unrelated draws."""
    payload = struct.pack(f"<{2 + len(position)}q", data_seed, epoch, *position)
    return int.from_bytes(hashlib.blake2b(payload, digest_size=8).digest(), "little")


def sample_randrange(sample: dict) -> Callable[[int], int]:
    """`randrange(n)` for one sample's draws: from its own generator when it carries a draw seed; otherwise (a
    collator used outside the training scripts) from torch's global generator."""
    seed = sample.get(DRAW_SEED)
    if seed is None:
        return lambda n: int(torch.randint(n, ()))
    return random.Random(seed).randrange


class SharedEpoch:
    """The epoch number, kept in shared memory so that DataLoader workers (forked, spawned or persistent) read the
    value the main process set last."""

    def __init__(self, epoch: int = 0):
        self._value = torch.tensor(epoch, dtype=torch.int64).share_memory_()

    @property
    def value(self) -> int:
        return int(self._value)

    def set(self, epoch: int) -> None:
        self._value.fill_(epoch)


class SeededRows(Dataset):
    """Map-style data whose row `i` carries the draw seed of (data seed, current epoch, i)."""

    def __init__(self, dataset: Dataset, data_seed: int, epoch: SharedEpoch):
        self.dataset, self.data_seed, self.epoch = dataset, data_seed, epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def _seeded(self, sample: dict, index: int, epoch: int) -> dict:
        return {**sample, DRAW_SEED: draw_seed(self.data_seed, epoch, index)}

    def __getitem__(self, index: int) -> dict:
        return self._seeded(self.dataset[index], index, self.epoch.value)

    def __getitems__(self, indices: Sequence[int]) -> list[dict]:
        # one batched read where the data has one (`datasets.Dataset`): the DataLoader fetches a batch through it
        getitems = getattr(self.dataset, "__getitems__", None)
        samples = getitems(list(indices)) if getitems is not None else [self.dataset[i] for i in indices]
        epoch = self.epoch.value
        return [self._seeded(sample, index, epoch) for sample, index in zip(samples, indices, strict=True)]


class SeededStream(IterableDataset):
    """Streamed data whose samples carry the draw seed of (data seed, current epoch, worker id, ordinal)."""

    def __init__(self, stream: IterableDataset, data_seed: int, epoch: SharedEpoch):
        self.stream, self.data_seed, self.epoch = stream, data_seed, epoch

    def set_epoch(self, epoch: int) -> None:
        """Called by the Trainer (through accelerate) before each epoch; forwarded so the stream's shuffle changes."""
        self.epoch.set(epoch)
        if hasattr(self.stream, "set_epoch"):
            self.stream.set_epoch(epoch)

    def __iter__(self) -> Iterator[dict]:
        worker = get_worker_info()
        worker_id = 0 if worker is None else worker.id
        epoch = self.epoch.value
        for ordinal, sample in enumerate(self.stream):
            yield {**sample, DRAW_SEED: draw_seed(self.data_seed, epoch, worker_id, ordinal)}


def with_draw_seeds(dataset: Dataset | IterableDataset, data_seed: int, epoch: SharedEpoch) -> SeededRows | SeededStream:
    """`dataset` with a draw seed added to every sample (`SeededRows` or `SeededStream`, as the data is read)."""
    if isinstance(dataset, IterableDataset):
        return SeededStream(dataset, data_seed, epoch)
    return SeededRows(dataset, data_seed, epoch)
