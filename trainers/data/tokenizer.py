"""Offline bilingual tokenizer: a SentencePiece unigram model trained on Chinese + English text, wrapped as an
XLM-R style transformers tokenizer (the same class AltCLIP's text tower uses), so teacher and student can share it.

The real pipeline uses the teacher's own 250k-token XLM-R tokenizer; this builder exists so that tests and the demo can
run the same code offline with a vocabulary that fits the data they generate.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm
from transformers import XLMRobertaTokenizer

logger = logging.getLogger(__name__)

# XLM-R's fixed layout: these four ids come first, <mask> comes last.
_LEADING_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
_MASK = "<mask>"
# The Basic Multilingual Plane's private-use area: characters no corpus is expected to hold.
_PRIVATE_USE_START, _PRIVATE_USE_END = 0xE000, 0xF900


def build_bilingual_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 2000,
    save_dir: str | Path | None = None,
    model_max_length: int = 64,
    pad_vocab_to: int | None = None,
) -> XLMRobertaTokenizer:
    """Train a SentencePiece unigram model on ``texts`` and return it as an ``XLMRobertaTokenizer``.

    Args:
        texts: the corpus (Chinese and English sentences; every character that should not map to ``<unk>`` must occur).
        vocab_size: target number of SentencePiece pieces. It is a soft limit: a small corpus yields fewer pieces.
        save_dir: when given, the tokenizer is also saved there with ``save_pretrained``.
        model_max_length: the tokenizer's default truncation length.
        pad_vocab_to: fill the vocabulary up to this many entries with pieces that text never produces (pairs of
            private-use characters, scored far below every trained piece), to give models a real tokenizer's
            embedding size offline: 250,002 is XLM-R's, AltCLIP's.
    """
    corpus = [t.strip() for t in texts if t and t.strip()]
    if not corpus:
        raise ValueError("build_bilingual_tokenizer: the corpus is empty; pass Chinese and English sentences")
    proto = io.BytesIO()
    # character_coverage=1.0 keeps every CJK character of the corpus; hard_vocab_limit=False lets small corpora
    # produce fewer pieces instead of failing.
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_writer=proto,
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        hard_vocab_limit=False,
        unk_id=0,
        bos_id=-1,
        eos_id=-1,
        pad_id=-1,
        minloglevel=2,
    )
    processor = spm.SentencePieceProcessor(model_proto=proto.getvalue())
    pieces = [
        (processor.id_to_piece(i), processor.get_score(i))
        for i in range(processor.get_piece_size())
        if not (processor.is_unknown(i) or processor.is_control(i))
    ]
    vocab = [(token, 0.0) for token in _LEADING_SPECIALS] + pieces + [(_MASK, 0.0)]
    if pad_vocab_to is not None:
        if pad_vocab_to < len(vocab):
            raise ValueError(f"pad_vocab_to={pad_vocab_to} is below the trained vocabulary's {len(vocab)} entries")
        side = _PRIVATE_USE_END - _PRIVATE_USE_START
        fillers = [chr(_PRIVATE_USE_START + i // side) + chr(_PRIVATE_USE_START + i % side) for i in range(pad_vocab_to - len(vocab))]
        vocab = vocab[:-1] + [(piece, -1000.0) for piece in fillers] + vocab[-1:]  # <mask> stays last
    # No extra normaliser: transformers 5 rebuilds XLMRobertaTokenizer from its vocabulary on load and would drop it,
    # so a saved tokenizer would split full-width text differently from the one returned here.
    tokenizer = XLMRobertaTokenizer(vocab=vocab, model_max_length=model_max_length)
    logger.info("bilingual tokenizer: %d tokens from %d sentences", len(tokenizer), len(corpus))
    if save_dir is not None:
        tokenizer.save_pretrained(str(save_dir))
    return tokenizer
