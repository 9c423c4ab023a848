"""`dcclip export` end to end: a saved student folder in, a self-contained deployment folder out."""

from __future__ import annotations

import json

import torch
from transformers import AutoModel, AutoProcessor

from dcclip.export.cli import main
from dcclip.export.onnx_model import OnnxCLIPModel


def test_export_writes_onnx_int8_processor_and_a_parity_report(saved_tiny_student, tmp_path, random_images):
    from dcclip.trainers.data.synthetic_scenes import generate_benchmark

    benchmark = generate_benchmark(tmp_path / "scenes", n_train=4, n_eval=24, image_size=32, n_retrieval=2)
    out = tmp_path / "deploy"
    argv = ["--model_name_or_path", str(saved_tiny_student), "--output_dir", str(out), "--benchmark", str(benchmark.eval_dir)]
    assert main(argv) == 0

    report = json.loads((out / "export_report.json").read_text())
    assert set(report["files"]) == {"image_encoder.onnx", "text_encoder.onnx", "image_encoder.int8.onnx", "text_encoder.int8.onnx"}
    assert report["opset"] >= 17
    for tower in ("image", "text"):
        assert report["parity"]["fp32"][tower]["max_abs_error"] < 1e-4
        assert report["parity"]["int8"][tower]["min_cosine"] > 0.99

    # Zero-shot scores on the built-in benchmark, EN and ZH: ONNX fp32 predicts exactly what PyTorch predicts.
    assert set(report["zero_shot"]) == {"colour", "shape", "colour_shape", "count", "position"}
    for per_language in report["zero_shot"].values():
        assert set(per_language) == {"en", "zh"}
        for row in per_language.values():
            assert row["onnx-fp32_same_prediction"] == 1.0 and row["onnx-fp32_minus_pytorch"] == 0.0
            assert 0.0 <= row["onnx-int8_same_prediction"] <= 1.0
            assert row["onnx-int8_minus_pytorch"] == row["onnx-int8"] - row["pytorch"]

    # A device needs nothing but this folder: the processor loads from it and feeds the ONNX encoders.
    processor = AutoProcessor.from_pretrained(out)
    onnx_model = OnnxCLIPModel.from_folder(out)
    model = AutoModel.from_pretrained(saved_tiny_student).eval()
    inputs = processor(text=["a cat and a dog", "一只猫和一只狗"], images=random_images, return_tensors="pt", padding=True)
    with torch.no_grad():
        torch.testing.assert_close(onnx_model.get_image_features(inputs["pixel_values"]),
                                   model.get_image_features(inputs["pixel_values"]).pooler_output, atol=1e-4, rtol=0)
        torch.testing.assert_close(onnx_model.get_text_features(inputs["input_ids"], inputs["attention_mask"]),
                                   model.get_text_features(inputs["input_ids"], inputs["attention_mask"]).pooler_output, atol=1e-4, rtol=0)
