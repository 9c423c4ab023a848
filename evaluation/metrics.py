"""Image-classification metrics as the ELEVATER toolkit defines them, computed from class scores.

ELEVATER picks one metric per dataset (its ``TEST.METRIC``; the ``metric`` field of ``elevater_en.json``):

* ``accuracy``: top-1 accuracy.
* ``mean-per-class``: recall averaged over the classes present in the labels (balanced accuracy), each sample
  predicted as its best class *among those present*.
* ``roc_auc``: area under the ROC curve of a binary task, scored with the probability of class 1.
* ``11point_mAP``: multi-label; per class, precision interpolated at recall 0, 0.1, ..., 1, averaged, then
  averaged over the classes that have at least one positive sample.

Both class-wise metrics go through the toolkit's ``vision-evaluation`` package, whose ``calculate_score`` first drops
every class without a test sample (the label matrix's all-zero columns) from the labels *and* from the score columns,
then computes the metric on what is left; the functions here do the same.

ELEVATER feeds its metrics ``softmax(100 * cosine similarity)``; :data:`ELEVATER_LOGIT_SCALE` is that 100.
"""

from __future__ import annotations

import numpy as np

ELEVATER_LOGIT_SCALE = 100.0
ELEVATER_METRICS = ("accuracy", "mean-per-class", "roc_auc", "11point_mAP")
MULTILABEL_METRICS = ("11point_mAP",)


def top_k_accuracy(labels: np.ndarray, scores: np.ndarray, k: int = 1) -> float:
    """Share of samples whose label is among the ``k`` highest-scoring classes.

    Args:
        labels: class ids, shape (N,).
        scores: class scores or probabilities, shape (N, C).
        k: how many top classes count as a hit.
    """
    labels, scores = _check_multiclass(labels, scores)
    if not 1 <= k <= scores.shape[1]:
        raise ValueError(f"top_k_accuracy: k={k} must lie in [1, number of classes={scores.shape[1]}]")
    # Stable sort on negated scores: ties go to the lower class id, like argmax.
    top_k = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top_k == labels[:, None], axis=1)))


def mean_per_class_accuracy(labels: np.ndarray, scores: np.ndarray) -> float:
    """Top-1 recall of each class that occurs in ``labels``, averaged over those classes (balanced accuracy), as
    ELEVATER's toolkit computes it.

    Classes without a sample are left out twice: they have no recall to average, and their score columns are dropped
    before the argmax, so each sample is predicted as its highest-scoring class among the classes present in
    ``labels``. (A sample whose overall best class has no test sample is therefore scored by its runner-up.)
    """
    labels, scores = _check_multiclass(labels, scores)
    present = np.unique(labels)
    predictions = present[np.argmax(scores[:, present], axis=1)]
    recalls = [np.mean(predictions[labels == c] == c) for c in present]
    return float(np.mean(recalls))


def binary_roc_auc(labels: np.ndarray, positive_scores: np.ndarray) -> float:
    """ROC-AUC of a binary task: the probability that a random positive outranks a random negative (ties count 1/2).

    Args:
        labels: 0/1 labels, shape (N,).
        positive_scores: score of class 1 per sample, shape (N,).
    """
    labels = np.asarray(labels).reshape(-1)
    positive_scores = np.asarray(positive_scores, dtype=np.float64).reshape(-1)
    if labels.shape != positive_scores.shape:
        raise ValueError(f"binary_roc_auc: {labels.shape[0]} labels but {positive_scores.shape[0]} scores")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"binary_roc_auc: labels must be 0 or 1, got values {sorted(set(labels.tolist()))}")
    num_positive = int(labels.sum())
    num_negative = labels.size - num_positive
    if num_positive == 0 or num_negative == 0:
        raise ValueError("binary_roc_auc: ROC-AUC needs at least one positive and one negative sample")
    # Mann-Whitney U from average ranks (tied scores share their mean rank).
    order = np.argsort(positive_scores, kind="stable")
    _, first_index, counts = np.unique(positive_scores[order], return_index=True, return_counts=True)
    ranks = np.empty(labels.size)
    ranks[order] = np.repeat(first_index + (counts + 1) / 2.0, counts)
    positive_rank_sum = ranks[labels == 1].sum()
    return float((positive_rank_sum - num_positive * (num_positive + 1) / 2.0) / (num_positive * num_negative))


def interpolated_precision(targets: np.ndarray, scores: np.ndarray, num_points: int = 11) -> np.ndarray:
    """Precision of one class interpolated at ``num_points`` recall levels 1, ..., 0 (max precision at recall >= r).

    The precision-recall curve is taken as scikit-learn's ``precision_recall_curve`` returns it, which is what
    ELEVATER's ``vision-evaluation`` package reads: one point per distinct score threshold plus the end point
    (recall 0, precision 1). That end point makes the value at recall 0 always 1.
    """
    targets = np.asarray(targets).reshape(-1).astype(bool)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    num_positive = int(targets.sum())
    if num_positive == 0:
        raise ValueError("interpolated_precision: the class has no positive sample, so recall is undefined")
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_targets = scores[order], targets[order]
    # Last index of each run of equal scores: one curve point per distinct threshold.
    threshold_ends = np.r_[np.nonzero(np.diff(sorted_scores))[0], sorted_scores.size - 1]
    true_positives = np.cumsum(sorted_targets)[threshold_ends]
    precision = true_positives / (threshold_ends + 1)
    recall = true_positives / num_positive
    precision = np.r_[precision, 1.0]
    recall = np.r_[recall, 0.0]
    levels = np.linspace(1.0, 0.0, num_points)
    return np.array([precision[recall >= level].max(initial=0.0) for level in levels])


def eleven_point_mean_average_precision(targets: np.ndarray, scores: np.ndarray) -> float:
    """11-point interpolated average precision per class, averaged over the classes that have a positive sample
    (PASCAL VOC 2007 style), as ELEVATER's toolkit computes it: a class without positives has no recall, so it is left
    out of the mean.

    Args:
        targets: multi-hot labels, shape (N, C).
        scores: class scores or probabilities, shape (N, C).

    Raises:
        ValueError: no class has a positive sample (the toolkit reports 0.0 there; here it is an error).
    """
    targets = np.asarray(targets)
    scores = np.asarray(scores, dtype=np.float64)
    if targets.ndim != 2 or targets.shape != scores.shape:
        raise ValueError(
            f"eleven_point_mean_average_precision: targets {targets.shape} and scores {scores.shape} must both be (N, C)"
        )
    with_positives = [c for c in range(targets.shape[1]) if targets[:, c].any()]
    if not with_positives:
        raise ValueError("eleven_point_mean_average_precision: no class has a positive sample")
    per_class = [interpolated_precision(targets[:, c], scores[:, c]).mean() for c in with_positives]
    return float(np.mean(per_class))


def compute_classification_metrics(metric: str, labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """All scores ELEVATER reports for one dataset: ``score`` (its metric), plus top-1 and, above 5 classes, top-5.

    Args:
        metric: one of :data:`ELEVATER_METRICS`.
        labels: class ids (N,), or multi-hot (N, C) for ``11point_mAP``.
        probabilities: class probabilities (N, C), i.e. ``softmax(ELEVATER_LOGIT_SCALE * cosine similarity)``.

    Returns:
        ``{"score": ..., <metric>: ..., "accuracy_top1": ..., "accuracy_top5": ...}``; multi-label tasks get
        ``score`` and ``11point_mAP`` only.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if metric == "11point_mAP":
        value = eleven_point_mean_average_precision(labels, probabilities)
        return {"score": value, metric: value}
    if metric == "accuracy":
        value = top_k_accuracy(labels, probabilities, k=1)
    elif metric == "mean-per-class":
        value = mean_per_class_accuracy(labels, probabilities)
    elif metric == "roc_auc":
        if probabilities.ndim != 2 or probabilities.shape[1] != 2:
            raise ValueError(f"roc_auc is defined here for binary tasks only; got scores of shape {probabilities.shape}")
        value = binary_roc_auc(labels, probabilities[:, 1])
    else:
        raise ValueError(f"unknown metric {metric!r}; expected one of {ELEVATER_METRICS}")
    scores = {"score": value, metric: value, "accuracy_top1": top_k_accuracy(labels, probabilities, k=1)}
    if probabilities.shape[1] > 5:
        scores["accuracy_top5"] = top_k_accuracy(labels, probabilities, k=5)
    return scores


def _check_multiclass(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    scores = np.asarray(scores)
    if labels.ndim != 1:
        raise ValueError(f"expected class ids of shape (N,), got labels of shape {labels.shape}")
    if scores.ndim != 2 or scores.shape[0] != labels.shape[0]:
        raise ValueError(f"expected scores of shape (N={labels.shape[0]}, C), got {scores.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= scores.shape[1]):
        raise ValueError(f"labels must lie in [0, {scores.shape[1] - 1}]; got range [{labels.min()}, {labels.max()}]")
    return labels.astype(np.int64), scores
