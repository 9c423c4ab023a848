"""The frozen teacher: targets of a tiny AltCLIP (and CLIP-family) teacher, frozen state, weight digests, tokenizers."""

from __future__ import annotations

import pytest
import torch
from transformers import AltCLIPConfig, ChineseCLIPConfig, ChineseCLIPModel, CLIPConfig, CLIPModel

from modeling_dcclip import DCCLIPProcessor, make_image_processor
from dcclip.trainers.teacher.geometry import tokens_to_grid
from dcclip.trainers.teacher.model import (
    DistillationTeacher,
    build_altclip_teacher,
    device_computes_bfloat16,
    load_teacher_layout,
    resolve_dtype,
    shares_tokenizer,
    teacher_weights_digest,
)


@pytest.fixture(scope="module")
def tiny_teacher(stage1_workspace) -> DistillationTeacher:
    return DistillationTeacher.from_pretrained(str(stage1_workspace.teacher_dir))


def _texts(tokenizer):
    return tokenizer(["a red circle on the left", "左边有一个红色的圆形"], padding=True, return_tensors="pt")


def test_tiny_altclip_teacher_has_the_requested_shape(stage1_workspace):
    model, processor = build_altclip_teacher(stage1_workspace.tokenizer, hidden_size=48, num_layers=2)
    assert isinstance(model.config, AltCLIPConfig)
    assert model.config.text_config.vocab_size == len(stage1_workspace.tokenizer)
    assert model.config.text_config.pad_token_id == 1
    assert (model.config.vision_config.hidden_size, model.config.vision_config.num_hidden_layers) == (48, 2)
    assert processor.image_processor.crop_size["height"] == 32
    assert model.num_parameters() < 1_000_000


def test_teacher_returns_selected_layers_on_the_patch_grid_and_embeddings(tiny_teacher, stage1_workspace):
    texts = _texts(stage1_workspace.tokenizer)
    targets = tiny_teacher(
        pixel_values=torch.randn(2, 3, 32, 32),
        input_ids=texts["input_ids"],
        attention_mask=texts["attention_mask"],
        image_layers=[1, 3],
        text_layers=[3],
    )
    assert [tuple(m.shape) for m in targets.image_maps] == [(2, 64, 4, 4)] * 2  # 16 patches, CLS dropped
    assert [tuple(m.shape) for m in targets.text_maps] == [(2, texts["input_ids"].shape[1], 64)]
    assert targets.image_embeds.shape == targets.text_embeds.shape == (2, 32)
    assert targets.logit_scale.item() == pytest.approx(tiny_teacher.model.config.logit_scale_init_value)
    # the embeddings are those of the model's own public API
    expected = tiny_teacher.model.get_text_features(**texts).pooler_output
    assert torch.allclose(targets.text_embeds, expected)


def test_teacher_is_frozen_and_computes_no_gradients(tiny_teacher, stage1_workspace):
    assert not tiny_teacher.model.training
    assert not any(p.requires_grad for p in tiny_teacher.model.parameters())
    targets = tiny_teacher(pixel_values=torch.randn(1, 3, 32, 32), image_layers=[2])
    assert targets.image_embeds.grad_fn is None and targets.image_maps[0].grad_fn is None


def test_layout_comes_from_the_config_alone(stage1_workspace, tiny_teacher):
    layout = load_teacher_layout(str(stage1_workspace.teacher_dir))
    assert layout == tiny_teacher.layout
    assert (layout.num_image_layers, layout.image_width, layout.image_grid, layout.projection_dim) == (3, 64, (4, 4), 32)


def test_digest_changes_with_a_one_ulp_weight_change(stage1_workspace):
    model, _ = build_altclip_teacher(stage1_workspace.tokenizer)
    before = teacher_weights_digest(model)
    assert teacher_weights_digest(build_altclip_teacher(stage1_workspace.tokenizer)[0]) == before  # same seed
    with torch.no_grad():
        weight = model.text_model.roberta.encoder.layers[0].attention.self.query.weight
        weight[0, 0] = torch.nextafter(weight[0, 0], torch.tensor(float("inf")))
    assert teacher_weights_digest(model) != before


def test_teacher_dtype_follows_mixed_precision_or_the_name(stage1_workspace):
    assert resolve_dtype("auto", bf16=True) == torch.bfloat16
    assert resolve_dtype("auto", fp16=True) == torch.float16
    assert resolve_dtype("auto") == torch.float32
    with pytest.raises(ValueError, match="teacher dtype"):
        resolve_dtype("float64")
    teacher = DistillationTeacher.from_pretrained(str(stage1_workspace.teacher_dir), dtype=torch.bfloat16)
    targets = teacher(pixel_values=torch.randn(1, 3, 32, 32), image_layers=[3])
    assert targets.image_embeds.dtype == torch.bfloat16


def test_shared_tokenizer_is_detected(tiny_teacher, stage1_workspace):
    from transformers import AutoTokenizer

    student_tokenizer = AutoTokenizer.from_pretrained(str(stage1_workspace.teacher_dir))
    assert shares_tokenizer(student_tokenizer, tiny_teacher.tokenizer)
    other = AutoTokenizer.from_pretrained(str(stage1_workspace.other_tokenizer_dir))
    assert not shares_tokenizer(other, tiny_teacher.tokenizer)


def test_teacher_from_a_config_needs_its_processor():
    with pytest.raises(ValueError, match="needs its processor"):
        DistillationTeacher.from_pretrained(AltCLIPConfig())


def _tiny_clip_family(config_class, tokenizer, num_layers: int) -> DistillationTeacher:
    small = {"hidden_size": 32, "num_hidden_layers": num_layers, "num_attention_heads": 2, "intermediate_size": 64}
    config = config_class(
        text_config={"vocab_size": len(tokenizer), "max_position_embeddings": 40, **small},
        vision_config={"image_size": 32, "patch_size": 8, **small},
        projection_dim=16,
    )
    processor = DCCLIPProcessor(image_processor=make_image_processor(32), tokenizer=tokenizer)
    return DistillationTeacher.from_pretrained(config, processor=processor)


@pytest.mark.parametrize("config_class", [CLIPConfig, ChineseCLIPConfig])
def test_clip_and_chinese_clip_teachers_give_the_same_targets(config_class, stage1_workspace):
    tokenizer = stage1_workspace.tokenizer
    teacher = _tiny_clip_family(config_class, tokenizer, num_layers=2)
    assert isinstance(teacher.model, CLIPModel if config_class is CLIPConfig else ChineseCLIPModel)
    texts = _texts(tokenizer)
    targets = teacher(
        pixel_values=torch.randn(2, 3, 32, 32), input_ids=texts["input_ids"], attention_mask=texts["attention_mask"],
        image_layers=[2], text_layers=[1, 2],
    )  # fmt: skip
    assert tuple(targets.image_maps[0].shape) == (2, 32, 4, 4)
    assert [tuple(m.shape) for m in targets.text_maps] == [(2, texts["input_ids"].shape[1], 32)] * 2
    assert targets.image_embeds.shape == targets.text_embeds.shape == (2, 16)


@pytest.mark.parametrize("config_class", [AltCLIPConfig, CLIPConfig, ChineseCLIPConfig])
def test_layers_caught_by_hooks_are_the_models_own_hidden_states(config_class, stage1_workspace):
    tokenizer = stage1_workspace.tokenizer
    if config_class is AltCLIPConfig:
        teacher = DistillationTeacher(*build_altclip_teacher(tokenizer))
    else:
        teacher = _tiny_clip_family(config_class, tokenizer, num_layers=3)
    texts, pixels = _texts(tokenizer), torch.randn(2, 3, 32, 32)
    targets = teacher(pixel_values=pixels, **texts, image_layers=[0, 1, 2, 3], text_layers=[3, 0, 2])
    with torch.no_grad():
        images = teacher.model.get_image_features(pixel_values=pixels, output_hidden_states=True)
        captions = teacher.model.get_text_features(**texts, output_hidden_states=True)
    for index, caught in zip([0, 1, 2, 3], targets.image_maps):
        assert torch.equal(caught, tokens_to_grid(images.hidden_states[index]))
    for index, caught in zip([3, 0, 2], targets.text_maps):
        assert torch.equal(caught, captions.hidden_states[index])
    assert torch.equal(targets.image_embeds, images.pooler_output)
    assert torch.equal(targets.text_embeds, captions.pooler_output)


def test_without_embeddings_the_teacher_stops_after_the_deepest_requested_layer(tiny_teacher, stage1_workspace):
    blocks = tiny_teacher.model.vision_model.encoder.layers
    ran = []
    handles = [block.register_forward_hook(lambda m, a, o, i=i: ran.append(i)) for i, block in enumerate(blocks)]
    pixels = torch.randn(2, 3, 32, 32)
    try:
        early = tiny_teacher(pixel_values=pixels, image_layers=[1], with_embeddings=False)
        assert ran == [0]  # block 0 gives hidden state 1; blocks 1 and 2 never ran
        ran.clear()
        full = tiny_teacher(pixel_values=pixels, image_layers=[1])
        assert ran == [0, 1, 2]
    finally:
        for handle in handles:
            handle.remove()
    assert early.image_embeds is None and full.image_embeds is not None
    assert torch.equal(early.image_maps[0], full.image_maps[0])


def test_teacher_runs_in_inference_mode_and_returns_tensors_a_loss_can_save(tiny_teacher):
    modes = []
    block = tiny_teacher.model.vision_model.encoder.layers[0]
    handle = block.register_forward_hook(lambda *_: modes.append(torch.is_inference_mode_enabled()))
    try:
        targets = tiny_teacher(pixel_values=torch.randn(2, 3, 32, 32), image_layers=[3])
    finally:
        handle.remove()
    assert modes == [True]
    assert not targets.image_maps[0].is_inference() and not targets.image_embeds.is_inference()
    student = torch.zeros_like(targets.image_embeds, requires_grad=True)
    torch.nn.functional.smooth_l1_loss(student, targets.image_embeds).backward()  # saves the target for backward
    assert student.grad is not None


def test_auto_dtype_is_bfloat16_for_wide_teachers_where_the_device_computes_it(stage1_workspace):
    capable = device_computes_bfloat16("cpu")
    assert resolve_dtype("auto", device="cpu", width=1024) == (torch.bfloat16 if capable else torch.float32)
    assert resolve_dtype("auto", device="cpu", width=64) == torch.float32  # narrow layers: bf16 costs more on CPU
    assert resolve_dtype("auto", fp16=True, device="cpu", width=1024) == torch.float16  # the run's precision wins
    assert resolve_dtype("float32", device="cpu", width=1024) == torch.float32  # explicit float32 arithmetic
