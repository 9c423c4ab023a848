"""Bilingual vocabulary pruning: keep only the tokens a Chinese + English corpus uses, in the tokenizer and in the
text tower's embedding matrix, and save the result as a normal DCCLIPModel folder.

XLM-R's 250,002-token vocabulary covers about 100 languages; a Chinese + English product uses a small share of it, yet
the embedding matrix is most of a small text tower's parameters. Pruning keeps the pieces that the original tokenizer
produces on the corpus, the special tokens, and the lowest-scoring piece (see `select_kept_ids`). Kept pieces keep
their order, their unigram scores and their embedding rows, so in-corpus text gets the same segmentation (under new
ids) and the same features as before.

    dcclip prune-vocab --model_name_or_path runs/align/final --corpus captions_zh.txt captions_en.txt \
        prompts.txt --output_dir runs/align/final-pruned
"""

from __future__ import annotations

import copy
import json
import logging
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dcclip.command_errors import run_command
from dcclip.command_line import check_model_location, report_written
from dcclip.option_help import parse_dataclass_arguments

# torch and transformers are imported where they are used, so that `dcclip prune-vocab --help` answers at once.
if TYPE_CHECKING:
    from transformers import PreTrainedModel

logger = logging.getLogger(__name__)

REPORT_FILE = "prune_report.json"
# Text-config fields that hold token ids; they are renumbered with the vocabulary.
_TOKEN_ID_FIELDS = ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id")


@dataclass
class PruneReport:
    """What pruning kept and saved. Sizes are the fp32 parameter bytes that a safetensors file holds."""

    corpus_texts: int
    empty_texts_skipped: int
    corpus_tokens: int
    corpus_unknown_tokens: int
    vocab_size_before: int
    vocab_size_after: int
    text_parameters_before: int
    text_parameters_after: int
    total_parameters_before: int
    total_parameters_after: int
    parameter_bytes_saved: int


def _unigram_state(tokenizer) -> dict:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ValueError(f"prune-vocab needs a tokenizers-backed tokenizer, got {type(tokenizer).__name__}")
    state = json.loads(backend.to_str())
    if state["model"]["type"] != "Unigram":
        raise ValueError(
            f"prune-vocab supports SentencePiece unigram tokenizers (XLM-R style); this one is {state['model']['type']}"
        )
    return state


def select_kept_ids(tokenizer, texts: Sequence[str]) -> tuple[list[int], int, int]:
    """Token ids to keep, ascending: every id the tokenizer produces on `texts`, every special / added token, and the
    lowest-scoring unigram piece.

    The lowest-scoring piece stays because the unigram model prices an unknown character at (lowest score - 10); with
    that piece gone the price would change and the segmentation of text with unknown characters could change too.

    Returns `(kept_ids, corpus_token_count, corpus_unknown_count)`.
    """
    state = _unigram_state(tokenizer)
    scores = [score for _, score in state["model"]["vocab"]]
    kept = {min(range(len(scores)), key=scores.__getitem__)}
    kept.update(token["id"] for token in state["added_tokens"])
    kept.update(tokenizer.all_special_ids)
    encoded = tokenizer(list(texts), add_special_tokens=True)["input_ids"]
    unknown_id = tokenizer.unk_token_id
    total = unknown = 0
    for ids in encoded:
        kept.update(ids)
        total += len(ids)
        unknown += sum(1 for i in ids if i == unknown_id)
    return sorted(kept), total, unknown


def _renumber_post_processor(post_processor: dict | None, new_id: dict[int, int]) -> None:
    """Renumber the special-token ids that a tokenizers post-processor adds (`<s>`, `</s>`) in place."""
    if post_processor is None:
        return
    kind = post_processor["type"]
    if kind == "Sequence":
        for step in post_processor["processors"]:
            _renumber_post_processor(step, new_id)
    elif kind == "TemplateProcessing":
        for special in post_processor["special_tokens"].values():
            special["ids"] = [new_id[i] for i in special["ids"]]
    elif kind in ("RobertaProcessing", "BertProcessing"):
        for key in ("sep", "cls"):
            token, old = post_processor[key]
            post_processor[key] = [token, new_id[old]]
    elif kind != "ByteLevel":
        raise ValueError(f"prune-vocab cannot renumber a {kind} post-processor")


def prune_tokenizer(tokenizer, kept_ids: Sequence[int]):
    """A tokenizer of the same class whose unigram vocabulary is `kept_ids` (ascending old ids), renumbered 0..n-1.

    The tokenizer is written with `save_pretrained`, its `tokenizer.json` rewritten, and loaded back, so the returned
    object is exactly what loading the saved folder gives.
    """
    state = _unigram_state(tokenizer)
    new_id = {old: new for new, old in enumerate(kept_ids)}
    vocab = state["model"]["vocab"]
    state["model"]["vocab"] = [vocab[old] for old in kept_ids]
    state["model"]["unk_id"] = new_id[state["model"]["unk_id"]]
    for token in state["added_tokens"]:
        token["id"] = new_id[token["id"]]
    _renumber_post_processor(state.get("post_processor"), new_id)

    with tempfile.TemporaryDirectory() as folder:
        tokenizer.save_pretrained(folder)
        # Other vocabulary files (a SentencePiece .model) would describe the old vocabulary; tokenizer.json alone does.
        for path in Path(folder).iterdir():
            if path.name not in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
                path.unlink()
        (Path(folder) / "tokenizer.json").write_text(json.dumps(state, ensure_ascii=False))
        from transformers import AutoTokenizer

        pruned = AutoTokenizer.from_pretrained(folder)
    wrong = [(new, piece) for new, (piece, _) in enumerate(state["model"]["vocab"])
             if pruned.convert_tokens_to_ids(piece) != new]
    if wrong or len(pruned) != len(kept_ids):
        raise RuntimeError(f"pruned tokenizer has {len(pruned)} tokens for {len(kept_ids)} kept; misplaced: {wrong[:5]}")
    return pruned


def _input_embedding_name(model: PreTrainedModel) -> str:
    weight = model.text_model.get_input_embeddings().weight
    return next(name for name, parameter in model.named_parameters() if parameter is weight)


def prune_text_embeddings(model: PreTrainedModel, kept_ids: Sequence[int]) -> PreTrainedModel:
    """A copy of `model` whose text tower has only the embedding rows `kept_ids` (in that order), with the text
    config's vocabulary size and special-token ids renumbered to match. Every other weight is unchanged."""
    new_id = {old: new for new, old in enumerate(kept_ids)}
    config = copy.deepcopy(model.config)
    text_config = config.text_config
    text_config.vocab_size = len(kept_ids)
    for name in _TOKEN_ID_FIELDS:
        old = getattr(text_config, name, None)
        if old is None:
            continue
        if old not in new_id:
            raise ValueError(f"text_config.{name}={old} is not among the kept tokens; keep the special tokens")
        setattr(text_config, name, new_id[old])

    import torch

    state = model.state_dict()
    embedding_name = _input_embedding_name(model)
    state[embedding_name] = state[embedding_name][torch.as_tensor(list(kept_ids))].clone()
    # Rebuilding from the config keeps everything derived from it (e.g. XLM-R's padding_idx) consistent.
    pruned = type(model)(config)
    pruned.load_state_dict(state, strict=True)
    return pruned.eval()


def prune_text_vocabulary(model: PreTrainedModel, processor, texts: Iterable[str]):
    """Prune `model`'s text vocabulary and `processor`'s tokenizer to the tokens `texts` uses.

    Returns `(pruned_model, pruned_processor, PruneReport)`. Raises if the pruned tokenizer does not reproduce the
    original token sequence (renumbered) of every corpus text.
    """
    all_texts = list(texts)
    corpus = [t for t in all_texts if t and t.strip()]
    if not corpus:
        raise ValueError("the corpus has no non-empty text")
    tokenizer = processor.tokenizer
    kept_ids, token_count, unknown_count = select_kept_ids(tokenizer, corpus)
    pruned_tokenizer = prune_tokenizer(tokenizer, kept_ids)

    new_id = {old: new for new, old in enumerate(kept_ids)}
    before = tokenizer(corpus)["input_ids"]
    after = pruned_tokenizer(corpus)["input_ids"]
    changed = [text for text, old, new in zip(corpus, before, after) if [new_id[i] for i in old] != new]
    if changed:
        raise RuntimeError(f"pruned tokenizer segments {len(changed)} corpus texts differently, e.g. {changed[:3]}")

    pruned_model = prune_text_embeddings(model, kept_ids)
    pruned_processor = type(processor)(image_processor=processor.image_processor, tokenizer=pruned_tokenizer)
    report = PruneReport(
        corpus_texts=len(corpus),
        empty_texts_skipped=len(all_texts) - len(corpus),
        corpus_tokens=token_count,
        corpus_unknown_tokens=unknown_count,
        vocab_size_before=int(model.config.text_config.vocab_size),
        vocab_size_after=len(kept_ids),
        text_parameters_before=model.text_model.num_parameters(),
        text_parameters_after=pruned_model.text_model.num_parameters(),
        total_parameters_before=model.num_parameters(),
        total_parameters_after=pruned_model.num_parameters(),
        parameter_bytes_saved=sum(p.numel() * p.element_size() for p in model.parameters())
        - sum(p.numel() * p.element_size() for p in pruned_model.parameters()),
    )
    return pruned_model, pruned_processor, report


def read_corpus(paths: Sequence[str], text_column: str = "text") -> list[str]:
    """Texts from `.txt` files (one text per line) and from json / jsonl / csv / parquet files (`text_column`)."""
    texts: list[str] = []
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"corpus file {path} does not exist")
        if path.suffix == ".txt":
            texts.extend(path.read_text(encoding="utf-8").splitlines())
            continue
        import datasets

        builder = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}.get(path.suffix)
        if builder is None:
            raise ValueError(f"cannot read corpus file {path}; use .txt, .json, .jsonl, .csv or .parquet")
        dataset = datasets.load_dataset(builder, data_files=str(path), split="train")
        if text_column not in dataset.column_names:
            raise ValueError(f"corpus file {path} has no column {text_column!r} (columns: {dataset.column_names})")
        texts.extend("" if t is None else str(t) for t in dataset[text_column])
    return texts


@dataclass
class PruneArguments:
    model_name_or_path: str = field(metadata={"help": "Folder (or Hub id) of a saved DCCLIPModel with its processor."})
    corpus: list[str] = field(
        metadata={"help": "Chinese + English text files: .txt (one text per line) or .json/.jsonl/.csv/.parquet. "
                          "Include the captions and the zero-shot prompts/class names the model will see."}
    )
    output_dir: str = field(metadata={"help": "Folder for the pruned model, its processor and prune_report.json."})
    text_column: str = field(default="text", metadata={"help": "Column holding the text in non-.txt corpus files."})


EPILOG = """example:
  dcclip prune-vocab --model_name_or_path runs/align/final --corpus captions.txt prompts.txt \\
      --output_dir runs/align/final-pruned

Writes the pruned model, its processor and prune_report.json to --output_dir. More: docs/deployment.md"""


def main(argv: list[str] | None = None) -> int:
    """Entry point of `dcclip prune-vocab`."""
    (args,) = parse_dataclass_arguments("prune-vocab", [PruneArguments], argv, epilog=EPILOG)
    check_model_location(args.model_name_or_path, "--model_name_or_path")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from transformers import AutoModel, AutoProcessor

    import modeling_dcclip  # noqa: F401  (registers DCCLIPModel / DCCLIPProcessor with the Auto classes)

    texts = read_corpus(args.corpus, args.text_column)
    model = AutoModel.from_pretrained(args.model_name_or_path).eval()
    processor = AutoProcessor.from_pretrained(args.model_name_or_path)
    pruned_model, pruned_processor, report = prune_text_vocabulary(model, processor, texts)
    output_dir = Path(args.output_dir)
    pruned_model.save_pretrained(output_dir)
    pruned_processor.save_pretrained(output_dir)
    (output_dir / REPORT_FILE).write_text(json.dumps(asdict(report), indent=2) + "\n")
    logger.info(
        "vocabulary %d -> %d tokens; parameters %d -> %d (%.1f MB of fp32 saved); %d of %d corpus tokens unknown",
        report.vocab_size_before, report.vocab_size_after, report.total_parameters_before,
        report.total_parameters_after, report.parameter_bytes_saved / 1e6, report.corpus_unknown_tokens,
        report.corpus_tokens,
    )
    print(json.dumps(asdict(report), indent=2))
    report_written("prune-vocab", f"the pruned model ({report.vocab_size_after} of {report.vocab_size_before} tokens), "
                   f"its processor and {REPORT_FILE} to {output_dir}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(run_command("prune-vocab", main))
