"""The canonical sample every data source is converted to, so that sources of any format can be mixed and collated.

A canonical sample has an ``image`` (``{"bytes", "path"}``, not decoded) and one caption list per language
(``captions_en``, ``captions_zh``); image-only sources have no caption columns, text-only sources no image column.
"""

from __future__ import annotations

from typing import Literal

import datasets

from dcclip.languages import LANGUAGES
# Ids in the collated `language` tensor, in the order of LANGUAGES.
LANGUAGE_IDS: dict[str, int] = {language: index for index, language in enumerate(LANGUAGES)}

IMAGE_COLUMN = "image"
CAPTION_COLUMNS: dict[str, str] = {language: f"captions_{language}" for language in LANGUAGES}

# What a source provides: image-text pairs (stage 2, or both towers of stage 1), images only (vision tower
# distillation) or texts only (text tower distillation).
Modality = Literal["pairs", "images", "texts"]


def canonical_features(modality: Modality) -> datasets.Features:
    """The features of canonical samples for one modality; every source of one data spec ends with these."""
    features = {}
    if modality in ("pairs", "images"):
        # decode=False: images are decoded (and repaired) by the collator, in DataLoader workers.
        features[IMAGE_COLUMN] = datasets.Image(decode=False)
    if modality in ("pairs", "texts"):
        for column in CAPTION_COLUMNS.values():
            features[column] = datasets.List(datasets.Value("string"))
    return datasets.Features(features)
