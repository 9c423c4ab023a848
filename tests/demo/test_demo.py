"""`dcclip demo --scale tiny` end to end, in a subprocess through the `dcclip` command, and everything it writes.

The tiny scale's numbers mean nothing (a few dozen steps); these tests check that every step runs through the real
trainers, evaluation and publishing code, and that the outputs are complete and consistent with each other.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from dcclip.demo import analysis
from dcclip.demo.run import TOTAL_STEPS, VARIANTS
from dcclip.evaluation.results import read_results
from dcclip.hub.folder_check import check_model_folder

ZERO_SHOT_TASKS = {"colour", "shape", "colour_shape", "count", "position", "colour_shape_unseen"}
MODELS = ["teacher", *(variant.name for variant in VARIANTS)]


def _run_demo(out: Path, *extra: str, cwd: Path) -> subprocess.CompletedProcess:
    """`dcclip demo --scale tiny ...` through the console command of the running interpreter's environment."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_DATASETS_CACHE": str(cwd / "datasets_cache")}  # fmt: skip
    dcclip = Path(sys.executable).parent / "dcclip"
    command = [str(dcclip), "demo", "--scale", "tiny", "--device", "cpu", "--out", str(out), *extra]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    work = tmp_path_factory.mktemp("demo")
    out = work / "out"
    completed = _run_demo(out, cwd=work)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-5000:]
    return out, completed


def test_every_step_reports_its_time_and_the_summary_table_is_printed(tiny_demo):
    out, completed = tiny_demo
    for number in range(1, TOTAL_STEPS + 1):
        assert f"[demo {number}/{TOTAL_STEPS}]" in completed.stdout
        assert any(line.startswith(f"[demo {number}/{TOTAL_STEPS}]") and "done in" in line
                   for line in completed.stdout.splitlines())  # fmt: skip
    table = completed.stdout.split("dcclip demo finished")[0]
    for model in MODELS:
        assert f"\n{model} " in table
    assert "same numbers" in completed.stdout  # the reload check line


def test_results_json_has_every_model_task_and_language_with_teacher_retention(tiny_demo):
    out, _ = tiny_demo
    results = read_results(out / "results.json")
    assert [m.name for m in results.models] == MODELS and results.teacher == "teacher"
    zero_shot = {t.name for t in results.tasks if t.kind == "zero_shot"}
    assert zero_shot == ZERO_SHOT_TASKS
    assert [t.name for t in results.tasks if t.kind == "retrieval"] == ["retrieval"]
    for model in MODELS:
        for task in results.tasks:
            for language in ("en", "zh"):
                entry = results.score(model, task.name, language)
                assert entry is not None, (model, task.name, language)
                assert 0.0 <= entry.score <= 1.0
                teacher = results.score("teacher", task.name, language).score
                if model == "teacher" or teacher == 0:
                    assert entry.teacher_retention_pct is None
                else:
                    assert entry.teacher_retention_pct == pytest.approx(100 * entry.score / teacher)


def test_report_gives_targets_every_variant_the_claims_and_the_step_times(tiny_demo):
    out, _ = tiny_demo
    report = (out / "report.md").read_text(encoding="utf-8")
    results = read_results(out / "results.json")
    for heading in ("## Targets", "## Summary", "## Teacher vs `dc-clip`, per task", "## What the numbers say",
                    "## Time and memory"):  # fmt: skip
        assert heading in report
    for variant in VARIANTS:
        assert f"`{variant.name}` | {variant.description}" in report
    # the retention printed in the report is the one computed from results.json
    retention = analysis.retention_of_mean_pct(results, "dc-clip", "zh")
    assert f"{retention:.1f}%" in report
    summary = json.loads((out / "demo_summary.json").read_text(encoding="utf-8"))
    assert [t["number"] for t in summary["timings"]] == list(range(1, TOTAL_STEPS))
    assert all(t["wall_s"] > 0 and t["cpu_s"] > 0 for t in summary["timings"])
    assert 0 < summary["peak_memory"]["process_mb"] < 6 * 1024
    assert len(summary["claims"]) == 6 and {c["verdict"] for c in summary["claims"]} <= {
        "supported", "not supported", "contradicted", "not resolved", "mixed",
        "supported in one language, not resolved in the other", "contradicted in one language, not resolved in the other",
    }  # fmt: skip
    headline = summary["headline"]["dc-clip"]["en"]
    assert headline["mean_zero_shot"] == pytest.approx(analysis.language_mean(results, "dc-clip", "en").mean)


def test_plots_are_png_images(tiny_demo):
    out, _ = tiny_demo
    for name in ("training_curves.png", "accuracy.png", "scores.png"):
        with Image.open(out / name) as image:
            assert image.format == "PNG" and min(image.size) > 300


def test_every_training_run_left_its_config_and_loss_log(tiny_demo):
    out, _ = tiny_demo
    runs = ["stage1_feature_maps", "stage1_logits", "stage2_dc-clip", "stage2_logits+align", "stage2_align-only"]
    logs = [out / "teacher" / "trainer_state.json", *(out / "runs" / run / "trainer_state.json" for run in runs)]
    for log in logs:
        history = json.loads(log.read_text(encoding="utf-8"))["log_history"]
        assert any("loss" in entry for entry in history), log
    for run in runs:
        config = yaml.safe_load((out / "configs" / f"{run}.yaml").read_text(encoding="utf-8"))
        assert config["output_dir"] == str(out / "runs" / run)
    align_only = yaml.safe_load((out / "configs" / "stage2_align-only.yaml").read_text(encoding="utf-8"))
    stage1 = yaml.safe_load((out / "configs" / "stage1_feature_maps.yaml").read_text(encoding="utf-8"))
    stage2 = yaml.safe_load((out / "configs" / "stage2_dc-clip.yaml").read_text(encoding="utf-8"))
    assert align_only["max_steps"] == stage1["max_steps"] + stage2["max_steps"]
    assert align_only["student"] == stage1["student"]  # the same initial student


def test_final_student_is_hub_ready_and_reloads_without_the_project_to_the_same_logits(tiny_demo, run_without_project):
    out, _ = tiny_demo
    folder = out / "final_student"
    report = check_model_folder(folder)  # raises, naming every problem, if anything is missing
    assert "README.md" in report.upload_files and not any(name.endswith(".bin") for name in report.upload_files)
    summary = json.loads((out / "demo_summary.json").read_text(encoding="utf-8"))
    assert summary["reload_check"]["passed"] and summary["reload_check"]["max_abs_logit_difference"] <= 1e-4

    # Independently of the demo's own check: the folder's logits in a process without the project, vs in-process.
    import torch

    from modeling_dcclip import DCCLIPModel, DCCLIPProcessor

    image_path = sorted((out / "benchmark" / "eval" / "images").iterdir())[0]
    texts = ["a photo of a red circle.", "一张红色圆形的照片。"]
    code = f"""
import json, torch
from PIL import Image
from transformers import AutoModel, AutoProcessor
model = AutoModel.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
processor = AutoProcessor.from_pretrained({str(folder)!r}, trust_remote_code=True)
inputs = processor(text={texts!r}, images=[Image.open({str(image_path)!r}).convert("RGB")], return_tensors="pt", padding=True, truncation=True)
with torch.no_grad():
    print(json.dumps(model(**inputs).logits_per_image.tolist()))
"""
    completed = run_without_project(code, out)
    assert completed.returncode == 0, completed.stderr[-3000:]
    reloaded = torch.tensor(json.loads(completed.stdout.strip().splitlines()[-1]))
    model, processor = DCCLIPModel.from_pretrained(folder).eval(), DCCLIPProcessor.from_pretrained(folder)
    inputs = processor(text=texts, images=[Image.open(image_path).convert("RGB")], return_tensors="pt", padding=True,
                       truncation=True)
    with torch.no_grad():
        expected = model(**inputs).logits_per_image
    torch.testing.assert_close(reloaded, expected, atol=1e-5, rtol=1e-5)


def test_teacher_option_skips_pretraining_and_distils_from_the_given_folder(tiny_demo, tmp_path):
    out, _ = tiny_demo
    teacher = out / "teacher" / "final"
    second = tmp_path / "second"
    completed = _run_demo(second, "--teacher", str(teacher), cwd=tmp_path)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-5000:]
    assert f"[demo 2/{TOTAL_STEPS}] teacher: {teacher}" in completed.stdout
    assert not (second / "teacher").exists() and not (second / "tokenizer").exists()
    stage1 = yaml.safe_load((second / "configs" / "stage1_feature_maps.yaml").read_text(encoding="utf-8"))
    assert stage1["teacher"] == str(teacher)
    summary = json.loads((second / "demo_summary.json").read_text(encoding="utf-8"))
    assert summary["teacher"] == str(teacher) and summary["teacher_trained_here"] is False
    # same teacher weights, same images and prompts: the teacher's scores equal the first run's
    first, again = read_results(out / "results.json"), read_results(second / "results.json")
    for entry in first.scores:
        if entry.model == "teacher":
            assert again.score("teacher", entry.task, entry.language).score == pytest.approx(entry.score)


def test_a_foreign_output_folder_is_refused_before_anything_runs(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("do not delete")
    completed = _run_demo(foreign, cwd=tmp_path)
    assert completed.returncode != 0
    assert "not a demo output folder" in completed.stderr
    assert (foreign / "thesis.tex").read_text() == "do not delete"
