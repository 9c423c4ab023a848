"""The deployment folder `dcclip export` writes: each tower as ONNX (fp32, and int8 unless turned off), the processor
files, and `export_report.json` with every file's parity against PyTorch and, on request, the zero-shot scores of
PyTorch, ONNX fp32 and ONNX int8 on the built-in benchmark."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from transformers import AutoModel, AutoProcessor

import modeling_dcclip  # noqa: F401  (registers DCCLIPModel / DCCLIPProcessor with the Auto classes)
from dcclip.command_errors import CommandError
from modeling_dcclip import as_embedding

from .onnx_export import (
    DEFAULT_OPSET,
    IMAGE_ENCODER_FILE,
    TEXT_ENCODER_FILE,
    export_image_tower,
    export_text_tower,
    image_size_of,
)
from .onnx_model import OnnxCLIPModel
from .parity import ParityReport, compare_embeddings
from .quantize import quantize_int8_dynamic

if TYPE_CHECKING:
    from .cli import ExportArguments

logger = logging.getLogger(__name__)

REPORT_FILE = "export_report.json"
# Bilingual sentences of different lengths, so the parity batch has padding and both scripts.
PARITY_TEXTS = [
    "a photo of a cat",
    "一张猫的照片",
    "a red circle on the left of a blue square, seen from above",
    "左边有一个红色的圆形，右边有一个蓝色的正方形",
    "dog",
    "狗",
    "two yellow stars and a green triangle on a white background",
    "白色背景上有两颗黄色的星星和一个绿色的三角形",
]
# Below this cosine to PyTorch an int8 file is still written, but flagged in the log and the report.
INT8_MIN_COSINE = 0.99


def parity_inputs(processor, num_images: int, seed: int = 0) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Tokenized `PARITY_TEXTS` (padded) and `num_images` random RGB images of different sizes, preprocessed."""
    rng = np.random.default_rng(seed)
    images = [Image.fromarray(rng.integers(0, 256, (200 + 17 * i, 260 - 13 * i, 3), dtype=np.uint8))
              for i in range(num_images)]
    text = processor(text=PARITY_TEXTS, return_tensors="pt", padding=True, truncation=True)
    pixel_values = processor(images=images, return_tensors="pt")["pixel_values"]
    return {"input_ids": text["input_ids"], "attention_mask": text["attention_mask"]}, pixel_values


def pytorch_references(model, text_inputs: dict[str, torch.Tensor], pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
    """The PyTorch model's image and text embeddings of the parity inputs (computed once, compared to every export)."""
    with torch.no_grad():
        return {
            "image": as_embedding(model.get_image_features(pixel_values=pixel_values)),
            "text": as_embedding(model.get_text_features(**text_inputs)),
        }


def check_towers(references: dict[str, torch.Tensor], onnx_model: OnnxCLIPModel, text_inputs: dict[str, torch.Tensor],
                 pixel_values: torch.Tensor) -> dict[str, ParityReport]:
    """Parity of the ONNX image and text encoders against the PyTorch `references` on the same inputs."""
    return {
        "image": compare_embeddings(onnx_model.get_image_features(pixel_values), references["image"]),
        "text": compare_embeddings(onnx_model.get_text_features(**text_inputs), references["text"]),
    }


def export_model(args: ExportArguments, show_progress: bool = False) -> dict:
    """Export, quantize and check (with a progress bar over the zero-shot check when `show_progress`); returns the
    report that is also written to `output_dir/export_report.json`."""
    output_dir = Path(args.output_dir)
    model = AutoModel.from_pretrained(args.model_name_or_path).eval()
    processor = AutoProcessor.from_pretrained(args.model_name_or_path)
    output_dir.mkdir(parents=True, exist_ok=True)
    processor.save_pretrained(output_dir)

    opset = args.opset or DEFAULT_OPSET
    image_path = export_image_tower(model, output_dir / IMAGE_ENCODER_FILE, opset=opset)
    text_path = export_text_tower(model, output_dir / TEXT_ENCODER_FILE, opset=opset)
    text_inputs, pixel_values = parity_inputs(processor, args.parity_images)

    references = pytorch_references(model, text_inputs, pixel_values)
    onnx_models = {"onnx-fp32": OnnxCLIPModel(image_path, text_path)}
    fp32_parity = check_towers(references, onnx_models["onnx-fp32"], text_inputs, pixel_values)
    size = image_size_of(model)
    report = {
        "source": args.model_name_or_path,
        "opset": opset,
        "inputs": {"image_encoder": {"pixel_values": f"float32 (batch, 3, {size}, {size})"},
                   "text_encoder": {"input_ids": "int64 (batch, sequence)", "attention_mask": "int64 (batch, sequence)"}},
        "outputs": {"image_encoder": "image_embeds float32 (batch, projection_dim), not normalised",
                    "text_encoder": "text_embeds float32 (batch, projection_dim), not normalised"},
        "files": {p.name: p.stat().st_size for p in (image_path, text_path)},
        "parity": {"fp32": {tower: r.to_dict() for tower, r in fp32_parity.items()}},
        "arguments": asdict(args),
    }
    for tower, result in fp32_parity.items():
        logger.info("fp32 %s encoder vs PyTorch: max abs error %.2e, min cosine %.6f", tower, result.max_abs_error,
                    result.min_cosine)
    report_path = output_dir / REPORT_FILE
    broken = {tower: r.max_abs_error for tower, r in fp32_parity.items() if r.max_abs_error > args.fp32_tolerance}
    if broken:
        report_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        raise CommandError(f"ONNX fp32 export differs from PyTorch beyond {args.fp32_tolerance}: {broken} "
                           f"(report: {report_path})")

    if args.int8:
        int8_paths = [quantize_int8_dynamic(p, p.with_suffix(".int8.onnx")) for p in (image_path, text_path)]
        onnx_models["onnx-int8"] = OnnxCLIPModel(*int8_paths)
        int8_parity = check_towers(references, onnx_models["onnx-int8"], text_inputs, pixel_values)
        report["files"].update({p.name: p.stat().st_size for p in int8_paths})
        report["parity"]["int8"] = {tower: r.to_dict() for tower, r in int8_parity.items()}
        for tower, result in int8_parity.items():
            log = logger.warning if result.min_cosine < INT8_MIN_COSINE else logger.info
            log("int8 %s encoder vs PyTorch: min cosine %.4f (flagged below %.2f)", tower, result.min_cosine,
                INT8_MIN_COSINE)

    if args.benchmark:
        from dcclip.evaluation.tasks import load_builtin_benchmark
        from dcclip.languages import LANGUAGES

        from .zero_shot_change import compare_zero_shot

        models = {"pytorch": model, **onnx_models}
        report["zero_shot"] = compare_zero_shot(models, processor, load_builtin_benchmark(args.benchmark, LANGUAGES),
                                                LANGUAGES, show_progress=show_progress)
        for task, per_language in report["zero_shot"].items():
            for language, row in per_language.items():
                logger.info("zero-shot %s (%s): %s", task, language,
                            ", ".join(f"{k} {v:.4f}" for k, v in row.items()))

    report_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return report
