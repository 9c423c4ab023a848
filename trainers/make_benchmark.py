"""`dcclip make-benchmark`: write the built-in bilingual benchmark (rendered scenes with English and Chinese captions,
as image folders, webdataset shards and data specs; `data/synthetic_scenes.py`) and print where its parts are.

    python trainers/make_benchmark.py runs/benchmark [--seed 0] [--n_train 2000]
    python -m trainers.make_benchmark runs/benchmark        (or `dcclip make-benchmark ...`)
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

from dcclip.command_errors import run_command
from dcclip.command_line import CommandParser, report_written

DESCRIPTION = """Prints the path of each part as JSON: train/ (imagefolder), train_shards/ (webdataset), eval/ and
eval_unseen/ (zero-shot tasks, tasks.json), retrieval/, and the data specs train_imagefolder.yaml and
train_webdataset.yaml. The same arguments give byte-identical files."""


def build_parser() -> CommandParser:
    """The options of `dcclip make-benchmark`."""
    parser = CommandParser(
        "make-benchmark", usage="dcclip make-benchmark OUT_DIR [--option value ...]", description=DESCRIPTION
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder to write the benchmark into")
    parser.add_argument("--seed", type=int, metavar="N", default=0, help="seed of every random choice (default: 0)")
    parser.add_argument("--n_train", type=int, metavar="N", default=2000, help="training images (default: 2000)")
    parser.add_argument("--n_eval", type=int, metavar="N", default=500,
                        help="evaluation images; eval_unseen gets half as many (default: 500)")  # fmt: skip
    parser.add_argument("--n_retrieval", type=int, metavar="N", default=200, help="retrieval images (default: 200)")
    parser.add_argument("--image_size", type=int, metavar="N", default=64, help="side of the square images in px (default: 64)")
    parser.add_argument("--captions_per_image", type=int, metavar="N", default=3,
                        help="retrieval captions per image and language (default: 3)")  # fmt: skip
    parser.add_argument("--shard_size", type=int, metavar="N", default=500, help="samples per webdataset shard (default: 500)")
    parser.add_argument("--image_format", choices=("png", "jpeg"), default="png", help="(default: png)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``dcclip make-benchmark``: write the built-in bilingual benchmark and print where its parts are."""
    args = build_parser().parse_args(argv)
    from dcclip.trainers.data.synthetic_scenes import generate_benchmark  # after parsing: it imports datasets, PIL

    paths = generate_benchmark(
        args.out_dir,
        seed=args.seed,
        n_train=args.n_train,
        n_eval=args.n_eval,
        image_size=args.image_size,
        n_retrieval=args.n_retrieval,
        captions_per_image=args.captions_per_image,
        shard_size=args.shard_size,
        image_format=args.image_format,
    )
    printable = {
        key: str(value) if isinstance(value, Path) else [str(v) for v in value] for key, value in asdict(paths).items()
    }
    print(json.dumps(printable, indent=2))
    report_written("make-benchmark", f"the benchmark ({args.n_train} training, {args.n_eval} evaluation and "
                   f"{args.n_retrieval} retrieval images) to {paths.root}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(run_command("make-benchmark", main))
