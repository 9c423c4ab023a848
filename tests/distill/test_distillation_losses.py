"""Stage-1 losses against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from dcclip.trainers.losses.distillation import (
    clip_logits,
    embedding_distillation_loss,
    feature_map_loss,
    logit_distillation_loss,
    masked_smooth_l1,
    standardize_channels,
    symmetric_logit_distillation_loss,
)


def test_smooth_l1_is_quadratic_below_beta_and_linear_above():
    student = torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    teacher = torch.tensor([[0.5, -0.5, 2.0, -3.0]])
    # beta = 1: |d| < 1 -> 0.5 d^2 / beta = 0.125 each; |d| >= 1 -> |d| - 0.5 beta = 1.5 and 2.5. Mean of 4.
    assert masked_smooth_l1(student, teacher, beta=1.0).item() == pytest.approx((0.125 + 0.125 + 1.5 + 2.5) / 4)
    # beta = 4: all quadratic: 0.5 d^2 / 4 = 0.03125, 0.03125, 0.5, 1.125.
    assert masked_smooth_l1(student, teacher, beta=4.0).item() == pytest.approx((0.03125 * 2 + 0.5 + 1.125) / 4)


def test_token_mask_averages_over_real_tokens_only():
    # batch 1, 3 tokens, 2 channels; the last token is padding with a huge error that must not count.
    student = torch.zeros(1, 3, 2)
    teacher = torch.tensor([[[0.2, 0.4], [2.0, 0.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    # per element: 0.5*0.04=0.02, 0.5*0.16=0.08, 2-0.5=1.5, 0 -> sum 1.6 over 2 tokens x 2 channels
    assert masked_smooth_l1(student, teacher, 1.0, mask).item() == pytest.approx(1.6 / 4)


def test_feature_map_loss_is_the_mean_over_layer_pairs():
    student = [torch.zeros(1, 2, 1, 1), torch.zeros(1, 1, 2, 2)]
    teacher = [torch.full((1, 2, 1, 1), 3.0), torch.full((1, 1, 2, 2), 0.5)]
    # pair 1: every element |d| = 3 -> 2.5; pair 2: every element 0.5 * 0.25 = 0.125
    assert feature_map_loss(student, teacher, beta=1.0).item() == pytest.approx((2.5 + 0.125) / 2)


def test_feature_map_loss_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="2 student maps but 1 teacher"):
        feature_map_loss([torch.zeros(1, 2), torch.zeros(1, 2)], [torch.zeros(1, 2)])
    with pytest.raises(ValueError, match="adapt the student output"):
        feature_map_loss([torch.zeros(1, 2, 4, 4)], [torch.zeros(1, 2, 2, 2)])
    with pytest.raises(ValueError, match="no feature maps"):
        feature_map_loss([], [])


def test_embedding_loss_is_one_minus_cosine_and_ignores_the_norm():
    student = torch.tensor([[1.0, 0.0], [3.0, 3.0]])
    teacher = torch.tensor([[0.0, 2.0], [1.0, 1.0]])
    # row 1 orthogonal: 1 - 0 = 1; row 2 same direction, other norm: 1 - 1 = 0
    assert embedding_distillation_loss(student, teacher).item() == pytest.approx(0.5)
    # 45 degrees: 1 - cos(pi/4)
    value = embedding_distillation_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]])).item()
    assert value == pytest.approx(1 - math.sqrt(0.5))


def test_embedding_loss_needs_the_same_width():
    with pytest.raises(ValueError, match="student shape"):
        embedding_distillation_loss(torch.zeros(2, 3), torch.zeros(2, 4))


def test_logit_loss_is_kl_of_teacher_to_student_times_t_squared():
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[math.log(3.0), 0.0]])  # teacher probabilities (3/4, 1/4) at T = 1
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert logit_distillation_loss(student, teacher, temperature=1.0).item() == pytest.approx(expected)
    # T = 2 halves the logits: teacher (sqrt3 : 1) -> p = sqrt3 / (1 + sqrt3); the KL is scaled by T^2 = 4
    p = math.sqrt(3) / (1 + math.sqrt(3))
    expected_t2 = 4 * (p * math.log(p / 0.5) + (1 - p) * math.log((1 - p) / 0.5))
    assert logit_distillation_loss(student, teacher, temperature=2.0).item() == pytest.approx(expected_t2)
    assert logit_distillation_loss(teacher, teacher, temperature=2.0).item() == pytest.approx(0.0, abs=1e-7)


def test_logit_loss_averages_rows():
    student = torch.tensor([[0.0, 0.0], [5.0, 5.0]])
    teacher = torch.tensor([[math.log(3.0), 0.0], [1.0, 1.0]])
    first = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert logit_distillation_loss(student, teacher).item() == pytest.approx(first / 2)
    with pytest.raises(ValueError, match="temperature must be positive"):
        logit_distillation_loss(student, teacher, temperature=0.0)


def test_clip_logits_are_scaled_cosines():
    images = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    texts = torch.tensor([[1.0, 1.0]])
    logits = clip_logits(images, texts, torch.tensor(math.log(10.0)))
    assert logits.shape == (2, 1)
    assert logits[:, 0].tolist() == pytest.approx([10 * math.sqrt(0.5)] * 2)


def test_symmetric_logit_loss_averages_both_directions():
    student = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    teacher = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])
    rows = (0.75 * math.log(1.5) + 0.25 * math.log(0.5)) / 2  # image->text: first row only differs
    assert symmetric_logit_distillation_loss(student, teacher).item() == pytest.approx(rows)  # columns: same by symmetry


def test_standardize_channels_gives_zero_mean_unit_variance_per_position():
    grid = torch.tensor([[[[1.0]], [[3.0]]]])  # (1, 2 channels, 1, 1): mean 2, biased std 1
    assert standardize_channels(grid, channel_dim=1).flatten().tolist() == pytest.approx([-1.0, 1.0], abs=1e-5)
    tokens = torch.tensor([[[0.0, 4.0, 8.0]]])  # (1, 1 token, 3 channels): mean 4, std sqrt(32/3)
    scale = math.sqrt(32 / 3)
    assert standardize_channels(tokens, channel_dim=-1).flatten().tolist() == pytest.approx([-4 / scale, 0, 4 / scale], abs=1e-5)


def test_text_targets_at_some_tokens_compare_those_tokens_alone():
    from dcclip.trainers.losses.distillation import LossWeights, feature_distillation_loss
    from dcclip.trainers.student.adapters import StudentFeatures
    from dcclip.trainers.teacher.targets import TeacherTargets

    weights = LossWeights(standardize_teacher_maps=False)
    mask = torch.tensor([[1, 1, 1, 0]])
    kept = torch.tensor([[True, False, True, False]])  # a cache kept tokens 0 and 2
    teacher = TeacherTargets(text_maps=[torch.tensor([[[1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 0.0]]])],
                             text_attention_mask=mask, text_target_mask=kept)  # fmt: skip

    def loss(student_map: torch.Tensor) -> float:
        student = StudentFeatures(text_maps=[student_map])
        return feature_distillation_loss(student, teacher, weights, token_mask=mask)["text_feature_loss"].item()

    base = torch.zeros(1, 4, 2)
    # kept tokens 0 and 2, each one channel off by 1: 0.5 per element off, over 2 tokens x 2 channels
    assert loss(base) == pytest.approx(2 * 0.5 / 4)
    moved_dropped = base.clone()
    moved_dropped[0, 1] = 5.0  # a real token the cache did not keep: no target, no loss
    assert loss(moved_dropped) == pytest.approx(loss(base))
    moved_kept = base.clone()
    moved_kept[0, 0, 0] = 1.0  # now token 0 matches its target
    assert loss(moved_kept) == pytest.approx(0.5 / 4)
    # student and teacher tokenizers differ: the teacher's kept tokens are pooled (their mean), not every real token
    pooled = StudentFeatures(text_maps=[torch.zeros(1, 1, 2)])
    parts = feature_distillation_loss(pooled, teacher, weights, token_mask=None, text_token_by_token=False)
    assert parts["text_feature_loss"].item() == pytest.approx(2 * 0.5 * 0.5**2 / 2)  # target (0.5, 0.5)
