"""The collator of both stages: a list of canonical samples -> one batch in the canonical bilingual layout, with the
teacher's inputs (or its cached targets) where a stage needs them.

The canonical batch holds each image once and every caption chosen for it:
- ``pixel_values`` (N images) and, for a live teacher, ``teacher_pixel_values`` (the teacher's own transform);
- ``input_ids`` / ``attention_mask`` (M captions), ``language`` (M ids from ``schema.LANGUAGE_IDS``) and
  ``image_index`` (M: the image row each caption belongs to), plus ``teacher_input_ids`` /
  ``teacher_attention_mask`` when the teacher tokenizes differently from the student;
- ``teacher_targets`` (a `TeacherTargets` batch entry) when the targets come from a teacher cache.
One caption per image (``bilingual="sample"``) gives M = N and ``image_index = arange(N)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import torch

from dcclip.trainers.data.sample_quality import load_rgb_image
from dcclip.trainers.data.sample_seeds import sample_randrange
from dcclip.trainers.data.schema import CAPTION_COLUMNS, IMAGE_COLUMN, LANGUAGE_IDS, LANGUAGES

# Any callable with the transformers processor signature: processor(text=..., images=..., return_tensors="pt", ...)
Processor = Callable[..., dict]
# (samples, batch so far) -> TeacherTargets, e.g. `teacher.cache.CachedTeacherTargets`
TeacherTargetSource = Callable[[Sequence[dict], Mapping[str, torch.Tensor]], object]

BilingualMode = Literal["sample", "both"]


class ImageTextCollator:
    """Decode, repair (mode conversion) and process a batch of canonical samples into the canonical batch (see the
    module docstring); images-only and captions-only samples give only their half of the batch.

    Args:
        processor: the student's processor (e.g. ``DCCLIPProcessor``).
        teacher_processor: the teacher's processor, for a live teacher (stage 1, or stage 2's teacher term): adds its
            pixel values, and its token ids unless ``teacher_shares_tokenizer``. None leaves teacher inputs out.
        bilingual: for an image with captions in both languages, ``"sample"`` keeps one caption in a language drawn at
            random (each epoch sees a mix; draws as `sample_seeds` describes), ``"both"`` keeps one caption per language (stage 2's default: the image
            is embedded once and its captions are never negatives of each other).
        max_text_length: truncation length of both tokenizers; None uses each tokenizer's own maximum.
        teacher_shares_tokenizer: the teacher reads the student's token ids, so no teacher ids are added.
        teacher_targets: read the teacher's targets from this source (a teacher cache) instead of adding the
            teacher's pixel values; token ids are still added where the tokenizers differ (the cache is keyed by them).
    """

    def __init__(
        self,
        processor: Processor,
        teacher_processor: Processor | None = None,
        bilingual: BilingualMode = "sample",
        max_text_length: int | None = None,
        teacher_shares_tokenizer: bool = False,
        teacher_targets: TeacherTargetSource | None = None,
    ):
        if bilingual not in ("sample", "both"):
            raise ValueError(f"bilingual must be 'sample' or 'both', got {bilingual!r}")
        self.processor = processor
        self.teacher_processor = teacher_processor
        self.bilingual = bilingual
        self.max_text_length = max_text_length
        self.teacher_shares_tokenizer = teacher_shares_tokenizer
        self.teacher_targets = teacher_targets

    def _choose_captions(self, samples: Sequence[dict]) -> list[tuple[int, str, str]]:
        """(sample index, language, caption) for every text row of the batch, sample after sample, in LANGUAGES order.

        Each sample's draws come from its own draw seed (`sample_seeds`: a function of the data seed, the epoch and
        the sample's position), so they do not depend on the DataLoader worker, the batch or a resume.
        """
        rows = []
        for index, sample in enumerate(samples):
            randrange = sample_randrange(sample)
            available = [language for language in LANGUAGES if sample[CAPTION_COLUMNS[language]]]
            if not available:
                raise ValueError("a sample without captions reached the collator; load data with load_image_text_data")
            chosen = available if self.bilingual == "both" else [available[randrange(len(available))]]
            for language in chosen:
                captions = sample[CAPTION_COLUMNS[language]]
                rows.append((index, language, captions[randrange(len(captions))]))
        return rows

    def _text_inputs(self, processor: Processor, texts: list[str]) -> dict[str, torch.Tensor]:
        encoded = processor(
            text=texts, return_tensors="pt", padding=True, truncation=True, max_length=self.max_text_length
        )
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def __call__(self, samples: Sequence[dict]) -> dict[str, torch.Tensor]:
        if not samples:
            raise ValueError("empty batch")
        batch: dict = {}
        if IMAGE_COLUMN in samples[0]:
            images = [load_rgb_image(sample[IMAGE_COLUMN]) for sample in samples]
            batch["pixel_values"] = self.processor(images=images, return_tensors="pt")["pixel_values"]
            if self.teacher_processor is not None and self.teacher_targets is None:
                batch["teacher_pixel_values"] = self.teacher_processor(images=images, return_tensors="pt")["pixel_values"]
        if CAPTION_COLUMNS[LANGUAGES[0]] in samples[0]:
            rows = self._choose_captions(samples)
            texts = [caption for _, _, caption in rows]
            batch.update(self._text_inputs(self.processor, texts))
            batch["language"] = torch.tensor([LANGUAGE_IDS[language] for _, language, _ in rows])
            batch["image_index"] = torch.tensor([index for index, _, _ in rows])
            if self.teacher_processor is not None and not self.teacher_shares_tokenizer:
                teacher = self._text_inputs(self.teacher_processor, texts)
                batch["teacher_input_ids"] = teacher["input_ids"]
                batch["teacher_attention_mask"] = teacher["attention_mask"]
        if self.teacher_targets is not None:
            batch["teacher_targets"] = self.teacher_targets(samples, batch).as_batch_entry()
        return batch
