"""Each source kind loads from files the test writes, into the same canonical samples; sources mix by weight."""

from __future__ import annotations

import csv
import json
from collections import Counter

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dcclip.trainers.data import CAPTION_COLUMNS, DataSpec, SourceSpec, load_image_text_data

N = 6  # samples per written source


def _captions(index: int) -> tuple[str, str]:
    return f"picture number {index}", f"第{index}张图片"


def _write_images(folder, image_bytes, count=N):
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        (folder / f"{index}.png").write_bytes(image_bytes(seed=index))


def _rows(samples) -> list[tuple[int, tuple, tuple]]:
    """(image size in bytes or path, EN captions, ZH captions) per sample, sorted: comparable across kinds."""
    out = []
    for sample in samples:
        image = sample.get("image")
        key = None if image is None else (len(image["bytes"]) if image["bytes"] else image["path"].rsplit("/", 1)[-1])
        out.append((key, tuple(sample.get("captions_en", ())), tuple(sample.get("captions_zh", ()))))
    return sorted(out, key=repr)


def _expected(with_paths: bool, image_bytes) -> list:
    rows = []
    for index in range(N):
        en, zh = _captions(index)
        rows.append((f"{index}.png" if with_paths else len(image_bytes(seed=index)), (en,), (zh,)))
    return sorted(rows, key=repr)


def _load(source: SourceSpec, streaming: bool):
    data = load_image_text_data(DataSpec(sources=[source], streaming=streaming, shuffle_buffer_size=0))
    return data, _rows(data.dataset)


@pytest.mark.parametrize("streaming", [False, True], ids=["map-style", "streaming"])
@pytest.mark.parametrize("metadata_format", ["jsonl", "csv"])
def test_imagefolder_with_metadata_file(tmp_path, image_bytes, metadata_format, streaming):
    folder = tmp_path / "folder"
    _write_images(folder, image_bytes)
    rows = [{"file_name": f"{i}.png", "en": _captions(i)[0], "zh": _captions(i)[1]} for i in range(N)]
    if metadata_format == "jsonl":
        (folder / "metadata.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    else:
        with open(folder / "metadata.csv", "w", newline="", encoding="utf-8") as file:
            writer = csv.DictWriter(file, fieldnames=["file_name", "en", "zh"])
            writer.writeheader()
            writer.writerows(rows)
    source = SourceSpec("folder", "imagefolder", path=str(folder), caption_columns={"en": "en", "zh": "zh"})
    data, rows_loaded = _load(source, streaming)
    assert rows_loaded == _expected(True, image_bytes)
    assert isinstance(data.dataset, datasets.IterableDataset) == streaming


def _table_with_paths(image_folder):
    return {
        "img": [f"images/{i}.png" for i in range(N)],
        "caption_en": [_captions(i)[0] for i in range(N)],
        "caption_zh": [_captions(i)[1] for i in range(N)],
    }


@pytest.mark.parametrize("streaming", [False, True], ids=["map-style", "streaming"])
@pytest.mark.parametrize("kind", ["parquet", "csv", "json"])
def test_table_files_with_relative_image_paths(tmp_path, image_bytes, kind, streaming):
    _write_images(tmp_path / "images", image_bytes)
    table = _table_with_paths(tmp_path / "images")
    path = tmp_path / f"pairs.{ {'json': 'jsonl'}.get(kind, kind) }"
    if kind == "parquet":
        pq.write_table(pa.table(table), path)
    elif kind == "csv":
        with open(path, "w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(table)
            writer.writerows(zip(*table.values(), strict=True))
    else:
        path.write_text(
            "".join(
                json.dumps(dict(zip(table, r, strict=True)), ensure_ascii=False) + "\n"
                for r in zip(*table.values(), strict=True)
            )
        )
    source = SourceSpec(
        "table",
        kind,
        data_files=[str(path)],
        image_column="img",
        caption_columns={"en": "caption_en", "zh": "caption_zh"},
    )
    assert _load(source, streaming)[1] == _expected(True, image_bytes)


def test_parquet_with_image_bytes_and_caption_lists(tmp_path, image_bytes):
    table = pa.table(
        {
            "jpg": [image_bytes(seed=i) for i in range(N)],
            "en": [[_captions(i)[0], "another caption", ""] for i in range(N)],
        }
    )
    pq.write_table(table, tmp_path / "bytes.parquet")
    source = SourceSpec(
        "bytes", "parquet", data_files=[str(tmp_path / "*.parquet")], image_column="jpg", caption_columns={"en": "en"}
    )
    data, rows = _load(source, streaming=False)
    # Empty captions inside a list are dropped, the others kept; an EN-only source reports nothing missing.
    assert rows == sorted(
        [(len(image_bytes(seed=i)), (_captions(i)[0], "another caption"), ()) for i in range(N)], key=repr
    )
    assert data.quality_reports()["bytes"].missing_captions == {}


@pytest.mark.parametrize("streaming", [False, True], ids=["map-style", "streaming"])
def test_webdataset_shards_written_by_the_benchmark(small_benchmark, streaming):
    spec = DataSpec.from_file(small_benchmark.train_spec_webdataset)
    spec.streaming = streaming
    data = load_image_text_data(spec)
    from_shards = _rows(data.dataset)
    from_folder = _rows(load_image_text_data(small_benchmark.train_spec_imagefolder).dataset)
    assert len(from_shards) == 60
    # Same captions, sample for sample (images are bytes in shards and paths in the folder).
    assert sorted(r[1:] for r in from_shards) == sorted(r[1:] for r in from_folder)
    assert len(small_benchmark.train_shards) == 3


@pytest.mark.parametrize("streaming", [False, True], ids=["map-style", "streaming"])
def test_hub_kind_loads_a_dataset_repository_layout_with_split_and_text_plus_language_columns(
    tmp_path, image_bytes, streaming
):
    # A Hub dataset repo is a folder of data files; pointing `path` at a local one runs the same load_dataset call.
    repo = tmp_path / "org__dataset" / "data"
    repo.mkdir(parents=True)
    rows = {"image": [], "text": [], "lang": []}
    for i in range(N):
        for language, caption in zip(("en", "zh-CN"), _captions(i), strict=True):
            rows["image"].append({"bytes": image_bytes(seed=i), "path": None})
            rows["text"].append(caption)
            rows["lang"].append(language)
    rows["image"].append({"bytes": image_bytes(seed=0), "path": None})
    rows["text"].append("bonjour")
    rows["lang"].append("fr")
    pq.write_table(pa.table(rows), repo / "train-00000-of-00001.parquet")
    pq.write_table(pa.table({k: v[:2] for k, v in rows.items()}), repo / "test-00000-of-00001.parquet")
    source = SourceSpec(
        "hub", "hub", path=str(tmp_path / "org__dataset"), split="train", text_column="text", language_column="lang"
    )
    data, loaded = _load(source, streaming)
    assert len(loaded) == 2 * N
    assert Counter(bool(en) for _, en, _ in loaded) == {True: N, False: N}
    assert sorted(zh[0] for _, _, zh in loaded if zh) == sorted(_captions(i)[1] for i in range(N))
    if not streaming:
        assert data.quality_reports()["hub"].skipped == {"unknown_language": 1}


def test_image_only_and_text_only_sources_load_for_stage_one(tmp_path, image_bytes):
    _write_images(tmp_path / "images_only", image_bytes)
    images = load_image_text_data(
        DataSpec(sources=[SourceSpec("imgs", "imagefolder", path=str(tmp_path / "images_only"))])
    )
    assert images.modality == "images"
    assert images.dataset.column_names == ["image"] and len(images.dataset) == N

    (tmp_path / "texts.jsonl").write_text(
        "".join(json.dumps({"en": e, "zh": z}, ensure_ascii=False) + "\n" for e, z in map(_captions, range(N)))
    )
    source = SourceSpec(
        "txt",
        "json",
        data_files=[str(tmp_path / "texts.jsonl")],
        image_column=None,
        caption_columns={"en": "en", "zh": "zh"},
    )
    texts = load_image_text_data(DataSpec(sources=[source]))
    assert texts.modality == "texts"
    assert sorted(texts.dataset.column_names) == sorted(CAPTION_COLUMNS.values()) and len(texts.dataset) == N


def _source_of_size(tmp_path, name, size, image_bytes):
    folder = tmp_path / name
    _write_images(folder, image_bytes, count=1)
    rows = "".join(json.dumps({"file_name": "0.png", "en": f"{name} {i}"}) + "\n" for i in range(size))
    (folder / "metadata.jsonl").write_text(rows)
    return SourceSpec(name, "imagefolder", path=str(folder), caption_columns={"en": "en"})


@pytest.mark.parametrize("streaming", [False, True], ids=["map-style", "streaming"])
def test_sources_mix_in_proportion_to_their_weights(tmp_path, image_bytes, streaming):
    big = _source_of_size(tmp_path, "big", 300, image_bytes)
    big.weight = 3.0
    small = _source_of_size(tmp_path, "small", 300, image_bytes)
    spec = DataSpec(sources=[big, small], streaming=streaming, stopping_strategy="first_exhausted", seed=1)
    mixed = load_image_text_data(spec).dataset
    names = Counter(sample["captions_en"][0].split()[0] for sample in mixed)
    share = names["big"] / (names["big"] + names["small"])
    assert 0.68 < share < 0.82, names


def test_all_exhausted_mixing_sees_every_sample_of_every_source(tmp_path, image_bytes):
    big = _source_of_size(tmp_path, "big", 40, image_bytes)
    small = _source_of_size(tmp_path, "small", 10, image_bytes)
    small.weight = 4.0
    mixed = load_image_text_data(DataSpec(sources=[big, small])).dataset
    seen = {sample["captions_en"][0] for sample in mixed}
    assert seen == {f"big {i}" for i in range(40)} | {f"small {i}" for i in range(10)}


def test_a_missing_configured_column_is_named_at_start_up(tmp_path, image_bytes):
    folder = tmp_path / "folder"
    _write_images(folder, image_bytes, count=1)
    (folder / "metadata.jsonl").write_text(json.dumps({"file_name": "0.png", "caption": "x"}) + "\n")
    source = SourceSpec("nozh", "imagefolder", path=str(folder), caption_columns={"en": "caption", "zh": "caption_zh"})
    for streaming in (False, True):
        with pytest.raises(ValueError, match=r"'nozh'.*\['caption_zh'\] not found"):
            load_image_text_data(DataSpec(sources=[source], streaming=streaming))
