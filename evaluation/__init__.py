"""Zero-shot classification (ELEVATER metrics, English and Chinese prompts) and image-text retrieval for CLIP-like
models, with teacher-vs-student reports. See ``docs/evaluation.md``."""

from evaluation.metrics import compute_classification_metrics
from evaluation.prompts import ClassPrompts, PromptCatalog, default_catalog
from evaluation.report import build_report, write_report
from evaluation.results import EvaluationResults, read_results, write_results
from evaluation.retrieval import evaluate_retrieval
from evaluation.tasks import RetrievalTask, ZeroShotTask
from evaluation.zero_shot import ZeroShotClassifier, evaluate_zero_shot

__all__ = [
    "ClassPrompts",
    "EvaluationResults",
    "PromptCatalog",
    "RetrievalTask",
    "ZeroShotClassifier",
    "ZeroShotTask",
    "build_report",
    "compute_classification_metrics",
    "default_catalog",
    "evaluate_retrieval",
    "evaluate_zero_shot",
    "read_results",
    "write_report",
    "write_results",
]
