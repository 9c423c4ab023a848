"""The model card is built from measured numbers only, and parses back with huggingface_hub as the Hub reads it."""

import json
import re

import pytest
from huggingface_hub import ModelCard
from safetensors.torch import load_file

from dcclip.evaluation.results import read_results, write_results
from dcclip.hub.push import PushArguments, prepare_card


# Scores are printed with two decimals: a printed value may differ from the stored one by half of the last digit.
HALF_LAST_DIGIT = 0.005 + 1e-9


def card_for(folder, results_path, **overrides) -> str:
    args = PushArguments(folder=str(folder), results=str(results_path), repo_id="org/dc-clip-tiny", **overrides)
    return prepare_card(args)[1]


def table_under(text: str, heading: str) -> list[dict[str, str]]:
    """Rows (as header -> cell) of the first markdown table after `heading`."""
    section = text.split(heading, 1)[1]
    lines = []
    for line in section.splitlines():
        if line.startswith("|"):
            lines.append(line)
        elif lines:
            break
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")))) for line in lines[2:]]


def test_card_metadata_parses_back_with_languages_pipeline_teacher_and_model_index(trained_folder, results_json):
    card = ModelCard(card_for(trained_folder, results_json, license="apache-2.0"))
    data = card.data
    assert data.language == ["zh", "en"]
    assert data.library_name == "transformers"
    assert data.pipeline_tag == "zero-shot-image-classification"
    assert data.base_model == "BAAI/AltCLIP"
    assert data.license == "apache-2.0"
    assert data.datasets == ["org/wukong-pairs"]  # the one Hub dataset among the recorded data sources
    assert "knowledge-distillation" in data.tags
    # "distillation" is not a relation the Hub accepts; the card must not claim one (docs/hub.md)
    assert "base_model_relation" not in data.to_dict()

    results = read_results(results_json)
    student = {(e.task, e.language): e for e in results.scores if e.model == "dc-clip-tiny"}
    zero_shot = {k: e for k, e in student.items() if k[0] in ("cifar-10", "scenes")}
    assert data.model_name == "dc-clip-tiny"
    assert len(data.eval_results) == len(zero_shot) == 4
    for result in data.eval_results:
        entry = zero_shot[(result.dataset_type, result.dataset_config)]
        assert result.task_type == "zero-shot-image-classification"
        assert result.metric_type == entry.metric
        assert result.metric_value == entry.score  # exact: the model-index carries results.json's own number


def test_card_states_the_transformers_version_that_config_json_names(trained_folder, results_json):
    minimum = json.loads((trained_folder / "config.json").read_text())["minimum_transformers_version"]
    text = card_for(trained_folder, results_json)
    assert f"it needs transformers {minimum} or later" in text
    assert f'pip install torch pillow "transformers>={minimum}"' in text


def test_every_number_in_the_score_tables_matches_results_json(trained_folder, results_json):
    text = card_for(trained_folder, results_json)
    results = read_results(results_json)
    student = {(e.task, e.language): e for e in results.scores if e.model == "dc-clip-tiny"}
    teacher = {(e.task, e.language): e for e in results.scores if e.model == "altclip"}

    rows = table_under(text, "## Zero-shot image classification")
    assert {(r["Task"], r["Language"]) for r in rows} == {("cifar-10", "en"), ("cifar-10", "zh"), ("scenes", "en"),
                                                          ("scenes", "zh")}
    for row in rows:
        key = (row["Task"], row["Language"])
        assert row["Metric"] == student[key].metric
        assert float(row["Student (%)"]) == pytest.approx(100 * student[key].score, abs=HALF_LAST_DIGIT)
        assert float(row["Teacher BAAI/AltCLIP (%)"]) == pytest.approx(100 * teacher[key].score, abs=HALF_LAST_DIGIT)
        assert float(row["Retention (%)"]) == pytest.approx(student[key].teacher_retention_pct, abs=0.05)

    rows = table_under(text, "## Image-text retrieval")
    expected = {("scenes-retrieval", language, name): value
                for (task, language), entry in student.items() if task == "scenes-retrieval"
                for name, value in entry.scores.items()}
    assert {(r["Task"], r["Language"], r["Recall"]) for r in rows} == set(expected)
    for row in rows:
        key = (row["Task"], row["Language"], row["Recall"])
        assert float(row["Student (%)"]) == pytest.approx(100 * expected[key], abs=HALF_LAST_DIGIT)
        teacher_value = teacher[(row["Task"], row["Language"])].scores[row["Recall"]]
        assert float(row["Teacher BAAI/AltCLIP (%)"]) == pytest.approx(100 * teacher_value, abs=HALF_LAST_DIGIT)


def test_size_table_counts_each_towers_parameters_and_stored_bytes(trained_folder, results_json, make_tiny_model):
    rows = {r["Part"]: r for r in table_under(card_for(trained_folder, results_json), "## Size")}
    model = make_tiny_model("tiny")
    counts = {"image": 0, "text": 0}
    for name, parameter in model.named_parameters():
        if name.startswith(("vision_model.", "visual_projection.")):
            counts["image"] += parameter.numel()
        elif name.startswith(("text_model.", "text_projection.")):
            counts["text"] += parameter.numel()
    stored = load_file(trained_folder / "model.safetensors")
    image_bytes = sum(t.nbytes for n, t in stored.items() if n.startswith(("vision_model.", "visual_projection.")))
    assert int(rows["image tower"]["Student parameters"].replace(",", "")) == counts["image"]
    assert int(rows["text tower"]["Student parameters"].replace(",", "")) == counts["text"]
    assert int(rows["whole model"]["Student parameters"].replace(",", "")) == model.num_parameters()
    assert rows["image tower"]["Student stored size"] == f"{image_bytes / 1024:.1f} KiB"
    teacher = read_results(trained_folder.parent / "eval" / "results.json").model("altclip")
    assert int(rows["whole model"]["Teacher parameters"].replace(",", "")) == teacher.num_parameters


def test_training_recipe_lists_both_stages_with_their_data_and_hyperparameters(trained_folder, results_json):
    training = card_for(trained_folder, results_json).split("## Training", 1)[1].split("## Usage")[0]
    assert "Teacher: `BAAI/AltCLIP`" in training
    assert "Student preset: `tiny`" in training
    assert training.index("Stage 1: feature distillation") < training.index("Stage 2: alignment")
    assert "`wukong` (hub: org/wukong-pairs)" in training
    assert "`cc3m` (parquet: cc3m/*.parquet)" in training
    assert "| per_device_train_batch_size | 256 |" in training
    assert "| max_steps | 2000 |" in training


def test_a_folder_without_training_record_says_not_recorded(trained_folder, results_json):
    (trained_folder / "dcclip_training.json").unlink()
    card = ModelCard(card_for(trained_folder, results_json))
    assert "Training recipe: not recorded" in card.text
    assert card.data.datasets is None
    assert card.data.base_model == "BAAI/AltCLIP"  # still known from the evaluated teacher


def latency_report(image_parameters: int, text_parameters: int) -> dict:
    """A report laid out as benchmarks/latency.py writes it, for a student with these tower sizes."""
    def measurement(model, tower, backend, parameters, p50):
        return {"model": model, "tower": tower, "backend": backend, "onnx_path": None, "parameters": parameters,
                "file_bytes": 4 * parameters, "runtime_rss_mb": 410.0, "loaded_rss_mb": 420.0,
                "results": [{"batch_size": 1, "iterations": 20, "p50_ms": p50, "p90_ms": 1.5 * p50,
                             "items_per_s": 1000 / p50, "peak_rss_mb": 431.0}]}

    return {
        "settings": {"preset": "tiny", "threads": 2},
        "environment": {"processor": "x86_64", "cpu_count": 2, "torch": "2.13.0", "onnxruntime": "1.24.0"},
        "runtime_rss_mb": 410.0,
        "measurements": [
            measurement("teacher", "image", "pytorch-fp32", 303_966_208, 181.5),
            measurement("student", "image", "pytorch-fp32", image_parameters, 3.25),
            measurement("student", "image", "onnx-int8", image_parameters, 1.125),
            measurement("student", "text", "pytorch-fp32", text_parameters, 0.75),
            measurement("student-pruned", "text", "pytorch-fp32", text_parameters - 999, 0.5),
        ],
    }


def test_latency_rows_of_this_models_size_become_a_table(trained_folder, results_json, tmp_path):
    towers = read_results(results_json).model("dc-clip-tiny")
    path = tmp_path / "latency.json"
    path.write_text(json.dumps(latency_report(towers.num_parameters_vision, towers.num_parameters_text)))
    text = card_for(trained_folder, results_json, latency=str(path))
    rows = table_under(text, "## Latency")
    assert [(r["Model"], r["Tower"], r["Backend"], float(r["p50 (ms)"])) for r in rows] == [
        ("teacher", "image", "pytorch-fp32", 181.5),
        ("this model", "image", "pytorch-fp32", 3.25),
        ("this model", "image", "onnx-int8", pytest.approx(1.125, abs=HALF_LAST_DIGIT)),
        ("this model", "text", "pytorch-fp32", 0.75),
    ]
    assert "left out: student-pruned text" in text  # measured, but another size: named, not shown as this model's
    assert "x86_64 (2 CPUs), 2 threads" in text
    assert "## Latency" not in card_for(trained_folder, results_json)  # no benchmark, no section


def test_latency_of_another_student_size_is_refused(trained_folder, results_json, tmp_path):
    path = tmp_path / "latency.json"
    path.write_text(json.dumps(latency_report(123, 456)))
    with pytest.raises(ValueError, match="measured no tower of this model's size"):
        card_for(trained_folder, results_json, latency=str(path))


def test_results_of_a_different_model_are_refused(trained_folder, tmp_path, make_results, make_tiny_model):
    other = tmp_path / "other"
    make_tiny_model("tiny-vit").save_pretrained(other)
    path = write_results(make_results(trained_folder), tmp_path / "results.json")
    data = json.loads(path.read_text())
    for model in data["models"]:
        if model["role"] == "student":
            model["num_parameters_vision"] += 1
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="results describe a different model"):
        card_for(trained_folder, path)


def test_several_students_need_a_name_and_the_named_one_is_used(trained_folder, tmp_path, make_results):
    results = make_results(trained_folder)
    twin = make_results(trained_folder, student_name="twin")
    results.models += [m for m in twin.models if m.role == "student"]
    results.scores += [e for e in twin.scores if e.model == "twin"]
    twin_cifar_en = results.score("twin", "cifar-10", "en")
    twin_cifar_en.score = 0.5
    for model in results.models:
        model.path = "elsewhere"  # no path points at the folder, so it cannot be recognised by location
    path = write_results(results, tmp_path / "results.json")
    with pytest.raises(ValueError, match=re.escape("--student NAME")):
        card_for(trained_folder, path)
    assert "| cifar-10 | en | accuracy | 50.00 |" in card_for(trained_folder, path, student="twin")
    assert "| cifar-10 | en | accuracy | 70.12 |" in card_for(trained_folder, path, student="dc-clip-tiny")
