"""The argument parser of dcclip's commands: `dcclip <command> --help` starts with one line of what the command does,
then its usage; every long option is accepted as `--a_b` and as `--a-b`, as `HfArgumentParser` (the stage commands,
export, prune-vocab, push) accepts both, so one spelling works across all commands."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from collections.abc import Sequence

from dcclip.command_errors import UsageError
from dcclip.commands import summary


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the line breaks of the description and the epilog (examples), never breaks a line at a hyphen, and
    aligns help text a little further right than argparse does, so that most options fit on their first line."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30)

    def _split_lines(self, text: str, width: int) -> list[str]:
        # Never break inside an option name or a hyphenated value (--no-progress, dc-clip=runs/...).
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


class CommandParser(argparse.ArgumentParser):
    """`argparse.ArgumentParser` of `dcclip <command>`: named `dcclip <command>` in usage and errors, `--help` opens
    with the command's one-line summary (`dcclip.commands`), and long options also answer to their other spelling
    (`_` <-> `-`); `--help` shows the spelling the option was declared with (underscores, as the Trainer's options)."""

    def __init__(self, command: str | None = None, **kwargs) -> None:
        if command is not None:
            kwargs.setdefault("prog", f"dcclip {command}")
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(**kwargs)
        self.command = command

    def format_help(self) -> str:
        text = super().format_help()
        return f"{summary(self.command)}\n\n{text}" if self.command is not None else text

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None):
        argv = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(self._declared_spelling(argv), namespace)

    def _declared_spelling(self, argv: list[str]) -> list[str]:
        declared = {option for action in self._actions for option in action.option_strings}
        spelled: list[str] = []
        for index, arg in enumerate(argv):
            if arg == "--":  # everything after it is positional
                return spelled + argv[index:]
            name, equals, value = arg.partition("=")
            if name.startswith("--") and name not in declared:
                for other in ("--" + name[2:].replace("-", "_"), "--" + name[2:].replace("_", "-")):
                    if other in declared:
                        name = other
                        break
            spelled.append(name + equals + value)
        return spelled


def positive_int(text: str) -> int:
    """argparse `type` of a count: a whole number >= 1 (argparse then names the option in its message)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def report_written(command: str, what: str) -> None:
    """The closing line of a command that writes files, `dcclip <command>: wrote <what>`, on stderr (stdout carries
    the command's own output, JSON where a program reads it)."""
    print(f"dcclip {command}: wrote {what}", file=sys.stderr, flush=True)


def check_model_location(value: str, option: str) -> None:
    """Fail at once when a model or tokenizer given as a local folder (`runs/align/final`, `./teacher`, `/data/x`)
    does not exist, instead of after the Hub client's retries and a message about the network. A Hub id is `name` or
    `namespace/name`, so anything else that does not exist here cannot be found anywhere."""
    if os.path.exists(value):
        return
    if value.startswith((".", "/", "~")) or value.count("/") > 1 or (os.sep != "/" and os.sep in value):
        raise UsageError(f"{option} {value}: no such folder")
