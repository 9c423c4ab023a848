"""ONNX export of each tower: parity with PyTorch at batch sizes and text lengths other than the export example's,
dynamic axes declared in the graph, and int8 copies that stay close to fp32."""

from __future__ import annotations

import onnx
import pytest
import torch

from dcclip.export.onnx_export import export_image_tower, export_text_tower
from dcclip.export.onnx_model import OnnxCLIPModel
from dcclip.export.parity import compare_embeddings
from dcclip.export.quantize import quantize_int8_dynamic

TEXTS = ["a cat", "一只猫和一只狗", "two yellow stars on the right", "左边有一个绿色的三角形", "这是一张照片"]


@pytest.fixture(scope="module", params=["tiny", "tiny-vit"])
def exported(request, tmp_path_factory, tiny_tokenizer):
    """(model, folder) with image_encoder.onnx / text_encoder.onnx and their int8 copies, per tiny preset."""
    from modeling_dcclip import DCCLIPConfig, DCCLIPModel

    torch.manual_seed(0)
    model = DCCLIPModel(DCCLIPConfig.from_preset(request.param, vocab_size=len(tiny_tokenizer))).eval()
    folder = tmp_path_factory.mktemp(f"onnx_{request.param}")
    for path in (export_image_tower(model, folder / "image_encoder.onnx"),
                 export_text_tower(model, folder / "text_encoder.onnx")):
        quantize_int8_dynamic(path, path.with_suffix(".int8.onnx"))
    return model, folder


def _text_batch(tokenizer, texts):
    encoded = tokenizer(texts, return_tensors="pt", padding=True)
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


@pytest.mark.parametrize("batch_size", [1, 5])
def test_fp32_image_encoder_matches_pytorch_at_any_batch_size(exported, batch_size):
    model, folder = exported
    pixel_values = torch.randn(batch_size, 3, 32, 32, generator=torch.Generator().manual_seed(batch_size))
    with torch.no_grad():
        reference = model.get_image_features(pixel_values).pooler_output
    parity = compare_embeddings(OnnxCLIPModel(image_encoder=folder / "image_encoder.onnx").get_image_features(pixel_values), reference)
    assert parity.max_abs_error < 1e-4
    assert parity.min_cosine > 0.99999


@pytest.mark.parametrize("texts", [TEXTS[:1], TEXTS], ids=["one-text", "padded-bilingual-batch"])
def test_fp32_text_encoder_matches_pytorch_with_padding_and_new_lengths(exported, tiny_tokenizer, texts):
    model, folder = exported
    batch = _text_batch(tiny_tokenizer, texts)
    with torch.no_grad():
        reference = model.get_text_features(**batch).pooler_output
    parity = compare_embeddings(OnnxCLIPModel(text_encoder=folder / "text_encoder.onnx").get_text_features(**batch), reference)
    assert parity.max_abs_error < 1e-4
    assert parity.min_cosine > 0.99999


def test_graphs_declare_dynamic_batch_and_sequence_axes(exported):
    _, folder = exported

    def symbolic_axes(path):
        graph = onnx.load(str(path)).graph
        return {i.name: [bool(d.dim_param) for d in i.type.tensor_type.shape.dim] for i in graph.input}

    assert symbolic_axes(folder / "image_encoder.onnx") == {"pixel_values": [True, False, False, False]}
    assert symbolic_axes(folder / "text_encoder.onnx") == {"input_ids": [True, True], "attention_mask": [True, True]}


def test_int8_encoders_are_quantized_smaller_and_close_to_fp32(exported, tiny_tokenizer):
    _, folder = exported
    fp32, int8 = OnnxCLIPModel.from_folder(folder), OnnxCLIPModel.from_folder(folder, suffix=".int8")
    pixel_values = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    batch = _text_batch(tiny_tokenizer, TEXTS)
    image = compare_embeddings(int8.get_image_features(pixel_values), fp32.get_image_features(pixel_values))
    text = compare_embeddings(int8.get_text_features(**batch), fp32.get_text_features(**batch))
    assert image.min_cosine > 0.99 and text.min_cosine > 0.99
    # Quantization really happened: integer matmuls in the graph, and a smaller file.
    for tower in ("image_encoder", "text_encoder"):
        ops = {node.op_type for node in onnx.load(str(folder / f"{tower}.int8.onnx")).graph.node}
        assert "MatMulInteger" in ops
        assert (folder / f"{tower}.int8.onnx").stat().st_size < (folder / f"{tower}.onnx").stat().st_size
    assert image.max_abs_error > 0  # int8 is an approximation; identical outputs would mean fp32 was run twice


def test_onnx_model_rejects_a_missing_export_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="dcclip export"):
        OnnxCLIPModel.from_folder(tmp_path)
