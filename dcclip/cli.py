"""`dcclip <command> [args]`: one entry point that dispatches to each part of the project.

Commands are imported lazily so that `dcclip --help` stays fast and a missing optional extra (deepspeed, onnx)
only matters for the command that needs it.
"""

from __future__ import annotations

import importlib
import sys

# command -> ("module:function", one-line help). Each function takes the remaining argv.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("dcclip.demo.run:main", "the whole method end to end, offline, on the built-in bilingual benchmark"),
    "make-benchmark": ("dcclip.trainers.make_benchmark:main", "generate the built-in bilingual benchmark data"),
    "build-tokenizer": ("dcclip.trainers.build_tokenizer:main", "train the offline bilingual SentencePiece tokenizer"),
    "distill": ("dcclip.trainers.distill:main", "stage 1: feature-map distillation from the teacher"),
    "teacher-cache": ("dcclip.trainers.cache_teacher:main", "run the teacher once over a dataset and store its targets"),
    "align": ("dcclip.trainers.align:main", "stage 2: bilingual image-text alignment (InfoNCE)"),
    "eval": ("dcclip.evaluation.cli:main", "zero-shot classification and retrieval, EN and ZH, beside the teacher"),
    "export": ("dcclip.export.cli:main", "ONNX export of both towers (fp32, int8) with a parity check"),
    "prune-vocab": ("dcclip.export.prune_vocab:main", "keep only the tokens a Chinese + English corpus uses"),
    "push": ("dcclip.hub.push:main", "write the model card and upload a model folder to the Hub"),
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
