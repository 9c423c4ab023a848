"""Stage-1 data plumbing: each training row pairs one image-tower sample with one text-tower sample, and the collator
turns a batch of rows into student inputs plus teacher inputs (live teacher) or cached teacher targets.

Why pairs of unrelated samples: the image tower and the text tower are distilled on their own data (image-only and
bilingual text-only sources work), but both towers train in every step. That keeps every trainable parameter used in
every step (DDP needs this), keeps the two losses balanced, and gives logit distillation a batch of images and a
batch of texts to score against each other (the teacher's similarities are the target, so images and texts need not
describe each other).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import torch
from torch.utils.data import Dataset, IterableDataset

from .data.collators import ImageTextCollator
from .data.schema import CAPTION_COLUMNS, IMAGE_COLUMN

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


class DistillationCollator:
    """Rows of `pair_tower_data` -> one stage-1 batch.

    Output keys: `pixel_values` (+ `teacher_pixel_values` for a live teacher) from the image part; `input_ids`,
    `attention_mask`, `language` (+ `teacher_input_ids`, `teacher_attention_mask` when the tokenizers differ) from the
    text part; with a teacher cache, the cached targets of the batch (`TeacherCache.image_targets` / `text_targets`).
    Images and captions are decoded and processed by the data package's `ImageTextCollator`.

    Args:
        processor: the student's processor.
        teacher_processor: the teacher's processor (its image processor and tokenizer).
        shared_tokenizer: the student shares the teacher's tokenizer, so the teacher reads the student's token ids.
        max_text_length: truncation length of both tokenizers.
        teacher_cache: read targets from this cache instead of preparing inputs for a live teacher.
        image_layers / text_layers: teacher layers to read from the cache.
    """

    def __init__(
        self,
        processor,
        teacher_processor,
        shared_tokenizer: bool,
        max_text_length: int,
        teacher_cache=None,
        image_layers: Sequence[int] = (),
        text_layers: Sequence[int] = (),
    ):
        live = teacher_cache is None
        self.image_collator = ImageTextCollator(processor, teacher_processor if live else None)
        self.text_collator = ImageTextCollator(
            processor, None if shared_tokenizer else teacher_processor, max_text_length=max_text_length
        )
        self.teacher_cache = teacher_cache
        self.image_layers = list(image_layers)
        self.text_layers = list(text_layers)

    def __call__(self, rows: Sequence[dict]) -> dict[str, torch.Tensor]:
        batch: dict = {}
        if IMAGE_COLUMN in rows[0]:
            images = [_image_part(row) for row in rows]
            batch.update(self.image_collator(images))
            if self.teacher_cache is not None:
                batch.update(self.teacher_cache.image_targets(images, self.image_layers))
        if TEXT_COLUMNS[0] in rows[0]:
            batch.update(self.text_collator([_text_part(row) for row in rows]))
            if self.teacher_cache is not None:
                input_ids = batch.get("teacher_input_ids", batch["input_ids"])
                attention_mask = batch.get("teacher_attention_mask", batch["attention_mask"])
                batch.update(self.teacher_cache.text_targets(input_ids, attention_mask, self.text_layers))
        return batch
