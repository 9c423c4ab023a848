"""A guard of stage 1: the teacher's weights must be bit-identical before and after training."""

from __future__ import annotations

import json
import logging
import os

from transformers import TrainerCallback

from dcclip.trainers.teacher.model import DistillationTeacher, teacher_weights_digest

logger = logging.getLogger(__name__)

TEACHER_DIGEST_FILE = "teacher_digest.json"


class TeacherFrozenCheck(TrainerCallback):
    """Fingerprints the teacher's weights before and after training and fails the run if they changed.

    The digests are written to `output_dir/teacher_digest.json`. Under ZeRO-3 every rank takes part (gathers).
    """

    def __init__(self, teacher: DistillationTeacher, output_dir: str):
        self.teacher = teacher
        self.output_dir = output_dir
        self.before: str | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.before = teacher_weights_digest(self.teacher.model)

    def on_train_end(self, args, state, control, **kwargs):
        after = teacher_weights_digest(self.teacher.model)
        if state.is_world_process_zero:
            os.makedirs(self.output_dir, exist_ok=True)
            with open(os.path.join(self.output_dir, TEACHER_DIGEST_FILE), "w", encoding="utf-8") as file:
                json.dump({"before": self.before, "after": after}, file, indent=2)
        if after != self.before:
            raise RuntimeError("the teacher's weights changed during stage 1; the teacher must stay frozen")
        logger.info("teacher weights unchanged (sha256 %s)", after)
