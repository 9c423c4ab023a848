"""`evaluate_task`: one model on one task in every language, the single loop behind `dcclip eval` (report), the
training callback (zero-shot at each evaluation) and export's accuracy check."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dcclip.evaluation.embeddings import embed_image_dataset, eval_mode
from dcclip.evaluation.retrieval import evaluate_retrieval
from dcclip.evaluation.scores import TaskScore
from dcclip.evaluation.tasks import RetrievalTask, ZeroShotTask
from dcclip.evaluation.zero_shot import evaluate_zero_shot


def evaluate_task(
    model: torch.nn.Module,
    processor,
    task: ZeroShotTask | RetrievalTask,
    languages: Sequence[str],
    batch_size: int = 64,
    show_progress: bool = False,
) -> dict[str, TaskScore]:
    """Score `model` on `task` in each of `languages`: zero-shot classification or image-text retrieval.

    The image tower runs once per task; each language only embeds its prompts or captions. The model runs in eval
    mode and is left in the mode it had.

    Returns:
        language -> `ZeroShotScore` / `RetrievalScore`, in the order of `languages`.
    """
    evaluate = evaluate_zero_shot if isinstance(task, ZeroShotTask) else evaluate_retrieval
    with eval_mode(model):
        image_embeddings = embed_image_dataset(model, processor, task.images, batch_size, show_progress=show_progress)
        return {
            language: evaluate(
                model, processor, task, language, batch_size, image_embeddings=image_embeddings,
                show_progress=show_progress,
            )  # fmt: skip
            for language in languages
        }
