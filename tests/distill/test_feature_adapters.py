"""Student feature maps: token grids, the layer mapping (default and errors), adapters for CNN and ViT students."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dcclip.trainers.student.adapters import (
    SpatialAdapter,
    StudentWithAdapters,
    student_hidden_widths,
    student_image_grids,
)
from dcclip.trainers.teacher.geometry import (
    LayerPair,
    default_layer_mapping,
    masked_segment_means,
    resolve_layer_mapping,
    tokens_to_grid,
)
from dcclip.trainers.teacher.targets import TeacherLayout

# The tiny AltCLIP teacher's layout: 3 blocks per tower, width 64, 32 px / patch 8 -> 4 x 4 grid, projection 32.
TINY_TEACHER = TeacherLayout(
    num_image_layers=3, num_text_layers=3, image_width=64, text_width=64, image_grid=(4, 4), projection_dim=32
)


def test_tokens_to_grid_drops_cls_and_lays_patches_out_row_major():
    cls = torch.full((1, 1, 2), -1.0)
    patches = torch.arange(8.0).reshape(1, 4, 2)  # 4 patches of a 2 x 2 grid, 2 channels
    grid = tokens_to_grid(torch.cat([cls, patches], dim=1))
    assert grid.shape == (1, 2, 2, 2)
    assert grid[0, 0].tolist() == [[0.0, 2.0], [4.0, 6.0]]  # channel 0 of patches 0, 1 / 2, 3
    assert grid[0, 1].tolist() == [[1.0, 3.0], [5.0, 7.0]]
    with pytest.raises(ValueError, match="prefix tokens"):
        tokens_to_grid(torch.zeros(1, 7, 2))  # 4 patches + 3 extra tokens: not a ViT layout


def test_default_mapping_pairs_relative_depths_last_to_last():
    assert default_layer_mapping(4, 24, 4) == [LayerPair(1, 6), LayerPair(2, 12), LayerPair(3, 18), LayerPair(4, 24)]
    assert default_layer_mapping(6, 24, 4) == [LayerPair(2, 8), LayerPair(3, 12), LayerPair(5, 20), LayerPair(6, 24)]
    assert default_layer_mapping(2, 3, 4) == [LayerPair(1, 2), LayerPair(2, 3)]
    assert default_layer_mapping(12, 24, 1) == [LayerPair(12, 24)]


def test_configured_student_layers_get_teachers_at_the_same_relative_depth():
    assert resolve_layer_mapping("image", [2, 4], None, 4, 24, 4) == [LayerPair(2, 12), LayerPair(4, 24)]
    assert resolve_layer_mapping("text", [1], [7], 6, 24, 4) == [LayerPair(1, 7)]


@pytest.mark.parametrize(
    ("student", "teacher", "message"),
    [
        ([5], None, r"student_image_layers: index \[5\] out of range; the student image tower has hidden states 0..4"),
        ([1, 2], [3, 30], r"teacher_image_layers: index \[30\] out of range; the teacher image tower has hidden states 0..24"),
        ([-1], None, r"student_image_layers: index \[-1\] out of range"),
        ([1, 2], [3], "student_image_layers has 2 entries but teacher_image_layers has 1"),
        (None, [3], "teacher_image_layers is set but student_image_layers is not"),
        ([], None, "student_image_layers is empty"),
    ],
)
def test_mapping_errors_name_the_option(student, teacher, message):
    with pytest.raises(ValueError, match=message):
        resolve_layer_mapping("image", student, teacher, 4, 24, 4)


def test_mapping_must_use_layers_a_teacher_cache_holds():
    with pytest.raises(ValueError, match=r"teacher text layers \[12\] are not in the teacher cache"):
        resolve_layer_mapping("text", [1, 2], [12, 24], 2, 24, 4, cached_teacher_layers=[6, 24])


def test_spatial_adapter_resampling_preserves_constant_maps():
    # Resampling weights sum to one, which is why resampling and the 1x1 conv commute (bias included).
    adapter = SpatialAdapter(3, 5, (4, 4))
    for size in (8, 4, 2):
        constant = torch.ones(2, 3, size, size) * torch.tensor([1.0, -2.0, 0.5]).view(1, 3, 1, 1)
        out = adapter(constant)
        assert out.shape == (2, 5, 4, 4)
        expected = adapter.conv(constant[:, :, :1, :1])
        assert torch.allclose(out, expected.expand_as(out), atol=1e-5)


def _wrapper(model, **kwargs) -> StudentWithAdapters:
    pairs = [LayerPair(1, 2), LayerPair(2, 3)]
    options = dict(distill_target="feature_maps", teacher_layout=TINY_TEACHER, image_pairs=pairs, text_pairs=pairs)
    options.update(kwargs)
    return StudentWithAdapters(model, **options)


def _batch(tokenizer):
    texts = tokenizer(["a red circle", "一个蓝色的方块在左边"], padding=True, return_tensors="pt")
    return torch.randn(2, 3, 32, 32), texts["input_ids"], texts["attention_mask"]


def test_adapters_map_a_cnn_student_to_the_teacher_grid_and_width(make_tiny_model, tiny_tokenizer):
    model = _wrapper(make_tiny_model("tiny"))  # ConvNeXt-V2: stage 1 is 16 x 8 x 8, stage 2 is 32 x 4 x 4
    assert [type(a.conv) for a in model.image_adapters] == [nn.Conv2d, nn.Conv2d]
    assert [a.conv.in_channels for a in model.image_adapters] == [16, 32]
    assert all(a.conv.kernel_size == (1, 1) and a.conv.out_channels == 64 for a in model.image_adapters)
    pixels, ids, mask = _batch(tiny_tokenizer)
    features = model(pixel_values=pixels, input_ids=ids, attention_mask=mask)
    assert [tuple(m.shape) for m in features.image_maps] == [(2, 64, 4, 4)] * 2
    assert [tuple(m.shape) for m in features.text_maps] == [(2, ids.shape[1], 64)] * 2
    assert features.image_embeds.shape == features.text_embeds.shape == (2, 32)


def test_adapters_map_vit_student_tokens_to_the_teacher_grid(make_tiny_model, tiny_tokenizer):
    model = _wrapper(make_tiny_model("tiny-vit"))  # ViT 32 px / patch 8: 1 CLS + 16 patch tokens of width 32
    assert [a.conv.in_channels for a in model.image_adapters] == [32, 32]
    assert [type(a.linear) for a in model.text_adapters] == [nn.Linear, nn.Linear]
    pixels, ids, mask = _batch(tiny_tokenizer)
    features = model(pixel_values=pixels, input_ids=ids, attention_mask=mask)
    assert [tuple(m.shape) for m in features.image_maps] == [(2, 64, 4, 4)] * 2


def test_student_widths_are_probed_without_weights(make_tiny_model):
    image_widths, text_widths = student_hidden_widths(make_tiny_model("tiny").config)
    assert image_widths == [16, 16, 32] and text_widths == [32, 32, 32]


def test_segment_means_cover_each_texts_real_tokens_in_relative_order():
    hidden = torch.arange(6.0).view(1, 6, 1).repeat(3, 1, 1)  # token j carries the value j
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]])
    # 6 tokens: 0-2 | 3-5; 3 tokens: 0-1 | 1-2 (the middle one shared); 1 token: the same token in both
    assert masked_segment_means(hidden, mask, 2).squeeze(-1).tolist() == [[1.0, 4.0], [0.5, 1.5], [0.0, 0.0]]
    # 3 segments of 3 tokens: one token each; one segment: the mean over the real tokens, padding ignored
    assert masked_segment_means(hidden, mask, 3)[1].squeeze(-1).tolist() == [0.0, 1.0, 2.0]
    assert masked_segment_means(hidden, mask, 1).squeeze(-1).tolist() == [[2.5], [1.0], [0.0]]
    with pytest.raises(ValueError, match="segments must be >= 1"):
        masked_segment_means(hidden, mask, 0)


def test_pooled_text_adapters_give_segment_means_per_text(make_tiny_model, tiny_tokenizer):
    model = _wrapper(make_tiny_model("tiny"), text_token_by_token=False, text_segments=2)
    _, ids, mask = _batch(tiny_tokenizer)
    features = model(input_ids=ids, attention_mask=mask)
    assert [tuple(m.shape) for m in features.text_maps] == [(2, 2, 64)] * 2
    assert features.image_maps is None


def test_only_parts_a_loss_reaches_stay_trainable(make_tiny_model):
    model = _wrapper(make_tiny_model("tiny"), text_pairs=None)  # image tower only
    student = model.student
    assert not any(p.requires_grad for p in student.text_model.parameters())
    assert not student.text_projection.weight.requires_grad and not student.logit_scale.requires_grad
    assert all(p.requires_grad for p in student.vision_model.parameters())
    assert student.visual_projection.weight.requires_grad
    assert len(model.text_adapters) == 0

    logits = _wrapper(make_tiny_model("tiny"), distill_target="logits")
    assert logits.student.logit_scale.requires_grad
    assert len(logits.image_adapters) == len(logits.text_adapters) == 0 and logits.embedding_adapter is None

    no_embedding = _wrapper(make_tiny_model("tiny"), embedding_loss=False)
    assert not no_embedding.student.visual_projection.weight.requires_grad


def test_embedding_adapter_only_when_projection_widths_differ(make_tiny_model):
    assert _wrapper(make_tiny_model("tiny")).embedding_adapter is None  # both 32
    wide_teacher = TeacherLayout(**{**TINY_TEACHER.__dict__, "projection_dim": 48})
    adapter = _wrapper(make_tiny_model("tiny"), teacher_layout=wide_teacher).embedding_adapter
    assert (adapter.in_features, adapter.out_features) == (32, 48)


def test_mapping_errors_stop_distill_at_start_up(stage1, tmp_path):
    from dcclip.trainers.distill import run

    output_dir = tmp_path / "run"
    with pytest.raises(ValueError, match=r"student_image_layers: index \[3\] out of range.*0\.\.2"):
        run(stage1.argv(output_dir, "--student_image_layers", "1", "3"))
    with pytest.raises(ValueError, match="student_text_layers has 2 entries but teacher_text_layers has 1"):
        run(stage1.argv(output_dir, "--student_text_layers", "1", "2", "--teacher_text_layers", "3"))
    assert not output_dir.exists()  # nothing trained, nothing written


def test_spatial_adapter_resamples_bfloat16_maps_in_float32():
    # CPU has no bfloat16 antialiased resize: the adapter resamples in float32, then the 1x1 conv runs under autocast
    adapter = SpatialAdapter(3, 5, (4, 4))
    maps = torch.randn(2, 3, 14, 14)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = adapter(maps.to(torch.bfloat16))
    assert low.dtype == torch.bfloat16 and low.shape == (2, 5, 4, 4)
    assert torch.allclose(low.float(), adapter(maps), atol=5e-2)


def test_student_grids_are_probed_without_weights(make_tiny_model):
    # tiny ConvNeXt at 32 px: stem and stage 1 on 8 x 8, stage 2 on 4 x 4; the ViT's 16 patch tokens on 4 x 4
    assert student_image_grids(make_tiny_model("tiny").config) == [(8, 8), (8, 8), (4, 4)]
    assert set(student_image_grids(make_tiny_model("tiny-vit").config)) == {(4, 4)}
