"""ELEVATER metrics against values worked out by hand, and the same metrics through `evaluate.load(<folder>)`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dcclip.evaluation.metrics import (
    binary_roc_auc,
    compute_classification_metrics,
    eleven_point_mean_average_precision,
    interpolated_precision,
    mean_per_class_accuracy,
    top_k_accuracy,
)

METRIC_FOLDER = Path(__file__).resolve().parents[2] / "evaluation" / "elevater_metric"


def one_hot_scores(predicted: list[int], num_classes: int) -> np.ndarray:
    """Score rows whose argmax is `predicted`, with a runner-up one class further on."""
    scores = np.full((len(predicted), num_classes), 0.01)
    for row, cls in enumerate(predicted):
        scores[row, cls] = 0.9
        scores[row, (cls + 1) % num_classes] = 0.05
    return scores


def test_top1_accuracy_counts_argmax_hits():
    labels = np.array([0, 1, 2, 1])
    scores = one_hot_scores([0, 2, 2, 1], 3)
    assert top_k_accuracy(labels, scores, k=1) == pytest.approx(3 / 4)


def test_top5_accuracy_counts_labels_among_five_best_classes():
    # 7 classes; image 0's label is ranked 5th (hit), image 1's label is ranked 6th (miss).
    scores = np.array([[0.30, 0.25, 0.20, 0.10, 0.08, 0.05, 0.02], [0.30, 0.25, 0.20, 0.10, 0.08, 0.05, 0.02]])
    labels = np.array([4, 5])
    assert top_k_accuracy(labels, scores, k=5) == pytest.approx(0.5)
    assert top_k_accuracy(labels, scores, k=1) == 0.0


def test_mean_per_class_accuracy_weights_classes_equally_when_unbalanced():
    # class 0: 4 images, 3 right; class 1: 1 image, right; class 2: 1 image, wrong.
    labels = np.array([0, 0, 0, 0, 1, 2])
    scores = one_hot_scores([0, 0, 0, 1, 1, 0], 3)
    assert mean_per_class_accuracy(labels, scores) == pytest.approx((3 / 4 + 1 + 0) / 3)
    assert top_k_accuracy(labels, scores) == pytest.approx(4 / 6)  # plain accuracy differs


def test_mean_per_class_accuracy_predicts_among_classes_with_test_samples_as_elevater_does():
    # 4 classes, but only classes 0 and 2 have test samples. The toolkit drops the score columns of classes 1 and 3
    # before the argmax and averages recall over classes 0 and 2.
    labels = np.array([0, 0, 2])
    scores = np.array(
        [
            [0.70, 0.10, 0.10, 0.10],  # best 0 -> 0: right
            [0.30, 0.60, 0.05, 0.05],  # best overall 1 (no sample); among {0, 2}: 0.30 > 0.05 -> 0: right
            [0.10, 0.10, 0.30, 0.50],  # best overall 3 (no sample); among {0, 2}: 0.30 > 0.10 -> 2: right
        ]
    )
    # recall of class 0 = 2/2, of class 2 = 1/1 -> (1 + 1) / 2 = 1
    assert mean_per_class_accuracy(labels, scores) == pytest.approx(1.0)
    # over all four classes only row 0 is right: top-1 accuracy 1/3 (and recalls 1/2, 0/1 -> 0.25 if averaged)
    assert top_k_accuracy(labels, scores) == pytest.approx(1 / 3)


def test_roc_auc_is_share_of_correctly_ordered_positive_negative_pairs():
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    # pairs (pos, neg): (0.35>0.1) (0.35<0.4) (0.8>0.1) (0.8>0.4) -> 3 of 4
    assert binary_roc_auc(labels, scores) == pytest.approx(0.75)


def test_roc_auc_counts_tied_pairs_as_half():
    labels = np.array([0, 1, 0, 1])
    scores = np.array([0.2, 0.5, 0.5, 0.9])
    # (0.5 vs 0.2)=1, (0.5 vs 0.5)=0.5, (0.9 vs 0.2)=1, (0.9 vs 0.5)=1 -> 3.5 / 4
    assert binary_roc_auc(labels, scores) == pytest.approx(0.875)


def test_roc_auc_rejects_single_class_labels():
    with pytest.raises(ValueError, match="positive and one negative"):
        binary_roc_auc(np.array([1, 1]), np.array([0.2, 0.3]))


def test_eleven_point_precision_of_one_class():
    # ranked targets 1,0,1,0,0 (2 positives): (P=1, R=.5), (P=.5, R=.5), (P=2/3, R=1), (P=.5, R=1), (P=.4, R=1)
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    targets = np.array([1, 0, 1, 0, 0])
    expected = [2 / 3] * 5 + [1.0] * 6  # recall 1.0 ... 0.6 -> 2/3; recall 0.5 ... 0 -> 1
    np.testing.assert_allclose(interpolated_precision(targets, scores), expected)


def test_eleven_point_precision_at_recall_zero_is_one_as_in_elevater():
    # The curve ends at (recall 0, precision 1), as scikit-learn's precision_recall_curve, which ELEVATER reads.
    precision = interpolated_precision(np.array([0, 1]), np.array([0.9, 0.1]))
    np.testing.assert_allclose(precision, [0.5] * 10 + [1.0])
    assert precision.mean() == pytest.approx(6 / 11)


def test_eleven_point_map_averages_classes():
    scores = np.array([[0.9, 0.9], [0.8, 0.1], [0.7, 0.8], [0.6, 0.2], [0.5, 0.3]])
    targets = np.array([[1, 1], [0, 0], [1, 1], [0, 0], [0, 0]])  # class 0 as above (28/33), class 1 perfect (1)
    assert eleven_point_mean_average_precision(targets, scores) == pytest.approx((28 / 33 + 1) / 2)


def test_eleven_point_map_averages_only_classes_with_positives_as_elevater_does():
    # classes 0 and 2 as in the test above (28/33 and 1); class 1 has no positive image, so no recall, and the
    # toolkit leaves it out of the mean whatever its scores
    scores = np.array([[0.9, 0.5, 0.9], [0.8, 0.4, 0.1], [0.7, 0.3, 0.8], [0.6, 0.2, 0.2], [0.5, 0.1, 0.3]])
    targets = np.array([[1, 0, 1], [0, 0, 0], [1, 0, 1], [0, 0, 0], [0, 0, 0]])
    assert eleven_point_mean_average_precision(targets, scores) == pytest.approx((28 / 33 + 1) / 2)


def test_eleven_point_map_without_any_positive_is_an_error():
    with pytest.raises(ValueError, match="no class has a positive sample"):
        eleven_point_mean_average_precision(np.array([[0, 0], [0, 0]]), np.array([[0.5, 0.5], [0.2, 0.8]]))


def test_classification_metrics_add_top5_only_above_five_classes():
    labels = np.array([0, 1])
    six = compute_classification_metrics("accuracy", labels, one_hot_scores([0, 0], 6))
    five = compute_classification_metrics("mean-per-class", labels, one_hot_scores([0, 0], 5))
    assert six == {"score": 0.5, "accuracy": 0.5, "accuracy_top1": 0.5, "accuracy_top5": 1.0}
    assert five == {"score": 0.5, "mean-per-class": 0.5, "accuracy_top1": 0.5}


def test_roc_auc_metric_scores_with_the_probability_of_class_one():
    probabilities = np.array([[0.9, 0.1], [0.6, 0.4], [0.65, 0.35], [0.2, 0.8]])
    scores = compute_classification_metrics("roc_auc", np.array([0, 0, 1, 1]), probabilities)
    assert scores["roc_auc"] == pytest.approx(0.75)
    assert scores["accuracy_top1"] == pytest.approx(0.75)


def test_unknown_metric_and_out_of_range_labels_are_named():
    with pytest.raises(ValueError, match="unknown metric 'f1'"):
        compute_classification_metrics("f1", np.array([0]), np.array([[1.0, 0.0]]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\]"):
        top_k_accuracy(np.array([2]), np.array([[0.5, 0.5]]))


def test_evaluate_module_loads_from_the_local_folder_and_matches_the_functions():
    import evaluate

    labels = [0, 0, 0, 0, 1, 2]
    probabilities = one_hot_scores([0, 0, 0, 1, 1, 0], 3).tolist()
    metric = evaluate.load(str(METRIC_FOLDER), "mean-per-class")
    assert metric.compute(predictions=probabilities, references=labels)["score"] == pytest.approx((3 / 4 + 1) / 3)

    voc = evaluate.load(str(METRIC_FOLDER), "11point_mAP")
    scores = [[0.9, 0.9], [0.8, 0.1], [0.7, 0.8], [0.6, 0.2], [0.5, 0.3]]
    targets = [[1, 1], [0, 0], [1, 1], [0, 0], [0, 0]]
    assert voc.compute(predictions=scores, references=targets)["score"] == pytest.approx((28 / 33 + 1) / 2)
