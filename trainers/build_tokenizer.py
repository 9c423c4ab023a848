"""`dcclip build-tokenizer`: train the offline bilingual tokenizer from text files (one sentence per line)."""

from __future__ import annotations

import sys
from pathlib import Path

from dcclip.command_line import CommandParser
from dcclip.trainers.data.tokenizer import build_bilingual_tokenizer


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(prog="dcclip build-tokenizer", description=__doc__)
    parser.add_argument("corpus", nargs="+", type=Path, help="UTF-8 text files, one Chinese or English sentence per line")
    parser.add_argument("--out", type=Path, required=True, help="folder to save the tokenizer to")
    parser.add_argument("--vocab_size", type=int, default=8000, help="target SentencePiece vocabulary size (soft limit)")
    parser.add_argument("--max_length", type=int, default=64, help="default truncation length")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.corpus if not p.is_file()]
    if missing:
        parser.error(f"corpus file(s) not found: {', '.join(missing)}")
    lines = [line for path in args.corpus for line in path.read_text(encoding="utf-8").splitlines()]
    tokenizer = build_bilingual_tokenizer(lines, args.vocab_size, save_dir=args.out, model_max_length=args.max_length)
    print(f"saved a {len(tokenizer)}-token tokenizer trained on {len(lines)} lines to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
