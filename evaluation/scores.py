"""Typed results of evaluating one model on one task in one language (what `evaluate_task` returns)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TaskScore:
    """One model on one task in one language.

    Attributes:
        task / language: what was evaluated.
        metric: the task's metric, e.g. "accuracy", "mean-per-class", "mean_recall".
        score: the value of `metric`, in [0, 1].
        scores: every metric computed (top-1 / top-5 accuracy, each Recall@K, ...), in [0, 1].
        num_images: images scored.
    """

    task: str
    language: str
    metric: str
    score: float
    scores: dict[str, float]
    num_images: int


@dataclass
class ZeroShotScore(TaskScore):
    """A zero-shot classification score, with the top-1 class id of each image (in dataset order)."""

    num_classes: int
    predictions: list[int]


@dataclass
class RetrievalScore(TaskScore):
    """An image-text retrieval score; `images_without_caption` images are left out of image->text recall."""

    num_captions: int
    images_without_caption: int
