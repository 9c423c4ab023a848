"""Step 7 of the demo: the final student as a Hub-ready folder (model, processor, remote code, model card), checked
with the publishing code, then reloaded with `AutoModel` in a fresh Python where this project cannot be imported (as on
a Hub user's machine) and compared number for number with the model the evaluation scored."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dcclip.evaluation.results import EvaluationResults
from dcclip.hub.folder_check import FolderReport, check_model_folder
from dcclip.hub.model_card import CardInputs, build_model_card, select_student
from dcclip.trainers.records import read_training_record

# The card's usage snippet needs a repository id; the demo publishes nothing, so it names a placeholder.
PLACEHOLDER_REPO_ID = "your-org/dc-clip-demo"

# Top-level packages of this project, blocked in the reload process.
PROJECT_PACKAGES = ("modeling_dcclip", "trainers", "evaluation", "hub", "export", "dcclip", "demo", "benchmarks")

# Runs in the fresh process: block the project, load the folder as a Hub user would, score the probe.
RELOAD_SCRIPT = """
import json, sys

class BlockProject:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in PROJECT_PACKAGES:
            raise ImportError("this project is blocked in the reload check: " + name)
        return None

sys.meta_path.insert(0, BlockProject())
import torch
from PIL import Image
from transformers import AutoModel, AutoProcessor

request = json.load(open(sys.argv[1], encoding="utf-8"))
model = AutoModel.from_pretrained(request["folder"], trust_remote_code=True).eval()
processor = AutoProcessor.from_pretrained(request["folder"], trust_remote_code=True)
images = [Image.open(path).convert("RGB") for path in request["images"]]
inputs = processor(text=request["texts"], images=images, return_tensors="pt", padding=True, truncation=True)
with torch.no_grad():
    logits = model(**inputs).logits_per_image
json.dump({"model_class": type(model).__module__ + "." + type(model).__name__, "logits_per_image": logits.tolist()},
          open(sys.argv[2], "w", encoding="utf-8"))
"""


@dataclass
class ReloadCheck:
    """How the reloaded folder compared with the evaluated model on the probe (images x class prompts, EN + ZH)."""

    model_class: str  # the class AutoModel built in the fresh process (from the folder's remote code)
    num_images: int
    num_prompts: int
    max_abs_logit_difference: float
    top1_agreement: float  # share of (image, language) pairs with the same predicted class
    accuracy_evaluated: dict[str, float]  # probe accuracy per language, evaluated model
    accuracy_reloaded: dict[str, float]  # the same, reloaded folder
    passed: bool


@dataclass
class ReloadProbe:
    """Images and one prompt per class and language, for the reload comparison."""

    image_paths: list[str]
    prompts: dict[str, list[str]]
    labels: list[int]


def reload_probe(benchmark_split: str | Path, task: str, limit: int) -> ReloadProbe:
    """The first `limit` images of a built-in benchmark split (imagefolder + `tasks.json`, docs/data.md) with
    `task`'s class names in its first template, per language."""
    split = Path(benchmark_split)
    spec = json.loads((split / "tasks.json").read_text(encoding="utf-8"))[task]
    with open(split / "metadata.jsonl", encoding="utf-8") as metadata:
        rows = [json.loads(line) for line, _ in zip(metadata, range(limit))]
    prompts = {
        language: [spec["templates"][language][0].format(name) for name in names]
        for language, names in spec["classnames"].items()
    }
    return ReloadProbe([str(split / row["file_name"]) for row in rows], prompts, [row[spec["label_column"]] for row in rows])


def export_for_hub(
    student_dir: str | Path, results: EvaluationResults, student_name: str, output_dir: str | Path, limitations: str
) -> FolderReport:
    """Copy the student folder (without the Trainer's pickled `training_args.bin`), write its model card from
    `results` with `limitations` (what it was trained on, where it will not work), and run the publishing check on
    the result (raises `FolderCheckError` listing every problem)."""
    output_dir = Path(output_dir)
    if output_dir.exists():
        shutil.rmtree(output_dir)
    shutil.copytree(student_dir, output_dir, ignore=shutil.ignore_patterns("training_args.bin"))
    report = check_model_folder(output_dir, require_card=False)
    card = build_model_card(
        CardInputs(
            repo_id=PLACEHOLDER_REPO_ID,
            folder=report,
            results=results,
            student=select_student(results, report, student_name),
            training=read_training_record(output_dir),
            limitations=limitations,
        )
    )
    card.save(output_dir / "README.md")
    return check_model_folder(output_dir, require_card=True)


def probe_logits(model: torch.nn.Module, processor, image_paths: list[str], texts: list[str]) -> np.ndarray:
    """`logits_per_image` of `model` for the probe images against the probe texts, in this process."""
    images = [Image.open(path).convert("RGB") for path in image_paths]
    inputs = processor(text=texts, images=images, return_tensors="pt", padding=True, truncation=True)
    device = next(model.parameters()).device
    with torch.no_grad():
        logits = model(**{key: value.to(device) for key, value in inputs.items()}).logits_per_image
    return logits.float().cpu().numpy()


def check_reload(
    folder: str | Path,
    evaluated_model: torch.nn.Module,
    processor,
    image_paths: list[str],
    prompts: dict[str, list[str]],
    labels: list[int],
    work_dir: str | Path,
    tolerance: float = 1e-4,
) -> ReloadCheck:
    """Reload `folder` with `AutoModel`/`AutoProcessor(trust_remote_code=True)` in a fresh Python without this
    project and compare its logits on the probe with `evaluated_model`'s.

    Args:
        folder: the Hub-ready folder.
        evaluated_model / processor: the model the evaluation scored, and its processor.
        image_paths: probe images.
        prompts: language -> one prompt per class (same classes, same order, in every language).
        labels: the class of each probe image.
        work_dir: scratch folder (request, answer, the remote-code module cache).
        tolerance: largest accepted absolute logit difference.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    languages = list(prompts)
    texts = [text for language in languages for text in prompts[language]]
    request, answer = work_dir / "request.json", work_dir / "answer.json"
    request.write_text(json.dumps({"folder": str(Path(folder).resolve()), "images": image_paths, "texts": texts}), encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["HF_MODULES_CACHE"] = str((work_dir / "hf_modules").resolve())
    script = f"PROJECT_PACKAGES = {PROJECT_PACKAGES!r}\n" + RELOAD_SCRIPT
    # -I: isolated mode (no current directory or user site on sys.path); the editable install is blocked by the finder.
    completed = subprocess.run(
        [sys.executable, "-I", "-c", script, str(request), str(answer)], cwd=work_dir, env=env, capture_output=True, text=True
    )
    if completed.returncode != 0:
        raise RuntimeError(f"reloading {folder} with AutoModel in a fresh process failed:\n{completed.stderr[-4000:]}")
    reloaded = json.loads(answer.read_text(encoding="utf-8"))
    reloaded_logits = np.asarray(reloaded["logits_per_image"], dtype=np.float32)
    evaluated_logits = probe_logits(evaluated_model, processor, image_paths, texts)

    num_classes = len(prompts[languages[0]])
    truth = np.asarray(labels)
    accuracy_evaluated, accuracy_reloaded, agreement = {}, {}, []
    for index, language in enumerate(languages):
        columns = slice(index * num_classes, (index + 1) * num_classes)
        predicted_evaluated = evaluated_logits[:, columns].argmax(axis=1)
        predicted_reloaded = reloaded_logits[:, columns].argmax(axis=1)
        accuracy_evaluated[language] = float((predicted_evaluated == truth).mean())
        accuracy_reloaded[language] = float((predicted_reloaded == truth).mean())
        agreement.append(predicted_evaluated == predicted_reloaded)
    difference = float(np.abs(reloaded_logits - evaluated_logits).max())
    top1_agreement = float(np.concatenate(agreement).mean())
    return ReloadCheck(
        model_class=reloaded["model_class"],
        num_images=len(image_paths),
        num_prompts=len(texts),
        max_abs_logit_difference=difference,
        top1_agreement=top1_agreement,
        accuracy_evaluated=accuracy_evaluated,
        accuracy_reloaded=accuracy_reloaded,
        passed=difference <= tolerance and top1_agreement == 1.0,
    )


def describe_reload(check: ReloadCheck) -> str:
    """One line: the class loaded, the largest logit difference and whether predictions agree."""
    verdict = "same numbers" if check.passed else "NUMBERS DIFFER"
    return (
        f"{verdict}: {check.model_class} on {check.num_images} images x {check.num_prompts} prompts, max |logit "
        f"difference| {check.max_abs_logit_difference:.1e}, top-1 agreement {100 * check.top1_agreement:.0f}%"
    )
