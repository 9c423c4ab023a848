"""Stage-1 rows: each training row pairs one image-tower sample with one text-tower sample (the collator,
`collators.ImageTextCollator`, then turns a batch of rows into student inputs plus teacher inputs or cached targets).

Why pairs of unrelated samples: the image tower and the text tower are distilled on their own data (image-only and
bilingual text-only sources work), but both towers train in every step. That keeps every trainable parameter used in
every step (DDP needs this), keeps the two losses balanced, and gives logit distillation a batch of images and a
batch of texts to score against each other (the teacher's similarities are the target, so images and texts need not
describe each other).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from torch.utils.data import Dataset, IterableDataset

from dcclip.trainers.data.schema import CAPTION_COLUMNS, IMAGE_COLUMN

TEXT_COLUMNS: tuple[str, ...] = tuple(CAPTION_COLUMNS.values())


def _image_part(sample: dict) -> dict:
    return {IMAGE_COLUMN: sample[IMAGE_COLUMN]}


def _text_part(sample: dict) -> dict:
    return {column: sample[column] for column in TEXT_COLUMNS}


class TowerPairs(Dataset):
    """Map-style pairing: row i = image sample `i mod n_images` + text sample `i mod n_texts`.

    The length is the larger source, so every sample of both is seen each epoch (the smaller one repeats). A tower
    without data (None) is left out of every row.
    """

    def __init__(self, images: Sequence[dict] | None, texts: Sequence[dict] | None):
        if images is None and texts is None:
            raise ValueError("stage 1 needs image data, text data, or both")
        self.images, self.texts = images, texts

    def __len__(self) -> int:
        return max(len(part) for part in (self.images, self.texts) if part is not None)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"row {index} of {len(self)}")
        row: dict = {}
        if self.images is not None:
            row.update(_image_part(self.images[index % len(self.images)]))
        if self.texts is not None:
            row.update(_text_part(self.texts[index % len(self.texts)]))
        return row


class StreamingTowerPairs(IterableDataset):
    """Streaming pairing: zips the two streams, restarting whichever ends first, until both have ended once."""

    def __init__(self, images: Iterable[dict] | None, texts: Iterable[dict] | None):
        if images is None and texts is None:
            raise ValueError("stage 1 needs image data, text data, or both")
        self.parts = [(stream, pick) for stream, pick in ((images, _image_part), (texts, _text_part)) if stream is not None]

    def set_epoch(self, epoch: int) -> None:
        """Forwarded to the streams, so that their shuffle changes every epoch."""
        for stream, _ in self.parts:
            if hasattr(stream, "set_epoch"):
                stream.set_epoch(epoch)

    def __iter__(self) -> Iterator[dict]:
        iterators = [iter(stream) for stream, _ in self.parts]
        ended = [False] * len(self.parts)
        while True:
            row: dict = {}
            for k, (stream, pick) in enumerate(self.parts):
                sample = next(iterators[k], None)
                if sample is None:
                    ended[k] = True
                    if all(ended):
                        return
                    iterators[k] = iter(stream)
                    sample = next(iterators[k], None)
                    if sample is None:
                        raise ValueError("a stage-1 data stream yielded no sample")
                row.update(pick(sample))
            yield row


def pair_tower_data(images, texts, streaming: bool) -> Dataset | IterableDataset:
    """Pair an image-tower dataset with a text-tower dataset (either may be None); see `TowerPairs`."""
    return StreamingTowerPairs(images, texts) if streaming else TowerPairs(images, texts)
