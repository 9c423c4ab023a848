"""Bilingual vocabulary pruning: kept embeddings unchanged, same segmentation and features for in-corpus text, a
normal model folder out, and clear errors for what it cannot prune."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModel, AutoProcessor

from dcclip.export.prune_vocab import main, prune_text_vocabulary, read_corpus, select_kept_ids

# A part of the fixture tokenizer's training corpus: pruning must drop the rest of its vocabulary.
CORPUS = ["a photo of a red circle", "a cat and a dog", "一张红色圆形的照片", "一只猫和一只狗"]


@pytest.fixture
def loaded_student(saved_tiny_student):
    """The tiny student and its processor as `prune-vocab` loads them from a folder."""
    return AutoModel.from_pretrained(saved_tiny_student).eval(), AutoProcessor.from_pretrained(saved_tiny_student)


def _features(model, processor, texts):
    batch = processor(text=texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        return batch["input_ids"], model.get_text_features(batch["input_ids"], batch["attention_mask"]).pooler_output


def test_pruning_keeps_the_embedding_row_of_every_kept_token(loaded_student):
    model, processor = loaded_student
    pruned_model, _, report = prune_text_vocabulary(model, processor, CORPUS)
    kept_ids, _, _ = select_kept_ids(processor.tokenizer, CORPUS)
    old = model.text_model.get_input_embeddings().weight
    new = pruned_model.text_model.get_input_embeddings().weight
    assert new.shape == (len(kept_ids), old.shape[1]) and len(kept_ids) < old.shape[0]
    assert torch.equal(new, old[torch.tensor(kept_ids)])
    assert report.vocab_size_after == len(kept_ids) < report.vocab_size_before
    assert report.parameter_bytes_saved == (old.shape[0] - len(kept_ids)) * old.shape[1] * 4


@pytest.mark.parametrize("preset", ["tiny", "tiny-vit"])
def test_in_corpus_text_gets_the_same_tokens_renumbered_and_equal_features(make_tiny_model, tiny_processor, preset):
    model = make_tiny_model(preset)
    pruned_model, pruned_processor, _ = prune_text_vocabulary(model, tiny_processor, CORPUS)
    kept_ids, _, _ = select_kept_ids(tiny_processor.tokenizer, CORPUS)
    old_ids, old_features = _features(model, tiny_processor, CORPUS)
    new_ids, new_features = _features(pruned_model, pruned_processor, CORPUS)
    assert torch.equal(torch.tensor(kept_ids)[new_ids], old_ids)
    torch.testing.assert_close(new_features, old_features, atol=1e-6, rtol=0)


def test_characters_outside_the_corpus_become_unknown(loaded_student):
    model, processor = loaded_student
    _, pruned_processor, _ = prune_text_vocabulary(model, processor, CORPUS)
    tokenizer = pruned_processor.tokenizer
    # "星" (star) and "triangle" are in the original vocabulary but not in CORPUS.
    assert tokenizer.unk_token_id in tokenizer("星星")["input_ids"]
    assert tokenizer.unk_token_id not in processor.tokenizer("星星")["input_ids"]


def test_prune_vocab_command_saves_a_smaller_folder_that_auto_classes_load(saved_tiny_student, tmp_path):
    corpus_file = tmp_path / "corpus.txt"
    corpus_file.write_text("\n".join(CORPUS[:2] + [""] + CORPUS[2:]) + "\n", encoding="utf-8")
    out = tmp_path / "pruned"
    assert main(["--model_name_or_path", str(saved_tiny_student), "--corpus", str(corpus_file), "--output_dir", str(out)]) == 0

    report = json.loads((out / "prune_report.json").read_text())
    assert report["corpus_texts"] == 4 and report["empty_texts_skipped"] == 1
    assert (out / "model.safetensors").stat().st_size < (saved_tiny_student / "model.safetensors").stat().st_size
    original, pruned = AutoModel.from_pretrained(saved_tiny_student).eval(), AutoModel.from_pretrained(out).eval()
    assert pruned.config.text_config.vocab_size == report["vocab_size_after"]
    _, original_features = _features(original, AutoProcessor.from_pretrained(saved_tiny_student), CORPUS)
    _, pruned_features = _features(pruned, AutoProcessor.from_pretrained(out), CORPUS)
    torch.testing.assert_close(pruned_features, original_features, atol=1e-6, rtol=0)


def test_pruning_rejects_a_tokenizer_that_is_not_unigram(loaded_student):
    from transformers import BertTokenizer

    model, processor = loaded_student
    wordpiece = BertTokenizer(vocab={"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4, "cat": 5})
    bert_processor = type(processor)(image_processor=processor.image_processor, tokenizer=wordpiece)
    with pytest.raises(ValueError, match="unigram"):
        prune_text_vocabulary(model, bert_processor, ["cat"])


def test_pruning_rejects_an_empty_corpus(loaded_student):
    model, processor = loaded_student
    with pytest.raises(ValueError, match="no non-empty text"):
        prune_text_vocabulary(model, processor, ["", "  "])


def test_corpus_reader_takes_txt_and_jsonl_and_names_a_missing_column(tmp_path):
    (tmp_path / "a.txt").write_text("a cat\n一只猫\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text('{"caption": "a dog"}\n{"caption": "一只狗"}\n', encoding="utf-8")
    texts = read_corpus([str(tmp_path / "a.txt"), str(tmp_path / "b.jsonl")], text_column="caption")
    assert texts == ["a cat", "一只猫", "a dog", "一只狗"]
    with pytest.raises(ValueError, match="no column 'text'"):
        read_corpus([str(tmp_path / "b.jsonl")])
