"""The offline bilingual tokenizer: SentencePiece trained on Chinese + English, saved and loaded as XLM-R."""

import pytest
from transformers import AutoTokenizer

from dcclip.trainers.data.tokenizer import build_bilingual_tokenizer


def test_tokenizer_splits_chinese_and_english_without_unknowns(tiny_tokenizer):
    for text in ["a photo of a red circle", "一张红色圆形的照片"]:
        ids = tiny_tokenizer(text)["input_ids"]
        assert tiny_tokenizer.unk_token_id not in ids
        assert ids[0] == tiny_tokenizer.cls_token_id and ids[-1] == tiny_tokenizer.sep_token_id
        assert tiny_tokenizer.decode(ids, skip_special_tokens=True).replace(" ", "") == text.replace(" ", "")


def test_tokenizer_keeps_xlm_roberta_special_token_layout(tiny_tokenizer):
    assert [tiny_tokenizer.bos_token_id, tiny_tokenizer.pad_token_id, tiny_tokenizer.eos_token_id, tiny_tokenizer.unk_token_id] == [0, 1, 2, 3]
    assert tiny_tokenizer.mask_token_id == len(tiny_tokenizer) - 1


def test_tokenizer_saves_and_loads_with_auto_tokenizer(tiny_tokenizer, tmp_path):
    tiny_tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = ["左边有一个绿色的三角形", "two yellow stars", "ＡＢＣ，全角"]
    assert loaded(text, padding=True)["input_ids"] == tiny_tokenizer(text, padding=True)["input_ids"]


def test_empty_corpus_is_a_clear_error():
    with pytest.raises(ValueError, match="corpus is empty"):
        build_bilingual_tokenizer(["", "   "])


def test_build_tokenizer_command_writes_a_loadable_tokenizer(tmp_path):
    from dcclip.cli import main

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(["a red circle", "一个红色的圆"] * 50), encoding="utf-8")
    assert main(["build-tokenizer", str(corpus), "--out", str(tmp_path / "tok"), "--vocab-size", "100"]) == 0
    assert AutoTokenizer.from_pretrained(tmp_path / "tok")("一个红色的圆")["input_ids"][1:-1]
