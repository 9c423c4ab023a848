"""Stage 1's `DistillationTrainer`: a `Trainer` that wires teacher targets, the student's adapted features and the
distillation losses.

The maths lives in `losses/distillation.py`, the adapters in `student/adapters.py`, the teacher in `teacher/`. The
Trainer adds only what stage 1 needs: the loss (`compute_loss`, which stops training on a non-finite loss), per-part
loss logging (`log`), placing the teacher (sharded under ZeRO-3), and the export of the student alone (`save_model`);
checkpoints keep the adapters, and are never written with non-finite weights (`callbacks/finite_training.py`).
"""

from __future__ import annotations

import logging

import torch
from torch.profiler import record_function
from transformers import Trainer

from dcclip.trainers.callbacks.finite_training import FiniteWeightsCheck, check_finite_loss
from dcclip.trainers.callbacks.teacher_frozen import TeacherFrozenCheck
from dcclip.trainers.distillation_config import DistillationConfig
from dcclip.trainers.losses.distillation import distillation_loss_parts
from dcclip.trainers.student.adapters import DistillationPlan
from dcclip.trainers.teacher.model import DistillationTeacher
from dcclip.trainers.teacher.targets import TeacherTargets

logger = logging.getLogger(__name__)


class DistillationTrainer(Trainer):
    """Trains `StudentWithAdapters` to imitate a frozen teacher (live, or read from a teacher cache).

    Args:
        model: the student with its adapters (`student.adapters.StudentWithAdapters`).
        args: a `DistillationConfig`.
        plan: the layer mapping and text comparison mode from `plan_distillation`.
        teacher: the live teacher; None when the batches carry cached targets (`teacher_targets`, from the collator).
        kwargs: the usual `Trainer` arguments (`train_dataset`, `data_collator`, `processing_class`, ...).
    """

    def __init__(
        self,
        model,
        args: DistillationConfig,
        plan: DistillationPlan,
        teacher: DistillationTeacher | None = None,
        **kwargs,
    ):
        super().__init__(model=model, args=args, **kwargs)
        self.plan = plan
        self.teacher = teacher
        self._loss_sums: dict[str, float] = {}
        self._loss_steps = 0
        self.add_callback(FiniteWeightsCheck())
        if teacher is not None:
            teacher.place(self.accelerator.state.deepspeed_plugin if self.is_deepspeed_enabled else None, self.args.device)
            self.add_callback(TeacherFrozenCheck(teacher, args.output_dir))

    # ----- loss --------------------------------------------------------------------------------------------------

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Teacher targets (read from the cache by the collator, or from the live teacher) vs the student's adapted
        outputs; returns the sum of the loss parts (`losses.distillation.distillation_loss_parts`)."""
        # Named ranges, so that a torch profile of a run splits each step into teacher, student and loss
        # (benchmarks/real_size.py reads them).
        with record_function("dcclip/teacher_targets"):
            if "teacher_targets" in inputs:
                targets = TeacherTargets.from_batch_entry(inputs["teacher_targets"])
            else:
                targets = self.teacher.targets_for_batch(
                    inputs, self.plan.teacher_image_layers, self.plan.teacher_text_layers, self.plan.teacher_embeddings
                )
        with record_function("dcclip/student_forward"):
            student = model(
                pixel_values=inputs.get("pixel_values"),
                input_ids=inputs.get("input_ids"),
                attention_mask=inputs.get("attention_mask"),
            )
        with record_function("dcclip/distillation_loss"):
            parts = distillation_loss_parts(
                self.args.distill_target, student, targets, self.args.loss_weights, inputs.get("attention_mask"),
                self.plan.text_token_by_token, self.plan.text_segments,
            )  # fmt: skip
        loss = torch.stack(list(parts.values())).sum()
        if model.training:
            check_finite_loss(loss, self.state.global_step + 1, parts)
            for name, value in parts.items():
                self._loss_sums[name] = self._loss_sums.get(name, 0.0) + float(value.detach())
            self._loss_steps += 1
        return (loss, student) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the mean of each loss part since the last log (this rank's batches) to the training logs."""
        if "loss" in logs and self._loss_steps:
            logs.update({name: round(total / self._loss_steps, 6) for name, total in self._loss_sums.items()})
            self._loss_sums, self._loss_steps = {}, 0
        super().log(logs, start_time)

    # ----- saving ------------------------------------------------------------------------------------------------

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Checkpoints (internal calls) keep student + adapters so that resume restores both; an explicit call
        exports the student alone as a `DCCLIPModel` folder with its processor, loadable with `AutoModel`."""
        if _internal_call:
            super().save_model(output_dir, _internal_call=True)
            return
        output_dir = output_dir or self.args.output_dir
        # Under ZeRO-3 the full state dict is gathered collectively: every rank must call this.
        if self.is_deepspeed_enabled:
            state_dict = self.accelerator.get_state_dict(self.deepspeed)
        else:
            state_dict = self.accelerator.unwrap_model(self.model).state_dict()
        if not self.args.should_save:
            return
        prefix = "student."
        student_state = {name[len(prefix) :]: value for name, value in state_dict.items() if name.startswith(prefix)}
        student = self.accelerator.unwrap_model(self.model).student
        student.save_pretrained(output_dir, state_dict=student_state)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        logger.info("distilled student saved to %s (adapters left out)", output_dir)
