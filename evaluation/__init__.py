"""Zero-shot classification (ELEVATER metrics, English and Chinese prompts) and image-text retrieval for CLIP-like
models, with teacher-vs-student reports. See ``docs/evaluation.md``."""

from dcclip.evaluation.metrics import compute_classification_metrics
from dcclip.evaluation.prompts import ClassPrompts, PromptCatalog, default_catalog
from dcclip.evaluation.report import build_report, write_report
from dcclip.evaluation.results import EvaluationResults, read_results, write_results
from dcclip.evaluation.retrieval import evaluate_retrieval
from dcclip.evaluation.scores import RetrievalScore, TaskScore, ZeroShotScore
from dcclip.evaluation.task_evaluation import evaluate_task
from dcclip.evaluation.tasks import RetrievalTask, ZeroShotTask
from dcclip.evaluation.zero_shot import ZeroShotClassifier, evaluate_zero_shot

__all__ = [
    "ClassPrompts",
    "EvaluationResults",
    "PromptCatalog",
    "RetrievalScore",
    "RetrievalTask",
    "TaskScore",
    "ZeroShotClassifier",
    "ZeroShotScore",
    "ZeroShotTask",
    "build_report",
    "compute_classification_metrics",
    "default_catalog",
    "evaluate_retrieval",
    "evaluate_task",
    "evaluate_zero_shot",
    "read_results",
    "write_report",
    "write_results",
]
