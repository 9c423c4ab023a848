"""Class names and templates: the built-in lists, ELEVATER JSON files, label_cn.txt / class-name files, precedence."""

from __future__ import annotations

import json

import pytest

from dcclip.evaluation.builtin_prompts import BUILTIN_PROMPTS
from dcclip.evaluation.prompts import (
    ClassPrompts,
    PromptCatalog,
    builtin_source,
    classnames_source,
    default_catalog,
    load_elevater_prompt_file,
    read_classnames_file,
)

REQUIRED_BUILTIN = [
    "cifar-10", "mnist", "eurosat_clip", "dtd", "fer-2013", "kitti-distance", "patch-camelyon", "rendered-sst2",
    "hateful-memes",
]  # fmt: skip


def test_builtin_lists_cover_the_required_datasets_in_both_languages():
    for dataset in REQUIRED_BUILTIN:
        assert set(BUILTIN_PROMPTS[dataset]) >= {"en", "zh"}, dataset


def test_builtin_catalog_gives_each_of_the_20_elevater_datasets_the_toolkits_metric(elevater_metadata):
    catalog = default_catalog()  # no metadata file: the built-in source alone
    expected = {dataset: entry["metric"] for dataset, entry in elevater_metadata.en.items()}
    assert len(expected) == 20
    assert {dataset: catalog.metric(dataset) for dataset in expected} == expected


@pytest.mark.parametrize("dataset", sorted(BUILTIN_PROMPTS))
def test_builtin_lists_match_elevater_label_ids(dataset, elevater_metadata):
    entry, reference = BUILTIN_PROMPTS[dataset], elevater_metadata.en[dataset]
    for language in ("en", "zh"):
        names = entry[language]["classnames"]
        assert len(names) == reference["num_classes_declared"], (dataset, language)
        assert len(set(names)) == len(names), f"{dataset} {language}: repeated class names"
        ClassPrompts(names, entry[language]["templates"])  # validates the templates' placeholders


def test_builtin_chinese_names_are_chinese():
    for dataset, entry in BUILTIN_PROMPTS.items():
        if dataset == "mnist":  # digits stay digits
            continue
        for name in entry["zh"]["classnames"]:
            assert any("\u4e00" <= char <= "\u9fff" for char in name), (dataset, name)


def test_chinese_templates_from_elevater_zh_combine_with_builtin_chinese_names(elevater_metadata):
    catalog = default_catalog({"zh": [elevater_metadata.zh_path]})
    prompts = catalog.lookup("cifar-10", "zh")
    zh_file = elevater_metadata.zh
    assert zh_file["cifar-10"]["classnames"] is None
    assert prompts.templates == zh_file["cifar-10"]["templates"]
    assert prompts.classnames == BUILTIN_PROMPTS["cifar-10"]["zh"]["classnames"]


def test_elevater_file_names_and_metric_come_before_builtin_ones(elevater_metadata):
    catalog = default_catalog({"en": [elevater_metadata.en_path]})
    assert catalog.lookup("cifar-10", "en").classnames == elevater_metadata.en["cifar-10"]["classnames"]
    assert catalog.lookup("cifar-10", "en").templates == elevater_metadata.en["cifar-10"]["templates"]
    assert catalog.metric("voc-2007-classification") == "11point_mAP"
    assert catalog.metric("caltech-101") == "mean-per-class"


def test_missing_chinese_names_raise_an_error_naming_dataset_and_language(elevater_metadata):
    catalog = default_catalog({"zh": [elevater_metadata.zh_path]})
    with pytest.raises(KeyError, match="no 'zh' class names for dataset 'caltech-101'"):
        catalog.lookup("caltech-101", "zh")


def test_label_cn_file_reads_line_i_as_class_i(tmp_path):
    path = tmp_path / "label_cn.txt"
    path.write_text("手风琴\n飞机\n\n锚\n", encoding="utf-8")
    assert read_classnames_file(path) == ["手风琴", "飞机", "锚"]


def test_imagenet_style_class_name_files_in_json(tmp_path):
    as_list = tmp_path / "names.json"
    as_list.write_text(json.dumps(["tench", ["goldfish", "Carassius auratus"]]), encoding="utf-8")
    assert read_classnames_file(as_list) == ["tench", "goldfish"]
    as_map = tmp_path / "map.json"
    as_map.write_text(json.dumps({"1": "goldfish", "0": "tench"}), encoding="utf-8")
    assert read_classnames_file(as_map) == ["tench", "goldfish"]
    gapped = tmp_path / "gap.json"
    gapped.write_text(json.dumps({"0": "tench", "2": "shark"}), encoding="utf-8")
    with pytest.raises(ValueError, match="without gaps"):
        read_classnames_file(gapped)


def test_first_source_with_names_wins_and_templates_fall_back_separately():
    catalog = PromptCatalog([classnames_source("dtd", "zh", ["甲"] * 47, "label_cn.txt"), builtin_source()])
    prompts = catalog.lookup("dtd", "zh")
    assert prompts.classnames == ["甲"] * 47
    assert prompts.templates == BUILTIN_PROMPTS["dtd"]["zh"]["templates"]


def test_unknown_dataset_uses_given_names_and_default_templates():
    prompts = default_catalog().lookup("my-photos", "en", classnames=["cat", "dog"])
    assert prompts.classnames == ["cat", "dog"]
    assert prompts.prompts_for("cat")[0] == "a photo of a cat."


def test_templates_without_exactly_one_placeholder_are_rejected():
    with pytest.raises(ValueError, match="exactly one"):
        ClassPrompts(["cat"], ["a photo of a {} and a {}"])


def test_elevater_prompt_file_rejects_unknown_metric(tmp_path):
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps({"x": {"classnames": ["a"], "templates": ["{}"], "metric": "f1"}}), encoding="utf-8")
    with pytest.raises(ValueError, match="unknown metric 'f1'"):
        load_elevater_prompt_file(path, "en")
