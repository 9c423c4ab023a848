"""Speed, size and memory of the DC-CLIP student against the AltCLIP teacher architecture, on this machine.

    python benchmarks/latency.py --output_dir benchmarks/results/latency

For each tower (image, text) and batch size it times the student in PyTorch fp32, ONNX fp32 and ONNX int8 (dynamic
quantization, as `dcclip export` writes it) and the teacher in PyTorch fp32. The teacher is `AltCLIPModel` at
BAAI/AltCLIP's sizes (CLIP ViT-L/14 at 224 px, XLM-R-large text tower with 250,002 tokens, 768-d projections) with
random weights: the compute and the sizes are the real model's, the accuracy is not. A vocabulary-pruned student
(`--pruned_vocab_size` tokens, what `dcclip prune-vocab` leaves for a Chinese + English corpus) is measured for the
text tower, whose parameters are mostly its embedding matrix.

Every (model, tower, backend) runs in a fresh process, so its peak resident memory is its own: the peak is read from
the kernel (VmHWM) after resetting it once the model is built, and includes the Python + torch + onnxruntime runtime,
which is reported separately (`runtime_rss_mb`). Writes `latency.json`, `latency.md` and `latency.png`.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np

TOWERS = ("image", "text")
STUDENT_BACKENDS = ("pytorch-fp32", "onnx-fp32", "onnx-int8")
TEACHER_BACKEND = "pytorch-fp32"
SPEED_TARGET = 10.0  # student tower at least this many times faster than the teacher's
PARAMETER_TARGET = 8.0  # teacher at least this many times more parameters than the student


@dataclass
class LatencyArguments:
    preset: str = field(default="edge", metadata={"help": "DCCLIPConfig preset of the student."})
    batch_sizes: list[int] = field(default_factory=lambda: [1, 32], metadata={"help": "Batch sizes to time."})
    text_length: int = field(default=32, metadata={"help": "Tokens per text (no padding)."})
    max_iterations: int = field(default=20, metadata={"help": "Timed runs per measurement, at most."})
    min_iterations: int = field(default=3, metadata={"help": "Timed runs per measurement, at least."})
    time_budget_s: float = field(
        default=20.0, metadata={"help": "Stop timing a measurement after this many seconds once min_iterations ran."}
    )
    warmup: int = field(default=1, metadata={"help": "Untimed runs before timing each batch size."})
    threads: int = field(default=os.cpu_count() or 1, metadata={"help": "Intra-op threads of torch and onnxruntime."})
    pruned_vocab_size: int = field(
        default=50000,
        metadata={"help": "Vocabulary of the pruned student (a setting, not a measurement: run `dcclip prune-vocab` "
                          "on your corpus for its real size)."},
    )
    output_dir: str = field(default="benchmarks/results/latency", metadata={"help": "Where the reports go."})


def altclip_teacher_config():
    """`AltCLIPConfig` at BAAI/AltCLIP's published sizes (its config.json): ViT-L/14 at 224 px and XLM-R-large."""
    from transformers import AltCLIPConfig

    text = dict(vocab_size=250002, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                intermediate_size=4096, max_position_embeddings=514, type_vocab_size=1, hidden_act="gelu",
                layer_norm_eps=1e-5, project_dim=768, pad_token_id=1, bos_token_id=0, eos_token_id=2)
    vision = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                  image_size=224, patch_size=14, hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=768)
    return AltCLIPConfig(text_config=text, vision_config=vision, projection_dim=768)


# ----- measurement, run inside a fresh process ------------------------------------------------------------------------


@dataclass
class Measurement:
    """One (model, tower, backend): what to load, and what was measured at each batch size."""

    model: str  # "student" | "student-pruned" | "teacher"
    tower: str  # "image" | "text"
    backend: str  # "pytorch-fp32" | "onnx-fp32" | "onnx-int8"
    onnx_path: str | None = None
    parameters: int = 0
    file_bytes: int = 0
    runtime_rss_mb: float = 0.0
    loaded_rss_mb: float = 0.0
    load_average: list[float] = field(default_factory=list)  # 1-minute load of the machine before and after timing
    results: list[dict] = field(default_factory=list)


def _rss_mb(field_name: str) -> float:
    status = Path("/proc/self/status").read_text()
    return int(re.search(rf"{field_name}:\s+(\d+) kB", status).group(1)) / 1024


def _reset_peak_rss() -> None:
    # Writing 5 to clear_refs resets VmHWM (the peak resident set) to the current RSS (Linux >= 4.0).
    Path("/proc/self/clear_refs").write_text("5")


def _build_pytorch_tower(spec: Measurement, args: LatencyArguments):
    """(run(batch_inputs) -> embeddings, parameter count, safetensors bytes) of one PyTorch tower."""
    import torch
    from safetensors.torch import save_file

    from dcclip.evaluation.model_loading import tower_parameter_counts
    from modeling_dcclip import DCCLIPConfig, DCCLIPModel, as_embedding

    torch.manual_seed(0)
    if spec.model == "teacher":
        from transformers import AltCLIPModel

        model = AltCLIPModel(altclip_teacher_config())
    else:
        vocab = args.pruned_vocab_size if spec.model == "student-pruned" else None
        model = DCCLIPModel(DCCLIPConfig.from_preset(args.preset, vocab_size=vocab))
    model.eval()
    vision_parameters, text_parameters = tower_parameter_counts(model)
    kept = ("vision_model", "visual_projection") if spec.tower == "image" else ("text_model", "text_projection")
    dropped = ("text_model", "text_projection") if spec.tower == "image" else ("vision_model", "visual_projection")
    for name in dropped:  # only the measured tower stays in memory
        setattr(model, name, None)
    gc.collect()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tower.safetensors"
        save_file({f"{name}.{k}": v.contiguous() for name in kept for k, v in getattr(model, name).state_dict().items()},
                  str(path))
        file_bytes = path.stat().st_size

    if spec.tower == "image":
        def run(inputs):
            with torch.inference_mode():
                return as_embedding(model.get_image_features(pixel_values=torch.from_numpy(inputs["pixel_values"])))
    else:
        def run(inputs):
            with torch.inference_mode():
                return as_embedding(model.get_text_features(
                    input_ids=torch.from_numpy(inputs["input_ids"]),
                    attention_mask=torch.from_numpy(inputs["attention_mask"])))
    return run, vision_parameters if spec.tower == "image" else text_parameters, file_bytes


def _build_onnx_tower(spec: Measurement, args: LatencyArguments):
    from dcclip.export.onnx_model import make_session

    session = make_session(spec.onnx_path, intra_op_threads=args.threads)
    data_file = Path(spec.onnx_path + ".data")  # external weights of towers over 2 GiB
    file_bytes = Path(spec.onnx_path).stat().st_size + (data_file.stat().st_size if data_file.exists() else 0)
    return (lambda inputs: session.run(None, inputs)), spec.parameters, file_bytes


def _inputs(tower: str, batch_size: int, args: LatencyArguments, vocab_size: int, image_size: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(batch_size)
    if tower == "image":
        return {"pixel_values": rng.standard_normal((batch_size, 3, image_size, image_size), dtype=np.float32)}
    ids = rng.integers(4, vocab_size, (batch_size, args.text_length), dtype=np.int64)
    ids[:, 0], ids[:, -1] = 0, 2  # <s> ... </s>, as the tokenizer adds them
    return {"input_ids": ids, "attention_mask": np.ones_like(ids)}


def _time(run: Callable, inputs: dict, args: LatencyArguments) -> list[float]:
    for _ in range(args.warmup):
        run(inputs)
    latencies: list[float] = []
    started = time.perf_counter()
    while len(latencies) < args.max_iterations and (
        len(latencies) < args.min_iterations or time.perf_counter() - started < args.time_budget_s
    ):
        tick = time.perf_counter()
        run(inputs)
        latencies.append(time.perf_counter() - tick)
    return latencies


def measure(spec: Measurement, args: LatencyArguments) -> Measurement:
    """Load one tower with one backend and time it at every batch size (runs in its own process)."""
    import torch

    torch.set_num_threads(args.threads)
    import onnxruntime  # noqa: F401  (imported before the baseline so every process carries the same runtime)

    spec.runtime_rss_mb = _rss_mb("VmRSS")
    build = _build_pytorch_tower if spec.backend.startswith("pytorch") else _build_onnx_tower
    run, spec.parameters, spec.file_bytes = build(spec, args)
    gc.collect()
    spec.loaded_rss_mb = _rss_mb("VmRSS")
    from modeling_dcclip import DCCLIPConfig

    student_config = DCCLIPConfig.from_preset(args.preset)
    vocab_size = args.pruned_vocab_size if spec.model == "student-pruned" else student_config.text_config.vocab_size
    image_size = 224 if spec.model == "teacher" else student_config.image_size
    spec.load_average.append(round(os.getloadavg()[0], 2))
    for batch_size in args.batch_sizes:
        inputs = _inputs(spec.tower, batch_size, args, vocab_size, image_size)
        _reset_peak_rss()
        latencies = _time(run, inputs, args)
        p50 = statistics.median(latencies)
        spec.results.append({
            "batch_size": batch_size,
            "iterations": len(latencies),
            "p50_ms": 1000 * p50,
            "p90_ms": 1000 * float(np.percentile(latencies, 90)),
            "items_per_s": batch_size / p50,
            "peak_rss_mb": _rss_mb("VmHWM"),
        })
    spec.load_average.append(round(os.getloadavg()[0], 2))
    return spec


def export_students(args: LatencyArguments, folder: str) -> dict[str, dict[str, str]]:
    """ONNX fp32 + int8 files of the student towers (and of the pruned student's text tower), built with seed 0."""
    import torch

    from dcclip.export.onnx_export import export_image_tower, export_text_tower
    from dcclip.export.quantize import quantize_int8_dynamic
    from modeling_dcclip import DCCLIPConfig, DCCLIPModel

    torch.set_num_threads(args.threads)
    paths: dict[str, dict[str, str]] = {}
    for model_name, vocab in (("student", None), ("student-pruned", args.pruned_vocab_size)):
        torch.manual_seed(0)
        model = DCCLIPModel(DCCLIPConfig.from_preset(args.preset, vocab_size=vocab)).eval()
        towers = ("image", "text") if model_name == "student" else ("text",)
        for tower in towers:
            export = export_image_tower if tower == "image" else export_text_tower
            fp32 = export(model, Path(folder) / f"{model_name}_{tower}.onnx")
            int8 = quantize_int8_dynamic(fp32, fp32.with_suffix(".int8.onnx"))
            paths[f"{model_name}/{tower}"] = {"onnx-fp32": str(fp32), "onnx-int8": str(int8)}
    return paths


# ----- reports ----------------------------------------------------------------------------------------------------------


def _row(measurements: list[Measurement], model: str, tower: str, backend: str, batch: int) -> dict | None:
    for m in measurements:
        if (m.model, m.tower, m.backend) == (model, tower, backend):
            return next((r for r in m.results if r["batch_size"] == batch), None)
    return None


def _parameters(measurements: list[Measurement], model: str, tower: str) -> int:
    return next(m.parameters for m in measurements if (m.model, m.tower) == (model, tower))


def summarise(measurements: list[Measurement], args: LatencyArguments) -> dict:
    """Speed ratios student/teacher and int8/fp32, parameter ratios, and whether the targets are reached."""
    speed: dict[str, dict] = {}
    int8_over_fp32: dict[str, dict] = {}
    for tower in TOWERS:
        for batch in args.batch_sizes:
            teacher = _row(measurements, "teacher", tower, TEACHER_BACKEND, batch)
            key = f"{tower}/batch{batch}"
            speed[key] = {b: _row(measurements, "student", tower, b, batch)["items_per_s"] / teacher["items_per_s"]
                          for b in STUDENT_BACKENDS}
            int8_over_fp32[key] = (_row(measurements, "student", tower, "onnx-int8", batch)["items_per_s"]
                                   / _row(measurements, "student", tower, "onnx-fp32", batch)["items_per_s"])
    parameters = {}
    for model in ("student", "student-pruned"):
        towers = [t for t in TOWERS if any((m.model, m.tower) == (model, t) for m in measurements)]
        for tower in towers:
            parameters[f"teacher/{model} {tower}"] = (_parameters(measurements, "teacher", tower)
                                                      / _parameters(measurements, model, tower))
    teacher_total = sum(_parameters(measurements, "teacher", t) for t in TOWERS)
    student_total = sum(_parameters(measurements, "student", t) for t in TOWERS)
    pruned_total = _parameters(measurements, "student", "image") + _parameters(measurements, "student-pruned", "text")
    parameters["teacher/student total"] = teacher_total / student_total
    parameters["teacher/student-pruned total"] = teacher_total / pruned_total
    # Largest vocabulary with which the student's text tower still has <= 1/8 of the teacher's text parameters.
    student_text = _parameters(measurements, "student", "text")
    width = (student_text - _parameters(measurements, "student-pruned", "text")) // (250002 - args.pruned_vocab_size)
    break_even = int(250002 - (student_text - _parameters(measurements, "teacher", "text") / PARAMETER_TARGET) / width)
    targets = {
        f"{tower} >= {SPEED_TARGET:g}x faster ({backend}, every batch size)": all(
            speed[f"{tower}/batch{b}"][backend] >= SPEED_TARGET for b in args.batch_sizes)
        for tower in TOWERS for backend in STUDENT_BACKENDS
    }
    targets[f"student <= 1/{PARAMETER_TARGET:g} of teacher parameters"] = parameters["teacher/student total"] >= PARAMETER_TARGET
    targets[f"pruned student <= 1/{PARAMETER_TARGET:g} of teacher parameters"] = (
        parameters["teacher/student-pruned total"] >= PARAMETER_TARGET)
    return {"speed_student_over_teacher": speed, "int8_over_fp32": int8_over_fp32, "parameter_ratio": parameters,
            "text_vocab_for_one_eighth_of_teacher_text_parameters": break_even, "targets": targets}


def render_markdown(report: dict) -> str:
    settings = report["settings"]
    lines = [
        f"# DC-CLIP student (`{settings['preset']}`) vs AltCLIP teacher: latency, size, memory",
        "",
        f"Machine: {report['environment']['processor']} ({report['environment']['cpu_count']} CPUs), "
        f"{settings['threads']} threads; load average before/after: {report['environment']['load_before']} / "
        f"{report['environment']['load_after']}. Images {report['student_image_size']} px (student) / 224 px "
        f"(teacher), texts {settings['text_length']} tokens; "
        f"{settings['warmup']} warm-up run(s), then {settings['min_iterations']}-{settings['max_iterations']} timed runs "
        f"(stopping after {settings['time_budget_s']:g} s). Teacher: random weights at BAAI/AltCLIP's sizes. "
        f"Pruned student: {settings['pruned_vocab_size']} tokens (a setting). Peak RSS includes the runtime "
        f"(~{report['runtime_rss_mb']:.0f} MB with torch + onnxruntime imported).",
        "",
        "| model | tower | backend | batch | runs | p50 ms | p90 ms | items/s | params (M) | file (MB) | peak RSS (MB) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in report["measurements"]:
        for r in m["results"]:
            lines.append(
                f"| {m['model']} | {m['tower']} | {m['backend']} | {r['batch_size']} | {r['iterations']} | "
                f"{r['p50_ms']:.1f} | {r['p90_ms']:.1f} | {r['items_per_s']:.2f} | {m['parameters'] / 1e6:.1f} | "
                f"{m['file_bytes'] / 1e6:.1f} | {r['peak_rss_mb']:.0f} |"
            )
    summary = report["summary"]
    lines += ["", "## Speed: student items/s divided by the teacher's (PyTorch fp32)", "",
              "| tower / batch | " + " | ".join(STUDENT_BACKENDS) + " | int8 / fp32 (ONNX) |",
              "|---|" + "---:|" * (len(STUDENT_BACKENDS) + 1)]
    for key, ratios in summary["speed_student_over_teacher"].items():
        cells = " | ".join(f"{ratios[b]:.1f}x" for b in STUDENT_BACKENDS)
        lines.append(f"| {key} | {cells} | {summary['int8_over_fp32'][key]:.2f}x |")
    lines += ["", "## Parameters: teacher divided by student", ""]
    lines += [f"- {key}: {value:.1f}x" for key, value in summary["parameter_ratio"].items()]
    lines += [f"- largest text vocabulary keeping the student's text tower at <= 1/{PARAMETER_TARGET:g} of the "
              f"teacher's: {summary['text_vocab_for_one_eighth_of_teacher_text_parameters']} tokens", "",
              "## Targets", ""]
    lines += [f"- {'reached' if ok else 'NOT reached'}: {name}" for name, ok in summary["targets"].items()]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batch_sizes = report["settings"]["batch_sizes"]
    figure, axes = plt.subplots(1, len(TOWERS), figsize=(12, 4.5))
    for axis, tower in zip(axes, TOWERS):
        rows = [m for m in report["measurements"] if m["tower"] == tower]
        labels = ["\n".join([*m["model"].split("-"), m["backend"]]) for m in rows]
        positions = np.arange(len(rows))
        width = 0.8 / len(batch_sizes)
        for i, batch in enumerate(batch_sizes):
            values = [next(r["items_per_s"] for r in m["results"] if r["batch_size"] == batch) for m in rows]
            axis.bar(positions + i * width, values, width, label=f"batch {batch}")
        axis.set_xticks(positions + width * (len(batch_sizes) - 1) / 2, labels, fontsize=7)
        axis.set_yscale("log")
        axis.set_ylabel("images/s" if tower == "image" else "texts/s")
        axis.set_title(f"{tower} tower")
        axis.legend()
    figure.suptitle(f"DC-CLIP {report['settings']['preset']} vs AltCLIP teacher, {report['settings']['threads']} CPU threads")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def run_benchmark(args: LatencyArguments) -> dict:
    """Export the student, measure every configuration in its own process, and write the three reports."""
    from modeling_dcclip import DCCLIPConfig

    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    context = get_context("spawn")

    def in_fresh_process(function, *function_args):
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            return pool.submit(function, *function_args).result()

    measurements: list[Measurement] = []
    with tempfile.TemporaryDirectory() as onnx_dir:
        onnx_paths = in_fresh_process(export_students, args, onnx_dir)
        plan = [Measurement("teacher", tower, TEACHER_BACKEND) for tower in TOWERS]
        for model, towers in (("student", TOWERS), ("student-pruned", ("text",))):
            plan += [Measurement(model, tower, backend) for tower in towers for backend in STUDENT_BACKENDS]
        for spec in plan:
            if spec.backend.startswith("pytorch"):
                # The ONNX rows of the same tower take their parameter count from this one; plan order ensures it.
                measurements.append(in_fresh_process(measure, spec, args))
            else:
                spec.onnx_path = onnx_paths[f"{spec.model}/{spec.tower}"][spec.backend]
                spec.parameters = _parameters(measurements, spec.model, spec.tower)
                measurements.append(in_fresh_process(measure, spec, args))
            print(f"{spec.model:15s} {spec.tower:5s} {spec.backend:12s} "
                  + "  ".join(f"b{r['batch_size']}: {r['items_per_s']:.2f}/s" for r in measurements[-1].results),
                  flush=True)

    report = {
        "settings": asdict(args),
        "environment": {
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()],
            **_versions(),
        },
        "student_image_size": DCCLIPConfig.from_preset(args.preset).image_size,
        "runtime_rss_mb": min(m.runtime_rss_mb for m in measurements),
        "measurements": [asdict(m) for m in measurements],
        "summary": summarise(measurements, args),
    }
    (output_dir / "latency.json").write_text(json.dumps(report, indent=2) + "\n")
    (output_dir / "latency.md").write_text(render_markdown(report))
    plot(report, output_dir / "latency.png")
    return report


def _versions() -> dict[str, str]:
    import onnxruntime
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "onnxruntime": onnxruntime.__version__}


def main(argv: list[str] | None = None) -> int:
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(LatencyArguments).parse_args_into_dataclasses(args=sys.argv[1:] if argv is None else argv)
    report = run_benchmark(args)
    print(render_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
