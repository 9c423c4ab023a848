"""ELEVATER image-classification metrics as a Hugging Face ``evaluate`` module.

Load it from this folder, no download involved::

    metric = evaluate.load("evaluation/elevater_metric", "mean-per-class")
    metric.compute(predictions=probabilities, references=labels)

The configuration name picks ELEVATER's metric: ``accuracy`` (default), ``mean-per-class``, ``roc_auc`` (binary) or
``11point_mAP`` (multi-label; references are multi-hot rows). ``predictions`` are class-probability rows,
``softmax(100 * cosine similarity)`` as ELEVATER computes them. The maths lives in ``evaluation.metrics``.
"""

import datasets
import evaluate
import numpy as np

from dcclip.evaluation.metrics import ELEVATER_METRICS, MULTILABEL_METRICS, compute_classification_metrics

_DESCRIPTION = __doc__

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of class-probability rows, one per image (length = number of classes).
    references: class id per image; for 11point_mAP a multi-hot row per image.
Returns:
    score: the configured metric; accuracy_top1 (and accuracy_top5 above 5 classes) for single-label metrics.
"""

_CITATION = """\
@inproceedings{li2022elevater,
  title={ELEVATER: A Benchmark and Toolkit for Evaluating Language-Augmented Visual Models},
  author={Li, Chunyuan and Liu, Haotian and Li, Liunian Harold and Zhang, Pengchuan and Aneja, Jyoti and
          Yang, Jianwei and Jin, Ping and Hu, Houdong and Liu, Zicheng and Lee, Yong Jae and Gao, Jianfeng},
  booktitle={NeurIPS Datasets and Benchmarks Track},
  year={2022}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ElevaterMetric(evaluate.Metric):
    """ELEVATER's per-dataset classification metric (chosen by ``config_name``)."""

    def _info(self) -> evaluate.MetricInfo:
        metric = self._metric_name()
        reference = (
            datasets.Sequence(datasets.Value("int64")) if metric in MULTILABEL_METRICS else datasets.Value("int64")
        )
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("float64")), "references": reference}
            ),
        )

    def _metric_name(self) -> str:
        name = "accuracy" if self.config_name in (None, "default") else self.config_name
        if name not in ELEVATER_METRICS:
            raise ValueError(f"unknown ELEVATER metric {name!r}; choose one of {ELEVATER_METRICS}")
        return name

    def _compute(self, predictions, references) -> dict[str, float]:
        return compute_classification_metrics(self._metric_name(), np.asarray(references), np.asarray(predictions))
