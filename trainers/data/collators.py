"""Collators: a list of canonical samples -> the student's model inputs, and (stage 1) the teacher's.

Teacher and student may use different tokenizers and image sizes, so each gets its own processor; both see the same
images and the same captions, in the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch

from .sample_quality import load_rgb_image
from .schema import CAPTION_COLUMNS, IMAGE_COLUMN, LANGUAGE_IDS, LANGUAGES

# Any callable with the transformers processor signature: processor(text=..., images=..., return_tensors="pt", ...)
Processor = Callable[..., dict]

BilingualMode = Literal["sample", "both"]


class ImageTextCollator:
    """Decode, repair (mode conversion) and process a batch of canonical samples.

    Output keys, depending on what the samples hold:
    - images: ``pixel_values`` (and ``teacher_pixel_values`` when a teacher processor is given);
    - captions: ``input_ids``, ``attention_mask``, ``language`` (ids from ``schema.LANGUAGE_IDS``), and
      ``teacher_input_ids``, ``teacher_attention_mask`` with a teacher processor.
    For image-text pairs, row i of the image tensors belongs to row i of the text tensors.

    Args:
        processor: the student's processor (e.g. ``DCCLIPProcessor``).
        teacher_processor: the teacher's processor (e.g. AltCLIP's), for stage 1; None leaves teacher keys out.
        bilingual: for an image with captions in both languages, ``"sample"`` makes one pair in a language drawn at
            random (each epoch sees a mix), ``"both"`` makes one pair per language (the image appears twice in the
            batch: contrastive losses then see its other caption as a negative, so prefer "sample" for stage 2).
        max_text_length: truncation length for both tokenizers; None uses each tokenizer's own maximum.
    """

    def __init__(
        self,
        processor: Processor,
        teacher_processor: Processor | None = None,
        bilingual: BilingualMode = "sample",
        max_text_length: int | None = None,
    ):
        if bilingual not in ("sample", "both"):
            raise ValueError(f"bilingual must be 'sample' or 'both', got {bilingual!r}")
        self.processor = processor
        self.teacher_processor = teacher_processor
        self.bilingual = bilingual
        self.max_text_length = max_text_length

    def _choose_captions(self, samples: Sequence[dict]) -> list[tuple[int, str, str]]:
        """(sample index, language, caption) for every text row of the batch.

        Random draws use torch's generator, which DataLoader seeds differently in each worker and the Trainer seeds
        from its `seed`, so the choice is reproducible without every worker drawing the same sequence.
        """

        def pick(options: Sequence) -> object:
            return options[int(torch.randint(len(options), ()))]

        rows = []
        for index, sample in enumerate(samples):
            available = [language for language in LANGUAGES if sample[CAPTION_COLUMNS[language]]]
            if not available:
                raise ValueError("a sample without captions reached the collator; load data with load_image_text_data")
            chosen = available if self.bilingual == "both" else [pick(available)]
            rows += [(index, language, pick(sample[CAPTION_COLUMNS[language]])) for language in chosen]
        return rows

    def _text_inputs(self, processor: Processor, texts: list[str]) -> dict[str, torch.Tensor]:
        encoded = processor(
            text=texts, return_tensors="pt", padding=True, truncation=True, max_length=self.max_text_length
        )
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def __call__(self, samples: Sequence[dict]) -> dict[str, torch.Tensor]:
        if not samples:
            raise ValueError("empty batch")
        has_images = IMAGE_COLUMN in samples[0]
        has_texts = CAPTION_COLUMNS[LANGUAGES[0]] in samples[0]
        batch: dict[str, torch.Tensor] = {}
        rows = self._choose_captions(samples) if has_texts else None

        if has_images:
            images = [load_rgb_image(sample[IMAGE_COLUMN]) for sample in samples]
            # Each image is processed once; in "both" mode its row is repeated for each of its captions.
            repeat = None
            if rows is not None and len(rows) != len(samples):
                repeat = torch.tensor([index for index, _, _ in rows])
            for prefix, processor in (("", self.processor), ("teacher_", self.teacher_processor)):
                if processor is None:
                    continue
                pixel_values = processor(images=images, return_tensors="pt")["pixel_values"]
                batch[f"{prefix}pixel_values"] = pixel_values if repeat is None else pixel_values[repeat]

        if rows is not None:
            texts = [caption for _, _, caption in rows]
            batch.update(self._text_inputs(self.processor, texts))
            batch["language"] = torch.tensor([LANGUAGE_IDS[language] for _, language, _ in rows])
            if self.teacher_processor is not None:
                teacher = self._text_inputs(self.teacher_processor, texts)
                batch["teacher_input_ids"] = teacher["input_ids"]
                batch["teacher_attention_mask"] = teacher["attention_mask"]
        return batch
