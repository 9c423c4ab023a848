"""`dcclip <command> [args]`: one entry point that dispatches to each part of the project.

Commands are imported lazily so that `dcclip --help` stays fast and a missing optional extra (deepspeed, onnx)
only matters for the command that needs it.
"""

from __future__ import annotations

import importlib
import sys

# command -> ("module:function", one-line help). Each function takes the remaining argv.
COMMANDS: dict[str, tuple[str, str]] = {
    "build-tokenizer": ("trainers.build_tokenizer:main", "train the offline bilingual SentencePiece tokenizer"),
}


def _usage() -> str:
    lines = ["usage: dcclip <command> [args]", "", "commands:"]
    lines += [f"  {name:<18} {help_text}" for name, (_, help_text) in sorted(COMMANDS.items())]
    lines += ["", "Run `dcclip <command> --help` for the options of one command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"dcclip: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, function_name = COMMANDS[command][0].split(":")
    function = getattr(importlib.import_module(module_name), function_name)
    result = function(rest)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
