"""Zero-shot classifiers for all 20 ELEVATER datasets (English) and, from elevater_zh.json's Chinese templates with the
project's own Chinese names, for every dataset that has them, on a tiny student."""

from __future__ import annotations

import pytest
import torch

from dcclip.evaluation.builtin_prompts import BUILTIN_PROMPTS
from dcclip.evaluation.prompts import default_catalog
from dcclip.evaluation.zero_shot import ZeroShotClassifier



@pytest.fixture(scope="module")
def student_and_processor(tiny_tokenizer):
    from modeling_dcclip import DCCLIPConfig, DCCLIPModel, DCCLIPProcessor, make_image_processor

    torch.manual_seed(0)
    model = DCCLIPModel(DCCLIPConfig.from_preset("tiny", vocab_size=len(tiny_tokenizer))).eval()
    return model, DCCLIPProcessor(image_processor=make_image_processor(32), tokenizer=tiny_tokenizer)


def assert_unit_class_embeddings(classifier: ZeroShotClassifier, num_classes: int) -> None:
    embeddings = classifier.class_embeddings
    assert embeddings.shape == (num_classes, 32)
    assert torch.isfinite(embeddings).all()
    torch.testing.assert_close(embeddings.norm(dim=-1), torch.ones(num_classes))


def test_english_classifiers_for_all_20_elevater_datasets(student_and_processor, elevater_metadata):
    model, processor = student_and_processor
    elevater_en = elevater_metadata.en
    assert len(elevater_en) == 20
    catalog = default_catalog({"en": [elevater_metadata.en_path]})
    for dataset, entry in elevater_en.items():
        prompts = catalog.lookup(dataset, "en")
        assert prompts.classnames == entry["classnames"]
        classifier = ZeroShotClassifier(model, processor, prompts, text_batch_size=4096)
        assert_unit_class_embeddings(classifier, entry["num_classes_declared"])


def test_chinese_classifiers_from_elevater_zh_templates_and_project_names(student_and_processor, elevater_metadata):
    model, processor = student_and_processor
    elevater_zh = elevater_metadata.zh
    catalog = default_catalog({"zh": [elevater_metadata.zh_path]})
    with_names = [dataset for dataset in elevater_zh if dataset in BUILTIN_PROMPTS]
    assert len(with_names) >= 9
    for dataset in with_names:
        assert elevater_zh[dataset]["classnames"] is None  # the names can only come from the project
        prompts = catalog.lookup(dataset, "zh")
        assert prompts.templates == elevater_zh[dataset]["templates"]
        classifier = ZeroShotClassifier(model, processor, prompts, text_batch_size=4096)
        assert_unit_class_embeddings(classifier, elevater_zh[dataset]["num_classes_expected"])
