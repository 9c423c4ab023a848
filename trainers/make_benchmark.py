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

from dcclip.command_line import CommandParser
from dcclip.trainers.data.synthetic_scenes import COLOURS, generate_benchmark


def main(argv: list[str] | None = None) -> int:
    """``dcclip make-benchmark``: write the built-in bilingual benchmark and print where its parts are."""
    parser = CommandParser(prog="dcclip make-benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="folder to write the benchmark into")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n_train", type=int, default=2000)
    parser.add_argument("--n_eval", type=int, default=500)
    parser.add_argument("--n_retrieval", type=int, default=200)
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--captions_per_image", type=int, default=3, help="retrieval captions per language")
    parser.add_argument("--shard_size", type=int, default=500, help="samples per webdataset shard")
    parser.add_argument("--image_format", choices=("png", "jpeg"), default="png")
    parser.add_argument(
        "--n_corpus", type=int, default=0,
        help="pairs of a larger corpus (a teacher's pre-training data; also the unpaired images and texts); 0: none",
    )  # fmt: skip
    parser.add_argument(
        "--corpus_only_colours", nargs="*", default=[], choices=[colour.en for colour in COLOURS],
        help="colours the corpus shows and the training pairs never do",
    )  # fmt: skip
    parser.add_argument(
        "--pair_fractions", nargs="*", type=float, default=[],
        help="write a data spec of the first FRACTION of the training pairs for each (e.g. 0.01 0.05 0.2 1)",
    )  # fmt: skip
    args = parser.parse_args(argv)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
