"""`dcclip <command> --help` is for a person: it opens with one line of what the command does and a usage line that
names the command, answers without importing torch (under 3 s on a 2-core machine), and the stage commands list
their own options, grouped, before the inherited Trainer options."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from dcclip.commands import COMMANDS, summary
from dcclip.stage_help import STAGE_COMMANDS, STORED_HELP, TRAINER_TITLE, live_descriptions

# Modules that take seconds to import; `--help` must answer before any of them is needed. Checking what was imported,
# rather than timing `--help`, keeps the test exact on a loaded CI machine; on an idle 2-core machine the commands
# that import none of these answer in 0.1-1 s (docs/commands.md has the measured times).
HEAVY_MODULES = ("torch", "transformers", "datasets", "deepspeed", "matplotlib", "onnx", "onnxruntime", "sentencepiece")
COMMAND_PARAMS = list(COMMANDS)

_HELP_PROBE = """
import json, sys
from dcclip.cli import main
try:
    code = main([sys.argv[1], "--help"])
except SystemExit as done:  # argparse's --help exits
    code = done.code
print(json.dumps({"code": code, "heavy": sorted(m for m in sys.argv[2:] if m in sys.modules)}))
"""


def _help(command: str) -> tuple[str, dict]:
    result = subprocess.run(
        [sys.executable, "-c", _HELP_PROBE, command, *HEAVY_MODULES], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    *text, probe = result.stdout.rstrip("\n").split("\n")
    return "\n".join(text), json.loads(probe)


@pytest.mark.parametrize("command", COMMAND_PARAMS)
def test_help_opens_with_what_the_command_does_and_its_usage_without_importing_heavy_modules(command):
    text, probe = _help(command)
    lines = text.splitlines()
    assert lines[0] == summary(command)
    assert lines[2].startswith(f"usage: dcclip {command} ")
    assert probe == {"code": 0, "heavy": []}


@pytest.mark.parametrize("command", STAGE_COMMANDS)
def test_stage_help_names_the_config_file_then_the_own_options_grouped_then_the_trainer_options(command):
    text, _ = _help(command)
    assert f"usage: dcclip {command} [CONFIG.yaml] [--option value ...]" in text
    headings = [line[:-1] for line in text.splitlines() if line and not line.startswith(" ") and line.endswith(":")]
    assert headings[:4] == ["options", "config file", "student", "data"]
    assert headings[-2] == TRAINER_TITLE and len(headings) >= 6  # the stage's own groups sit between
    own, inherited = text.split(TRAINER_TITLE)
    assert "  CONFIG.yaml " in own and "--max_text_length INT" in own and "--teacher STR" in own
    assert "--learning_rate FLOAT" in inherited and "--learning_rate" not in own
    assert "--output-dir" not in text  # one spelling per option; the description says both are accepted


def test_stage_help_lists_every_option_the_parser_accepts():
    from transformers import HfArgumentParser

    from dcclip.trainers import align, cache_teacher, distill

    for command, entry_script in (("distill", distill), ("align", align), ("teacher-cache", cache_teacher)):
        text, _ = _help(command)
        parser = HfArgumentParser(entry_script.option_classes())
        flags = {action.option_strings[0] for action in parser._actions if action.option_strings}
        missing = sorted(flag for flag in flags - {"-h"} if f"  {flag} " not in text and f"  {flag}\n" not in text)
        assert missing == [], f"dcclip {command} --help leaves out {missing}"


def test_stored_stage_help_matches_the_live_options():
    stored = json.loads(STORED_HELP.read_text(encoding="utf-8"))
    assert stored == live_descriptions(), "run `python -m dcclip.stage_help --write` after changing an option"


def test_a_no_option_says_what_it_does():
    text, _ = _help("export")
    assert re.search(r"\n  --no_int8\s+Turn off --int8\.\n", text)
    assert re.search(r"\n  --int8 \[BOOL\]\s+Also write dynamically quantized int8", text)


def test_dispatcher_lists_every_command_with_its_summary(capsys):
    from dcclip.cli import main

    assert main(["--help"]) == 0
    listing = capsys.readouterr().out
    for name, command in COMMANDS.items():
        assert f"  {name:<16} {command.summary}" in listing


def test_without_a_stored_description_the_stage_help_is_described_live_and_reads_the_same(monkeypatch, tmp_path):
    from dcclip import stage_help
    from dcclip.trainers import align

    stored = stage_help.stage_help("align", align.option_classes, align.EXAMPLES).render()
    monkeypatch.setattr(stage_help, "STORED_HELP", tmp_path / "absent.json")  # as under another transformers
    assert stage_help._stored("align") is None
    assert stage_help.stage_help("align", align.option_classes, align.EXAMPLES).render() == stored


@pytest.mark.parametrize("command", ["export", "prune-vocab", "push"])
def test_without_a_stored_description_a_dataclass_commands_help_is_described_live_and_reads_the_same(
    command, monkeypatch, tmp_path, capsys
):
    from dcclip import stage_help
    from dcclip.cli import main

    def help_text() -> str:
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        assert done.value.code == 0
        return capsys.readouterr().out

    stored = help_text()
    assert stage_help.stored_options(command) is not None
    monkeypatch.setattr(stage_help, "STORED_HELP", tmp_path / "absent.json")  # as under another transformers
    assert stage_help.stored_options(command) is None
    assert help_text() == stored


def test_export_help_states_the_default_opset():
    from dcclip.export.onnx_export import DEFAULT_OPSET

    text, _ = _help("export")
    assert re.search(rf"--opset INT\s+ONNX opset version\. Default: the one torch's\s+exporter emits natively "
                     rf"\({DEFAULT_OPSET}\)\.", text)
