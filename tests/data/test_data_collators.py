"""The collator turns canonical samples into the canonical bilingual batch (each image once, `image_index` and
`language` per caption): the student's inputs and, where a stage needs them, the teacher's."""

from __future__ import annotations

import pytest
import torch

from dcclip.trainers.data import LANGUAGE_IDS, ImageTextCollator

EN, ZH = "a photo of a red circle", "一张红色圆形的照片"


def _pair(image_bytes, en=(EN,), zh=(ZH,), seed=0):
    return {
        "image": {"bytes": image_bytes(seed=seed, size=(40, 30)), "path": None},
        "captions_en": list(en),
        "captions_zh": list(zh),
    }


def _decoded(processor, input_ids) -> list[str]:
    texts = processor.tokenizer.batch_decode(input_ids, skip_special_tokens=True)
    return [text.replace(" ", "") for text in texts]


def test_student_and_teacher_inputs_hold_the_same_images_and_captions_at_their_own_sizes(
    image_bytes, tiny_processor, teacher_processor
):
    samples = [_pair(image_bytes, seed=i) for i in range(3)]
    batch = ImageTextCollator(tiny_processor, teacher_processor, bilingual="both")(samples)

    assert batch["pixel_values"].shape == (3, 3, 32, 32)  # each image once
    assert batch["teacher_pixel_values"].shape == (3, 3, 48, 48)
    assert batch["input_ids"].shape[0] == batch["teacher_input_ids"].shape[0] == 6
    assert batch["image_index"].tolist() == [0, 0, 1, 1, 2, 2]
    assert batch["attention_mask"].shape == batch["input_ids"].shape
    assert batch["teacher_attention_mask"].shape == batch["teacher_input_ids"].shape
    # The tokenizers differ, yet each row carries the same caption for both.
    assert not torch.equal(batch["input_ids"][:, :5], batch["teacher_input_ids"][:, :5])
    assert _decoded(tiny_processor, batch["input_ids"]) == _decoded(teacher_processor, batch["teacher_input_ids"])
    assert _decoded(tiny_processor, batch["input_ids"]) == [EN.replace(" ", ""), ZH] * 3


def test_both_mode_keeps_one_caption_per_language_an_image_has_and_points_it_at_the_image(image_bytes, tiny_processor):
    samples = [_pair(image_bytes, seed=0), _pair(image_bytes, zh=(), seed=1)]
    batch = ImageTextCollator(tiny_processor, bilingual="both")(samples)
    assert batch["language"].tolist() == [LANGUAGE_IDS["en"], LANGUAGE_IDS["zh"], LANGUAGE_IDS["en"]]
    assert batch["image_index"].tolist() == [0, 0, 1]
    assert batch["pixel_values"].shape[0] == 2
    assert not torch.equal(batch["pixel_values"][0], batch["pixel_values"][1])
    assert "teacher_pixel_values" not in batch


def test_sample_mode_draws_one_language_per_image_reproducibly_from_torch_seed(image_bytes, tiny_processor):
    collator = ImageTextCollator(tiny_processor, bilingual="sample")
    samples = [_pair(image_bytes, seed=i) for i in range(16)]
    torch.manual_seed(0)
    first = collator(samples)
    torch.manual_seed(0)
    again = collator(samples)
    assert first["pixel_values"].shape[0] == first["input_ids"].shape[0] == 16
    assert first["image_index"].tolist() == list(range(16))
    assert torch.equal(first["language"], again["language"])
    assert set(first["language"].tolist()) == {0, 1}
    assert _decoded(tiny_processor, first["input_ids"]) == [
        EN.replace(" ", "") if language == 0 else ZH for language in first["language"].tolist()
    ]


def test_one_caption_of_a_caption_list_is_drawn(image_bytes, tiny_processor):
    captions = ("a photo of a blue square", "a green triangle on the left", "a cat and a dog")
    collator = ImageTextCollator(tiny_processor)
    drawn = set()
    for seed in range(12):
        torch.manual_seed(seed)
        drawn.update(_decoded(tiny_processor, collator([_pair(image_bytes, en=captions, zh=())])["input_ids"]))
    assert drawn == {caption.replace(" ", "") for caption in captions}


def test_text_only_and_image_only_batches_give_only_their_tower_inputs(image_bytes, tiny_processor, teacher_processor):
    collator = ImageTextCollator(tiny_processor, teacher_processor, max_text_length=4)
    texts = collator([{"captions_en": [EN], "captions_zh": []}, {"captions_en": [], "captions_zh": [ZH]}])
    assert sorted(texts) == [
        "attention_mask", "image_index", "input_ids", "language", "teacher_attention_mask", "teacher_input_ids"
    ]  # fmt: skip
    assert texts["language"].tolist() == [0, 1] and texts["input_ids"].shape == (2, 4)
    images = collator([{"image": {"bytes": image_bytes(), "path": None}}])
    assert sorted(images) == ["pixel_values", "teacher_pixel_values"]


def test_unknown_bilingual_mode_is_rejected(tiny_processor):
    with pytest.raises(ValueError, match="'sample' or 'both'"):
        ImageTextCollator(tiny_processor, bilingual="all")
