"""dcclip_training.json: each stage appends its recipe, the alignment stage carrying the distillation stage forward."""

import json

import pytest

from dcclip.trainers.records import (
    TRAINING_RECORD_NAME,
    DataSource,
    TrainingStage,
    read_training_record,
    record_training_stage,
)


def stage(name, **hyperparameters):
    return TrainingStage(name, [DataSource("pairs", "hub", path="org/pairs")], hyperparameters)


def test_alignment_stage_carries_the_distillation_stage_and_teacher_forward(tmp_path):
    record_training_stage(tmp_path / "distilled", stage("feature_distillation", learning_rate=5e-4),
                          teacher="BAAI/AltCLIP", student_preset="edge")
    record_training_stage(tmp_path / "aligned", stage("alignment", learning_rate=1e-4), teacher=None,
                          previous_folder=tmp_path / "distilled")
    record = read_training_record(tmp_path / "aligned")
    assert record.teacher == "BAAI/AltCLIP"
    assert record.student_preset == "edge"
    assert [(s.stage, s.hyperparameters["learning_rate"]) for s in record.stages] == [
        ("feature_distillation", 5e-4), ("alignment", 1e-4)]
    assert record.hub_datasets() == ["org/pairs"]  # listed once though both stages used it


def test_a_folder_without_a_record_reads_as_none(tmp_path):
    assert read_training_record(tmp_path) is None


def test_nested_hyperparameters_are_refused_when_writing(tmp_path):
    with pytest.raises(ValueError, match=r"flat scalars; \['loss_weights'\]"):
        record_training_stage(tmp_path, stage("alignment", loss_weights={"image": 1.0}), teacher="BAAI/AltCLIP")
    assert not (tmp_path / TRAINING_RECORD_NAME).exists()


@pytest.mark.parametrize("content, message", [
    ({"schema_version": 2, "teacher": None, "stages": []}, "schema_version 2"),
    ({"schema_version": 1, "stages": []}, "does not follow the dcclip_training.json schema"),
    ({"schema_version": 1, "teacher": None, "stages": [{"stage": "alignment", "hyperparameters": {}}]},
     "does not follow the dcclip_training.json schema"),
])
def test_a_malformed_record_is_an_error_naming_the_file(tmp_path, content, message):
    (tmp_path / TRAINING_RECORD_NAME).write_text(json.dumps(content))
    with pytest.raises(ValueError, match=message) as error:
        read_training_record(tmp_path)
    assert TRAINING_RECORD_NAME in str(error.value)
