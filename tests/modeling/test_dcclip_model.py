"""DCCLIPModel: towers from configs, CLIP-style outputs, hidden states for distillation, clear errors on bad input."""

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, Trainer, TrainingArguments
from transformers.modeling_outputs import BaseModelOutputWithPooling

from modeling_dcclip import DCCLIPConfig, DCCLIPModel, as_embedding


def _inputs(processor, images, texts):
    return processor(text=texts, images=images, return_tensors="pt", padding=True)


def test_forward_returns_clip_style_logits_and_normalised_embeddings(tiny_model, tiny_processor, random_images):
    batch = _inputs(tiny_processor, random_images, ["a red circle", "一张红色圆形的照片", "a cat"])
    out = tiny_model(**batch, return_loss=True)
    assert out.logits_per_image.shape == (3, 3)
    torch.testing.assert_close(out.logits_per_text, out.logits_per_image.t())
    torch.testing.assert_close(out.image_embeds.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(out.text_embeds.norm(dim=-1), torch.ones(3))
    # the loss is CLIP's symmetric cross-entropy over the similarity matrix
    target = torch.arange(3)
    expected = (
        torch.nn.functional.cross_entropy(out.logits_per_image, target)
        + torch.nn.functional.cross_entropy(out.logits_per_text, target)
    ) / 2
    torch.testing.assert_close(out.loss, expected)


def test_get_features_return_transformers_5_outputs_whose_normalised_pooler_output_is_forwards_embedding(
    tiny_model, tiny_processor, random_images
):
    batch = _inputs(tiny_processor, random_images, ["a red circle", "一张红色圆形的照片", "a cat"])
    out = tiny_model(**batch)
    image = tiny_model.get_image_features(batch["pixel_values"])
    text = tiny_model.get_text_features(batch["input_ids"], batch["attention_mask"])
    for features, tower_output in ((image, out.vision_model_output), (text, out.text_model_output)):
        assert isinstance(features, BaseModelOutputWithPooling)  # code written for transformers 5's CLIP reads it
        assert features.pooler_output.shape == (3, tiny_model.config.projection_dim)
        torch.testing.assert_close(features.last_hidden_state, tower_output.last_hidden_state)
        assert as_embedding(features) is features.pooler_output  # the documented way to the embedding tensor
    torch.testing.assert_close(F.normalize(as_embedding(image), dim=-1), out.image_embeds)
    torch.testing.assert_close(F.normalize(as_embedding(text), dim=-1), out.text_embeds)


def test_get_features_pass_their_keyword_arguments_to_the_tower(make_tiny_model, tiny_processor, random_images):
    model = make_tiny_model("tiny-vit")
    model.set_attn_implementation("eager")  # SDPA computes no attention weights
    batch = _inputs(tiny_processor, random_images, ["a red circle", "一张红色圆形的照片", "a cat"])
    image = model.get_image_features(batch["pixel_values"], output_hidden_states=True, output_attentions=True)
    text = model.get_text_features(batch["input_ids"], batch["attention_mask"], output_hidden_states=True)
    assert len(image.hidden_states) == model.config.vision_config.num_hidden_layers + 1
    assert len(image.attentions) == model.config.vision_config.num_hidden_layers
    assert len(text.hidden_states) == model.config.text_config.num_hidden_layers + 1
    assert model.get_text_features(batch["input_ids"], batch["attention_mask"]).hidden_states is None
    as_tuple = model.get_image_features(batch["pixel_values"], return_dict=False)
    assert isinstance(as_tuple, tuple)
    torch.testing.assert_close(as_tuple[1], image.pooler_output)


def test_output_hidden_states_with_layer_indices_keeps_only_those_layers(make_tiny_model, tiny_processor, random_images):
    model = make_tiny_model("tiny-vit")  # ViT and BERT towers select layers by index (transformers 5)
    batch = _inputs(tiny_processor, random_images, ["a", "b", "c"])
    every_layer = model(**batch, output_hidden_states=True)
    first_layer = model(**batch, output_hidden_states=[0])
    for selected, full in ((first_layer.text_model_output, every_layer.text_model_output),
                           (first_layer.vision_model_output, every_layer.vision_model_output)):
        assert len(selected.hidden_states) == len(full.hidden_states)
        torch.testing.assert_close(selected.hidden_states[0], full.hidden_states[0])
        assert all(hidden is None for hidden in selected.hidden_states[1:])


@pytest.mark.parametrize("preset", ["tiny", "tiny-vit"])
def test_the_trainer_counts_text_tokens_not_pixels(make_tiny_model, tiny_processor, random_images, tmp_path, preset):
    model = make_tiny_model(preset)
    batch = {**_inputs(tiny_processor, random_images, ["a red circle", "一张红色圆形的照片", "a cat"]), "return_loss": True}
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=3, use_cpu=True,
                             include_num_input_tokens_seen="all", report_to=[], save_strategy="no")
    trainer = Trainer(model=model, args=args, train_dataset=[0, 1, 2], data_collator=lambda _: batch)
    trainer.train()
    tokens = batch["input_ids"].numel()
    assert trainer.state.num_input_tokens_seen == tokens
    assert trainer.state.total_flos == 6 * tokens * model.num_parameters(exclude_embeddings=True)


def test_hidden_states_are_returned_for_both_towers_when_asked(tiny_model, tiny_processor, random_images):
    batch = _inputs(tiny_processor, random_images, ["a", "b", "c"])
    out = tiny_model(**batch, output_hidden_states=True)
    # embeddings + one per layer/stage
    assert len(out.text_model_output.hidden_states) == tiny_model.config.text_config.num_hidden_layers + 1
    assert len(out.vision_model_output.hidden_states) >= 2
    assert tiny_model(**batch).text_model_output.hidden_states is None


def test_text_mean_pooling_ignores_padding(make_tiny_model, tiny_tokenizer):
    model = make_tiny_model("tiny")
    alone = tiny_tokenizer(["a cat"], return_tensors="pt")
    padded = tiny_tokenizer(["a cat", "a photo of a blue square on the left"], return_tensors="pt", padding=True)
    torch.testing.assert_close(
        model.get_text_features(**alone).pooler_output[0], model.get_text_features(**padded).pooler_output[0],
        atol=1e-5, rtol=1e-5,
    )


@pytest.mark.parametrize("vision", [
    {"model_type": "resnet", "embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1], "layer_type": "basic"},
    {"model_type": "mobilevit", "image_size": 32, "hidden_sizes": [16, 16, 16], "neck_hidden_sizes": [8, 8, 8, 8, 8, 8, 16], "num_attention_heads": 2},
    {"model_type": "convnextv2", "num_stages": 2, "hidden_sizes": [8, 16], "depths": [1, 1]},
])
def test_cnn_towers_of_several_families_build_and_embed(vision):
    config = DCCLIPConfig(
        vision_config=vision,
        text_config={"model_type": "bert", "vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "intermediate_size": 32},
        projection_dim=8,
    )
    model = DCCLIPModel(config).eval()
    features = model.get_image_features(torch.randn(2, 3, 32, 32)).pooler_output
    assert features.shape == (2, 8)
    assert torch.isfinite(features).all()


def test_unused_pooler_layers_are_not_built(make_tiny_model):
    # DDP fails on parameters that get no gradient; a ViT with cls pooling must not carry a pooler
    model = make_tiny_model("tiny-vit")
    assert model.config.vision_pooling == "cls"
    assert getattr(model.vision_model, "pooler", None) is None
    assert getattr(model.text_model, "pooler", None) is None


def test_unknown_tower_model_type_is_a_clear_error():
    with pytest.raises(ValueError, match=r"vision_config: unknown model_type 'not-a-backbone'"):
        DCCLIPConfig(vision_config={"model_type": "not-a-backbone"})
    with pytest.raises(ValueError, match=r"text_config needs a 'model_type'"):
        DCCLIPConfig(text_config={"hidden_size": 8})


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown DC-CLIP preset 'huge'.*edge"):
        DCCLIPConfig.from_preset("huge")


def test_mismatched_batch_sizes_with_loss_is_a_clear_error(make_tiny_model, tiny_processor, random_images):
    model = make_tiny_model("tiny")
    batch = _inputs(tiny_processor, random_images[:2], ["one", "two", "three"])
    with pytest.raises(ValueError, match="got 2 images and 3 texts"):
        model(**batch, return_loss=True)
    assert model(**batch).logits_per_image.shape == (2, 3)  # without a loss, any sizes are fine


def test_wrong_channel_count_is_a_clear_error(make_tiny_model):
    model = make_tiny_model("tiny")
    with pytest.raises(ValueError, match="pixel_values has 1 channels but the image tower expects 3"):
        model.get_image_features(torch.randn(2, 1, 32, 32))


def test_config_round_trips_through_auto_config(tmp_path):
    config = DCCLIPConfig.from_preset("tiny", vocab_size=123, projection_dim=24)
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, DCCLIPConfig)
    assert loaded.vision_config.model_type == "convnextv2"
    assert loaded.text_config.vocab_size == 123
    assert loaded.projection_dim == 24


def test_from_vision_text_pretrained_keeps_backbone_weights(tmp_path):
    from transformers import BertConfig, BertModel, ConvNextV2Config, ConvNextV2Model

    torch.manual_seed(0)
    vision = ConvNextV2Model(ConvNextV2Config(num_stages=2, hidden_sizes=[8, 16], depths=[1, 1]))
    text = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32))
    vision.save_pretrained(tmp_path / "vision")
    text.save_pretrained(tmp_path / "text")
    model = DCCLIPModel.from_vision_text_pretrained(str(tmp_path / "vision"), str(tmp_path / "text"), projection_dim=8)
    for name, tensor in vision.state_dict().items():
        torch.testing.assert_close(model.vision_model.state_dict()[name], tensor)
    torch.testing.assert_close(model.text_model.embeddings.word_embeddings.weight, text.embeddings.word_embeddings.weight)


def test_gradient_checkpointing_gives_the_same_gradients(make_tiny_model, tiny_processor, random_images):
    batch = _inputs(tiny_processor, random_images, ["a red circle", "a cat", "一只猫"])
    grads = []
    for checkpointing in (False, True):
        model = make_tiny_model("tiny-vit").train()
        for module in model.modules():  # no dropout, so that the two runs are comparable in train mode
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        if checkpointing:
            model.activation_checkpointing_enable()
            for tower in (model.text_model, model.vision_model):
                assert any(getattr(m, "gradient_checkpointing", False) for m in tower.modules())
        model(**batch, return_loss=True).loss.backward()
        grads.append(model.vision_model.embeddings.patch_embeddings.projection.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])
