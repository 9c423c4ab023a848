"""Zero-shot classification (ELEVATER metrics, English and Chinese prompts) and image-text retrieval for CLIP-like
models, with teacher-vs-student reports. See ``docs/evaluation.md``.

The names below are imported on first use, so that importing one light submodule (``dcclip.evaluation.results``,
the command line of ``dcclip eval``) does not import torch.
"""

from __future__ import annotations

import importlib

# public name -> the submodule that defines it
_EXPORTS = {
    "compute_classification_metrics": "metrics",
    "ClassPrompts": "prompts",
    "PromptCatalog": "prompts",
    "default_catalog": "prompts",
    "build_report": "report",
    "write_report": "report",
    "EvaluationResults": "results",
    "read_results": "results",
    "write_results": "results",
    "evaluate_retrieval": "retrieval",
    "RetrievalScore": "scores",
    "TaskScore": "scores",
    "ZeroShotScore": "scores",
    "evaluate_task": "task_evaluation",
    "RetrievalTask": "tasks",
    "ZeroShotTask": "tasks",
    "ZeroShotClassifier": "zero_shot",
    "evaluate_zero_shot": "zero_shot",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
