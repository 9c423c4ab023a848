"""Fixtures of the data tests: an isolated datasets cache, a teacher processor unlike the student's, a small
benchmark, and helpers that write image files of a given mode."""

from __future__ import annotations

import io

import datasets
import numpy as np
import PIL.Image
import pytest

from dcclip.trainers.data import benchmark_text_corpus, generate_benchmark


@pytest.fixture(autouse=True)
def isolated_datasets_cache(tmp_path, monkeypatch):
    """Every test prepares its Arrow files in its own folder: no reuse of another test's cache, no leftovers."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_datasets_cache"))


@pytest.fixture(scope="session")
def teacher_processor(tmp_path_factory):
    """A processor with another tokenizer (trained on the benchmark corpus) and another image size (48 px)."""
    from modeling_dcclip import DCCLIPProcessor, make_image_processor
    from dcclip.trainers.data.tokenizer import build_bilingual_tokenizer

    tokenizer = build_bilingual_tokenizer(benchmark_text_corpus(), vocab_size=400)
    return DCCLIPProcessor(image_processor=make_image_processor(48), tokenizer=tokenizer)


@pytest.fixture(scope="session")
def small_benchmark(tmp_path_factory):
    return generate_benchmark(
        tmp_path_factory.mktemp("benchmark"), seed=3, n_train=60, n_eval=40, n_retrieval=10, shard_size=25
    )


def _image_bytes(
    mode: str = "RGB", size: tuple[int, int] = (16, 16), image_format: str = "PNG", seed: int = 0
) -> bytes:
    """An encoded noise image of ``mode`` and ``size``."""
    rng = np.random.default_rng(seed)
    image = PIL.Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    if mode != "RGB":
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


@pytest.fixture
def image_bytes():
    """``image_bytes(mode="RGB", size=(16, 16), image_format="PNG", seed=0)`` -> encoded noise image."""
    return _image_bytes
