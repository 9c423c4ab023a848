"""Teacher-vs-student reports: results.json schema round trip, retention, EN-ZH gap and agreement, Markdown, chart,
and `dcclip eval` end to end on saved tiny models."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from dcclip.evaluation.cli import main as eval_main
from dcclip.evaluation.model_loading import EvaluatedModel, load_evaluated_model
from dcclip.evaluation.report import add_teacher_retention, build_report, render_markdown, write_report
from dcclip.evaluation.results import (
    SCHEMA_VERSION,
    CrossLingualEntry,
    EvaluationResults,
    ModelInfo,
    ScoreEntry,
    TaskInfo,
    read_results,
    write_results,
)
from dcclip.evaluation.retrieval import evaluate_retrieval
from dcclip.evaluation.tasks import load_builtin_benchmark, load_retrieval_split
from dcclip.evaluation.zero_shot import evaluate_zero_shot

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def teacher_and_student(tiny_altclip, make_tiny_model, tiny_processor):
    teacher_model, teacher_processor = tiny_altclip
    teacher = EvaluatedModel("altclip-tiny", "memory", "teacher", "altclip", teacher_model, teacher_processor)
    student = EvaluatedModel("dcclip-tiny", "memory", "student", "dcclip", make_tiny_model("tiny"), tiny_processor)
    return teacher, student


def small_results(teacher_score: float = 0.5) -> EvaluationResults:
    models = [
        ModelInfo("t", "BAAI/AltCLIP", "teacher", "altclip", 10, 6, 4),
        ModelInfo("s", "out/s", "student", "dcclip", 3, 2, 1),
    ]
    tasks = [TaskInfo("cifar-10", "zero_shot", "accuracy", ["en", "zh"], 100, 10, "ten classes")]
    scores = [
        ScoreEntry("t", "cifar-10", "en", "accuracy", teacher_score, {"score": teacher_score}),
        ScoreEntry("t", "cifar-10", "zh", "accuracy", 0.4, {"score": 0.4}),
        ScoreEntry("s", "cifar-10", "en", "accuracy", 0.4, {"score": 0.4}),
        ScoreEntry("s", "cifar-10", "zh", "accuracy", 0.3, {"score": 0.3}),
    ]
    cross = [CrossLingualEntry("t", "cifar-10", teacher_score - 0.4, 0.9), CrossLingualEntry("s", "cifar-10", 0.1, 0.8)]
    return EvaluationResults(models, tasks, scores, cross, teacher="t")


def test_retention_is_student_over_teacher_in_percent():
    results = small_results()
    add_teacher_retention(results)
    assert results.score("s", "cifar-10", "en").teacher_retention_pct == pytest.approx(80.0)
    assert results.score("s", "cifar-10", "zh").teacher_retention_pct == pytest.approx(75.0)
    assert results.score("t", "cifar-10", "en").teacher_retention_pct is None


def test_retention_is_left_empty_when_the_teacher_scored_zero():
    results = small_results(teacher_score=0.0)
    add_teacher_retention(results)
    assert results.score("s", "cifar-10", "en").teacher_retention_pct is None


def test_results_json_round_trip(tmp_path):
    results = small_results()
    add_teacher_retention(results)
    path = write_results(results, tmp_path / "results.json")
    assert read_results(path) == results
    assert json.loads(path.read_text(encoding="utf-8"))["schema_version"] == SCHEMA_VERSION


def test_results_reader_rejects_other_versions_and_missing_fields(tmp_path):
    data = small_results().to_dict()
    (tmp_path / "v.json").write_text(json.dumps({**data, "schema_version": 99}), encoding="utf-8")
    with pytest.raises(ValueError, match="schema_version 99"):
        read_results(tmp_path / "v.json")
    del data["scores"][0]["score"]
    (tmp_path / "m.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match=r"ScoreEntry entry lacks \['score'\]"):
        read_results(tmp_path / "m.json")


def test_markdown_lists_scores_retention_gap_and_agreement():
    results = small_results()
    add_teacher_retention(results)
    markdown = render_markdown(results)
    assert "| Task | Metric | Lang | t (teacher) | s | s retention |" in markdown
    assert "| cifar-10 | accuracy | en | 50.00 | 40.00 | 80.0% |" in markdown
    assert "| cifar-10 | s | 40.00 | 30.00 | +10.00 | 80.00 |" in markdown
    assert "| s | student | dcclip | 3 | 2 | 1 | `out/s` |" in markdown


def test_build_report_measures_teacher_and_student_on_the_same_tasks(
    teacher_and_student, builtin_benchmark_dir, retrieval_dir, tmp_path
):
    teacher, student = teacher_and_student
    zero_shot = load_builtin_benchmark(builtin_benchmark_dir)
    retrieval = [load_retrieval_split(retrieval_dir, "pairs")]
    results = build_report([teacher, student], zero_shot, retrieval, batch_size=5, show_progress=False)

    assert results.teacher == "altclip-tiny"
    assert [t.name for t in results.tasks] == ["color", "shape", "pairs"]
    assert len(results.scores) == 2 * 3 * 2
    for model in (teacher, student):
        for task in zero_shot:
            en = evaluate_zero_shot(model.model, model.processor, task, "en")
            zh = evaluate_zero_shot(model.model, model.processor, task, "zh")
            assert results.score(model.name, task.name, "en").score == pytest.approx(en.score)
            cross = next(c for c in results.cross_lingual if (c.model, c.task) == (model.name, task.name))
            agreement = np.mean(np.array(en.predictions) == np.array(zh.predictions))
            assert cross.agreement == pytest.approx(agreement)
            assert cross.en_minus_zh == pytest.approx(en.score - zh.score)
        expected = evaluate_retrieval(model.model, model.processor, retrieval[0], "zh")
        assert results.score(model.name, "pairs", "zh").scores == pytest.approx(expected.scores)
    for entry in results.scores:
        teacher_entry = results.score(teacher.name, entry.task, entry.language)
        if entry.model == student.name and teacher_entry.score > 0:
            assert entry.teacher_retention_pct == pytest.approx(100 * entry.score / teacher_entry.score)
    assert results.model("dcclip-tiny").num_parameters == sum(p.numel() for p in student.model.parameters())

    paths = write_report(results, tmp_path)
    assert read_results(paths["results"]) == results
    assert paths["chart"].read_bytes()[:8] == PNG_MAGIC
    assert "## English vs Chinese" in paths["markdown"].read_text(encoding="utf-8")


def test_report_refuses_two_teachers_and_duplicate_names(teacher_and_student, builtin_benchmark_dir):
    teacher, student = teacher_and_student
    tasks = load_builtin_benchmark(builtin_benchmark_dir, ["en"], ["color"])
    with pytest.raises(ValueError, match="at most one teacher"):
        build_report([teacher, dataclasses.replace(student, role="teacher")], tasks, languages=["en"])
    with pytest.raises(ValueError, match="repeated: \\['dcclip-tiny'\\]"):
        build_report([student, student], tasks, languages=["en"])
    with pytest.raises(KeyError, match="no data for languages \\['zh'\\]"):
        build_report([student], tasks, languages=["en", "zh"])


def test_dcclip_eval_command_end_to_end(
    tiny_altclip, make_tiny_model, tiny_processor, builtin_benchmark_dir, retrieval_dir, tmp_path
):
    teacher_model, teacher_processor = tiny_altclip
    teacher_model.save_pretrained(tmp_path / "altclip-tiny")
    teacher_processor.save_pretrained(tmp_path / "altclip-tiny")
    student = make_tiny_model("tiny-vit")
    student.save_pretrained(tmp_path / "student-vit")
    tiny_processor.save_pretrained(tmp_path / "student-vit")

    loaded = load_evaluated_model(str(tmp_path / "student-vit"), "student")
    assert type(loaded.model).__name__ == "DCCLIPModel" and loaded.model_type == "dcclip"

    output = tmp_path / "report"
    argv = [
        "--teacher", str(tmp_path / "altclip-tiny"), "--student", str(tmp_path / "student-vit"),
        "--benchmark", str(builtin_benchmark_dir), "--benchmark-tasks", "shape",
        "--retrieval", str(retrieval_dir), "--batch-size", "4", "--output-dir", str(output), "--no-progress",
    ]  # fmt: skip
    assert eval_main(argv) == 0
    results = read_results(output / "results.json")
    assert {(m.name, m.role, m.model_type) for m in results.models} == {
        ("altclip-tiny", "teacher", "altclip"),
        ("student-vit", "student", "dcclip"),
    }
    assert [t.name for t in results.tasks] == ["shape", retrieval_dir.name]
    models, tasks, languages = ("altclip-tiny", "student-vit"), ("shape", retrieval_dir.name), ("en", "zh")
    expected = {(m, t, lang) for m in models for t in tasks for lang in languages}
    assert {(e.model, e.task, e.language) for e in results.scores} == expected
    assert (output / "results.md").is_file() and (output / "scores.png").read_bytes()[:8] == PNG_MAGIC
