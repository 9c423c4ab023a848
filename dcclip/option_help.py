"""`--help` of the dataclass-based commands (`HfArgumentParser`: the stage commands, export, prune-vocab, push), as a
person reads it.

A parser's options are described as plain data (`CommandHelp`: groups of `OptionHelp`) and rendered by argparse:
one spelling per option (each is accepted as `--a_b` and `--a-b`), a metavar that names the value's type, the default
after the help text, and `--no_x` described as what it does. Being plain data, the description of the stage commands
can be stored and rendered without importing torch (`dcclip/stage_help.py`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from dcclip.command_line import CommandParser

HELP_FLAGS = ("-h", "--help")
# A choice list longer than this goes into the help text instead of the metavar.
_MAX_CHOICES_IN_METAVAR = 6


@dataclass
class OptionHelp:
    """One option as `--help` shows it.

    Attributes:
        dest: the option's name (the dataclass field).
        flag: the spelling shown (`--learning_rate`); for a positional argument, its metavar (`CONFIG.yaml`).
        help: what it does, with its default.
        metavar: the value's type or choices (`FLOAT`, `{both,sample}`); `None` when the option takes no value.
        nargs: `None` (one value), `"?"` (an optional value), `"+"` (one or more values).
        required: whether the option must be given.
        positional: a positional argument rather than an option.
    """

    dest: str
    flag: str
    help: str
    metavar: str | None = None
    nargs: str | None = None
    required: bool = False
    positional: bool = False


@dataclass
class OptionGroup:
    """A titled group of options; `title=None` puts them beside `-h, --help`."""

    title: str | None
    options: list[OptionHelp]
    description: str | None = None


@dataclass
class CommandHelp:
    """What `dcclip <command> --help` prints: one line of what the command does (`dcclip.commands`), a usage line,
    a description, the option groups, and an epilog (examples)."""

    command: str
    groups: list[OptionGroup]
    usage: str | None = None  # None: argparse writes it from the options
    description: str = ""
    epilog: str | None = None

    def render(self) -> str:
        """The help text, wrapped to the terminal's width."""
        parser = CommandParser(self.command, usage=self.usage, description=self.description, epilog=self.epilog)
        for group in self.groups:
            titled = group.title is not None
            target = parser.add_argument_group(group.title, group.description) if titled else parser._optionals
            for option in group.options:
                _add_for_help(target, option)
        return parser.format_help()


def _add_for_help(group: argparse._ActionsContainer, option: OptionHelp) -> None:
    escaped = option.help.replace("%", "%%")  # argparse %-formats help strings
    if option.positional:
        nargs = "?" if not option.required else None
        group.add_argument(option.dest, metavar=option.flag, nargs=nargs, help=escaped)
    elif option.metavar is None:
        group.add_argument(option.flag, dest=option.dest, action="store_true", help=escaped, required=option.required)
    else:
        group.add_argument(
            option.flag, dest=option.dest, metavar=option.metavar, nargs=option.nargs, help=escaped,
            required=option.required,
        )  # fmt: skip


def wants_help(argv: Sequence[str]) -> bool:
    """Whether `argv` asks for help (`-h` or `--help` before any `--`)."""
    for arg in argv:
        if arg == "--":
            return False
        if arg in HELP_FLAGS:
            return True
    return False


def describe_actions(actions: Iterable[argparse.Action]) -> list[OptionHelp]:
    """`OptionHelp` of each of an (HfArgumentParser) parser's `actions`, leaving out `--help` and hidden options."""
    return [option for action in actions if (option := describe_action(action)) is not None]


def describe_action(action: argparse.Action) -> OptionHelp | None:
    """How `--help` shows one argparse action; `None` for `--help` itself and for hidden options."""
    if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
        return None
    if not action.option_strings:
        return OptionHelp(action.dest, action.metavar or action.dest, action.help or "", positional=True,
                          required=action.nargs not in ("?", "*"))  # fmt: skip
    flag = action.option_strings[0]
    help_text = _displayed_help(action)
    if isinstance(action, argparse._StoreFalseAction) and flag.startswith("--no_"):
        # HfArgumentParser gives `--no_x` the help of `--x`, which says the opposite of what it does.
        return OptionHelp(action.dest, flag, f"Turn off --{action.dest}.")
    if action.nargs == 0:
        return OptionHelp(action.dest, flag, help_text, required=action.required)
    metavar = _metavar(action)
    if action.choices is not None and metavar == "NAME":
        help_text = _sentence(help_text) + "One of: " + ", ".join(str(c) for c in action.choices) + "."
    if action.default is not None and action.default is not argparse.SUPPRESS and not action.required:
        help_text = _sentence(help_text) + f"Default: {_show(action.default)}."
    nargs = action.nargs if action.nargs in ("?", "+", "*") else None
    return OptionHelp(action.dest, flag, help_text, metavar=metavar, nargs=nargs, required=action.required)


def _displayed_help(action: argparse.Action) -> str:
    """The help as argparse shows it: help strings are %-format strings (`%%` is a percent sign)."""
    text = (action.help or "").strip()
    try:
        return text % {**vars(action), "prog": ""}
    except (KeyError, ValueError, TypeError):
        return text


def _sentence(text: str) -> str:
    """`text` ended as a sentence and followed by a space, or nothing when it is empty."""
    if not text:
        return ""
    return text + (" " if text.endswith((".", "!", "?", ")", ":")) else ". ")


def _metavar(action: argparse.Action) -> str:
    if action.metavar is not None:
        return str(action.metavar)
    if action.choices is not None:
        choices = [str(c) for c in action.choices]
        return "{" + ",".join(choices) + "}" if len(choices) <= _MAX_CHOICES_IN_METAVAR else "NAME"
    if action.nargs == "?" and action.const is True:  # HfArgumentParser's booleans: --flag, --flag true|false
        return "BOOL"
    return {int: "INT", float: "FLOAT"}.get(action.type, "STR")


def _show(value: Any) -> str:
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, (list, tuple)):
        return " ".join(_show(v) for v in value) if value else "none"
    return str(value)


def option_groups_from_dicts(groups: Iterable[dict]) -> list[OptionGroup]:
    """`OptionGroup`s from their `dataclasses.asdict` form (as stored in JSON)."""
    return [OptionGroup(g["title"], [OptionHelp(**o) for o in g["options"]], g.get("description")) for g in groups]


def parse_dataclass_arguments(command: str, dataclass_types: Sequence[type], argv: Sequence[str] | None,
                              epilog: str | None = None) -> tuple:  # fmt: skip
    """Parse `argv` into instances of `dataclass_types` (HfArgumentParser) for `dcclip <command>`: `--help` is the
    readable one above and exits (from the stored description where there is one, without importing transformers);
    a value a dataclass rejects is a `UsageError` that names it."""
    from dcclip.command_errors import UsageError

    argv = list(sys.argv[1:] if argv is None else argv)
    if wants_help(argv):
        from dcclip.stage_help import stored_options

        options = stored_options(command)
        if options is None:  # no stored description (another transformers): described live
            options = describe_actions(_parser(command, dataclass_types)._actions)
        print(CommandHelp(command, [OptionGroup(None, options)], epilog=epilog).render())
        raise SystemExit(0)
    try:
        return tuple(_parser(command, dataclass_types).parse_args_into_dataclasses(args=argv, look_for_args_file=False))
    except (ValueError, TypeError) as error:  # a dataclass's own check (__post_init__)
        raise UsageError(str(error)) from error


def _parser(command: str, dataclass_types: Sequence[type]):
    """`HfArgumentParser` of `dataclass_types` for `dcclip <command>` (imports transformers)."""
    from transformers import HfArgumentParser

    return HfArgumentParser(dataclass_types, prog=f"dcclip {command}")
