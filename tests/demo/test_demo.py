"""`dcclip demo --scale tiny` runs the whole method end to end, offline, through the console command a user types."""

import json
import subprocess
import sys
from pathlib import Path

VARIANTS = {"teacher", "dc-clip", "fm-only", "logits+align", "logits-only", "align-only"}


def test_tiny_demo_runs_end_to_end_and_writes_a_complete_report(tmp_path):
    dcclip = Path(sys.executable).parent / "dcclip"
    out = tmp_path / "demo"
    result = subprocess.run(
        [str(dcclip), "demo", "--scale", "tiny", "--out", str(out), "--seed", "0"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    for name in ("report.md", "results.json", "accuracy.png", "training_curves.png"):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    assert results["teacher"] == "teacher"
    tasks = {task["name"] if isinstance(task, dict) else task for task in results["tasks"]}
    assert len(tasks) >= 5
    scored = {(s["model"], s["task"], s["language"]) for s in results["scores"]}
    models = {model for model, _, _ in scored}
    assert VARIANTS <= models, models
    # every variant is scored on every task in both languages, with a retention % beside the teacher's score
    for model in models:
        for task in tasks:
            for language in ("en", "zh"):
                assert (model, task, language) in scored or not any(t == task for _, t, _ in scored)
    teacher = {(s["task"], s["language"]): s["score"] for s in results["scores"] if s["model"] == "teacher"}
    for entry in results["scores"]:
        assert 0.0 <= entry["score"] <= 1.0
        if entry["model"] != "teacher" and teacher.get((entry["task"], entry["language"])):
            expected = 100.0 * entry["score"] / teacher[(entry["task"], entry["language"])]
            assert abs(entry["teacher_retention_pct"] - expected) < 1e-6
    # the final student is a Hub-ready folder that loads with AutoModel
    assert (out / "final_student" / "model.safetensors").is_file()
    assert (out / "final_student" / "config.json").is_file()
    assert "dc-clip" in result.stdout and "align-only" in result.stdout
