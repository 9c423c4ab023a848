"""Every `dcclip` command turns an expected failure (a missing or unreadable file, an unknown key, a value of the
wrong type, empty data) into one line, `dcclip <command>: <message>`, and a non-zero exit status (2 for a wrong
call); an unexpected error keeps its traceback."""

from __future__ import annotations

import fractions
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dcclip.cli import main as dcclip
from dcclip.command_errors import CommandError, UsageError, expected_failure, run_command

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def inputs(tmp_path, monkeypatch) -> Path:
    """A working folder with the bad inputs the cases below name."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "unknown_key.yaml").write_text("output_dir: out\nwarmup_ratioo: 0.1\n")
    (tmp_path / "broken.yaml").write_text("output_dir: [a\n")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    (tmp_path / "config.txt").write_text("output_dir: out\n")
    (tmp_path / "empty.txt").write_text("\n  \n")
    for folder in ("model", "a/same", "b/same"):
        (tmp_path / folder).mkdir(parents=True)
    return tmp_path


# (argv, the message on stderr, exit status); docs/commands.md lists the same cases with their messages.
CASES = [
    (["no-such-command"], "dcclip: unknown command 'no-such-command'", 2),
    (["align", "missing.yaml"], "dcclip align: config file not found: missing.yaml", 2),
    (["align", "config.txt"], "dcclip align: the config file must end in .yaml, .yml or .json: config.txt", 2),
    (["align", "broken.yaml"], "dcclip align: cannot read config file broken.yaml: while parsing a flow sequence", 2),
    (["align", "list.yaml"], "dcclip align: config file list.yaml must hold a mapping of option names to values", 2),
    (["align", "unknown_key.yaml"], "dcclip align: unknown key(s) in config file: warmup_ratioo", 2),
    (["align", "--output_dir", "out", "--learning_rate", "fast"],
     "dcclip align: error: argument --learning_rate/--learning-rate: invalid float value: 'fast'", 2),
    (["align", "--output_dir", "out", "--no_such_option", "1"],
     "dcclip align: unknown command-line argument(s): --no_such_option 1", 2),
    (["align", "--output_dir", "out", "--student_preset", "huge"],
     "dcclip align: --student_preset 'huge' is not a preset", 2),
    (["align", "--output_dir", "out", "--student", "runs/align/final"],
     "dcclip align: --student runs/align/final: no such folder", 2),
    (["align", "--output_dir", "out", "--use_cpu", "true", "--student_preset", "tiny"],
     "dcclip align: --train_data (a data spec file) is required", 2),
    (["distill", "--output_dir", "out", "--distill_target", "nope"],
     "dcclip distill: error: argument --distill_target/--distill-target: invalid choice: 'nope'", 2),
    (["distill", "--output_dir", "out", "--teacher", "./teacher"],
     "dcclip distill: --teacher ./teacher: no such folder", 2),
    (["teacher-cache", "--output_dir", "out", "--use_cpu", "true"],
     "dcclip teacher-cache: teacher-cache needs --teacher_cache_dir (the folder to write)", 2),
    (["teacher-cache", "--output_dir", "out", "--teacher_cache_dir", "cache", "--cache_text_tokens", "1"],
     "dcclip teacher-cache: --cache_text_tokens must be 0 (every token) or at least 2, got 1", 2),
    (["teacher-cache", "--output_dir", "out", "--teacher_cache_dir", "cache", "--cache_dtype", "int4"],
     "dcclip teacher-cache: error: argument --cache_dtype/--cache-dtype: invalid choice: 'int4'", 2),
    (["eval", "--output_dir", "out"], "dcclip eval: error: give --teacher and/or --student", 2),
    (["eval", "--student", "./missing", "--benchmark", "bench", "--output_dir", "out"],
     "dcclip eval: --student ./missing: no such folder", 2),
    (["eval", "--student", "model", "--benchmark", "bench", "--name", "dc-clip", "--output_dir", "out"],
     "dcclip eval: --name takes LABEL=MODEL, got 'dc-clip'", 2),
    (["eval", "--student", "a/same", "--student", "b/same", "--benchmark", "bench", "--output_dir", "out"],
     "dcclip eval: two models would both be named same in the report; name them with --name LABEL=MODEL", 2),
    (["eval", "--student", "model", "--benchmark", "bench", "--batch_size", "0", "--output_dir", "out"],
     "dcclip eval: error: argument --batch_size: must be >= 1, got 0", 2),
    (["eval", "--student", "model", "--benchmark", "no_such_benchmark", "--output_dir", "out"],
     "dcclip eval: no_such_benchmark is not a built-in benchmark: no_such_benchmark/tasks.json is missing", 1),
    (["export", "--model_name_or_path", "./missing", "--output_dir", "out"],
     "dcclip export: --model_name_or_path ./missing: no such folder", 2),
    (["export", "--model_name_or_path", "model", "--output_dir", "out", "--opset", "seventeen"],
     "dcclip export: error: argument --opset: invalid int value: 'seventeen'", 2),
    (["prune-vocab", "--model_name_or_path", "model", "--corpus", "missing.txt", "--output_dir", "out"],
     "dcclip prune-vocab: corpus file missing.txt does not exist", 1),
    (["push", "--folder", "no_such_folder", "--results", "r.json", "--repo_id", "a/b", "--dry_run"],
     "dcclip push: no_such_folder is not ready for the Hub (1 problem(s)): - no_such_folder is not a folder", 1),
    (["build-tokenizer", "missing.txt", "--out", "tok"],
     "dcclip build-tokenizer: corpus file(s) not found: missing.txt", 2),
    (["build-tokenizer", "empty.txt", "--out", "tok"],
     "dcclip build-tokenizer: build_bilingual_tokenizer: the corpus is empty", 1),
    (["make-benchmark", "bench", "--n_train", "-5"],
     "dcclip make-benchmark: error: argument --n_train: must be >= 1, got -5", 2),
    (["make-benchmark", "bench", "--image_format", "gif"],
     "dcclip make-benchmark: error: argument --image_format: invalid choice: 'gif'", 2),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "message", "status"), CASES, ids=[" ".join(case[0]) for case in CASES])
def test_bad_input_is_one_line_naming_the_problem_and_a_non_zero_exit(inputs, capsys, argv, message, status):
    try:
        code = dcclip(argv)
    except SystemExit as exit_:  # argparse's own errors (a value of the wrong type, a missing option)
        code = exit_.code
    err = capsys.readouterr().err
    last_line = err.rstrip("\n").splitlines()[-1]
    assert code == status
    assert last_line.startswith(message), err
    assert "Traceback" not in err


def test_an_entry_script_run_directly_fails_the_same_way(tmp_path):
    result = subprocess.run(
        [sys.executable, "trainers/align.py", str(tmp_path / "missing.yaml")], cwd=REPO_ROOT, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr == f"dcclip align: config file not found: {tmp_path / 'missing.yaml'}\n"


def test_an_unexpected_error_keeps_its_traceback():
    def crash(argv):
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        run_command("distill", crash, [])


def test_which_errors_are_expected_and_with_which_exit_status(tmp_path):
    def raised(function) -> BaseException:
        try:
            function()
        except Exception as error:  # noqa: BLE001 - the error is the result
            return error
        raise AssertionError("nothing raised")

    def usage():
        raise UsageError("--x must be >= 1")

    def failed():
        raise CommandError("the export differs from PyTorch")

    assert expected_failure(raised(usage)) == ("--x must be >= 1", 2)
    assert expected_failure(raised(failed)) == ("the export differs from PyTorch", 1)
    assert expected_failure(raised(lambda: open(tmp_path / "nope.txt"))) == (
        f"No such file or directory: {tmp_path / 'nope.txt'}", 1,
    )  # fmt: skip
    assert expected_failure(raised(lambda: yaml.safe_load("a: [b")))[0].startswith("cannot parse the input (")
    # A ValueError is expected when an input check raised it (the project's own, or a model loader's), not when it
    # comes from anywhere else.
    from transformers import AutoConfig

    from dcclip.trainers.data import DataSpec

    spec, not_a_model = tmp_path / "spec.yaml", tmp_path / "not_a_model"
    spec.write_text("- a list, not a mapping\n")
    not_a_model.mkdir()
    (not_a_model / "config.json").write_text("{}")
    assert expected_failure(raised(lambda: DataSpec.from_file(spec))) == (
        f"data spec {spec}: expected a mapping with a `sources` list", 1,
    )  # fmt: skip
    assert expected_failure(raised(lambda: AutoConfig.from_pretrained(not_a_model)))[0].startswith(
        f"Unrecognized model in {not_a_model}."
    )
    def elsewhere():
        raise ValueError("raised here, in a test")

    assert expected_failure(raised(elsewhere)) is None
    assert expected_failure(raised(lambda: fractions.Fraction("one half"))) is None
    assert expected_failure(raised(lambda: [][1])) is None


def test_an_interrupt_is_one_line_and_status_130(capsys):
    def interrupted(argv):
        raise KeyboardInterrupt

    assert run_command("align", interrupted, []) == 130
    assert capsys.readouterr().err == "dcclip align: interrupted\n"
