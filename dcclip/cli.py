"""`dcclip <command> [args]`: one entry point that dispatches to each part of the project.

Commands are imported lazily so that `dcclip --help` stays fast and a missing optional extra (deepspeed, onnx)
only matters for the command that needs it. Every command runs through `run_command`: an expected failure is one
line on stderr and a non-zero exit status (`dcclip.command_errors`).
"""

from __future__ import annotations

import importlib
import sys

from dcclip.command_errors import USAGE_ERROR_STATUS, run_command
from dcclip.commands import COMMANDS


def _usage() -> str:
    lines = ["Distil a bilingual (Chinese + English) CLIP teacher into a small student, evaluate and ship it.", "",
             "usage: dcclip <command> [args]", "", "commands:"]  # fmt: skip
    lines += [f"  {name:<16} {command.summary}" for name, command in COMMANDS.items()]
    lines += ["", "Run `dcclip <command> --help` for the options of one command."]
    return "\n".join(lines)


def _version() -> str:
    from importlib.metadata import version

    return f"dcclip {version('dc-clip')}"


def main(argv: list[str] | None = None) -> int:
    """Entry point of `dcclip`; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] == "--version":
        print(_version())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"dcclip: unknown command {command!r}; the commands are {', '.join(COMMANDS)} (`dcclip --help`)",
              file=sys.stderr)  # fmt: skip
        return USAGE_ERROR_STATUS
    module_name, function_name = COMMANDS[command].entry_point.split(":")
    function = getattr(importlib.import_module(module_name), function_name)
    return run_command(command, function, rest)


if __name__ == "__main__":
    sys.exit(main())
