"""A saved DC-CLIP folder loads as a Hub user would load it: AutoModel / AutoProcessor / pipeline with
trust_remote_code, in a Python process where this project is not importable."""

import json

import pytest
import torch
from safetensors.torch import load_file

CHECK_EMBEDDINGS = """
import json, sys, torch
from transformers import AutoModel, AutoProcessor
from PIL import Image
model = AutoModel.from_pretrained("saved", trust_remote_code=True).eval()
processor = AutoProcessor.from_pretrained("saved", trust_remote_code=True)
images = [Image.open(f"img{i}.png") for i in range(3)]
batch = processor(text=TEXTS, images=images, return_tensors="pt", padding=True)
with torch.no_grad():
    image = model.get_image_features(batch["pixel_values"]).pooler_output
    text = model.get_text_features(batch["input_ids"], batch["attention_mask"]).pooler_output
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
json.dump({"image": image.tolist(), "text": text.tolist()}, open("remote.json", "w"))
"""

TEXTS = ["a photo of a red circle", "一张蓝色正方形的照片", "a cat and a dog"]


@pytest.mark.parametrize("preset", ["tiny", "tiny-vit"])
def test_saved_folder_gives_identical_embeddings_without_this_project(
    preset, make_tiny_model, tiny_processor, random_images, tmp_path, run_without_project
):
    model = make_tiny_model(preset)
    model.save_pretrained(tmp_path / "saved")
    tiny_processor.save_pretrained(tmp_path / "saved")
    for i, image in enumerate(random_images):
        image.save(tmp_path / f"img{i}.png")
    batch = tiny_processor(text=TEXTS, images=random_images, return_tensors="pt", padding=True)
    with torch.no_grad():
        image = model.get_image_features(batch["pixel_values"]).pooler_output
        text = model.get_text_features(batch["input_ids"], batch["attention_mask"]).pooler_output

    result = run_without_project(f"TEXTS = {TEXTS!r}\n" + CHECK_EMBEDDINGS, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    remote = json.loads((tmp_path / "remote.json").read_text())
    assert (torch.tensor(remote["image"]) - image).abs().max() < 1e-5
    assert (torch.tensor(remote["text"]) - text).abs().max() < 1e-5


def test_saved_folder_holds_safetensors_remote_code_and_auto_map(make_tiny_model, tiny_processor, tmp_path):
    make_tiny_model("tiny").save_pretrained(tmp_path)
    tiny_processor.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"]["AutoModel"] == "modeling_dcclip.DCCLIPModel"
    assert config["auto_map"]["AutoModelForZeroShotImageClassification"] == "modeling_dcclip.DCCLIPModel"
    assert json.loads((tmp_path / "processor_config.json").read_text())["auto_map"]["AutoProcessor"] == (
        "processing_dcclip.DCCLIPProcessor"
    )
    for name in ("configuration_dcclip.py", "modeling_dcclip.py", "processing_dcclip.py", "tokenizer.json"):
        assert (tmp_path / name).is_file(), name
    assert not list(tmp_path.glob("*.bin")), "weights must be safetensors only"
    assert "logit_scale" in load_file(tmp_path / "model.safetensors")


ZERO_SHOT_PIPELINE = """
import json
from PIL import Image
from transformers import pipeline
classifier = pipeline("zero-shot-image-classification", model="saved", trust_remote_code=True)
image = Image.open("img0.png")
en = classifier(image, candidate_labels=["red circle", "blue square", "cat"])
zh = classifier(image, candidate_labels=["红色圆形", "蓝色正方形", "猫"], hypothesis_template="一张{}的照片")
json.dump({"en": en, "zh": zh}, open("pipeline.json", "w"), ensure_ascii=False)
"""


def test_zero_shot_pipeline_scores_english_and_chinese_labels(
    make_tiny_model, tiny_processor, random_images, tmp_path, run_without_project
):
    model = make_tiny_model("tiny")
    model.save_pretrained(tmp_path / "saved")
    tiny_processor.save_pretrained(tmp_path / "saved")
    random_images[0].save(tmp_path / "img0.png")
    result = run_without_project(ZERO_SHOT_PIPELINE, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    scores = json.loads((tmp_path / "pipeline.json").read_text())
    assert {r["label"] for r in scores["en"]} == {"red circle", "blue square", "cat"}
    assert {r["label"] for r in scores["zh"]} == {"红色圆形", "蓝色正方形", "猫"}
    for language in ("en", "zh"):
        total = sum(r["score"] for r in scores[language])
        assert abs(total - 1.0) < 1e-4  # a softmax over the candidate labels
        assert all(0.0 <= r["score"] <= 1.0 for r in scores[language])

    # the pipeline's ranking is the model's own ranking for the same prompts
    batch = tiny_processor(text=["一张红色圆形的照片", "一张蓝色正方形的照片", "一张猫的照片"], images=[random_images[0]],
                           return_tensors="pt", padding=True)
    with torch.no_grad():
        probs = model(**batch).logits_per_image.softmax(dim=-1)[0]
    ordered = ["红色圆形", "蓝色正方形", "猫"]
    best = ordered[int(probs.argmax())]
    assert scores["zh"][0]["label"] == best
