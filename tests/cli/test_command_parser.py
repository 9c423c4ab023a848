"""dcclip's argparse commands accept every long option as `--a_b` and as `--a-b`, like the HfArgumentParser ones."""

from __future__ import annotations

import pytest

from dcclip.command_line import CommandParser


def _parser() -> CommandParser:
    parser = CommandParser(prog="dcclip test")
    parser.add_argument("--output_dir")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("paths", nargs="*")
    return parser


@pytest.mark.parametrize(
    "argv",
    [
        ["--output_dir", "out", "--no-progress"],
        ["--output-dir", "out", "--no_progress"],
        ["--output-dir=out", "--no-progress"],
    ],
)
def test_both_spellings_of_an_option_reach_the_same_destination(argv):
    args = _parser().parse_args(argv)
    assert args.output_dir == "out" and args.no_progress


def test_arguments_after_a_double_dash_stay_positional():
    assert _parser().parse_args(["--", "--output-dir"]).paths == ["--output-dir"]


def test_an_unknown_option_is_still_an_error(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["--output_folder", "out"])
    assert "unrecognized arguments: --output_folder" in capsys.readouterr().err
