"""Shared fixtures: a tiny bilingual tokenizer, tiny students (CNN and ViT towers) and their processor. No network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
# ELEVATER's public metadata (class names, templates, metrics) lives beside the repository in the development
# workspace and in CI, never inside it; a plain clone has no such folder, and the tests that need it skip there.
ELEVATER_METADATA_DIR = REPO_ROOT.parent / "shared" / "elevater"

# A small bilingual corpus: enough for SentencePiece to learn pieces for every character the tests use.
TINY_CORPUS = [
    "a photo of a red circle",
    "a photo of a blue square",
    "a green triangle on the left",
    "two yellow stars on the right",
    "a cat and a dog",
    "一张红色圆形的照片",
    "一张蓝色正方形的照片",
    "左边有一个绿色的三角形",
    "右边有两颗黄色的星星",
    "一只猫和一只狗",
    "这是一张照片",
] * 20


@dataclass(frozen=True)
class ElevaterMetadata:
    """`../shared/elevater/`: `en` / `zh` are the parsed JSON files, `en_path` / `zh_path` their paths."""

    en_path: Path
    zh_path: Path
    en: dict
    zh: dict


@pytest.fixture(scope="session")
def elevater_metadata() -> ElevaterMetadata:
    """ELEVATER's public metadata, read when a test asks for it (never at import); skips where it is absent."""
    en_path, zh_path = ELEVATER_METADATA_DIR / "elevater_en.json", ELEVATER_METADATA_DIR / "elevater_zh.json"
    missing = [path.name for path in (en_path, zh_path) if not path.is_file()]
    if missing:
        pytest.skip(
            f"ELEVATER metadata not found: {ELEVATER_METADATA_DIR} lacks {', '.join(missing)} (the public class names "
            "and templates sit beside the repository in the development workspace and CI, not in a clone)"
        )
    read = lambda path: json.loads(path.read_text(encoding="utf-8"))  # noqa: E731
    return ElevaterMetadata(en_path, zh_path, read(en_path), read(zh_path))


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    from dcclip.trainers.data.tokenizer import build_bilingual_tokenizer

    return build_bilingual_tokenizer(TINY_CORPUS, vocab_size=300, save_dir=tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="session")
def tiny_processor(tiny_tokenizer):
    from modeling_dcclip import DCCLIPProcessor, make_image_processor

    return DCCLIPProcessor(image_processor=make_image_processor(32), tokenizer=tiny_tokenizer)


def _make_tiny_model(preset: str, tokenizer, seed: int = 0):
    import torch

    from modeling_dcclip import DCCLIPConfig, DCCLIPModel

    torch.manual_seed(seed)
    return DCCLIPModel(DCCLIPConfig.from_preset(preset, vocab_size=len(tokenizer))).eval()


@pytest.fixture(params=["tiny", "tiny-vit"])
def tiny_model(request, tiny_tokenizer):
    """A tiny student, once with a ConvNeXt-V2 image tower and once with a ViT image tower."""
    return _make_tiny_model(request.param, tiny_tokenizer)


@pytest.fixture
def make_tiny_model(tiny_tokenizer):
    """Factory: `make_tiny_model("tiny" | "tiny-vit", seed=0)` -> a tiny student in eval mode."""
    return lambda preset="tiny", seed=0: _make_tiny_model(preset, tiny_tokenizer, seed)


@pytest.fixture
def random_images():
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (40 + 3 * i, 48, 3), dtype=np.uint8)) for i in range(3)]


# Top-level packages of this project: a subprocess that blocks them imports the saved folder as a Hub user would.
PROJECT_PACKAGES = ["modeling_dcclip", "trainers", "evaluation", "hub", "export", "dcclip", "demo", "benchmarks"]

BLOCK_PROJECT_IMPORTS = f"""
import sys
class _BlockProject:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {PROJECT_PACKAGES!r}:
            raise ImportError("this project is blocked in this process: " + name)
        return None
sys.meta_path.insert(0, _BlockProject())
sys.path = [p for p in sys.path if p not in ("", {str(REPO_ROOT)!r})]
"""


def _run_without_project(code: str, cwd: Path, python: str | Path = sys.executable) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HF_MODULES_CACHE"] = str(cwd / "hf_modules")
    return subprocess.run(
        [str(python), "-c", BLOCK_PROJECT_IMPORTS + code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def run_without_project():
    """`run_without_project(code, cwd, python=sys.executable)`: run `code` in a fresh Python where this project cannot be
    imported (only torch, transformers and other installed libraries), as a Hub user's machine would be; `python`
    picks another environment's interpreter."""
    return _run_without_project
