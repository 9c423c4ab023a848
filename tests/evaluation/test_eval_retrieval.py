"""Recall@K for image<->text retrieval with several captions per image, against hand-worked rankings."""

from __future__ import annotations

import pytest
import torch

from dcclip.evaluation.retrieval import evaluate_retrieval, retrieval_recalls
from dcclip.evaluation.tasks import RetrievalTask, load_retrieval_split


def test_recalls_of_a_hand_ranked_similarity_matrix():
    # 3 images; captions 0,1 -> image 0, caption 2 -> image 1, caption 3 -> image 2.
    similarity = torch.tensor(
        [
            [0.1, 0.9, 0.8, 0.0],  # image 0: best own caption (1) ranks 1st -> rank 0
            [0.7, 0.2, 0.5, 0.6],  # image 1: own caption (2) scores 0.5; 0.7 and 0.6 beat it -> rank 2
            [0.3, 0.1, 0.2, 0.4],  # image 2: own caption (3) ranks 1st -> rank 0
        ]
    )
    owner = torch.tensor([0, 0, 1, 2])
    recalls = retrieval_recalls(similarity, owner, ks=(1, 2, 3))
    assert recalls["image_to_text_R@1"] == pytest.approx(2 / 3)
    assert recalls["image_to_text_R@3"] == pytest.approx(1.0)
    # text->image, per caption column: c0 own 0.1 < 0.7, 0.3 -> rank 2; c1 own 0.9 -> 0; c2 own 0.5 < 0.8 -> 1;
    # c3 own 0.4 < 0.6 -> 1
    assert recalls["text_to_image_R@1"] == pytest.approx(1 / 4)
    assert recalls["text_to_image_R@2"] == pytest.approx(3 / 4)
    assert recalls["text_to_image_R@3"] == pytest.approx(1.0)
    expected_mean = (2 / 3 + 2 / 3 + 1 + 1 / 4 + 3 / 4 + 1) / 6  # image_to_text_R@2 is 2/3 too
    assert recalls["mean_recall"] == pytest.approx(expected_mean)


def test_images_without_captions_are_left_out_of_image_to_text():
    similarity = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.95, 0.95]])  # image 2 has no caption
    recalls = retrieval_recalls(similarity, torch.tensor([0, 1]), ks=(1,))
    assert recalls["image_to_text_R@1"] == 1.0
    assert recalls["text_to_image_R@1"] == 0.0  # image 2 outscores the right image for both captions


def test_caption_owner_shape_is_checked():
    with pytest.raises(ValueError, match="caption_to_image has shape"):
        retrieval_recalls(torch.zeros(2, 3), torch.tensor([0, 1]))


def test_evaluate_retrieval_both_languages(make_tiny_model, tiny_processor, retrieval_dir):
    task = load_retrieval_split(retrieval_dir, "pairs")
    model = make_tiny_model("tiny")
    for language in ("en", "zh"):
        result = evaluate_retrieval(model, tiny_processor, task, language, batch_size=4)
        assert (result.num_images, result.num_captions, result.images_without_caption) == (6, 12, 0)
        scores = result.scores
        assert scores["text_to_image_R@10"] == 1.0  # only 6 candidate images
        for direction in ("image_to_text", "text_to_image"):
            assert scores[f"{direction}_R@1"] <= scores[f"{direction}_R@5"] <= scores[f"{direction}_R@10"]
        assert result.score == pytest.approx(sum(v for k, v in scores.items() if "_R@" in k) / 6)


def test_evaluate_retrieval_counts_images_without_captions(make_tiny_model, tiny_processor, retrieval_dir):
    full = load_retrieval_split(retrieval_dir, "pairs", ["en"])
    captions = [list(c) for c in full.captions["en"]]
    captions[2] = []
    task = RetrievalTask("pairs", full.images, {"en": captions})
    result = evaluate_retrieval(make_tiny_model("tiny"), tiny_processor, task, "en")
    assert (result.num_captions, result.images_without_caption) == (10, 1)
