"""The `dcclip` commands: each one's entry point and the line that says what it does.

One table serves the dispatcher's command list and the first line of each command's `--help`. It imports nothing, so
that reading it costs nothing before arguments are parsed.
"""

from __future__ import annotations

from typing import NamedTuple


class Command(NamedTuple):
    """A `dcclip` command: its entry point (`"module:function"`, the function takes the remaining argv) and one line
    of what it does."""

    entry_point: str
    summary: str


COMMANDS: dict[str, Command] = {
    "demo": Command(
        "dcclip.demo.command:main", "Run the whole method end to end, offline, on the built-in bilingual benchmark."
    ),
    "make-benchmark": Command(
        "dcclip.trainers.make_benchmark:main", "Write the built-in bilingual benchmark (images, captions, data specs)."
    ),
    "build-tokenizer": Command(
        "dcclip.trainers.build_tokenizer:main", "Train the offline bilingual SentencePiece tokenizer on text files."
    ),
    "distill": Command(
        "dcclip.trainers.distill:main", "Stage 1: distil a frozen teacher's feature maps into a DC-CLIP student."
    ),
    "teacher-cache": Command(
        "dcclip.trainers.cache_teacher:main",
        "Run the teacher once over stage 1's data and store its targets for `dcclip distill`.",
    ),
    "align": Command(
        "dcclip.trainers.align:main", "Stage 2: align a student's image and text towers with bilingual InfoNCE."
    ),
    "eval": Command(
        "dcclip.evaluation.cli:main",
        "Score models by zero-shot classification and retrieval, in English and Chinese, beside the teacher.",
    ),
    "export": Command(
        "dcclip.export.cli:main", "Write a student's towers as ONNX (fp32 and int8), checked against PyTorch."
    ),
    "prune-vocab": Command(
        "dcclip.export.prune_vocab:main",
        "Keep only the tokens a Chinese + English corpus uses, in tokenizer and model.",
    ),
    "push": Command("dcclip.hub.push:main", "Check a trained folder, write its model card and upload it to the Hub."),
}


def summary(command: str) -> str:
    """The one line that says what `command` does (the first line of its `--help`)."""
    return COMMANDS[command].summary
