"""The stage-2 loss against hand-computed values, and its global-batch form on 2 CPU processes (gloo)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from modeling_dcclip.modeling_dcclip import symmetric_clip_loss
from dcclip.trainers.losses.contrastive import (
    ContrastiveLoss,
    GatheredFeatures,
    bilingual_contrastive_loss,
    gather_features,
)

EN, ZH = 0, 1


def _cross_entropy(logits: list[float], target: int) -> float:
    return -logits[target] + math.log(sum(math.exp(x) for x in logits))


def _local(images, texts, index, language) -> GatheredFeatures:
    return gather_features(torch.tensor(images), torch.tensor(texts), torch.tensor(index), torch.tensor(language))


def test_loss_matches_hand_computed_clip_example_with_one_caption_per_image():
    features = _local(images=[[1.0, 0.0], [0.0, 1.0]], texts=[[1.0, 0.0], [0.6, 0.8]], index=[0, 1], language=[EN, EN])
    # logits_per_text = 2 * texts @ images.T = [[2, 0], [1.2, 1.6]]
    text_to_image = _cross_entropy([2.0, 0.0], 0) + _cross_entropy([1.2, 1.6], 1)
    image_to_text = _cross_entropy([2.0, 1.2], 0) + _cross_entropy([0.0, 1.6], 1)
    expected = (text_to_image / 2 + image_to_text / 2) / 2
    out = bilingual_contrastive_loss(features, torch.tensor(2.0), num_languages=2)
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    assert out.loss_per_language[EN].item() == pytest.approx(expected, rel=1e-6)


def test_loss_normalises_embeddings():
    scaled = _local(images=[[3.0, 0.0], [0.0, 0.5]], texts=[[2.0, 0.0], [6.0, 8.0]], index=[0, 1], language=[EN, EN])
    unit = _local(images=[[1.0, 0.0], [0.0, 1.0]], texts=[[1.0, 0.0], [0.6, 0.8]], index=[0, 1], language=[EN, EN])
    assert bilingual_contrastive_loss(scaled, torch.tensor(2.0), 2).loss.item() == pytest.approx(
        bilingual_contrastive_loss(unit, torch.tensor(2.0), 2).loss.item(), rel=1e-6
    )


def _image_with_two_captions_and_image_with_one() -> GatheredFeatures:
    """Image 0 has an English and a Chinese caption, image 1 only an English one; at temperature 1 the logits are
    texts @ images.T = [[0.8, 0.6], [0.6, 0.8], [0.0, 1.0]] (rows: en0, zh0, en1)."""
    return _local(
        images=[[1.0, 0.0], [0.0, 1.0]],
        texts=[[0.8, 0.6], [0.6, 0.8], [0.0, 1.0]],
        index=[0, 0, 1],
        language=[EN, ZH, EN],
    )


def test_per_language_negatives_match_hand_computed_example_where_other_language_captions_are_not_negatives():
    features = _image_with_two_captions_and_image_with_one()
    out = bilingual_contrastive_loss(features, torch.tensor(1.0), 2, image_to_text_negatives="per_language")
    # text -> image: each caption against both images
    t2i_en0 = _cross_entropy([0.8, 0.6], 0)
    t2i_zh0 = _cross_entropy([0.6, 0.8], 0)
    t2i_en1 = _cross_entropy([0.0, 1.0], 1)
    # image -> text in English: images 0 and 1 against the English captions only (the Chinese caption is no negative)
    i2t_en0 = _cross_entropy([0.8, 0.0], 0)
    i2t_en1 = _cross_entropy([0.6, 1.0], 1)
    # image -> text in Chinese: image 0 against its only Chinese caption: a certain match
    i2t_zh0 = 0.0
    expected = (t2i_en0 + t2i_zh0 + t2i_en1 + i2t_en0 + i2t_en1 + i2t_zh0) / (2 * 3)
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    assert out.loss_per_language[EN].item() == pytest.approx((t2i_en0 + t2i_en1 + i2t_en0 + i2t_en1) / 4, rel=1e-6)
    assert out.loss_per_language[ZH].item() == pytest.approx((t2i_zh0 + i2t_zh0) / 2, rel=1e-6)
    assert out.pairs_per_language.tolist() == [2, 1]


def test_all_captions_negatives_match_hand_computed_example_where_only_siblings_are_masked():
    features = _image_with_two_captions_and_image_with_one()
    out = bilingual_contrastive_loss(features, torch.tensor(1.0), 2, image_to_text_negatives="all_captions")
    # text -> image: unchanged
    t2i_en0 = _cross_entropy([0.8, 0.6], 0)  # 0.598139
    t2i_zh0 = _cross_entropy([0.6, 0.8], 0)  # 0.798139
    t2i_en1 = _cross_entropy([0.0, 1.0], 1)  # 0.313262
    # image -> text: image 0 scores the captions [0.8, 0.6, 0.0]; for each of its pairs the sibling caption is removed
    i2t_en0 = _cross_entropy([0.8, 0.0], 0)  # 0.371101 (zh0 masked)
    i2t_zh0 = _cross_entropy([0.6, 0.0], 0)  # 0.437488 (en0 masked; image 1's English caption is now a negative)
    # image 1 scores [0.6, 0.8, 1.0]: both captions of image 0, the Chinese one included, are negatives
    i2t_en1 = _cross_entropy([0.6, 0.8, 1.0], 2)  # 0.911901
    expected = (t2i_en0 + t2i_zh0 + t2i_en1 + i2t_en0 + i2t_zh0 + i2t_en1) / (2 * 3)  # 0.571672
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    assert out.loss_per_language[EN].item() == pytest.approx((t2i_en0 + t2i_en1 + i2t_en0 + i2t_en1) / 4, rel=1e-6)
    assert out.loss_per_language[ZH].item() == pytest.approx((t2i_zh0 + i2t_zh0) / 2, rel=1e-6)


def test_mixed_language_batch_with_one_caption_per_image_is_clip_loss_only_with_all_captions_negatives():
    # image 0 has an English caption, image 1 a Chinese one
    # logits_per_text = 2 * texts @ images.T = [[2, 0], [1.2, 1.6]]
    features = _local(images=[[1.0, 0.0], [0.0, 1.0]], texts=[[1.0, 0.0], [0.6, 0.8]], index=[0, 1], language=[EN, ZH])
    text_to_image = _cross_entropy([2.0, 0.0], 0) + _cross_entropy([1.2, 1.6], 1)  # 0.126928 + 0.513015
    image_to_text = _cross_entropy([2.0, 1.2], 0) + _cross_entropy([0.0, 1.6], 1)  # 0.371101 + 0.183901
    all_captions = bilingual_contrastive_loss(features, torch.tensor(2.0), 2, image_to_text_negatives="all_captions")
    assert all_captions.loss.item() == pytest.approx((text_to_image + image_to_text) / 4, rel=1e-6)  # 0.298736
    # per language each image ranks only its own caption: a certain match, so the image -> text term is 0
    per_language = bilingual_contrastive_loss(features, torch.tensor(2.0), 2, image_to_text_negatives="per_language")
    assert per_language.loss.item() == pytest.approx(text_to_image / 4, rel=1e-6)  # 0.159986


@pytest.mark.parametrize("image_to_text_negatives", ["per_language", "all_captions"])
def test_one_language_batch_with_one_caption_per_image_is_clip_loss(image_to_text_negatives):
    torch.manual_seed(0)
    images, texts = torch.randn(5, 8), torch.randn(5, 8)
    features = gather_features(images, texts, torch.arange(5), torch.zeros(5, dtype=torch.long))
    out = bilingual_contrastive_loss(features, torch.tensor(7.0), 2, image_to_text_negatives=image_to_text_negatives)
    logits_per_text = 7.0 * nn.functional.normalize(texts, dim=-1) @ nn.functional.normalize(images, dim=-1).t()
    assert out.loss.item() == pytest.approx(symmetric_clip_loss(logits_per_text).item(), rel=1e-5)
    assert torch.isnan(out.loss_per_language[ZH])  # no Chinese pair: reported as nan, not as 0


def test_all_captions_negatives_give_clip_loss_for_any_mix_of_languages_per_language_ones_a_lower_loss():
    torch.manual_seed(0)
    images, texts = torch.randn(5, 8), torch.randn(5, 8)
    features = gather_features(images, texts, torch.arange(5), torch.tensor([EN, ZH, ZH, EN, ZH]))
    logits_per_text = 7.0 * nn.functional.normalize(texts, dim=-1) @ nn.functional.normalize(images, dim=-1).t()
    clip = symmetric_clip_loss(logits_per_text).item()
    all_captions = bilingual_contrastive_loss(features, torch.tensor(7.0), 2, image_to_text_negatives="all_captions")
    per_language = bilingual_contrastive_loss(features, torch.tensor(7.0), 2, image_to_text_negatives="per_language")
    assert all_captions.loss.item() == pytest.approx(clip, rel=1e-5)
    # per language an image ranks 2 or 3 captions instead of 5: fewer negatives, a lower loss than CLIP's
    assert per_language.loss.item() < clip


def test_temperature_receives_a_gradient():
    torch.manual_seed(0)
    log_scale = nn.Parameter(torch.tensor(math.log(10.0)))
    out = ContrastiveLoss(num_languages=2)(
        torch.randn(4, 8), torch.randn(4, 8), torch.arange(4), torch.tensor([EN, EN, ZH, ZH]), log_scale.exp()
    )
    out.loss.backward()
    assert log_scale.grad is not None and log_scale.grad.abs().item() > 0


@pytest.mark.parametrize(
    ("index", "language", "message"),
    [
        ([0, 0], [EN, EN], "more than one caption in the same language"),
        ([0, 2], [EN, EN], "must point at one of the 2 images"),
        ([0, 1], [EN, 2], "language ids must lie in"),
    ],
)
def test_bilingual_loss_rejects_inconsistent_batches(index, language, message):
    features = gather_features(torch.randn(2, 4), torch.randn(2, 4), torch.tensor(index), torch.tensor(language))
    with pytest.raises(ValueError, match=message):
        bilingual_contrastive_loss(features, torch.tensor(1.0), num_languages=2)


def test_unknown_image_to_text_negatives_option_is_named():
    features = gather_features(torch.randn(2, 4), torch.randn(2, 4), torch.arange(2), torch.tensor([EN, ZH]))
    with pytest.raises(ValueError, match="image_to_text_negatives must be one of .* got 'every_caption'"):
        bilingual_contrastive_loss(features, torch.tensor(1.0), 2, image_to_text_negatives="every_caption")


# ----- two processes ------------------------------------------------------------------------------------------

# Each rank holds a different number of images and captions (images with one or two captions).
_RANK_IMAGES = [3, 2]
_RANK_TEXTS = [([0, 0, 1, 2], [EN, ZH, ZH, EN]), ([0, 1, 1], [ZH, EN, ZH])]


def _global_batch():
    """The concatenated batch, identical in every process: raw image/text inputs and a tiny image and text tower."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(sum(_RANK_IMAGES), 6, generator=generator)
    texts = torch.randn(sum(len(i) for i, _ in _RANK_TEXTS), 5, generator=generator)
    offsets = [0, _RANK_IMAGES[0]]
    index = torch.tensor([i + offsets[r] for r, (idx, _) in enumerate(_RANK_TEXTS) for i in idx])
    language = torch.tensor([lang for _, langs in _RANK_TEXTS for lang in langs])
    torch.manual_seed(1)
    towers = nn.ModuleDict({"image": nn.Linear(6, 4), "text": nn.Linear(5, 4)})
    towers.log_logit_scale = nn.Parameter(torch.tensor(math.log(20.0)))
    return images, texts, index, language, towers


def _loss_and_grads(towers, images, texts, index, language, local_loss, image_to_text_negatives):
    loss_fn = ContrastiveLoss(num_languages=2, local_loss=local_loss, image_to_text_negatives=image_to_text_negatives)
    towers.zero_grad()
    out = loss_fn(towers["image"](images), towers["text"](texts), index, language, towers.log_logit_scale.exp())
    out.loss.backward()
    return out, {name: p.grad.clone() for name, p in towers.named_parameters()}


def _rank_worker(rank: int, init_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        for image_to_text_negatives in ("per_language", "all_captions"):
            for local_loss in (False, True):
                _check_rank_against_one_process(rank, local_loss, image_to_text_negatives)
    finally:
        dist.destroy_process_group()


def _check_rank_against_one_process(rank: int, local_loss: bool, image_to_text_negatives: str) -> None:
    """This rank's loss (averaged over ranks) and its gradients (averaged over ranks, as DDP and DeepSpeed do) must
    equal the loss and gradients of one process on the concatenated batch."""
    form = f"{'local' if local_loss else 'full'} form, {image_to_text_negatives} negatives"
    images, texts, index, language, towers = _global_batch()
    # one process on the concatenated batch (no process group involved: world size 1 features)
    reference = bilingual_contrastive_loss(
        GatheredFeatures(towers["image"](images), towers["text"](texts), index, language, slice(None), 1),
        towers.log_logit_scale.exp(),
        2,
        image_to_text_negatives=image_to_text_negatives,
    )
    towers.zero_grad()
    reference.loss.backward()
    expected_grads = {name: p.grad.clone() for name, p in towers.named_parameters()}

    image_rows = slice(sum(_RANK_IMAGES[:rank]), sum(_RANK_IMAGES[: rank + 1]))
    text_start = sum(len(i) for i, _ in _RANK_TEXTS[:rank])
    text_rows = slice(text_start, text_start + len(_RANK_TEXTS[rank][0]))
    local_index = torch.tensor(_RANK_TEXTS[rank][0])
    out, grads = _loss_and_grads(
        towers, images[image_rows], texts[text_rows], local_index, language[text_rows], local_loss,
        image_to_text_negatives,
    )  # fmt: skip

    mean_loss = out.loss.detach().clone()
    dist.all_reduce(mean_loss)
    mean_loss /= 2
    torch.testing.assert_close(mean_loss, reference.loss.detach(), msg=lambda m: f"{form}, mean loss: {m}")
    if not local_loss:
        torch.testing.assert_close(
            out.loss.detach(), reference.loss.detach(), msg=lambda m: f"{form}, loss on rank {rank}: {m}"
        )
    per_language = out.loss_per_language.clone()
    dist.all_reduce(per_language)
    torch.testing.assert_close(
        per_language / 2, reference.loss_per_language, msg=lambda m: f"{form}, loss per language: {m}"
    )
    for name, grad in grads.items():
        dist.all_reduce(grad)
        torch.testing.assert_close(
            grad / 2,
            expected_grads[name],
            msg=lambda m, name=name: f"{form}, gradient of {name} on rank {rank}: {m}",
        )


def test_gathered_loss_and_gradients_on_two_ranks_equal_one_process_on_concatenated_batch(tmp_path, monkeypatch):
    """Full and local forms, both image -> text negatives options, with ranks holding different numbers of images and
    captions (images with one or two captions)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    mp.spawn(_rank_worker, args=(str(tmp_path / "init"),), nprocs=2, join=True)
