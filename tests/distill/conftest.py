"""Fixtures of the stage-1 tests: a tiny AltCLIP teacher folder, image-only and text-only data specs over the built-in
synthetic scenes, and a helper that runs `trainers/distill.py` under python, torchrun or deepspeed."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import datasets
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DISTILL_SCRIPT = REPO_ROOT / "trainers" / "distill.py"
TINY_CONFIG = REPO_ROOT / "configs" / "distill_tiny.yaml"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "integration: launches real training processes (python, torchrun, deepspeed); runs in plain pytest"
    )


@dataclass
class Stage1Workspace:
    root: Path
    tokenizer: object
    teacher_dir: Path  # tiny AltCLIP (model + processor), as save_pretrained writes it
    image_spec: Path  # image-only source: the scenes' images
    text_spec: Path  # text-only source: the scenes' English and Chinese captions
    other_tokenizer_dir: Path  # a tokenizer unlike the teacher's (pooled text distillation)
    datasets_cache: Path
    script: Path = DISTILL_SCRIPT
    python: str = sys.executable

    def argv(self, output_dir: Path, *extra: str) -> list[str]:
        """`distill.py` arguments: the tiny config with this workspace's teacher and data."""
        return [
            str(TINY_CONFIG),
            "--teacher", str(self.teacher_dir),
            "--image_data", str(self.image_spec),
            "--text_data", str(self.text_spec),
            "--output_dir", str(output_dir),
            "--disable_tqdm", "true",
            *extra,
        ]  # fmt: skip


@pytest.fixture(scope="session")
def stage1_workspace(tmp_path_factory) -> Stage1Workspace:
    from dcclip.trainers.data import DataSpec, SourceSpec, benchmark_text_corpus, generate_benchmark
    from dcclip.trainers.teacher.model import build_altclip_teacher
    from dcclip.trainers.data.tokenizer import build_bilingual_tokenizer

    root = tmp_path_factory.mktemp("stage1")
    scenes = generate_benchmark(root / "scenes", seed=5, n_train=48, n_eval=2, n_retrieval=1, image_size=32)
    tokenizer = build_bilingual_tokenizer(benchmark_text_corpus(), vocab_size=400, model_max_length=32)
    teacher, processor = build_altclip_teacher(tokenizer)
    teacher.save_pretrained(root / "teacher")
    processor.save_pretrained(root / "teacher")
    image_spec = DataSpec(sources=[SourceSpec(name="scene_images", kind="imagefolder", path=str(scenes.train_dir))])
    text_spec = DataSpec(
        sources=[
            SourceSpec(
                name="scene_captions",
                kind="json",
                data_files=[str(scenes.train_dir / "metadata.jsonl")],
                image_column=None,
                caption_columns={"en": "caption_en", "zh": "caption_zh"},
            )
        ]
    )
    other = build_bilingual_tokenizer(benchmark_text_corpus(), vocab_size=150, model_max_length=32)
    other.save_pretrained(root / "other_tokenizer")
    return Stage1Workspace(
        root=root,
        tokenizer=tokenizer,
        teacher_dir=root / "teacher",
        image_spec=image_spec.save(root / "images.yaml"),
        text_spec=text_spec.save(root / "texts.yaml"),
        other_tokenizer_dir=root / "other_tokenizer",
        datasets_cache=root / "hf_datasets_cache",
    )


@pytest.fixture
def stage1(stage1_workspace, monkeypatch) -> Stage1Workspace:
    """The session's stage-1 workspace, with this test's Arrow files kept in it (not in the shared user cache)."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(stage1_workspace.datasets_cache))
    return stage1_workspace


def launcher_env(workspace: Stage1Workspace) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_DATASETS_CACHE=str(workspace.datasets_cache),
        DS_ACCELERATOR="cpu",
    )
    return env


@pytest.fixture
def run_launcher(stage1):
    """`run_launcher(command)`: run a launcher command line; fail with its output tail when it fails."""

    def run(command: list[str], timeout: int = 240) -> subprocess.CompletedProcess:
        result = subprocess.run(
            command, cwd=REPO_ROOT, env=launcher_env(stage1), capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            pytest.fail(f"{' '.join(command[:4])} ... exited {result.returncode}:\n{(result.stdout + result.stderr)[-4000:]}")
        return result

    return run


def _logged_losses(output: str) -> list[float]:
    """Training losses from the Trainer's printed log dicts (`{'loss': '0.9', ...}`), in order."""
    return [
        float(ast.literal_eval(line.strip())["loss"]) for line in output.splitlines() if line.strip().startswith("{'loss'")
    ]


@pytest.fixture
def read_losses():
    """`read_losses(output)`: the training losses a run printed, in order."""
    return _logged_losses
