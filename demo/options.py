"""The options of `dcclip demo`, parsed before anything heavy is imported (so `--help` and a bad option answer at
once); `demo/command.py` parses them and then starts `demo/run.py`."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from dcclip.command_line import CommandParser

DESCRIPTION = """The whole DC-CLIP method end to end, offline, on the built-in bilingual benchmark, in the data regime
of the paper: a teacher pre-trained on a large pair corpus, stage 1 on unpaired images and texts, stage 2 on a small
set of image-text pairs; every student variant over several seeds. See docs/demo.md."""

SCALE_NAMES = ("tiny", "small", "medium")  # the keys of demo/scales.py's SCALES (a test keeps them equal)
DEFAULT_SCALE = "small"
STUDY_NAME = "data-efficiency"
DEFAULT_OUT = {None: Path("dcclip-demo"), STUDY_NAME: Path("dcclip-demo-data-efficiency")}
MIN_SEEDS = 2  # the seed spread needs two runs of each variant
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


def device_name(value: str) -> str:
    """`--device`: `auto`, `cpu`, `cuda` or `cuda:N`."""
    if not DEVICE_PATTERN.fullmatch(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not auto, cpu, cuda or cuda:N")
    return value


def seed_count(value: str) -> int:
    """`--seeds`: an integer of at least `MIN_SEEDS`."""
    count = int(value)
    if count < MIN_SEEDS:
        raise argparse.ArgumentTypeError(f"{count} < {MIN_SEEDS}: the seed spread needs two runs of each variant")
    return count


def build_parser() -> CommandParser:
    """The parser of `dcclip demo`."""
    parser = CommandParser("demo", usage="dcclip demo [--option value ...]", description=DESCRIPTION)
    parser.add_argument(
        "--out", type=Path, help="output folder (default: ./dcclip-demo, ./dcclip-demo-data-efficiency with --study)"
    )
    parser.add_argument(
        "--seed", type=int, default=0,
        help="seed of the data and the teacher; the student seeds are SEED, SEED+1, ... (--seeds of them)",
    )  # fmt: skip
    parser.add_argument(
        "--seeds", type=seed_count, metavar="N",
        help=f"student seeds, at least {MIN_SEEDS}: every variant is trained once per seed (default: the scale's; "
        "small 3)",
    )  # fmt: skip
    parser.add_argument(
        "--scale", choices=SCALE_NAMES, default=DEFAULT_SCALE,
        help=f"sizes and budgets (demo/scales.py; default: {DEFAULT_SCALE})",
    )  # fmt: skip
    parser.add_argument(
        "--device", type=device_name, default="auto", metavar="{auto,cpu,cuda,cuda:N}",
        help="where to train and evaluate (auto: the first GPU when torch sees one, else the CPU); cuda:N picks GPU "
        "N of the visible ones",
    )  # fmt: skip
    parser.add_argument(
        "--teacher",
        help="use this teacher (Hub id such as BAAI/AltCLIP, or a folder with model + processor) instead of "
        "pre-training the small one; the student then uses its tokenizer",
    )
    parser.add_argument(
        "--study", choices=[STUDY_NAME],
        help="data-efficiency: every variant at several sizes of the stage-2 pair set (longer; see docs/demo.md)",
    )  # fmt: skip
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch CPU threads. The demo's models are small: one thread runs them faster than two on a 2-core "
        "machine, and leaves the other core to the data loader (default: 1)",
    )  # fmt: skip
    return parser
