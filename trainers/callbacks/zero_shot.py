"""Zero-shot classification in English and Chinese at every evaluation of a training run, as a `TrainerCallback`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from dcclip.evaluation.embeddings import eval_mode
from dcclip.evaluation.task_evaluation import evaluate_task
from dcclip.evaluation.tasks import ZeroShotTask, load_builtin_benchmark
from dcclip.languages import LANGUAGES

logger = logging.getLogger(__name__)


class ZeroShotEvaluationCallback(TrainerCallback):
    """After each `Trainer.evaluate`, scores the model zero-shot on `tasks` in every language of `languages`.

    Adds `eval_zero_shot_<task>_<language>` (the task's ELEVATER metric) and `eval_zero_shot_<language>` (mean over
    tasks) to the evaluation metrics (so `metric_for_best_model` can use them) and to `state.log_history`
    (`trainer_state.json`). Under DeepSpeed ZeRO-3 every rank holds a shard of the weights, so every rank runs the
    evaluation; the scores are the same on each.

    Args:
        tasks: zero-shot tasks (e.g. from `evaluation.tasks.load_builtin_benchmark`).
        processor: the student's processor.
        languages: prompt languages to score, each must be among every task's languages.
        batch_size: images per forward pass.
    """

    def __init__(
        self, tasks: Sequence[ZeroShotTask], processor, languages: Sequence[str] = LANGUAGES, batch_size: int = 64
    ):
        if not tasks:
            raise ValueError("ZeroShotEvaluationCallback needs at least one task")
        for task in tasks:
            missing = [language for language in languages if language not in task.languages]
            if missing:
                raise ValueError(f"zero-shot task {task.name!r} has no prompts in {missing}; it has {task.languages}")
        self.tasks = list(tasks)
        self.processor = processor
        self.languages = list(languages)
        self.batch_size = batch_size

    @classmethod
    def from_benchmark(
        cls, root: str | Path, processor, languages: Sequence[str] = LANGUAGES, task_names: list[str] | None = None
    ) -> ZeroShotEvaluationCallback:
        """The tasks of a built-in benchmark folder (imagefolder + `tasks.json`)."""
        return cls(load_builtin_benchmark(root, languages, task_names), processor, languages)

    def evaluate(self, model) -> dict[str, float]:
        """`zero_shot_<task>_<language>` and `zero_shot_<language>` scores of `model` (left in eval mode)."""
        scores: dict[str, float] = {}
        model.eval()
        for task in self.tasks:
            for language, result in evaluate_task(model, self.processor, task, self.languages, self.batch_size).items():
                scores[f"zero_shot_{task.name}_{language}"] = result.score
        for language in self.languages:
            per_task = [scores[f"zero_shot_{task.name}_{language}"] for task in self.tasks]
            scores[f"zero_shot_{language}"] = sum(per_task) / len(per_task)
        return scores

    def on_evaluate(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model=None, metrics=None, **kwargs
    ):
        with eval_mode(model):
            scores = {f"eval_{name}": value for name, value in self.evaluate(model).items()}
        if metrics is not None:
            metrics.update(scores)
        state.log_history.append({**scores, "step": state.global_step})
        if state.is_world_process_zero:
            logger.info("zero-shot at step %d: %s", state.global_step, {k: round(v, 4) for k, v in scores.items()})
