"""Zero-shot image classification with a CLIP-like model: prompts -> per-class text embeddings -> image scores."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dcclip.evaluation.embeddings import embed_image_dataset, embed_images, embed_text_list, eval_mode
from dcclip.evaluation.metrics import ELEVATER_LOGIT_SCALE, compute_classification_metrics
from dcclip.evaluation.prompts import ClassPrompts
from dcclip.evaluation.scores import ZeroShotScore
from dcclip.evaluation.tasks import ZeroShotTask


class ZeroShotClassifier:
    """Scores images against class names, each class embedded as the mean of its prompt embeddings.

    Every class name is put into every template; the prompts' unit-length text embeddings are averaged per class and
    normalised again. The class embeddings are computed on first use and cached, so scoring more images costs only
    their image embeddings. Works for any model with ``get_image_features`` / ``get_text_features`` (our DCCLIPModel,
    transformers' AltCLIPModel), each with its own processor.

    Args:
        model: the CLIP-like model (eval mode is the caller's business; no gradients are taken).
        processor: turns ``text=`` into ``input_ids``/``attention_mask`` and ``images=`` into ``pixel_values``.
        prompts: class names and templates of one language.
        text_batch_size: prompts per text forward pass.
        logit_scale: multiplies cosine similarities before the softmax; ELEVATER uses 100.
        show_progress: show a progress bar while embedding the prompts.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        processor,
        prompts: ClassPrompts,
        text_batch_size: int = 256,
        logit_scale: float = ELEVATER_LOGIT_SCALE,
        show_progress: bool = False,
    ):
        self.model = model
        self.processor = processor
        self.prompts = prompts
        self.text_batch_size = text_batch_size
        self.logit_scale = logit_scale
        self.show_progress = show_progress
        self._class_embeddings: torch.Tensor | None = None

    @property
    def num_classes(self) -> int:
        return len(self.prompts.classnames)

    @property
    def class_embeddings(self) -> torch.Tensor:
        """Unit-length class embeddings, shape (C, D); computed once, then cached."""
        if self._class_embeddings is None:
            self._class_embeddings = self._embed_classes()
        return self._class_embeddings

    def _embed_classes(self) -> torch.Tensor:
        # All C x T prompts go through the text tower in large batches, not one class at a time.
        texts = [prompt for classname in self.prompts.classnames for prompt in self.prompts.prompts_for(classname)]
        prompt_embeddings = embed_text_list(self.model, self.processor, texts, self.text_batch_size, self.show_progress)
        per_class = prompt_embeddings.view(self.num_classes, len(self.prompts.templates), -1).mean(dim=1)
        return F.normalize(per_class, dim=-1)

    def logits(self, image_embeddings: torch.Tensor) -> torch.Tensor:
        """``logit_scale`` x cosine similarity of unit-length image embeddings (N, D) to each class: (N, C)."""
        class_embeddings = self.class_embeddings
        return self.logit_scale * image_embeddings.to(class_embeddings.device) @ class_embeddings.T

    def probabilities(self, image_embeddings: torch.Tensor) -> torch.Tensor:
        """Softmax over classes of :meth:`logits`: (N, C)."""
        return self.logits(image_embeddings).softmax(dim=-1)

    def classify(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Class probabilities (N, C) of a batch of PIL images."""
        return self.probabilities(embed_images(self.model, self.processor, images))


def score_zero_shot(
    classifier: ZeroShotClassifier, image_embeddings: torch.Tensor, task: ZeroShotTask
) -> tuple[dict[str, float], np.ndarray]:
    """ELEVATER scores of ``task`` from precomputed image embeddings, and the top-1 class of each image."""
    probabilities = classifier.probabilities(image_embeddings).cpu().numpy()
    return compute_classification_metrics(task.metric, task.labels, probabilities), probabilities.argmax(axis=1)


def evaluate_zero_shot(
    model: torch.nn.Module,
    processor,
    task: ZeroShotTask,
    language: str,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    image_embeddings: torch.Tensor | None = None,
    show_progress: bool = False,
) -> ZeroShotScore:
    """Zero-shot classification of ``task`` in ``language``.

    Args:
        model: CLIP-like model; moved to ``device`` when one is given, run in eval mode, and left in the mode it had.
        processor: the model's processor.
        task: images, labels, prompts and metric.
        language: a language of ``task.prompts`` (``"en"`` / ``"zh"``).
        batch_size: images per forward pass.
        device: where to run; ``None`` keeps the model where it is.
        image_embeddings: unit-length image embeddings of ``task.images`` when already computed (for example by the
            evaluation of another language), to skip the image tower.
        show_progress: show progress bars.

    Returns:
        a `ZeroShotScore`: ``score`` is the task's metric, ``scores`` all metrics (see
        :func:`compute_classification_metrics`), ``predictions`` the top-1 class id per image.
    """
    if language not in task.prompts:
        raise KeyError(f"task {task.name!r} has no {language!r} prompts; it has {task.languages}")
    if device is not None:
        model.to(device)
    with eval_mode(model):
        if image_embeddings is None:
            image_embeddings = embed_image_dataset(model, processor, task.images, batch_size, show_progress=show_progress)
        classifier = ZeroShotClassifier(model, processor, task.prompts[language], show_progress=show_progress)
        scores, predictions = score_zero_shot(classifier, image_embeddings, task)
    return ZeroShotScore(
        task=task.name,
        language=language,
        metric=task.metric,
        score=scores["score"],
        scores=scores,
        num_images=len(task.images),
        num_classes=task.num_classes,
        predictions=predictions.tolist(),
    )
