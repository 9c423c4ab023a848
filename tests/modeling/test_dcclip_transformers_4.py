"""A DC-CLIP folder saved with transformers 5 loads for Hub users who still have transformers 4.57: AutoModel,
AutoProcessor and the zero-shot pipeline, in a virtual environment with only torch, transformers 4.57 and pillow where
this project cannot be imported, give the embeddings and scores transformers 5 gives. An older transformers is told
the minimum version.

The environment is built once with pip from the package registry and kept in pytest's cache folder (docs/testing.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

TRANSFORMERS_4_REQUIREMENT = "transformers==4.57.*"
PRESETS = ["tiny", "tiny-vit"]
TEXTS = ["a photo of a red circle", "一张蓝色正方形的照片", "a cat and a dog"]
LABELS = ["红色圆形", "蓝色正方形", "猫"]
TEMPLATE = "一张{}的照片"


@pytest.fixture(scope="session")
def transformers_4_python(request) -> Path:
    """Interpreter of a virtual environment with only torch (the project's version), transformers 4.57 and pillow."""
    requirements = [f"torch=={torch.__version__.split('+')[0]}", TRANSFORMERS_4_REQUIREMENT, "pillow"]
    venv = request.config.cache.mkdir("transformers-4.57-venv")
    python = venv / "bin" / "python"
    complete = venv / "installed-requirements.txt"  # written last, so a half-built environment is rebuilt
    if python.is_file() and complete.is_file() and complete.read_text() == "\n".join(requirements):
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, capture_output=True)
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", *requirements],
        capture_output=True, text=True, timeout=1800,
    )
    if result.returncode != 0:
        pytest.fail(
            f"could not build the transformers 4.57 environment in {venv}: pip could not install {requirements} from "
            f"the package registry (is it reachable?); pip said:\n{result.stderr[-3000:]}"
        )
    complete.write_text("\n".join(requirements))
    return python


LOAD_ON_TRANSFORMERS_4 = """
import json, torch, transformers
from PIL import Image
from transformers import AutoModel, AutoProcessor, pipeline
images = [Image.open(f"img{i}.png") for i in range(3)]
report = {"transformers": transformers.__version__}
for preset in PRESETS:
    model = AutoModel.from_pretrained(preset, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(preset, trust_remote_code=True)
    batch = processor(text=TEXTS, images=images, return_tensors="pt", padding=True)
    with torch.no_grad():
        image = model.get_image_features(pixel_values=batch["pixel_values"]).pooler_output
        text = model.get_text_features(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).pooler_output
    classifier = pipeline("zero-shot-image-classification", model=preset, trust_remote_code=True)
    scores = classifier(images[0], candidate_labels=LABELS, hypothesis_template=TEMPLATE)
    report[preset] = {"image": image.tolist(), "text": text.tolist(), "model_module": type(model).__module__,
                      "scores": {result["label"]: result["score"] for result in scores}}
json.dump(report, open("transformers_4.json", "w"))
"""


def test_a_folder_saved_with_transformers_5_gives_the_same_embeddings_and_scores_on_transformers_4_57(
    transformers_4_python, make_tiny_model, tiny_processor, random_images, tmp_path, run_without_project
):
    expected = {}
    for preset in PRESETS:
        model = make_tiny_model(preset)
        model.save_pretrained(tmp_path / preset)
        tiny_processor.save_pretrained(tmp_path / preset)
        batch = tiny_processor(text=TEXTS, images=random_images, return_tensors="pt", padding=True)
        prompts = tiny_processor(text=[TEMPLATE.format(label) for label in LABELS], images=random_images[:1],
                                 return_tensors="pt", padding=True)
        with torch.no_grad():
            expected[preset] = {
                "image": model.get_image_features(pixel_values=batch["pixel_values"]).pooler_output,
                "text": model.get_text_features(batch["input_ids"], batch["attention_mask"]).pooler_output,
                "scores": model(**prompts).logits_per_image.softmax(dim=-1)[0],
            }
    for i, image in enumerate(random_images):
        image.save(tmp_path / f"img{i}.png")

    code = f"PRESETS, TEXTS, LABELS, TEMPLATE = {PRESETS!r}, {TEXTS!r}, {LABELS!r}, {TEMPLATE!r}\n" + LOAD_ON_TRANSFORMERS_4
    result = run_without_project(code, tmp_path, python=transformers_4_python)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads((tmp_path / "transformers_4.json").read_text())
    assert report["transformers"].startswith("4.57.")
    for preset in PRESETS:
        loaded = report[preset]
        assert loaded["model_module"].startswith("transformers_modules.")  # the folder's remote code
        assert (torch.tensor(loaded["image"]) - expected[preset]["image"]).abs().max() < 1e-5
        assert (torch.tensor(loaded["text"]) - expected[preset]["text"]).abs().max() < 1e-5
        scores = torch.tensor([loaded["scores"][label] for label in LABELS])
        assert (scores - expected[preset]["scores"]).abs().max() < 1e-5


# What transformers < 4.57 reports as its version, without installing one: the version check reads package metadata.
LOAD_AS_TRANSFORMERS_4_56 = """
import importlib.metadata
installed_version = importlib.metadata.version
importlib.metadata.version = lambda name: "4.56.2" if name == "transformers" else installed_version(name)
from transformers import AutoConfig
AutoConfig.from_pretrained("saved", trust_remote_code=True)
"""


def test_an_older_transformers_is_told_the_minimum_version(make_tiny_model, tmp_path, run_without_project):
    make_tiny_model("tiny").save_pretrained(tmp_path / "saved")
    assert json.loads((tmp_path / "saved" / "config.json").read_text())["minimum_transformers_version"] == "4.57.0"

    result = run_without_project(LOAD_AS_TRANSFORMERS_4_56, tmp_path)
    assert result.returncode != 0
    assert "DC-CLIP models need transformers >= 4.57.0" in result.stderr
    assert "found transformers==4.56.2" in result.stderr
