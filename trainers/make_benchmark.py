"""`dcclip make-benchmark`: write the built-in bilingual benchmark (rendered scenes with English and Chinese captions,
as image folders, webdataset shards and data specs; `data/synthetic_scenes.py`) and print where its parts are.

    python trainers/make_benchmark.py runs/benchmark [--seed 0] [--n_train 2000]
    python -m trainers.make_benchmark runs/benchmark        (or `dcclip make-benchmark ...`)
    dcclip make-benchmark runs/regime --n_corpus 6000 --corpus_only_colours purple orange --pair_fractions 0.05 0.2

The last form also writes the scarce-pairs regime: a pair corpus for the teacher, unpaired images and texts for
stage 1, and nested subsets of the training pairs for stage 2 (docs/data.md).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

from dcclip.command_errors import run_command
from dcclip.command_line import CommandParser, positive_int, report_written

DESCRIPTION = """Prints the path of each part as JSON: train/ (imagefolder), train_shards/ (webdataset), eval/ and
eval_unseen/ (zero-shot tasks, tasks.json), retrieval/, and the data specs train_imagefolder.yaml and
train_webdataset.yaml. The same arguments give byte-identical files."""


def build_parser() -> CommandParser:
    """The options of `dcclip make-benchmark`."""
    parser = CommandParser(
        "make-benchmark", usage="dcclip make-benchmark OUT_DIR [--option value ...]", description=DESCRIPTION
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder to write the benchmark into")
    options = [
        ("--seed", int, 0, "seed of every random choice"),
        ("--n_train", positive_int, 2000, "training images"),
        ("--n_eval", positive_int, 500, "evaluation images; eval_unseen gets half as many"),
        ("--n_retrieval", positive_int, 200, "retrieval images"),
        ("--image_size", positive_int, 64, "side of the square images in px"),
        ("--captions_per_image", positive_int, 3, "retrieval captions per image and language"),
        ("--shard_size", positive_int, 500, "samples per webdataset shard"),
    ]
    for flag, kind, default, help_text in options:
        parser.add_argument(flag, type=kind, default=default, metavar="N", help=f"{help_text} (default: {default})")
    parser.add_argument("--image_format", choices=("png", "jpeg"), default="png", help="image files (default: png)")
    regime = parser.add_argument_group("the scarce-pairs regime (docs/data.md)")
    regime.add_argument(
        "--n_corpus", type=int, default=0, metavar="N",
        help="pairs of a larger corpus (a teacher's pre-training data; also the unpaired images and texts); 0: none",
    )  # fmt: skip
    regime.add_argument(
        "--corpus_only_colours", nargs="*", default=[], metavar="COLOUR",
        help="colours the corpus shows and the training pairs never do (English names)",
    )  # fmt: skip
    regime.add_argument(
        "--pair_fractions", nargs="*", type=float, default=[], metavar="FRACTION",
        help="write a data spec of the first FRACTION of the training pairs for each (e.g. 0.01 0.05 0.2 1)",
    )  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    """``dcclip make-benchmark``: write the built-in bilingual benchmark and print where its parts are."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # Imported after parsing: it imports datasets and PIL, which --help need not wait for.
    from dcclip.trainers.data.synthetic_scenes import COLOURS, generate_benchmark

    unknown = sorted(set(args.corpus_only_colours) - {colour.en for colour in COLOURS})
    if unknown:
        parser.error(f"--corpus_only_colours: unknown colour(s) {', '.join(unknown)}; "
                     f"choose from {', '.join(colour.en for colour in COLOURS)}")  # fmt: skip
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
        n_corpus=args.n_corpus,
        corpus_only_colours=args.corpus_only_colours,
        pair_fractions=args.pair_fractions,
    )
    print(json.dumps(asdict(paths), indent=2, default=str))
    report_written("make-benchmark", f"the benchmark ({args.n_train} training, {args.n_eval} evaluation and "
                   f"{args.n_retrieval} retrieval images) to {paths.root}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(run_command("make-benchmark", main))
