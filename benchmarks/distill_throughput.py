"""Stage-1 training throughput with the live teacher vs the teacher cache: same student, same data, one process.

Both runs go through `trainers/distill.py` (`main`); the cache is built first by the teacher-cache command. The
teacher is an AltCLIP (random weights, no download) sized so that it costs more than the student, as the real
864M-parameter teacher does against the edge student; the student is the "tiny" preset at the same resolution.
A training row is one image (image tower) plus one caption (text tower).

    python benchmarks/distill_throughput.py --steps 40 --output distill_throughput.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import datasets
import torch

from dcclip.trainers.data import DataSpec, SourceSpec, benchmark_text_corpus, generate_benchmark
from dcclip.trainers.distill import run as run_distill
from dcclip.trainers.teacher.model import build_altclip_teacher
from dcclip.trainers.cache_teacher import main as cache_main
from dcclip.trainers.teacher.cache import TeacherCache
from dcclip.trainers.data.tokenizer import build_bilingual_tokenizer

REPO_ROOT = Path(__file__).resolve().parents[1]


def _prepare(root: Path, args: argparse.Namespace) -> list[str]:
    """Data, tokenizer and teacher folder; returns the distill.py arguments shared by both runs."""
    scenes = generate_benchmark(root / "scenes", n_train=args.n_images, n_eval=2, n_retrieval=1, image_size=args.image_size)
    tokenizer = build_bilingual_tokenizer(benchmark_text_corpus(), vocab_size=400, model_max_length=args.max_text_length)
    teacher, processor = build_altclip_teacher(
        tokenizer, image_size=args.image_size, patch_size=8, hidden_size=args.teacher_width,
        num_layers=args.teacher_layers, projection_dim=32,
    )  # fmt: skip
    teacher.save_pretrained(root / "teacher")
    processor.save_pretrained(root / "teacher")
    images = DataSpec(sources=[SourceSpec(name="images", kind="imagefolder", path=str(scenes.train_dir))])
    texts = DataSpec(
        sources=[
            SourceSpec(
                name="captions", kind="json", data_files=[str(scenes.train_dir / "metadata.jsonl")], image_column=None,
                caption_columns={"en": "caption_en", "zh": "caption_zh"},
            )
        ]
    )  # fmt: skip
    return [
        str(REPO_ROOT / "configs" / "distill_tiny.yaml"),
        "--teacher", str(root / "teacher"),
        "--image_data", str(images.save(root / "images.yaml")),
        "--text_data", str(texts.save(root / "texts.yaml")),
        "--image_size", str(args.image_size),
        "--max_text_length", str(args.max_text_length),
        "--per_device_train_batch_size", str(args.batch_size),
        "--max_steps", str(args.steps),
        "--logging_steps", str(args.steps),
        "--disable_tqdm", "true",
        "--use_cpu", "true",
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-images", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--max-text-length", type=int, default=32)
    parser.add_argument("--teacher-width", type=int, default=256, help="hidden size of both teacher towers")
    parser.add_argument("--teacher-layers", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--output", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        datasets.config.HF_DATASETS_CACHE = str(root / "hf_datasets_cache")
        common = _prepare(root, args)
        start = time.perf_counter()
        cache_main([*common, "--output_dir", str(root / "unused"), "--teacher_cache_dir", str(root / "cache")])
        cache_build_s = time.perf_counter() - start
        cache = TeacherCache(root / "cache")
        live = run_distill([*common, "--output_dir", str(root / "live")])
        cached = run_distill([*common, "--output_dir", str(root / "cached"), "--teacher_cache_dir", str(root / "cache")])

        def rate(trainer) -> float:
            return next(e["train_samples_per_second"] for e in trainer.state.log_history if "train_samples_per_second" in e)

        teacher_parameters = live.teacher.model.num_parameters()
        student_parameters = live.model.student.num_parameters()
        results = {
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()},
            "setup": {**vars(args), "output": None, "teacher_parameters": teacher_parameters,
                      "student_parameters": student_parameters},  # fmt: skip
            "live_teacher_rows_per_s": round(rate(live), 2),
            "teacher_cache_rows_per_s": round(rate(cached), 2),
            "cache_over_live": round(rate(cached) / rate(live), 2),
            "cache_build_s": round(cache_build_s, 1),
            "cache_bytes_per_image": round(cache.bytes_per_row("images")),
            "cache_bytes_per_text": round(cache.bytes_per_row("texts")),
            "cache_images": cache.num_images,
            "cache_texts": cache.num_texts,
        }
    print(json.dumps(results, indent=2))
    if args.output is not None:
        args.output.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
