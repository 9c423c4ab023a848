"""Stage 1 entry script: distil a frozen AltCLIP teacher's feature maps into a DC-CLIP student.

    python trainers/distill.py configs/distill_tiny.yaml [--flag value ...]
    python -m trainers.distill configs/distill_tiny.yaml        (or `dcclip distill ...`)
    torchrun --nproc_per_node 2 trainers/distill.py configs/distill_tiny.yaml
    accelerate launch trainers/distill.py configs/distill_tiny.yaml
    deepspeed --num_gpus 2 trainers/distill.py configs/distill_tiny.yaml --deepspeed ds_configs/zero3.json

On a machine without GPUs add `--use_cpu true` (and `DS_ACCELERATOR=cpu` for deepspeed). Options: `StudentArguments`,
`DistillationDataArguments` (trainers/arguments.py) and `DistillationConfig` (`--help`, docs/distillation.md). The
output folder receives:
    final/                  the distilled student: a plain DCCLIPModel folder + processor (no adapters) and
                            dcclip_training.json (this stage's recipe, read by the model card)
    checkpoint-N/           student + adapters + optimizer, for --resume_from_checkpoint (auto)
    teacher_digest.json     SHA-256 of the teacher's weights before and after training (the run fails if they differ)
    sample_quality.json     samples seen, kept, skipped and repaired per source
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dcclip.command_errors import run_command
from dcclip.trainers.arguments import (
    FINAL_MODEL_DIR,
    DistillationDataArguments,
    StudentArguments,
    check_launcher,
    check_model_locations,
    parse_stage_arguments,
)

if TYPE_CHECKING:
    from transformers import TrainerCallback

    from dcclip.trainers.distillation_config import DistillationConfig
    from dcclip.trainers.distillation_setup import DistillationSetup
    from dcclip.trainers.distillation_trainer import DistillationTrainer
    from dcclip.trainers.records import TrainingStage

EXAMPLES = """examples:
  dcclip distill configs/distill_tiny.yaml --use_cpu true
  dcclip distill configs/distill_edge.yaml --teacher_cache_dir runs/cache --learning_rate 5e-4
  torchrun --nproc_per_node 8 trainers/distill.py configs/distill_edge.yaml
  deepspeed trainers/distill.py configs/distill_edge.yaml --deepspeed ds_configs/zero3.json

Writes <output_dir>/final (the distilled student), checkpoint-N/, teacher_digest.json and sample_quality.json.
More: docs/distillation.md"""


def option_classes() -> tuple[type, ...]:
    """Stage 1's option groups: the student, the data and `DistillationConfig` (imported here: it pulls in torch)."""
    from dcclip.trainers.distillation_config import DistillationConfig

    return StudentArguments, DistillationDataArguments, DistillationConfig


def parse_args(argv: list[str]) -> tuple[StudentArguments, DistillationDataArguments, DistillationConfig]:
    """`[config.yaml|json] [--flag value ...]` -> stage 1's three option groups."""
    return parse_stage_arguments("distill", option_classes, argv, EXAMPLES)


def _training_stage(setup: DistillationSetup) -> TrainingStage:
    """This stage's entry of `dcclip_training.json` (flat scalars, see docs/hub.md)."""
    from dcclip.trainers.data import DataSpec
    from dcclip.trainers.records import DataSource, TrainingStage, stage_hyperparameters

    hyperparameters = stage_hyperparameters(setup.config, setup.student_args)
    for tower, pairs in (("image", setup.plan.image_pairs), ("text", setup.plan.text_pairs)):
        hyperparameters[f"{tower}_layer_mapping"] = ", ".join(f"{p.student}->{p.teacher}" for p in pairs or []) or None
    hyperparameters["text_token_by_token"] = setup.plan.text_token_by_token
    hyperparameters["teacher_cache"] = setup.cache is not None
    paths = (setup.data_args.image_data, setup.data_args.text_data)
    sources = [DataSource.from_spec(source) for path in paths if path for source in DataSpec.from_file(path).sources]
    return TrainingStage(stage="feature_distillation", data_sources=sources, hyperparameters=hyperparameters)


def run(argv: list[str], extra_callbacks: Sequence[TrainerCallback] = ()) -> DistillationTrainer:
    """Run stage 1 from command-line arguments and export the student; returns the trainer (for inspection).
    `extra_callbacks` join the Trainer's own (a program that runs the stage in-process, such as the demo, shows its own
    progress with them)."""
    student_args, data_args, config = parse_args(argv)
    # Imported once the arguments are parsed, so that --help and a bad option answer without waiting for torch.
    from transformers import set_seed

    from dcclip.trainers.callbacks.checkpoints import CheckpointCompletionCallback, resolve_resume_checkpoint
    from dcclip.trainers.callbacks.sample_draws import SampleDrawSeeds
    from dcclip.trainers.data import SampleQualityCallback
    from dcclip.trainers.distillation_setup import prepare_distillation, training_rows
    from dcclip.trainers.distillation_trainer import DistillationTrainer
    from dcclip.trainers.records import record_student_stage

    logging.basicConfig(level=logging.INFO if config.process_index == 0 else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    check_launcher(config)
    check_model_locations(student_args, config)
    setup = prepare_distillation(student_args, data_args, config)
    teacher = None if setup.cache is not None else setup.load_teacher()
    set_seed(config.seed)  # the student's initial weights depend on the seed alone, live teacher or cache
    model = setup.student_with_adapters()
    images, texts = setup.load_tower_data()

    def quality_reports() -> dict:
        towers = (("image", images), ("text", texts))
        return {f"{tower}:{name}": report for tower, data in towers if data is not None
                for name, report in data.quality_reports().items()}  # fmt: skip

    draws = SampleDrawSeeds.for_run(config)
    trainer = DistillationTrainer(
        model=model,
        args=config,
        plan=setup.plan,
        teacher=teacher,
        train_dataset=draws.training_data(training_rows(images, texts)),
        data_collator=setup.collator(),
        processing_class=setup.student.processor,
        callbacks=[CheckpointCompletionCallback(), draws, SampleQualityCallback(quality_reports), *extra_callbacks],
    )
    trainer.train(resume_from_checkpoint=resolve_resume_checkpoint(config.resume_from_checkpoint, config.output_dir))
    final_dir = Path(config.output_dir) / FINAL_MODEL_DIR
    trainer.save_model(str(final_dir))  # every rank: under ZeRO-3 the weights are gathered
    trainer.save_state()  # trainer_state.json: the loss log, in output_dir
    if trainer.is_world_process_zero():
        record_student_stage(final_dir, _training_stage(setup), config.teacher, setup.student_args)
    return trainer


def main(argv: list[str] | None = None) -> int:
    """`python trainers/distill.py` / `dcclip distill`: `[config.yaml|json] [--flag value ...]`."""
    trainer = run(list(sys.argv[1:] if argv is None else argv))
    if trainer.is_world_process_zero():
        output_dir = Path(trainer.args.output_dir)
        print(f"dcclip distill: wrote the distilled student to {output_dir / FINAL_MODEL_DIR} (checkpoints, "
              f"trainer_state.json, teacher_digest.json and sample_quality.json in {output_dir})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(run_command("distill", main))
