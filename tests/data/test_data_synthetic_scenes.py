"""The built-in bilingual benchmark: deterministic, captions that match the labels, held-out compositions."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import datasets
import numpy as np
import PIL.Image
import pytest

from dcclip.trainers.data.synthetic_scenes import (
    COLOURS,
    COUNT_WORDS,
    HELD_OUT_COMPOSITIONS,
    POSITION_PHRASES,
    SHAPES,
    benchmark_text_corpus,
    generate_benchmark,
)
from dcclip.trainers.make_benchmark import main


def _metadata(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "metadata.jsonl").read_text(encoding="utf-8").splitlines()]


def _digest(root) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _composition(row) -> tuple[str, str]:
    return COLOURS[row["colour"]].en, SHAPES[row["shape"]].en


def test_same_seed_gives_identical_files_and_another_seed_other_images(tmp_path):
    arguments = dict(n_train=12, n_eval=6, n_retrieval=4, shard_size=5)
    first = _digest(generate_benchmark(tmp_path / "a", seed=1, **arguments).root)
    assert first == _digest(generate_benchmark(tmp_path / "b", seed=1, **arguments).root)
    other = _digest(generate_benchmark(tmp_path / "c", seed=2, **arguments).root)
    assert first.keys() == other.keys()
    assert first["train/images/000000.png"] != other["train/images/000000.png"]


def test_held_out_compositions_never_reach_training_and_fill_the_unseen_eval_split(small_benchmark):
    held_out = set(HELD_OUT_COMPOSITIONS)
    train = _metadata(small_benchmark.train_dir)
    assert len(train) == 60 and not {_composition(row) for row in train} & held_out
    unseen = _metadata(small_benchmark.eval_unseen_dir)
    assert len(unseen) == 20 and {_composition(row) for row in unseen} <= held_out
    assert {_composition(row) for row in _metadata(small_benchmark.eval_dir)} & held_out


def test_tasks_file_follows_the_schema_and_labels_index_its_classnames(small_benchmark):
    tasks = json.loads(small_benchmark.tasks_file.read_text(encoding="utf-8"))
    assert sorted(tasks) == ["colour", "colour_shape", "count", "position", "shape"]
    eval_rows = _metadata(small_benchmark.eval_dir)
    for name, task in tasks.items():
        assert sorted(task) == ["classnames", "description", "label_column", "metric", "templates"], name
        assert task["metric"] == "accuracy" and task["description"]
        assert len(task["classnames"]["en"]) == len(task["classnames"]["zh"]) > 1
        for language in ("en", "zh"):
            assert task["templates"][language] and all(t.count("{}") == 1 for t in task["templates"][language])
        labels = {row[task["label_column"]] for row in eval_rows}
        assert labels <= set(range(len(task["classnames"]["en"]))) and len(labels) > 1
    unseen = json.loads((small_benchmark.eval_unseen_dir / "tasks.json").read_text(encoding="utf-8"))
    assert list(unseen) == ["colour_shape"]
    assert unseen["colour_shape"]["classnames"] == tasks["colour_shape"]["classnames"]
    for row in _metadata(small_benchmark.eval_unseen_dir):
        assert tuple(tasks["colour_shape"]["classnames"]["en"][row["colour_shape"]].split()) in HELD_OUT_COMPOSITIONS


def test_eval_split_loads_as_an_imagefolder_with_integer_label_columns(small_benchmark):
    split = datasets.load_dataset("imagefolder", data_dir=str(small_benchmark.eval_dir), split="train")
    assert len(split) == 40
    for column in ("colour", "shape", "colour_shape", "count", "position"):
        assert split.features[column].dtype == "int64"
    assert split[0]["image"].size == (64, 64)


def test_captions_in_both_languages_state_the_labels(small_benchmark):
    for row in _metadata(small_benchmark.train_dir) + _metadata(small_benchmark.eval_dir):
        colour, shape = COLOURS[row["colour"]], SHAPES[row["shape"]]
        en, zh = row["caption_en"], row["caption_zh"]
        assert colour.en in en and (shape.en in en or shape.en_plural in en), en
        assert POSITION_PHRASES["en"][row["position"]] in en
        assert (COUNT_WORDS["en"][row["count"]] in en) == (row["count"] > 0), en
        assert colour.zh in zh and shape.zh in zh and POSITION_PHRASES["zh"][row["position"]] in zh, zh
        assert COUNT_WORDS["zh"][row["count"]] in zh, zh


def test_retrieval_images_have_several_distinct_captions_per_language(small_benchmark):
    rows = _metadata(small_benchmark.retrieval_dir)
    assert len(rows) == 10
    for row in rows:
        assert len(set(row["captions_en"])) == len(set(row["captions_zh"])) == 3


def test_text_corpus_holds_every_caption_and_prompt(small_benchmark):
    corpus = set(benchmark_text_corpus())
    captions = {row[key] for row in _metadata(small_benchmark.train_dir) for key in ("caption_en", "caption_zh")}
    for row in _metadata(small_benchmark.retrieval_dir):
        captions.update(row["captions_en"] + row["captions_zh"])
    assert captions <= corpus
    tasks = json.loads(small_benchmark.tasks_file.read_text(encoding="utf-8"))
    prompts = {
        t.format(c)
        for task in tasks.values()
        for lang in ("en", "zh")
        for t in task["templates"][lang]
        for c in task["classnames"][lang]
    }
    assert prompts <= corpus
    assert any("\u4e00" <= ch <= "\u9fff" for text in corpus for ch in text)


def test_the_shapes_are_drawn_in_the_labelled_colour_and_third_of_the_image(small_benchmark):
    for row in _metadata(small_benchmark.eval_dir):
        pixels = np.asarray(PIL.Image.open(small_benchmark.eval_dir / row["file_name"]), dtype=np.float32)
        distance = np.linalg.norm(pixels - np.array(COLOURS[row["colour"]].rgb, dtype=np.float32), axis=-1)
        near = distance < 70
        thirds = [near[:, 64 * k // 3 : 64 * (k + 1) // 3].sum() for k in range(3)]
        assert int(np.argmax(thirds)) == row["position"], (row, thirds)
        # More shapes cover more pixels: at least ~20 px per shape even at the smallest size.
        assert near.sum() >= 20 * (row["count"] + 1), (row, near.sum())


def test_two_thousand_images_at_64_px_take_seconds(tmp_path):
    start = time.perf_counter()
    paths = generate_benchmark(tmp_path, n_train=2000, n_eval=10, n_retrieval=10)
    elapsed = time.perf_counter() - start
    assert len(list(paths.train_dir.glob("images/*.png"))) == 2000 and len(paths.train_shards) == 4
    assert elapsed < 60, f"generation took {elapsed:.1f} s"


def test_cli_writes_the_benchmark_and_prints_its_paths(tmp_path, capsys):
    assert (
        main(
            [
                str(tmp_path / "bench"),
                "--n-train",
                "8",
                "--n-eval",
                "4",
                "--n-retrieval",
                "2",
                "--image-size",
                "32",
                "--image-format",
                "jpeg",
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert PIL.Image.open(tmp_path / "bench" / "train" / "images" / "000000.jpg").size == (32, 32)
    assert printed["tasks_file"] == str(tmp_path / "bench" / "eval" / "tasks.json")
    with pytest.raises(SystemExit):
        main([str(tmp_path / "x"), "--image-format", "gif"])


# ----- the scarce-pairs regime: a teacher's corpus, unpaired images and texts, nested subsets of the pairs ----------


@pytest.fixture(scope="module")
def regime(tmp_path_factory):
    return generate_benchmark(
        tmp_path_factory.mktemp("regime"), seed=4, n_train=40, n_eval=12, n_retrieval=4, image_size=32, n_corpus=30,
        corpus_only_colours=("purple", "orange"), pair_fractions=(0.1, 0.5, 1.0),
    )  # fmt: skip


def _jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_corpus_only_colours_never_reach_the_training_pairs_but_fill_the_corpus(regime):
    excluded = {COLOURS.index(c) for c in COLOURS if c.en in ("purple", "orange")}
    assert not {row["colour"] for row in _metadata(regime.train_dir)} & excluded
    corpus = _metadata(regime.corpus_dir)
    assert len(corpus) == 30 and {row["colour"] for row in corpus} & excluded
    held_out = set(HELD_OUT_COMPOSITIONS)
    assert not {_composition(row) for row in corpus} & held_out
    # evaluation still covers every colour
    assert {row["colour"] for row in _metadata(regime.eval_dir)} & excluded


def test_unpaired_specs_load_images_only_and_texts_only_from_different_scenes(regime):
    from dcclip.trainers.data import load_image_text_data

    images, texts = load_image_text_data(regime.unpaired_images_spec), load_image_text_data(regime.unpaired_texts_spec)
    assert images.modality == "images" and len(images.dataset) == 15
    assert texts.modality == "texts" and len(texts.dataset) == 15
    corpus = _metadata(regime.corpus_dir)
    image_files = {Path(sample["image"]["path"]).name for sample in images.dataset}
    assert image_files == {Path(row["file_name"]).name for row in corpus[:15]}
    captions = {sample["captions_en"][0] for sample in texts.dataset}
    assert captions == {row["caption_en"] for row in corpus[15:]}
    pairs = load_image_text_data(regime.corpus_spec)
    assert pairs.modality == "pairs" and len(pairs.dataset) == 30


def test_pair_subsets_are_nested_prefixes_of_the_training_pairs(regime):
    from dcclip.trainers.data import load_image_text_data

    assert sorted(regime.pair_subset_specs) == [0.1, 0.5, 1.0]
    train = [row["file_name"] for row in _metadata(regime.train_dir)]
    for fraction, size in ((0.1, 4), (0.5, 20), (1.0, 40)):
        spec = regime.pair_subset_specs[fraction]
        assert spec.name == f"train_pairs_{100 * fraction:g}pct.yaml"
        rows = _jsonl(regime.root / "pair_subsets" / f"train_pairs_{100 * fraction:g}pct.jsonl")
        assert [row["file_name"] for row in rows] == train[:size]
        data = load_image_text_data(spec)
        assert data.modality == "pairs" and len(data.dataset) == size
    assert json.loads((regime.root / "benchmark.json").read_text())["pair_subsets"] == {
        "train_pairs_10pct": 4, "train_pairs_50pct": 20, "train_pairs_100pct": 40,
    }  # fmt: skip


def test_without_a_corpus_the_benchmark_writes_no_regime_parts(small_benchmark):
    assert small_benchmark.corpus_dir is None and small_benchmark.pair_subset_specs == {}
    assert not (small_benchmark.root / "corpus").exists() and not (small_benchmark.root / "unpaired").exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"corpus_only_colours": ("purple",)}, "needs a corpus"),
        ({"n_corpus": 10, "corpus_only_colours": ("pink",)}, "not benchmark colours"),
        ({"n_corpus": 10, "corpus_only_colours": tuple(c.en for c in COLOURS)}, "at least one colour"),
        ({"n_corpus": 1}, "at least 2"),
        ({"pair_fractions": (0.0,)}, r"in \(0, 1\]"),
        ({"pair_fractions": (1.5,)}, r"in \(0, 1\]"),
    ],
)  # fmt: skip
def test_a_regime_that_cannot_be_built_is_refused_before_anything_is_written(tmp_path, arguments, message):
    with pytest.raises(ValueError, match=message):
        generate_benchmark(tmp_path / "bench", n_train=4, n_eval=2, n_retrieval=1, **arguments)
    assert not (tmp_path / "bench").exists()


def test_cli_writes_the_regime_and_prints_every_spec(tmp_path, capsys):
    arguments = [str(tmp_path / "bench"), "--n-train", "10", "--n-eval", "2", "--n-retrieval", "1",
                 "--image-size", "32", "--n-corpus", "8", "--corpus-only-colours", "purple",
                 "--pair-fractions", "0.5", "1"]  # fmt: skip
    assert main(arguments) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["unpaired_texts_spec"] == str(tmp_path / "bench" / "unpaired_texts.yaml")
    assert printed["pair_subset_specs"] == {"0.5": str(tmp_path / "bench" / "train_pairs_50pct.yaml"),
                                            "1.0": str(tmp_path / "bench" / "train_pairs_100pct.yaml")}  # fmt: skip
