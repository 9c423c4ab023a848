"""`dcclip build-tokenizer`: train the offline bilingual tokenizer from text files (one sentence per line).

    python trainers/build_tokenizer.py corpus_en.txt corpus_zh.txt --out my-tokenizer
    python -m trainers.build_tokenizer ...        (or `dcclip build-tokenizer ...`)
"""

from __future__ import annotations

import sys
from pathlib import Path

from dcclip.command_errors import UsageError, run_command
from dcclip.command_line import CommandParser, positive_int, report_written

DESCRIPTION = """A SentencePiece unigram model wrapped as an XLMRobertaTokenizer (the class of AltCLIP's text
tower), for running offline; the real pipeline uses the teacher's own tokenizer. Every character that must not
map to <unk> has to occur in the corpus."""


def build_parser() -> CommandParser:
    """The options of `dcclip build-tokenizer`."""
    parser = CommandParser(
        "build-tokenizer",
        usage="dcclip build-tokenizer CORPUS.txt [CORPUS.txt ...] --out DIR [--option value ...]",
        description=DESCRIPTION,
    )
    parser.add_argument("corpus", nargs="+", type=Path, metavar="CORPUS.txt",
                        help="UTF-8 text files, one Chinese or English sentence per line")  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to save the tokenizer to")
    parser.add_argument("--vocab_size", type=positive_int, metavar="N", default=8000,
                        help="target SentencePiece vocabulary size, a soft limit (default: 8000)")  # fmt: skip
    parser.add_argument("--max_length", type=positive_int, metavar="N", default=64,
                        help="default truncation length (default: 64)")  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    """``dcclip build-tokenizer``: train the tokenizer and save it to ``--out``."""
    args = build_parser().parse_args(argv)
    missing = [str(p) for p in args.corpus if not p.is_file()]
    if missing:
        raise UsageError(f"corpus file(s) not found: {', '.join(missing)}")
    from dcclip.trainers.data.tokenizer import build_bilingual_tokenizer  # after parsing: it imports transformers

    lines = [line for path in args.corpus for line in path.read_text(encoding="utf-8").splitlines()]
    tokenizer = build_bilingual_tokenizer(lines, args.vocab_size, save_dir=args.out, model_max_length=args.max_length)
    report_written("build-tokenizer", f"a {len(tokenizer)}-token tokenizer trained on {len(lines)} lines to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command("build-tokenizer", main))
