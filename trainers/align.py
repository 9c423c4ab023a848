"""Stage 2 entry script: align the image and text towers of a DC-CLIP student with global-batch bilingual InfoNCE.

Runs unchanged under every launcher::

    python trainers/align.py configs/align_tiny.yaml [--flag value ...]
    python -m trainers.align configs/align_tiny.yaml        (or `dcclip align ...`)
    torchrun --nproc_per_node 8 trainers/align.py configs/align_edge.yaml
    deepspeed trainers/align.py configs/align_edge.yaml --deepspeed ds_configs/zero2.json

On machines without GPUs add `--use_cpu true` (and `DS_ACCELERATOR=cpu` for deepspeed). The script starts from a
stage-1 student folder (`--student`) or a named preset (`--student_preset tiny --tokenizer DIR`) and writes the aligned
`DCCLIPModel` + processor to `<output_dir>/final`. Options: `StudentArguments`, `AlignmentDataArguments`
(trainers/arguments.py) and `AlignmentConfig`; see docs/alignment.md.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dcclip.command_errors import UsageError, run_command
from dcclip.trainers.arguments import (
    FINAL_MODEL_DIR,
    AlignmentDataArguments,
    StudentArguments,
    check_launcher,
    check_model_locations,
    parse_stage_arguments,
)

if TYPE_CHECKING:
    from transformers import TrainerCallback

    from dcclip.trainers.alignment_config import AlignmentConfig

EXAMPLES = """examples:
  dcclip align configs/align_tiny.yaml --use_cpu true
  dcclip align configs/align_edge.yaml --student runs/distill/final --learning_rate 1e-4
  torchrun --nproc_per_node 8 trainers/align.py configs/align_edge.yaml
  deepspeed trainers/align.py configs/align_edge.yaml --deepspeed ds_configs/zero2.json

Writes <output_dir>/final (the aligned student), checkpoint-N/ and trainer_state.json. More: docs/alignment.md"""


def option_classes() -> tuple[type, ...]:
    """Stage 2's option groups: the student, the data and `AlignmentConfig` (imported here: it pulls in torch)."""
    from dcclip.trainers.alignment_config import AlignmentConfig

    return StudentArguments, AlignmentDataArguments, AlignmentConfig


def parse_args(argv: list[str]) -> tuple[StudentArguments, AlignmentDataArguments, AlignmentConfig]:
    """`[config.yaml|json] [--flag value ...]` -> stage 2's three option groups."""
    return parse_stage_arguments("align", option_classes, argv, EXAMPLES)


def main(argv: list[str] | None = None, extra_callbacks: Sequence[TrainerCallback] = ()) -> int:
    """Parse `[config.yaml] [--flag value ...]`, train, and save the aligned student to `<output_dir>/final`.
    `extra_callbacks` join the Trainer's own (for programs that run the stage in-process, such as the demo)."""
    student_args, data_args, config = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO if config.process_index == 0 else logging.WARNING)
    check_launcher(config)
    check_model_locations(student_args, config)
    if not data_args.train_data:
        raise UsageError("--train_data (a data spec file) is required")
    if config.teacher_loss_weight > 0 and not config.teacher:
        raise UsageError("--teacher_loss_weight > 0 needs --teacher")
    # Imported once the arguments are checked, so that --help and a bad option answer without waiting for torch.
    from transformers import AutoProcessor, set_seed

    from dcclip.trainers.alignment_trainer import AlignmentTrainer
    from dcclip.trainers.callbacks.checkpoints import CheckpointCompletionCallback, resolve_resume_checkpoint
    from dcclip.trainers.callbacks.sample_draws import SampleDrawSeeds
    from dcclip.trainers.callbacks.zero_shot import ZeroShotEvaluationCallback
    from dcclip.trainers.data import DataSpec, ImageTextCollator, SampleQualityCallback, load_image_text_data
    from dcclip.trainers.records import DataSource, TrainingStage, record_student_stage, stage_hyperparameters
    from dcclip.trainers.student.build import load_or_build_student
    from dcclip.trainers.teacher.model import DistillationTeacher, shares_tokenizer

    set_seed(config.seed)

    teacher_processor = AutoProcessor.from_pretrained(config.teacher) if config.teacher else None
    model, processor = load_or_build_student(student_args, teacher_processor)
    teacher = None
    if config.teacher_loss_weight > 0:
        teacher = DistillationTeacher.load_for_training(config.teacher, config, processor=teacher_processor)

    train_spec = DataSpec.from_file(data_args.train_data)
    train = load_image_text_data(train_spec)
    evaluation = load_image_text_data(data_args.eval_data) if data_args.eval_data else None
    for data in (train, evaluation):
        if data is not None and data.modality != "pairs":
            raise ValueError(f"alignment trains on image-text pairs, but a data spec gives {data.modality}")
    collator = ImageTextCollator(
        processor,
        teacher.processor if teacher is not None else None,
        config.bilingual_captions,
        student_args.max_text_length,
        teacher_shares_tokenizer=teacher is not None and shares_tokenizer(processor.tokenizer, teacher.tokenizer),
    )

    draws = SampleDrawSeeds.for_run(config)
    callbacks = [CheckpointCompletionCallback(), draws, SampleQualityCallback(train.quality_reports), *extra_callbacks]
    if data_args.zero_shot_benchmark:
        callbacks.append(
            ZeroShotEvaluationCallback.from_benchmark(
                data_args.zero_shot_benchmark, processor, data_args.zero_shot_languages, data_args.zero_shot_tasks
            )
        )
    trainer = AlignmentTrainer(
        model=model,
        args=config,
        teacher=teacher,
        train_dataset=draws.training_data(train.dataset),
        eval_dataset=draws.evaluation_data(evaluation.dataset) if evaluation else None,
        data_collator=collator,
        processing_class=processor,
        callbacks=callbacks,
    )
    trainer.train(resume_from_checkpoint=resolve_resume_checkpoint(config.resume_from_checkpoint, config.output_dir))

    final_dir = Path(config.output_dir) / FINAL_MODEL_DIR
    trainer.save_model(str(final_dir))  # under ZeRO-3 the shards are gathered into one safetensors file
    trainer.save_state()  # trainer_state.json in output_dir: the log history (losses, zero-shot scores)
    if trainer.is_world_process_zero():
        stage = TrainingStage(
            stage="alignment",
            data_sources=[DataSource.from_spec(source) for source in train_spec.sources],
            hyperparameters=stage_hyperparameters(config, student_args),
        )
        record_student_stage(final_dir, stage, config.teacher, student_args)
        print(f"dcclip align: wrote the aligned student to {final_dir} (checkpoints and trainer_state.json in "
              f"{config.output_dir})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(run_command("align", main))
