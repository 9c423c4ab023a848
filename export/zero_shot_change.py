"""What deployment does to accuracy: zero-shot scores of the PyTorch model and its ONNX fp32 / int8 exports on the
same tasks, English and Chinese, and how often the int8 model predicts the same class as the PyTorch one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from dcclip.evaluation.task_evaluation import evaluate_task
from dcclip.evaluation.tasks import ZeroShotTask

REFERENCE = "pytorch"


def compare_zero_shot(models: Mapping[str, torch.nn.Module], processor, tasks: Sequence[ZeroShotTask],
                      languages: Sequence[str], batch_size: int = 64,
                      show_progress: bool = False) -> dict[str, dict[str, dict[str, float]]]:  # fmt: skip
    """`{task: {language: {model name: score, ..., "<name>_minus_pytorch": change, "<name>_same_prediction": share}}}`.

    Args:
        models: name -> CLIP-like model; must include `"pytorch"`, the reference the others are compared with.
        processor: the processor all the models share (an export keeps the PyTorch model's processor).
        tasks: zero-shot tasks, e.g. from `evaluation.tasks.load_builtin_benchmark`.
        languages: prompt languages, e.g. `("en", "zh")`.
        batch_size: images per forward pass.
        show_progress: a progress bar over the (task, model) evaluations.
    """
    if REFERENCE not in models:
        raise ValueError(f"compare_zero_shot needs a {REFERENCE!r} model as the reference; got {sorted(models)}")
    table: dict[str, dict[str, dict[str, float]]] = {}
    bar = tqdm(total=len(tasks) * len(models), desc="zero-shot check", unit="model", disable=not show_progress)
    for task in tasks:
        results = {}
        for name, model in models.items():
            bar.set_postfix_str(f"{task.name}, {name}")
            results[name] = evaluate_task(model, processor, task, languages, batch_size)
            bar.update()
        table[task.name] = {}
        for language in languages:
            reference = results[REFERENCE][language]
            row: dict[str, float] = {name: result[language].score for name, result in results.items()}
            for name in models:
                if name == REFERENCE:
                    continue
                row[f"{name}_minus_{REFERENCE}"] = results[name][language].score - reference.score
                row[f"{name}_same_prediction"] = float(np.mean(
                    np.asarray(results[name][language].predictions) == np.asarray(reference.predictions)))
            table[task.name][language] = row
    bar.close()
    return table
