"""What each teacher-cache approximation costs the distilled student: stage 1 on a `dcclip demo` output, live and from
cache variants, every student scored zero-shot (EN and ZH) on the demo's benchmark.

It reuses a demo output folder (its teacher, benchmark, and one student seed's initial weights and stage-1 config,
`configs/seed<S>/stage1_feature_maps.yaml`), so every variant starts from the same weights and sees the same unpaired
images and texts in the same order, for the same steps:

    dcclip demo --out runs/demo                       # once (about 7 minutes on 2 CPU cores)
    python benchmarks/cache_fidelity.py --demo runs/demo --out runs/cache_fidelity [--seed 0] [--variants live ...]

Variants (each a stage-1 run through `dcclip distill`, caches built by `dcclip teacher-cache`):
    live                  the live teacher as stage 1 runs it by default (float32 for the demo's 72-wide teacher)
    live-bfloat16         the live teacher in bfloat16 (weights and arithmetic, as under --bf16 on a GPU)
    cache-default         the default cache: image maps pooled to the student's last-stage grid, low-rank codes
                          (rank = the paired student layer's width), int8 codes, text at 4 evenly spaced tokens
    cache-float16         the full maps in float16: every token, the teacher's grid, every channel
    cache-grid            float16, only the image pooling
    cache-rank            float16, only the low-rank codes
    cache-token-text      float16, grid + rank, every token (what `dcclip demo` builds)
    cache-int8-token-text the same in int8
    cache-8-tokens        int8, grid + rank, 8 evenly spaced tokens per caption
    cache-8-tokens-rank-12  the same with text rank 12 (half the demo student's text width: the bytes of the default
                          at the edge recipe's size)
    cache-text-rank-6     int8, grid + rank, every token, text rank 6 (a quarter of the demo student's width)
    cache-pooled-text     float16, every channel, text mean-pooled (one vector per caption)
    cache-one-mean        float16, grid + rank + text pooled into one mean per caption (the default before int8)
    cache-2-segments      the same with two means per caption, of the first and second half of its tokens
                          (--text_segments 2, repeated by the training run)
    cache-4-segments      the same with four
    cache-8-segments      the same with eight (two or three tokens each for the demo's captions)
It writes `cache_fidelity.json`: per variant, the mean zero-shot accuracy in each language (with its standard error),
the difference to the `live` student, and the cache's bytes per image and per caption.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

FLOAT16 = ["--cache_dtype", "float16"]
EVERY_TOKEN = ["--pool_text", "false", "--cache_text_tokens", "0"]
POOLED = ["--pool_text", "true", *FLOAT16]
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "live": ("live", []),
    "live-bfloat16": ("live", ["--teacher_dtype", "bfloat16"]),
    "cache-default": ("cache", []),
    "cache-float16": ("cache", ["--pool_grid", "0", "--cache_rank", "0", *EVERY_TOKEN, *FLOAT16]),
    "cache-grid": ("cache", ["--cache_rank", "0", *EVERY_TOKEN, *FLOAT16]),
    "cache-rank": ("cache", ["--pool_grid", "0", *EVERY_TOKEN, *FLOAT16]),
    "cache-token-text": ("cache", [*EVERY_TOKEN, *FLOAT16]),
    "cache-int8-token-text": ("cache", EVERY_TOKEN),
    "cache-8-tokens": ("cache", ["--cache_text_tokens", "8"]),
    "cache-8-tokens-rank-12": ("cache", ["--cache_text_tokens", "8", "--cache_text_rank", "12"]),
    "cache-text-rank-6": ("cache", [*EVERY_TOKEN, "--cache_text_rank", "6"]),
    "cache-pooled-text": ("cache", ["--pool_grid", "0", "--cache_rank", "0", *POOLED]),
    "cache-one-mean": ("cache", POOLED),
    "cache-2-segments": ("cache", [*POOLED, "--text_segments", "2"]),
    "cache-4-segments": ("cache", [*POOLED, "--text_segments", "4"]),
    "cache-8-segments": ("cache", [*POOLED, "--text_segments", "8"]),
}
REFERENCE = "live"
# Stage-1 options a cache is built with that training from it must repeat (the rest are the cache command's own).
TRAINING_OPTIONS = ("--text_segments",)


def _run(command: list[str], log: Path) -> None:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    with log.open("w") as output:
        result = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... failed ({result.returncode}); see {log}")


def _stage1_argv(demo: Path, seed: int, out: Path, name: str) -> list[str]:
    """The demo's stage-1 run of student seed `seed` (its teacher, initial student, unpaired images and texts, steps
    and learning rate), without its teacher cache and writing to `out`: the variant's own config file."""
    config = yaml.safe_load((demo / "configs" / f"seed{seed}" / "stage1_feature_maps.yaml").read_text(encoding="utf-8"))
    config.pop("teacher_cache_dir", None)
    config.update(output_dir=str(out / "runs" / name), disable_tqdm=True)
    path = out / "configs" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return [str(path)]


def run_variant(name: str, demo: Path, seed: int, out: Path) -> dict:
    """Stage 1 for one variant (building its cache first); returns timings and cache sizes. A variant whose record
    and student are already in `out` (an earlier, interrupted run of this script) is reused."""
    kind, extra = VARIANTS[name]
    output_dir = out / "runs" / name
    record_file = out / "records" / f"{name}.json"
    if record_file.is_file() and (output_dir / "final" / "model.safetensors").is_file():
        return json.loads(record_file.read_text())
    argv = _stage1_argv(demo, seed, out, name)
    record: dict = {"kind": kind, "options": extra}
    if kind == "cache":
        cache_dir = out / "caches" / name
        start = time.perf_counter()
        _run([sys.executable, "-m", "dcclip.trainers.cache_teacher", *argv, "--teacher_cache_dir", str(cache_dir),
              "--overwrite_cache", "true", *extra], out / f"{name}.cache.log")  # fmt: skip
        record["cache_build_s"] = round(time.perf_counter() - start, 1)
        from dcclip.trainers.teacher.cache import TeacherCache

        cache = TeacherCache(cache_dir)
        record["bytes_per_image"] = round(cache.bytes_per_row("images"))
        record["bytes_per_text"] = round(cache.bytes_per_row("texts"))
        record["codec_bytes_per_shard"] = cache.codec_bytes("images") + cache.codec_bytes("texts")
        argv += ["--teacher_cache_dir", str(cache_dir)]
        for option, value in zip(extra[::2], extra[1::2]):
            if option in TRAINING_OPTIONS:
                argv += [option, value]
    else:
        argv += extra
    start = time.perf_counter()
    _run([sys.executable, "-m", "dcclip.trainers.distill", *argv], out / f"{name}.distill.log")
    record["stage1_s"] = round(time.perf_counter() - start, 1)
    record["student"] = str(output_dir / "final")
    record["load_average"] = os.getloadavg()
    record_file.parent.mkdir(parents=True, exist_ok=True)
    record_file.write_text(json.dumps(record, indent=2) + "\n")
    return record


def score(demo: Path, records: dict[str, dict], batch_size: int) -> dict[str, dict]:
    """Zero-shot scores of the teacher and every variant's student on the demo's tasks (seen and unseen)."""
    from dcclip.demo.analysis import language_mean
    from dcclip.evaluation.model_loading import load_evaluated_model
    from dcclip.evaluation.report import build_report
    from dcclip.evaluation.tasks import load_builtin_benchmark

    tasks = load_builtin_benchmark(demo / "benchmark" / "eval")
    tasks += [dataclasses.replace(t, name=f"{t.name}_unseen") for t in load_builtin_benchmark(demo / "benchmark" / "eval_unseen")]
    models = [load_evaluated_model(str(demo / "teacher" / "final"), "teacher", name="teacher")]
    models += [load_evaluated_model(record["student"], "student", name=name) for name, record in records.items()]
    results = build_report(models, tasks, batch_size=batch_size, show_progress=False)
    scores = {}
    for model in ["teacher", *records]:
        scores[model] = {}
        for language in ("en", "zh"):
            mean = language_mean(results, model, language)
            scores[model][language] = {"mean_pct": round(100 * mean.mean, 2), "se_pct": round(100 * mean.standard_error, 2)}
    return scores


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", type=Path, required=True, help="a `dcclip demo --out` folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seed", type=int, default=0, help="the demo's student seed whose stage-1 run is repeated")
    parser.add_argument("--eval_batch_size", type=int, default=128)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    variants = list(dict.fromkeys([REFERENCE, *args.variants]))
    records = {}
    for name in variants:
        print(f"cache_fidelity: {name}", flush=True)
        records[name] = run_variant(name, args.demo, args.seed, args.out)
    scores = score(args.demo, records, args.eval_batch_size)
    for name, record in records.items():
        record["zero_shot"] = scores[name]
        record["difference_to_live_pts"] = {
            language: round(scores[name][language]["mean_pct"] - scores[REFERENCE][language]["mean_pct"], 2)
            for language in ("en", "zh")
        }
    results = {"demo": str(args.demo), "student_seed": args.seed, "teacher_zero_shot": scores["teacher"], "variants": records,
               "load_average": os.getloadavg()}  # fmt: skip
    (args.out / "cache_fidelity.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
