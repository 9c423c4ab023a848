"""Fixtures of the evaluation tests: a tiny AltCLIP teacher, and small data written in each on-disk format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

COLORS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 180, 30)}
SHAPES = ["circle", "square", "triangle"]
COLOR_ZH = {"red": "红色", "blue": "蓝色", "green": "绿色"}
SHAPE_ZH = {"circle": "圆形", "square": "正方形", "triangle": "三角形"}


def draw_scene(color: str, shape: str, size: int = 40, seed: int = 0) -> Image.Image:
    """A coloured shape on a noisy grey background."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(100, 140, (size, size, 3), dtype=np.uint8))
    draw = ImageDraw.Draw(image)
    box = (8, 8, size - 8, size - 8)
    if shape == "circle":
        draw.ellipse(box, fill=COLORS[color])
    elif shape == "square":
        draw.rectangle(box, fill=COLORS[color])
    else:
        draw.polygon([(size // 2, 6), (6, size - 6), (size - 6, size - 6)], fill=COLORS[color])
    return image


@pytest.fixture(scope="session")
def scene():
    """``scene(color, shape, size=40, seed=0)`` -> a PIL image of a coloured shape (see :func:`draw_scene`)."""
    return draw_scene


@pytest.fixture(scope="session")
def tiny_altclip(tiny_tokenizer):
    """A tiny AltCLIP teacher (transformers' AltCLIPModel) and its processor; ``get_*_features`` return model outputs."""
    import torch
    from transformers import AltCLIPConfig, AltCLIPModel, AltCLIPProcessor

    from modeling_dcclip import make_image_processor

    torch.manual_seed(0)
    config = AltCLIPConfig(
        text_config={
            "vocab_size": len(tiny_tokenizer),
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 37,
            "project_dim": 32,
            "max_position_embeddings": 80,
            "pad_token_id": tiny_tokenizer.pad_token_id,
        },
        vision_config={
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 37,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    model = AltCLIPModel(config).eval()
    processor = AltCLIPProcessor(image_processor=make_image_processor(32), tokenizer=tiny_tokenizer)
    return model, processor


@pytest.fixture(scope="session")
def builtin_benchmark_dir(tmp_path_factory) -> Path:
    """The built-in benchmark format: an imagefolder with one label column per task, plus tasks.json.

    12 images; ``color`` labels are class ids, ``shape`` labels are English class names (both forms are allowed).
    """
    root = tmp_path_factory.mktemp("benchmark")
    rows = []
    for index in range(12):
        color, shape = list(COLORS)[index % 3], SHAPES[(index // 3) % 3]
        draw_scene(color, shape, seed=index).save(root / f"scene_{index:02d}.png")
        rows.append({"file_name": f"scene_{index:02d}.png", "color": list(COLORS).index(color), "shape": shape})
    (root / "metadata.jsonl").write_text("\n".join(json.dumps(row) for row in rows) + "\n", encoding="utf-8")
    tasks = {
        "color": {
            "label_column": "color",
            "classnames": {"en": list(COLORS), "zh": [COLOR_ZH[c] for c in COLORS]},
            "templates": {"en": ["a photo of a {} shape", "a {} thing"], "zh": ["一张{}的照片"]},
            "metric": "accuracy",
            "description": "colour of the shape",
        },
        "shape": {
            "label_column": "shape",
            "classnames": {"en": SHAPES, "zh": [SHAPE_ZH[s] for s in SHAPES]},
            "templates": {"en": ["a photo of a {}"], "zh": ["一张{}的照片", "这是{}"]},
            "metric": "mean-per-class",
            "description": "which shape",
        },
    }
    (root / "tasks.json").write_text(json.dumps(tasks, ensure_ascii=False), encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def retrieval_dir(tmp_path_factory) -> Path:
    """A retrieval split: an imagefolder with list columns captions_en / captions_zh (two captions per image)."""
    root = tmp_path_factory.mktemp("retrieval")
    rows = []
    for index, (color, shape) in enumerate([(c, s) for c in COLORS for s in SHAPES][:6]):
        draw_scene(color, shape, seed=100 + index).save(root / f"pair_{index}.png")
        rows.append(
            {
                "file_name": f"pair_{index}.png",
                "captions_en": [f"a photo of a {color} {shape}", f"a {color} {shape}"],
                "captions_zh": [
                    f"一张{COLOR_ZH[color]}{SHAPE_ZH[shape]}的照片",
                    f"{COLOR_ZH[color]}的{SHAPE_ZH[shape]}",
                ],
            }
        )
    lines = [json.dumps(row, ensure_ascii=False) for row in rows]
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root
