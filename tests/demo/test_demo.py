"""`dcclip demo --scale tiny` end to end, in a subprocess through the `dcclip` command, and everything it writes.

The tiny scale's numbers mean nothing (a few dozen steps); these tests check that every step runs through the real
trainers, evaluation and publishing code, in the scarce-pairs data regime and over student seeds, and that the
outputs are complete and consistent with each other.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from dcclip.demo import analysis
from dcclip.demo.comparison import VARIANT_NAMES, model_name
from dcclip.demo.run import DEMO_STEPS, STUDY_STEPS
from dcclip.demo.scales import get_scale
from dcclip.evaluation.results import read_results
from dcclip.hub.folder_check import check_model_folder

ZERO_SHOT_TASKS = {"colour", "shape", "colour_shape", "count", "position", "colour_shape_unseen"}
TINY = get_scale("tiny")
SEEDS = list(range(TINY.seeds))
SUBSET = f"train_pairs_{100 * TINY.pair_fraction:g}pct"
MODELS = ["teacher", *(model_name(variant, seed) for variant in VARIANT_NAMES for seed in SEEDS)]


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


def _config(out: Path, *parts: str) -> dict:
    return yaml.safe_load((out / "configs" / Path(*parts)).with_suffix(".yaml").read_text(encoding="utf-8"))


def test_every_step_reports_its_time_and_every_run_names_its_config_and_log(tiny_demo):
    out, completed = tiny_demo
    lines = completed.stdout.splitlines()
    for number in range(1, DEMO_STEPS + 1):
        assert any(line.startswith(f"[demo {number}/{DEMO_STEPS}]") and "done in" in line for line in lines)
    for seed in SEEDS:
        config = out / "configs" / f"seed{seed}" / "stage1_feature_maps.yaml"
        log = out / "runs" / f"seed{seed}" / "stage1_feature_maps" / "train.log"
        assert f"  seed {seed} stage 1 (feature maps): dcclip distill {config}  (log: {log})" in lines
        config = out / "configs" / f"seed{seed}" / SUBSET / "stage2_align-only.yaml"
        align_only = [line for line in lines if line.startswith(f"  seed {seed} align-only (")]
        assert len(align_only) == 1 and f"dcclip align {config}" in align_only[0]
    assert "same numbers" in completed.stdout  # the reload check line
    assert lines[-1].startswith("dcclip demo finished in") and f"it wrote {out}: report.md" in lines[-1]


def test_the_console_has_labelled_progress_bars_and_no_raw_trainer_log_dicts(tiny_demo):
    out, completed = tiny_demo
    console = completed.stdout + completed.stderr
    assert "{'loss'" not in console and "'train_runtime'" not in console
    assert "seed 1 stage 1 (logits): 100%" in completed.stderr
    assert "teacher pre-training (256 pairs): 100%" in completed.stderr
    # the dicts went to each run's own log
    log = (out / "runs" / "seed1" / "stage1_logits" / "train.log").read_text(encoding="utf-8")
    assert "'loss'" in log and "'train_runtime'" in log


def test_every_variant_is_trained_for_every_seed_in_the_scarce_pairs_regime(tiny_demo):
    out, _ = tiny_demo
    benchmark = out / "benchmark"
    for seed in SEEDS:
        init = str(out / "runs" / f"seed{seed}" / "student_init")
        for target in ("feature_maps", "logits"):
            stage1 = _config(out, f"seed{seed}", f"stage1_{target}")
            assert stage1["student"] == init and stage1["seed"] == seed
            # stage 1 reads images only and captions only: no pairs
            assert stage1["image_data"] == str(benchmark / "unpaired_images.yaml")
            assert stage1["text_data"] == str(benchmark / "unpaired_texts.yaml")
        for variant in ("dc-clip", "logits+align", "align-only"):
            stage2 = _config(out, f"seed{seed}", SUBSET, f"stage2_{variant}")
            assert stage2["train_data"] == str(benchmark / f"{SUBSET}.yaml") and stage2["seed"] == seed
            assert stage2["output_dir"] == str(out / "runs" / f"seed{seed}" / SUBSET / f"stage2_{variant}")
            history = json.loads((Path(stage2["output_dir"]) / "trainer_state.json").read_text())["log_history"]
            assert any("loss" in entry for entry in history)
        align_only = _config(out, f"seed{seed}", SUBSET, "stage2_align-only")
        assert align_only["student"] == init  # from scratch, the same initial student
        assert align_only["max_steps"] == TINY.stage1.steps + TINY.stage2.steps
    pairs = [json.loads(line) for line in (benchmark / "pair_subsets" / f"{SUBSET}.jsonl").read_text().splitlines()]
    assert len(pairs) == TINY.num_pairs(TINY.pair_fraction)
    teacher_log = (out / "teacher" / "train.log").read_text(encoding="utf-8")
    assert "[corpus]: seen 256, kept 256" in teacher_log  # the teacher saw the corpus, not the student's pairs


def test_results_json_scores_the_teacher_and_every_seed_of_every_variant(tiny_demo):
    out, _ = tiny_demo
    results = read_results(out / "results.json")
    assert [m.name for m in results.models] == MODELS and results.teacher == "teacher"
    assert {t.name for t in results.tasks if t.kind == "zero_shot"} == ZERO_SHOT_TASKS
    assert [t.name for t in results.tasks if t.kind == "retrieval"] == ["retrieval"]
    for model in MODELS:
        for task in results.tasks:
            for language in ("en", "zh"):
                entry = results.score(model, task.name, language)
                assert entry is not None and 0.0 <= entry.score <= 1.0, (model, task.name, language)
                teacher = results.score("teacher", task.name, language).score
                if model == "teacher" or teacher == 0:
                    assert entry.teacher_retention_pct is None
                else:
                    assert entry.teacher_retention_pct == pytest.approx(100 * entry.score / teacher)


def test_report_and_summary_give_every_variant_as_mean_and_spread_over_the_seeds(tiny_demo):
    out, _ = tiny_demo
    report = (out / "report.md").read_text(encoding="utf-8")
    results = read_results(out / "results.json")
    for heading in ("## Targets", "## Summary", "## Per task", "## What the numbers say", "## Time and memory"):
        assert heading in report
    for variant in VARIANT_NAMES:
        mean = analysis.variant_mean(results, variant, "zh")
        assert f"`{variant}` |" in report and mean.text() in report
    summary = json.loads((out / "demo_summary.json").read_text(encoding="utf-8"))
    assert summary["student_seeds"] == SEEDS and summary["summary_version"] == 2
    assert [t["number"] for t in summary["timings"]] == list(range(1, DEMO_STEPS))
    assert all(t["wall_s"] > 0 and t["cpu_s"] > 0 for t in summary["timings"])
    assert 0 < summary["peak_memory"]["process_mb"] < 6 * 1024
    assert summary["parameters"]["teacher"] >= 5 * summary["parameters"]["dc-clip"]
    headline = summary["headline"]["dc-clip"]["en"]["mean_zero_shot_pct"]
    assert headline["values"] == pytest.approx(analysis.variant_mean(results, "dc-clip", "en").values)
    assert len(summary["claims"]) == 7 and {c["verdict"] for c in summary["claims"]} <= set(analysis.VERDICTS)


def test_plots_are_png_images(tiny_demo):
    out, _ = tiny_demo
    for name in ("training_curves.png", "accuracy.png"):
        with Image.open(out / name) as image:
            assert image.format == "PNG" and min(image.size) > 300


def test_final_student_is_hub_ready_says_where_it_fails_and_reloads_to_the_same_logits(tiny_demo, run_without_project):
    out, _ = tiny_demo
    folder = out / "final_student"
    report = check_model_folder(folder)  # raises, naming every problem, if anything is missing
    assert "README.md" in report.upload_files and not any(name.endswith(".bin") for name in report.upload_files)
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert "## Limitations" in card and "does not work on photographs" in card
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
    assert f"[demo 2/{DEMO_STEPS}] teacher: {teacher}" in completed.stdout
    assert not (second / "teacher").exists() and not (second / "tokenizer").exists()
    assert _config(second, "seed0", "stage1_feature_maps")["teacher"] == str(teacher)
    summary = json.loads((second / "demo_summary.json").read_text(encoding="utf-8"))
    assert summary["teacher"] == str(teacher) and summary["teacher_trained_here"] is False
    # same teacher weights, same images and prompts: the teacher's scores equal the first run's
    first, again = read_results(out / "results.json"), read_results(second / "results.json")
    for entry in first.scores:
        if entry.model == "teacher":
            assert again.score("teacher", entry.task, entry.language).score == pytest.approx(entry.score)


def test_a_rerun_keeps_a_file_the_user_saved_in_the_demo_folder_and_says_why_it_refused(tiny_demo, tmp_path):
    out, _ = tiny_demo
    copy = tmp_path / "earlier"
    shutil.copytree(out, copy)  # keeps modification times: the copy is the earlier run's folder as it was
    (copy / "my_notes.md").write_text("what I saw in the report")
    completed = _run_demo(copy, cwd=tmp_path)
    assert completed.returncode != 0
    assert "refusing to reuse" in completed.stderr and "my_notes.md" in completed.stderr
    assert "did not write" in completed.stderr and "Nothing was deleted" in completed.stderr
    assert (copy / "my_notes.md").read_text() == "what I saw in the report" and (copy / "report.md").is_file()


def test_a_foreign_output_folder_is_refused_before_anything_runs(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("do not delete")
    completed = _run_demo(foreign, cwd=tmp_path)
    assert completed.returncode != 0
    assert "not a demo output folder" in completed.stderr
    assert (foreign / "thesis.tex").read_text() == "do not delete"


def test_the_data_efficiency_study_scores_every_variant_at_every_pair_set_size(tmp_path):
    out = tmp_path / "study"
    completed = _run_demo(out, "--study", "data-efficiency", cwd=tmp_path)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-5000:]
    lines = completed.stdout.splitlines()
    for number in range(1, STUDY_STEPS + 1):
        assert any(line.startswith(f"[demo {number}/{STUDY_STEPS}]") and "done in" in line for line in lines)
    data = json.loads((out / "data_efficiency.json").read_text(encoding="utf-8"))
    sizes = {size["fraction"]: size for size in data["sizes"]}
    assert sorted(sizes) == sorted(TINY.study_pair_fractions)
    for fraction, size in sizes.items():
        assert size["pairs"] == TINY.num_pairs(fraction)
        for variant in VARIANT_NAMES:
            assert len(size["mean_zero_shot_pct"][variant]["zh"]["values"]) == len(SEEDS)
        results = read_results(out / "results" / f"train_pairs_{100 * fraction:g}pct.json")
        assert [m.name for m in results.models] == MODELS
    # stage 1 reads no pairs: its students are the same at every size
    first, last = (sizes[f]["mean_zero_shot_pct"]["fm-only"]["en"] for f in sorted(sizes)[:: len(sizes) - 1])
    assert first == last
    table = (out / "data_efficiency.md").read_text(encoding="utf-8")
    assert "## Claims at each size" in table and f"{TINY.num_pairs(1.0):,} pairs" in table
    with Image.open(out / "data_efficiency.png") as image:
        assert image.format == "PNG" and min(image.size) > 300
    assert not (out / "final_student").exists()
