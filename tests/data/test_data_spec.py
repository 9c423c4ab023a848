"""The data spec: YAML and JSON files, relative paths, and clear errors for specs that cannot work."""

from __future__ import annotations

import json

import pytest

from dcclip.trainers.data import DataSpec, ImageLimits, SourceSpec

YAML_SPEC = """
streaming: true
seed: 7
image_limits: {min_side: 16, max_pixels: 1000000}
sources:
  - name: local
    kind: imagefolder
    path: folder
    caption_columns: {en: caption_en, zh: caption_zh}
    weight: 2
  - name: web
    kind: webdataset
    data_files: shards/*.tar
    image_column: jpg
    caption_columns: {en: txt}
  - name: hub
    kind: hub
    path: some-org/bilingual-pairs
    config: zh
    split: validation
    text_column: caption
    language_column: lang
"""


def test_yaml_spec_parses_with_paths_relative_to_its_folder(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "spec.yaml").write_text(YAML_SPEC, encoding="utf-8")
    spec = DataSpec.from_file(tmp_path / "spec.yaml")
    local, web, hub = spec.sources
    assert spec.streaming and spec.seed == 7 and spec.image_limits == ImageLimits(min_side=16, max_pixels=1_000_000)
    assert local.path == str(tmp_path / "folder") and local.weight == 2
    assert web.data_files == [str(tmp_path / "shards/*.tar")]
    assert (hub.path, hub.config, hub.split) == ("some-org/bilingual-pairs", "zh", "validation")
    assert spec.modality == "pairs"


def test_json_spec_round_trips_through_save(tmp_path):
    spec = DataSpec(
        sources=[SourceSpec("t", "json", data_files="texts.jsonl", image_column=None, caption_columns={"zh": "text"})]
    )
    path = spec.save(tmp_path / "spec.json")
    assert json.loads(path.read_text())["sources"][0]["data_files"] == ["texts.jsonl"]
    loaded = DataSpec.from_file(path)
    assert loaded.sources[0].data_files == [str(tmp_path / "texts.jsonl")] and loaded.modality == "texts"


@pytest.mark.parametrize(
    "source, message",
    [
        (dict(kind="zip", path="x"), "unknown kind 'zip'"),
        (dict(kind="parquet"), "reads `data_files`"),
        (dict(kind="imagefolder"), "needs `path`"),
        (dict(kind="imagefolder", path="x", caption_columns={"fr": "c"}), r"languages \['fr'\]"),
        (dict(kind="hub", path="x", caption_columns={"en": "c"}, text_column="t", language_column="l"), "not both"),
        (dict(kind="hub", path="x", text_column="t"), "go together"),
        (dict(kind="hub", path="x", image_column=None), "nothing to load"),
        (dict(kind="hub", path="x", weight=0), "weight must be positive"),
    ],
)
def test_invalid_sources_are_rejected_with_the_reason(source, message):
    with pytest.raises(ValueError, match=message):
        SourceSpec(name="s", **source)


def test_sources_of_different_modalities_cannot_share_a_spec():
    pairs = SourceSpec("pairs", "imagefolder", path="a", caption_columns={"en": "c"})
    images = SourceSpec("images", "imagefolder", path="b")
    with pytest.raises(ValueError, match="share a modality"):
        DataSpec(sources=[pairs, images])


def test_unknown_spec_keys_and_duplicate_names_are_rejected():
    with pytest.raises(ValueError, match=r"unknown keys \['shuffle'\]"):
        DataSpec.from_dict({"sources": [{"name": "a", "kind": "hub", "path": "x"}], "shuffle": True})
    with pytest.raises(ValueError, match="unique"):
        DataSpec(sources=[SourceSpec("a", "hub", path="x"), SourceSpec("a", "hub", path="y")])


def test_webdataset_brace_ranges_expand_with_their_zero_padding():
    source = SourceSpec(
        "web", "webdataset", data_files=["a/{008..010}.tar", "b/x{1..2}-{0..1}.tar"], image_column="jpg"
    )
    assert source.data_files == [
        "a/008.tar",
        "a/009.tar",
        "a/010.tar",
        "b/x1-0.tar",
        "b/x1-1.tar",
        "b/x2-0.tar",
        "b/x2-1.tar",
    ]
    with pytest.raises(ValueError, match="runs backwards"):
        SourceSpec("web", "webdataset", data_files="{5..1}.tar")
