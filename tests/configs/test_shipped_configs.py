"""Every recipe in `configs/` parses with its own entry script's parser under the installed transformers, so that a key
transformers no longer knows (or a logger that is not installed) fails here instead of in a user's cluster job."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcclip.trainers import align, distill

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
# A recipe's stage is the first word of its file name: distill_edge.yaml is parsed by trainers/distill.py.
PARSERS = {"distill": distill.parse_args, "align": align.parse_args}


def parse_recipe(path: Path) -> tuple:
    """Parse a recipe as its entry script does; `--use_cpu true` is the one override a GPU recipe needs on a CPU
    machine (bf16 is refused otherwise)."""
    stage = path.stem.split("_")[0]
    if stage not in PARSERS:
        raise AssertionError(f"{path.name}: no entry script parses '{stage}_*' recipes; name it distill_* or align_*")
    return PARSERS[stage]([str(path), "--use_cpu", "true"])


def test_the_recipes_folder_holds_both_stages():
    assert {path.stem.split("_")[0] for path in CONFIGS} == set(PARSERS)


@pytest.mark.parametrize("path", CONFIGS, ids=[path.name for path in CONFIGS])
def test_recipe_parses_with_its_entry_scripts_parser(path):
    student, data, config = parse_recipe(path)
    assert config.output_dir  # every recipe names where it writes
    assert student.student or student.student_preset  # and where its student comes from


def test_a_key_the_installed_transformers_does_not_know_is_refused(tmp_path):
    old_recipe = tmp_path / "distill_old.yaml"  # distill_edge.yaml as it shipped before transformers 5
    old_recipe.write_text("teacher: BAAI/AltCLIP\nstudent_preset: edge\noutput_dir: runs/x\nwarmup_ratio: 0.02\n")
    with pytest.raises(ValueError, match="unknown key\\(s\\) in config file: warmup_ratio"):
        parse_recipe(old_recipe)


def test_a_logger_that_is_not_installed_is_refused_at_parse_time(tmp_path, monkeypatch):
    from dcclip.trainers import arguments

    recipe = tmp_path / "align_logged.yaml"
    recipe.write_text("student: runs/x\noutput_dir: runs/y\nreport_to: tensorboard\n")
    # as on a machine without tensorboard, whatever this one has installed
    monkeypatch.setattr(arguments, "get_available_reporting_integrations", lambda: [])
    with pytest.raises(ValueError, match="report_to names tensorboard, which is not installed here"):
        parse_recipe(recipe)
    recipe.write_text("student: runs/x\noutput_dir: runs/y\nreport_to: tensorbored\n")
    with pytest.raises(ValueError, match="tensorbored, which transformers does not know"):
        parse_recipe(recipe)
