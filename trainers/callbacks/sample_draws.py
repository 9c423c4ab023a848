"""Reproducible data draws across resumes: the training data's samples carry draw seeds of (data seed, epoch,
position) (`data/sample_seeds.py`), and this callback keeps their epoch equal to the Trainer's.

The epoch is set in `on_epoch_begin`, before the Trainer builds the epoch's DataLoader iterator (and, on a resume,
before it skips the batches already trained), from `state.epoch`, which a resume restores from `trainer_state.json`
before the first epoch begins. So the first batch a resumed run builds already has the draws of the uninterrupted run.
"""

from __future__ import annotations

import math

from torch.utils.data import Dataset, IterableDataset
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from dcclip.trainers.data.sample_seeds import SeededRows, SeededStream, SharedEpoch, with_draw_seeds


class SampleDrawSeeds(TrainerCallback):
    """Adds draw seeds to a run's training and evaluation data, and keeps the training data's epoch current.

    Args:
        data_seed: the seed of every sample's draws (`for_run` takes the Trainer's: `data_seed`, else `seed`).
    """

    def __init__(self, data_seed: int):
        self.data_seed = data_seed
        self.epoch = SharedEpoch()

    @classmethod
    def for_run(cls, args: TrainingArguments) -> SampleDrawSeeds:
        """The callback for a run: seeded as the Trainer seeds its data sampler (`data_seed`, else `seed`)."""
        return cls(args.data_seed if args.data_seed is not None else args.seed)

    def training_data(self, dataset: Dataset | IterableDataset) -> SeededRows | SeededStream:
        """The training data with draw seeds that follow the Trainer's epoch."""
        return with_draw_seeds(dataset, self.data_seed, self.epoch)

    def evaluation_data(self, dataset: Dataset | IterableDataset) -> SeededRows | SeededStream:
        """The evaluation data with draw seeds fixed at epoch 0: every evaluation sees the same captions, so its losses
        compare across evaluations."""
        return with_draw_seeds(dataset, self.data_seed, SharedEpoch())

    def on_epoch_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        # state.epoch is the epoch reached so far (e.g. 1.5 mid-epoch, exactly 2.0 once two epochs ended)
        self.epoch.set(math.floor(state.epoch or 0))
