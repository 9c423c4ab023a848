"""Both edge recipes at AltCLIP's real size, in one run: stage 1 with the live teacher (as shipped, and as the code ran
before the teacher's inference-mode / hooks / bfloat16 changes), the teacher-cache build, stage 1 from the cache,
stage 2 in one process and under DeepSpeed ZeRO-2 on two processes, and the per-sample memory of each stage.

The teacher is a randomly initialised AltCLIP at BAAI/AltCLIP's exact sizes (ViT-L/14 at 224 px + XLM-R-large,
864,186,113 parameters, the same compute and memory as the real one) with the project's bilingual tokenizer padded to
XLM-R's 250,002 entries; it is built once into `--work_dir` and kept. Every stage runs through its entry point
(`trainers/distill.py`, `trainers/cache_teacher.py`, `trainers/align.py`) with the shipped `configs/distill_edge.yaml`
and `configs/align_edge.yaml` and only the overrides a small machine needs (teacher folder, data, output folder, steps,
batch size, CPU, no data workers, float32 student unless `--bf16`). Each phase runs in its own process, profiled with
`torch.profiler`: a step is the time between two optimizer steps (the first step, which warms up, is left out), and
the named ranges of `DistillationTrainer.compute_loss` split it into teacher, student forward and loss.

    python benchmarks/real_size.py                        # CPU, fp32 student, --steps 10 --batch 8
    python benchmarks/real_size.py --device cuda --bf16   # the same on a GPU machine

Writes `--out` (default real_size.json); docs/scale_out.md and docs/distillation.md quote its numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

REPO_ROOT = Path(__file__).resolve().parents[1]
PHASES = ("stage1_live", "stage1_live_previous", "cache_build", "stage1_cache", "align", "align_zero2", "memory")
TEACHER_RANGE, STUDENT_RANGE, LOSS_RANGE = "dcclip/teacher_targets", "dcclip/student_forward", "dcclip/distillation_loss"
DATA_RANGE_PREFIX, OPTIMIZER_RANGE_PREFIX = "enumerate(DataLoader)#", "Optimizer.step#"
GB = 1e9


# ----- inputs, built once -------------------------------------------------------------------------------------------


def prepare_teacher(work_dir: Path) -> Path:
    """The real-size random AltCLIP folder (model + processor), built on first use (about 25 s and 3.5 GB)."""
    from dcclip.trainers.data import benchmark_text_corpus
    from dcclip.trainers.data.tokenizer import build_bilingual_tokenizer
    from dcclip.trainers.teacher.model import ALTCLIP_SIZES, build_altclip_teacher

    folder = work_dir / "altclip_random"
    if (folder / "model.safetensors").is_file():
        return folder
    tokenizer = build_bilingual_tokenizer(benchmark_text_corpus(), vocab_size=2000, model_max_length=77,
                                          pad_vocab_to=250_002)  # fmt: skip
    model, processor = build_altclip_teacher(tokenizer, **ALTCLIP_SIZES)
    scratch = work_dir / "altclip_random.partial"
    shutil.rmtree(scratch, ignore_errors=True)
    model.save_pretrained(scratch)
    processor.save_pretrained(scratch)
    scratch.rename(folder)
    return folder


def prepare_data(work_dir: Path, images: int) -> dict[str, Path]:
    """The built-in scenes at 224 px: stage-1 specs (images only, captions only), stage-2 pairs and its evaluation."""
    from dcclip.trainers.data import DataSpec, SourceSpec, generate_benchmark

    root = work_dir / f"scenes_{images}"
    scenes = generate_benchmark(root, seed=0, n_train=images, n_eval=8, n_retrieval=8, image_size=224, shard_size=images)
    captions = {"en": "caption_en", "zh": "caption_zh"}
    image_spec = DataSpec(sources=[SourceSpec(name="images", kind="imagefolder", path=str(scenes.train_dir))])
    text_spec = DataSpec(sources=[SourceSpec(name="captions", kind="json", image_column=None, caption_columns=captions,
                                             data_files=[str(scenes.train_dir / "metadata.jsonl")])])  # fmt: skip
    eval_spec = DataSpec(sources=[SourceSpec(name="retrieval", kind="imagefolder", path=str(scenes.retrieval_dir),
                                             caption_columns={"en": "captions_en", "zh": "captions_zh"})])  # fmt: skip
    return {
        "image_data": image_spec.save(root / "stage1_images.yaml"),
        "text_data": text_spec.save(root / "stage1_texts.yaml"),
        "train_data": scenes.train_spec_imagefolder,
        "eval_data": eval_spec.save(root / "eval_pairs.yaml"),
        "zero_shot_benchmark": scenes.eval_dir,
    }


# ----- command lines ------------------------------------------------------------------------------------------------


def run_overrides(args: argparse.Namespace) -> list[str]:
    """What the machine and the measurement need on top of the shipped configs (no checkpoints: 1.5 GB each at this
    size, and not what is measured)."""
    common = ["--max_steps", str(args.steps), "--per_device_train_batch_size", str(args.batch),
              "--logging_steps", "1",  # a log per step makes GPU steps synchronous, so step times are real
              "--disable_tqdm", "true", "--bf16", str(args.bf16).lower(),
              "--save_strategy", "no"]  # fmt: skip
    if args.device == "cpu":  # 2 cores: no data workers (each would fork a multi-GB process)
        return [*common, "--use_cpu", "true", "--dataloader_num_workers", "0"]
    return common


def stage1_argv(args: argparse.Namespace, inputs: dict, output_dir: Path) -> list[str]:
    data = [f"--{name}={inputs[name]}" for name in ("teacher", "image_data", "text_data")]
    return [str(REPO_ROOT / "configs" / "distill_edge.yaml"), *data, f"--output_dir={output_dir}", *run_overrides(args)]


def align_argv(args: argparse.Namespace, inputs: dict, output_dir: Path) -> list[str]:
    data = [f"--{name}={inputs[name]}" for name in ("train_data", "eval_data", "zero_shot_benchmark")]
    student = args.work_dir / "runs" / "stage1_live" / "final"
    return [str(REPO_ROOT / "configs" / "align_edge.yaml"), f"--student={student}", *data, f"--output_dir={output_dir}",
            f"--per_device_eval_batch_size={args.batch}", *run_overrides(args)]  # fmt: skip


# ----- profiles -----------------------------------------------------------------------------------------------------


def profiled(function, device: str):
    """Run `function()` under the torch profiler; returns its result and the profile's events."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        result = function()
    return result, prof.events()


class ProcessClock:
    """Wall and CPU seconds of this process at each optimizer step, and the CPU seconds of each teacher call.

    CPU time counts this process's threads only, so it holds still when other jobs share the machine's cores (wall
    time on a 2-core machine shared by several engineers does not); on an idle machine, wall ~ CPU / threads.
    """

    def __init__(self):
        self.steps: list[tuple[float, float]] = []
        self.teacher_calls: list[tuple[float, float]] = []  # (wall at start, CPU seconds)

    def install(self) -> None:
        """Hook every optimizer's step and time `DistillationTeacher.targets_for_batch` (in this process only)."""
        from torch.optim.optimizer import register_optimizer_step_post_hook

        from dcclip.trainers.teacher.model import DistillationTeacher

        register_optimizer_step_post_hook(lambda *_: self.steps.append((time.perf_counter(), time.process_time())))
        targets_for_batch = DistillationTeacher.targets_for_batch

        def timed(teacher, *args, **kwargs):
            wall, cpu = time.perf_counter(), time.process_time()
            result = targets_for_batch(teacher, *args, **kwargs)
            self.teacher_calls.append((wall, time.process_time() - cpu))
            return result

        DistillationTeacher.targets_for_batch = timed


CLOCK = ProcessClock()


def step_split(events, device: str, steps: int) -> dict:
    """Seconds per step (wall and CPU) and its split, from the optimizer steps' end times (the first of `steps` is
    left out); the wall split from the profile's named ranges, the teacher's CPU seconds from `CLOCK`."""

    def ranges(match) -> list[tuple[float, float]]:
        chosen = [e for e in events if match(e.name)]
        if device == "cuda":  # the device's time of a named range, where the profile has it
            on_device = [e for e in chosen if e.device_type.name == "CUDA"]
            chosen = on_device or chosen
        return sorted((e.time_range.start / 1e6, e.time_range.end / 1e6) for e in chosen)

    optimizer = ranges(lambda name: name.startswith(OPTIMIZER_RANGE_PREFIX))
    # DeepSpeed's ZeRO optimizer steps the wrapped optimizer once per parameter group: k calls make one step
    calls, uneven = divmod(len(optimizer), steps)
    if uneven or not calls:
        raise RuntimeError(f"the profile holds {len(optimizer)} optimizer step calls for {steps} steps")
    ends = [optimizer[(i + 1) * calls - 1][1] for i in range(steps)]
    first, last, count = ends[0], ends[-1], steps - 1

    def per_step(match) -> float:
        return sum(min(end, last) - max(start, first) for start, end in ranges(match) if end > first and start < last) / count

    split = {
        "data": per_step(lambda name: name.startswith(DATA_RANGE_PREFIX)),
        "teacher": per_step(lambda name: name == TEACHER_RANGE),
        "student_forward": per_step(lambda name: name == STUDENT_RANGE),
        "loss": per_step(lambda name: name == LOSS_RANGE),
        "optimizer": per_step(lambda name: name.startswith(OPTIMIZER_RANGE_PREFIX)),
    }
    s_per_step = (last - first) / count
    split["backward_and_rest"] = s_per_step - sum(split.values())
    clock_ends = [CLOCK.steps[(i + 1) * calls - 1] for i in range(steps)]
    (wall_first, cpu_first), (_, cpu_last) = clock_ends[0], clock_ends[-1]
    teacher_cpu = sum(cpu for wall, cpu in CLOCK.teacher_calls if wall > wall_first) / count
    return {"s_per_step": round(s_per_step, 3), "measured_steps": count,
            "split_s": {name: round(value, 3) for name, value in split.items()},
            "cpu_s_per_step": round((cpu_last - cpu_first) / count, 3), "teacher_cpu_s_per_step": round(teacher_cpu, 3)}  # fmt: skip


def top_operators(events, within: str, limit: int = 6) -> list[dict]:
    """The operators that took the most time inside the named range `within` (self time, summed)."""
    windows = [(e.time_range.start, e.time_range.end) for e in events if e.name == within]
    totals: dict[str, float] = {}
    for event in events:
        if event.name.startswith(("aten::", "mkldnn", "onednn")) and any(
            start <= event.time_range.start and event.time_range.end <= end for start, end in windows
        ):
            totals[event.name] = totals.get(event.name, 0.0) + event.self_cpu_time_total / 1e6
    ranked = sorted(totals.items(), key=lambda item: -item[1])[:limit]
    return [{"operator": name, "s": round(seconds, 2)} for name, seconds in ranked]


def peak_rss_gb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB, 2)


# ----- the phases (each runs in its own process) --------------------------------------------------------------------


def previous_teacher_call(self, pixel_values=None, input_ids=None, attention_mask=None, image_layers=(),
                          text_layers=(), with_embeddings=True):  # fmt: skip
    """`DistillationTeacher.__call__` as it was before this change (commit 62c54c0): `no_grad`, every hidden state of
    both towers kept, the whole forward pass; run with `--teacher_dtype float32`, its arithmetic then."""
    from modeling_dcclip import as_embedding

    from dcclip.trainers.teacher.geometry import tokens_to_grid
    from dcclip.trainers.teacher.targets import TeacherTargets

    with torch.no_grad():
        targets = TeacherTargets(logit_scale=self.logit_scale.to(self.device))
        if pixel_values is not None:
            output = self.model.get_image_features(
                pixel_values=pixel_values.to(self.device, self.model.dtype), output_hidden_states=bool(image_layers)
            )
            targets.image_embeds = as_embedding(output)
            targets.image_maps = [tokens_to_grid(output.hidden_states[i]) for i in image_layers]
        if input_ids is not None:
            output = self.model.get_text_features(
                input_ids=input_ids.to(self.device),
                attention_mask=None if attention_mask is None else attention_mask.to(self.device),
                output_hidden_states=bool(text_layers),
            )
            targets.text_embeds = as_embedding(output)
            targets.text_maps = [output.hidden_states[i] for i in text_layers]
            targets.text_attention_mask = attention_mask
        return targets


def run_stage1(args: argparse.Namespace, inputs: dict, name: str, extra: list[str]):
    """A profiled stage-1 run; returns its trainer and step split."""
    from dcclip.trainers.distill import run as run_distill

    trainer, events = profiled(lambda: run_distill(stage1_argv(args, inputs, args.work_dir / "runs" / name) + extra),
                               args.device)  # fmt: skip
    result = step_split(events, args.device, args.steps)
    result["teacher_top_operators"] = top_operators(events, TEACHER_RANGE)
    result["student_parameters"] = trainer.model.student.num_parameters()
    if trainer.teacher is not None:
        result["teacher_parameters"] = trainer.teacher.model.num_parameters()
        result["teacher_dtype"] = str(trainer.teacher.model.dtype)
    return trainer, result


def stage1_memory(trainer, device: str, sizes=(2, 4)) -> dict:
    """Stage 1's memory per sample after a run, from its trainer: the student step in bfloat16 autocast (student +
    adapters + loss, forward and backward), the targets it holds, and for a live teacher its forward pass."""
    from dcclip.trainers.losses.distillation import distillation_loss_parts
    from dcclip.trainers.teacher.targets import TeacherTargets

    model, plan, torch_device = trainer.model.train(), trainer.plan, torch.device(device)
    layers = (plan.teacher_image_layers, plan.teacher_text_layers, plan.teacher_embeddings)
    measured: dict[str, list[float]] = {"student_step": [], "teacher_targets": [], "teacher_forward": []}
    for size in sizes:
        rows = trainer.data_collator([trainer.train_dataset[i] for i in range(size)])
        if "teacher_targets" in rows:
            targets = TeacherTargets.from_batch_entry(rows.pop("teacher_targets"))
        else:
            forward = lambda rows=rows: trainer.teacher.targets_for_batch(rows, *layers)  # noqa: E731
            measured["teacher_forward"].append(_peak_allocated(forward, device))
            targets = forward()
        held = [t for v in vars(targets).values() for t in (v if isinstance(v, list) else [v]) if torch.is_tensor(t)]
        measured["teacher_targets"].append(float(sum(t.numel() * t.element_size() for t in held)))
        rows = {k: v.to(torch_device) for k, v in rows.items()}

        def loss(rows=rows, targets=targets):
            features = model(rows["pixel_values"], rows["input_ids"], rows["attention_mask"])
            return sum(distillation_loss_parts("feature_maps", features, targets, trainer.args.loss_weights,
                                               rows["attention_mask"], plan.text_token_by_token,
                                               plan.text_segments).values())  # fmt: skip

        measured["student_step"].append(_peak_allocated(lambda loss=loss: _training_step(model, loss, torch_device), device))
    return {name: _slope(values, sizes) for name, values in measured.items() if values}


def phase_stage1_live(args, inputs) -> dict:
    trainer, result = run_stage1(args, inputs, "stage1_live", [])
    result["memory_per_sample"] = stage1_memory(trainer, args.device)
    return result


def phase_stage1_live_previous(args, inputs) -> dict:
    from dcclip.trainers.teacher.model import DistillationTeacher

    DistillationTeacher.__call__ = previous_teacher_call  # this process only
    return run_stage1(args, inputs, "stage1_live_previous", ["--teacher_dtype", "float32"])[1]


def phase_cache_build(args, inputs) -> dict:
    from dcclip.trainers.cache_teacher import main as cache_main
    from dcclip.trainers.teacher.cache import TeacherCache

    folder = args.work_dir / "runs" / "teacher_cache"
    start = time.perf_counter()
    cache_main(stage1_argv(args, inputs, args.work_dir / "runs" / "unused") + [
        "--teacher_cache_dir", str(folder), "--overwrite_cache", "true", "--cache_batch_size", str(args.batch)])
    wall = time.perf_counter() - start
    cache = TeacherCache(folder)
    seconds = {tower: shard.manifest["build_seconds"] for tower in ("images", "texts") for shard in cache.shards[tower]}
    return {
        "wall_s": round(wall, 1),
        "images": cache.num_images,
        "texts": cache.num_texts,
        "cache_bytes_per_image": round(cache.bytes_per_row("images")),
        "cache_bytes_per_text": round(cache.bytes_per_row("texts")),
        "codec_bytes_per_shard": {"images": cache.codec_bytes("images"), "texts": cache.codec_bytes("texts")},
        "cache_build_s_per_image": round(seconds["images"] / max(cache.num_images, 1), 3),
        "cache_build_s_per_text": round(seconds["texts"] / max(cache.num_texts, 1), 3),
        "ranks": cache.metadata["ranks"],
        "image_grids": cache.layout.cached_image_grids,
        "text_pooled": cache.layout.text_pooled,
        "text_tokens": cache.layout.text_tokens,
        "code_dtype": cache.metadata["dtype"],
    }


def phase_stage1_cache(args, inputs) -> dict:
    trainer, result = run_stage1(args, inputs, "stage1_cache",
                                 ["--teacher_cache_dir", str(args.work_dir / "runs" / "teacher_cache")])  # fmt: skip
    result["memory_per_sample"] = stage1_memory(trainer, args.device)
    return result


def phase_align(args, inputs) -> dict:
    """Stage 2 from the live stage-1 student; under the deepspeed launcher (phase `align_zero2`) with ZeRO-2."""
    from dcclip.trainers.align import main as align_main

    extra = ["--deepspeed", str(REPO_ROOT / "ds_configs" / "zero2.json")] if args.deepspeed else []
    output_dir = args.work_dir / "runs" / ("align_zero2" if args.deepspeed else "align")
    _, events = profiled(lambda: align_main(align_argv(args, inputs, output_dir) + extra), args.device)
    return step_split(events, args.device, args.steps)


def _peak_allocated(function, device: str) -> float:
    """Peak bytes allocated by `function()` above what was allocated before it (the CPU allocator's record in a
    memory profile, or CUDA's own counter)."""
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        function()
        torch.cuda.synchronize()
        return float(torch.cuda.max_memory_allocated() - base)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        function()
    running = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        running += event.cpu_memory_usage if event.name == "[memory]" else event.self_cpu_memory_usage
        peak = max(peak, running)
    return float(peak)


def _slope(values: list[float], sizes) -> dict:
    """MB per sample (slope between two batch sizes) and the batch-independent part (intercept), from bytes."""
    slope = (values[1] - values[0]) / (sizes[1] - sizes[0])
    return {"mb_per_sample": round(slope / 1e6, 2), "fixed_mb": round((values[0] - slope * sizes[0]) / 1e6, 1)}


def _per_sample(measure, sizes=(2, 4)) -> dict:
    """`_slope` of `measure(batch size)` (bytes) at two batch sizes."""
    return _slope([measure(size) for size in sizes], sizes)


def _training_step(model, forward_loss, device: torch.device) -> None:
    """One forward under bfloat16 autocast (the recipes' GPU precision) and backward; gradients dropped."""
    with torch.autocast(device.type, dtype=torch.bfloat16):
        loss = forward_loss()
    loss.backward()
    model.zero_grad(set_to_none=True)


def phase_memory(args, inputs) -> dict:
    """Stage 2's student step (both towers, both captions of each image, the bilingual InfoNCE): peak memory per
    image in bfloat16 autocast, for docs/scale_out.md's per-GPU estimate (stage 1's are measured in its phases)."""
    from dcclip.trainers.arguments import StudentArguments
    from dcclip.trainers.data import ImageTextCollator, load_image_text_data
    from dcclip.trainers.losses.contrastive import ContrastiveLoss
    from dcclip.trainers.student.build import load_or_build_student

    device = torch.device(args.device)
    student, processor = load_or_build_student(StudentArguments(student=str(args.work_dir / "runs" / "stage1_live" / "final")))
    student = student.to(device).train()
    pairs = load_image_text_data(inputs["train_data"]).dataset
    collator = ImageTextCollator(processor, bilingual="both", max_text_length=77)
    contrastive = ContrastiveLoss(num_languages=2, local_loss=True)

    def student_step(size: int) -> float:
        batch = {k: v.to(device) for k, v in collator([pairs[i] for i in range(size)]).items()}

        def loss():
            out = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                          pixel_values=batch["pixel_values"])  # fmt: skip
            return contrastive(out.image_embeds, out.text_embeds, batch["image_index"], batch["language"],
                               out.logit_scale).loss  # fmt: skip

        return _peak_allocated(lambda: _training_step(student, loss, device), args.device)

    return {"memory_per_sample": {"student_step": _per_sample(student_step)}}


# ----- driver -------------------------------------------------------------------------------------------------------


def _phase_command(args: argparse.Namespace, phase: str, output: Path) -> list[str]:
    own = [str(Path(__file__).resolve()), "--phase", phase, "--phase_out", str(output), "--work_dir", str(args.work_dir),
           "--steps", str(args.steps), "--batch", str(args.batch), "--device", args.device]  # fmt: skip
    own += ["--bf16"] if args.bf16 else []
    if phase != "align_zero2":
        return [sys.executable, *own]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    launcher = str(Path(sys.executable).parent / "deepspeed")
    own[own.index("align_zero2")] = "align"
    return [launcher, "--num_gpus", "2", "--master_port", port, *own, "--deepspeed"]


def run_phase(args: argparse.Namespace, phase: str) -> dict:
    """Run one phase in a child process (two under the deepspeed launcher); returns what it recorded."""
    output = args.work_dir / "phases" / f"{phase}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    for stale in output.parent.glob(f"{phase}.json*"):
        stale.unlink()
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_DATASETS_CACHE": str(args.work_dir / "hf_datasets_cache"), "DS_ACCELERATOR": args.device}  # fmt: skip
    log = args.work_dir / "phases" / f"{phase}.log"
    start = time.perf_counter()
    with log.open("w") as sink:
        status = subprocess.run(_phase_command(args, phase, output), stdout=sink, stderr=subprocess.STDOUT, env=env,
                                cwd=REPO_ROOT).returncode  # fmt: skip
    if status != 0:
        raise RuntimeError(f"phase {phase} failed ({status}); its log: {log}\n{log.read_text()[-3000:]}")
    ranks = sorted(output.parent.glob(f"{phase}.json*"))
    results = [json.loads(path.read_text()) for path in ranks]
    record = dict(results[0])
    if len(results) > 1:
        record["peak_rss_gb_per_rank"] = [r["peak_rss_gb"] for r in results]
        record["peak_rss_gb"] = max(record["peak_rss_gb_per_rank"])
    record["wall_s"] = round(time.perf_counter() - start, 1)
    return record


def child(args: argparse.Namespace) -> None:
    """A phase's own process: run it and write its record (one file per rank under DeepSpeed)."""
    torch.manual_seed(0)
    CLOCK.install()
    inputs = {"teacher": prepare_teacher(args.work_dir), **prepare_data(args.work_dir, _images_needed(args))}
    record = globals()[f"phase_{args.phase}"](args, inputs)
    record["peak_rss_gb"] = peak_rss_gb()
    rank = os.environ.get("RANK")
    path = args.phase_out if rank is None else Path(f"{args.phase_out}.rank{rank}")
    path.write_text(json.dumps(record, indent=2) + "\n")


def _images_needed(args: argparse.Namespace) -> int:
    return max(16, args.steps * args.batch)  # stage 1's rows; stage 2 on two ranks wraps around once


def summarize(args: argparse.Namespace, phases: dict[str, dict], wall_s: float) -> dict:
    live, previous, cached = phases["stage1_live"], phases["stage1_live_previous"], phases["stage1_cache"]
    build = phases["cache_build"]
    teacher_share = live["split_s"]["teacher"] / live["s_per_step"]
    limit = 1 / (1 - teacher_share)
    speedup = live["s_per_step"] / cached["s_per_step"]
    cpu_share = live["teacher_cpu_s_per_step"] / live["cpu_s_per_step"]
    cpu_limit, cpu_speedup = 1 / (1 - cpu_share), live["cpu_s_per_step"] / cached["cpu_s_per_step"]
    return {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "device": args.device, "bf16": args.bf16, "load_average_at_end": os.getloadavg()},  # fmt: skip
        "settings": {"steps": args.steps, "batch": args.batch, "measured_steps": live["measured_steps"]},
        "teacher_params": live["teacher_parameters"],
        "student_params": live["student_parameters"],
        "teacher_dtype": live["teacher_dtype"],
        "live_s_per_step": live["s_per_step"],
        "live_step_split_s": live["split_s"],
        "teacher_share": round(teacher_share, 3),
        "previous_live_s_per_step": previous["s_per_step"],
        "previous_live_step_split_s": previous["split_s"],
        "live_speedup_over_previous": round(previous["s_per_step"] / live["s_per_step"], 2),
        "teacher_top_operators": {"live": live["teacher_top_operators"], "previous": previous["teacher_top_operators"]},
        "cache_s_per_step": cached["s_per_step"],
        "cache_step_split_s": cached["split_s"],
        "cache_speedup": round(speedup, 2),
        "cache_speedup_limit": round(limit, 2),
        "cache_speedup_of_limit": round(speedup / limit, 3),
        "cpu": {
            "live_cpu_s_per_step": live["cpu_s_per_step"],
            "teacher_cpu_s_per_step": live["teacher_cpu_s_per_step"],
            "teacher_share": round(cpu_share, 3),
            "previous_live_cpu_s_per_step": previous["cpu_s_per_step"],
            "previous_teacher_cpu_s_per_step": previous["teacher_cpu_s_per_step"],
            "live_speedup_over_previous": round(previous["cpu_s_per_step"] / live["cpu_s_per_step"], 2),
            "cache_cpu_s_per_step": cached["cpu_s_per_step"],
            "cache_speedup": round(cpu_speedup, 2),
            "cache_speedup_limit": round(cpu_limit, 2),
            "cache_speedup_of_limit": round(cpu_speedup / cpu_limit, 3),
            "align_cpu_s_per_step": phases["align"]["cpu_s_per_step"],
            "align_zero2_cpu_s_per_step_rank0": phases["align_zero2"]["cpu_s_per_step"],
        },
        **{key: build[key] for key in ("cache_bytes_per_image", "cache_bytes_per_text", "codec_bytes_per_shard",
                                       "cache_build_s_per_image", "cache_build_s_per_text", "ranks", "image_grids",
                                       "text_pooled", "text_tokens", "code_dtype")},  # fmt: skip
        "align_s_per_step": phases["align"]["s_per_step"],
        "align_step_split_s": phases["align"]["split_s"],
        "align_zero2_s_per_step": phases["align_zero2"]["s_per_step"],
        "align_zero2_peak_rss_gb_per_rank": phases["align_zero2"].get("peak_rss_gb_per_rank"),
        "memory_per_sample_mb": {
            "stage1_live": live["memory_per_sample"],
            "stage1_cache": cached["memory_per_sample"],
            "stage2_student_step": phases["memory"]["memory_per_sample"]["student_step"],
        },
        "peak_rss_gb": max(phase["peak_rss_gb"] for phase in phases.values()),
        "peak_rss_gb_per_phase": {name: phase["peak_rss_gb"] for name, phase in phases.items()},
        "wall_s_per_phase": {name: phase["wall_s"] for name, phase in phases.items()},
        "wall_s": round(wall_s, 1),
    }


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per run (the first is not measured)")
    parser.add_argument("--batch", type=int, default=8, help="per-device batch size of every run")
    parser.add_argument("--out", type=Path, default=Path("real_size.json"))
    parser.add_argument("--work_dir", type=Path, default=Path.home() / ".cache" / "dcclip" / "real_size",
                        help="the real-size teacher (built once, 3.5 GB), data, runs and phase logs")  # fmt: skip
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--bf16", action="store_true", help="train the student in bfloat16 (the recipes' GPU setting)")
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    parser.add_argument("--phase", choices=[*PHASES, "align"], help=argparse.SUPPRESS)
    parser.add_argument("--phase_out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--deepspeed", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--local_rank", type=int, help=argparse.SUPPRESS)  # the deepspeed launcher's
    args = parser.parse_args(argv)
    args.work_dir = args.work_dir.resolve()
    if args.steps < 2:
        parser.error("--steps must be at least 2 (the first step is not measured)")
    if args.phase:
        child(args)
        return None

    start = time.perf_counter()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    print(f"real_size: teacher in {prepare_teacher(args.work_dir)}", flush=True)
    prepare_data(args.work_dir, _images_needed(args))
    if args.device == "cuda" and torch.cuda.device_count() < 2 and "align_zero2" in args.phases:
        print("real_size: align_zero2 needs 2 GPUs; skipped", flush=True)
        args.phases.remove("align_zero2")
    phases = {}
    for phase in args.phases:
        print(f"real_size: {phase} ...", flush=True)
        phases[phase] = run_phase(args, phase)
        print(f"real_size: {phase}: {json.dumps(phases[phase])}", flush=True)
    if set(phases) == set(PHASES):
        results = summarize(args, phases, time.perf_counter() - start)
    else:
        results = {"phases": phases, "wall_s": round(time.perf_counter() - start, 1)}
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
