"""Stage-1 rows (one image-tower sample + one text-tower sample) and the batches the collator makes of them."""

from __future__ import annotations

import io

import numpy as np
import PIL.Image
import pytest
from transformers import AutoProcessor, AutoTokenizer

from dcclip.trainers.data import ImageTextCollator
from dcclip.trainers.data.tower_pairs import StreamingTowerPairs, TowerPairs


def _png(seed: int) -> dict:
    buffer = io.BytesIO()
    PIL.Image.fromarray(np.random.default_rng(seed).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(buffer, "PNG")
    return {"bytes": buffer.getvalue(), "path": None}


IMAGES = [{"image": _png(i), "captions_en": ["unused"], "captions_zh": []} for i in range(3)]  # an image-text source
TEXTS = [{"captions_en": ["a red circle"], "captions_zh": ["一个红色的圆"]}, {"captions_en": [], "captions_zh": ["蓝色"]}]


def test_map_style_rows_cover_the_larger_source_and_cycle_the_smaller():
    pairs = TowerPairs(IMAGES, TEXTS)
    assert len(pairs) == 3
    assert [row["captions_zh"] for row in pairs] == [["一个红色的圆"], ["蓝色"], ["一个红色的圆"]]
    assert pairs[2]["image"] == IMAGES[2]["image"]
    with pytest.raises(IndexError):
        pairs[3]  # rows wrap around sources, never past the epoch
    assert set(pairs[0]) == {"image", "captions_en", "captions_zh"}  # the image source's own captions are left out
    assert set(TowerPairs(IMAGES, None)[0]) == {"image"}
    with pytest.raises(ValueError, match="image data, text data, or both"):
        TowerPairs(None, None)


def test_streams_are_zipped_until_both_have_ended_once():
    rows = list(StreamingTowerPairs(IMAGES, TEXTS))
    assert len(rows) == 3  # the text stream restarts once, the image stream ends the epoch
    assert [row["captions_en"] for row in rows] == [["a red circle"], [], ["a red circle"]]
    assert len(list(StreamingTowerPairs(None, TEXTS))) == 2


def test_collator_gives_student_and_teacher_inputs(stage1_workspace):
    teacher_processor = AutoProcessor.from_pretrained(str(stage1_workspace.teacher_dir))
    rows = list(TowerPairs(IMAGES, TEXTS))  # map-style rows end with IndexError like any sequence
    shared = ImageTextCollator(teacher_processor, teacher_processor, max_text_length=32, teacher_shares_tokenizer=True)
    batch = shared(rows)
    assert tuple(batch["pixel_values"].shape) == tuple(batch["teacher_pixel_values"].shape) == (3, 3, 32, 32)
    assert batch["input_ids"].shape[0] == 3 and "teacher_input_ids" not in batch  # the teacher reads the student's ids
    other = AutoProcessor.from_pretrained(str(stage1_workspace.teacher_dir))
    other.tokenizer = AutoTokenizer.from_pretrained(str(stage1_workspace.other_tokenizer_dir))
    separate = ImageTextCollator(other, teacher_processor, max_text_length=32, teacher_shares_tokenizer=False)(rows)
    assert separate["teacher_input_ids"].shape[0] == separate["input_ids"].shape[0] == 3
