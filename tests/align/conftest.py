"""Fixtures of the stage-2 tests: a small built-in benchmark, a tokenizer trained on its captions, a stage-1-like
student folder, and the environment of the multi-process runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "multiprocess: launches several training processes (torchrun / deepspeed); deselect with -m 'not multiprocess'",
    )


@pytest.fixture(scope="session")
def scenes(tmp_path_factory):
    """The built-in bilingual benchmark at test size (32 px): train pairs, eval tasks, retrieval pairs."""
    from dcclip.trainers.data import generate_benchmark

    return generate_benchmark(
        tmp_path_factory.mktemp("scenes"), n_train=64, n_eval=40, image_size=32, n_retrieval=16, shard_size=64
    )


@pytest.fixture(scope="session")
def eval_pairs_spec(scenes) -> Path:
    """A data spec reading the benchmark's retrieval split (several captions per image and language) as pairs."""
    from dcclip.trainers.data import DataSpec, SourceSpec

    source = SourceSpec(
        name="retrieval",
        kind="imagefolder",
        path=str(scenes.retrieval_dir),
        caption_columns={"en": "captions_en", "zh": "captions_zh"},
    )
    return DataSpec(sources=[source]).save(scenes.root / "eval_pairs.yaml")


@pytest.fixture(scope="session")
def scenes_tokenizer_dir(scenes, tmp_path_factory) -> Path:
    from dcclip.trainers.data import benchmark_text_corpus
    from dcclip.trainers.data.tokenizer import build_bilingual_tokenizer

    folder = tmp_path_factory.mktemp("scenes_tokenizer")
    build_bilingual_tokenizer(benchmark_text_corpus(), vocab_size=300, save_dir=folder, model_max_length=32)
    return folder


@pytest.fixture(scope="session")
def scenes_processor(scenes_tokenizer_dir):
    from transformers import AutoTokenizer

    from modeling_dcclip import DCCLIPProcessor, make_image_processor

    return DCCLIPProcessor(
        image_processor=make_image_processor(32), tokenizer=AutoTokenizer.from_pretrained(scenes_tokenizer_dir)
    )


@pytest.fixture
def make_scenes_student(scenes_processor):
    """Factory: a fresh tiny student sized for the scenes tokenizer."""
    import torch

    from modeling_dcclip import DCCLIPConfig, DCCLIPModel

    def make(preset: str = "tiny", seed: int = 0):
        torch.manual_seed(seed)
        return DCCLIPModel(DCCLIPConfig.from_preset(preset, vocab_size=len(scenes_processor.tokenizer)))

    return make


@pytest.fixture(scope="session")
def student_dir(scenes_processor, tmp_path_factory) -> Path:
    """A saved tiny student + processor folder, standing in for the output of stage 1."""
    import torch

    from modeling_dcclip import DCCLIPConfig, DCCLIPModel

    folder = tmp_path_factory.mktemp("stage1_student")
    torch.manual_seed(0)
    DCCLIPModel(DCCLIPConfig.from_preset("tiny", vocab_size=len(scenes_processor.tokenizer))).save_pretrained(folder)
    scenes_processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def multiprocess_env(tmp_path_factory, request) -> dict[str, str]:
    """Environment of launched training processes: one thread each (2-core machines), offline, and DeepSpeed's
    CPU communication op compiled once into this project's pytest cache (its first build takes a minute or two; the
    shared default folder can hold builds of other DeepSpeed versions)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env.update(
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_DATASETS_CACHE=str(tmp_path_factory.mktemp("hf_datasets_cache")),
        DS_ACCELERATOR="cpu",
        TORCH_EXTENSIONS_DIR=str(request.config.cache.mkdir("torch_extensions")),
    )
    build = (
        "from deepspeed.accelerator import get_accelerator; "
        "get_accelerator().create_op_builder('ShareMemCommBuilder').load()"
    )
    subprocess.run([sys.executable, "-c", build], env=env, check=True, capture_output=True, timeout=600)
    return env
