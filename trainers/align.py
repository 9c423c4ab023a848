"""Stage 2 entry script: align the image and text towers of a DC-CLIP student with global-batch bilingual InfoNCE.

Runs unchanged under every launcher::

    python trainers/align.py configs/align_tiny.yaml [--flag value ...]
    torchrun --nproc_per_node 8 trainers/align.py configs/align_edge.yaml
    deepspeed trainers/align.py configs/align_edge.yaml --deepspeed ds_configs/zero2.json

On machines without GPUs add `--use_cpu true` (and `DS_ACCELERATOR=cpu` for deepspeed). The script starts from a
stage-1 student folder (`--student`) or a named preset (`--student_preset tiny --tokenizer DIR`) and writes the aligned
`DCCLIPModel` + processor to `<output_dir>/final`. See docs/alignment.md.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from transformers import AutoTokenizer, set_seed

from hub.training_record import DataSource, TrainingStage, record_training_stage
from modeling_dcclip import DCCLIPConfig, DCCLIPModel, DCCLIPProcessor, make_image_processor
from trainers.alignment_trainer import AlignmentCollator, AlignmentConfig, AlignmentTrainer
from trainers.arguments import FINAL_MODEL_DIR, check_launcher, parse_config_and_overrides
from trainers.checkpoints import CheckpointCompletionCallback, resolve_resume_checkpoint
from trainers.data import DataSpec, ImageTextCollator, SampleQualityCallback, load_image_text_data
from trainers.teacher import DistillationTeacher
from trainers.zero_shot_callback import ZeroShotEvaluationCallback

logger = logging.getLogger(__name__)


@dataclass
class AlignmentScriptArguments:
    """Where the student, the data and the optional teacher come from."""

    student: str | None = field(
        default=None, metadata={"help": "Stage-1 student: a DCCLIPModel + processor folder (or Hub id)."}
    )
    student_preset: str | None = field(
        default=None,
        metadata={"help": "Start from a fresh preset student instead (e.g. 'tiny', 'edge'); needs --tokenizer."},
    )
    tokenizer: str | None = field(default=None, metadata={"help": "Tokenizer folder for --student_preset."})
    image_size: int | None = field(
        default=None, metadata={"help": "Input resolution for --student_preset (default: the preset's)."}
    )
    train_data: str = field(default=None, metadata={"help": "Data spec (YAML/JSON) of the training image-text pairs."})
    eval_data: str | None = field(
        default=None, metadata={"help": "Data spec of evaluation pairs (eval loss, and when zero-shot tasks run)."}
    )
    max_text_length: int | None = field(default=None, metadata={"help": "Truncate captions to this many tokens."})
    teacher: str | None = field(
        default=None, metadata={"help": "Teacher folder or Hub id (e.g. BAAI/AltCLIP), for --teacher_loss_weight."}
    )
    zero_shot_benchmark: str | None = field(
        default=None,
        metadata={"help": "Built-in benchmark folder (imagefolder + tasks.json) scored zero-shot at each evaluation."},
    )
    zero_shot_tasks: list[str] | None = field(
        default=None, metadata={"help": "Only these tasks of --zero_shot_benchmark (default: all)."}
    )
    zero_shot_languages: list[str] = field(
        default_factory=lambda: ["en", "zh"], metadata={"help": "Prompt languages of the zero-shot evaluation."}
    )


def load_student(script_args: AlignmentScriptArguments) -> tuple[DCCLIPModel, DCCLIPProcessor]:
    """The student and its processor, from a stage-1 folder or from a preset + tokenizer."""
    if bool(script_args.student) == bool(script_args.student_preset):
        raise ValueError("give exactly one of --student (a stage-1 folder) and --student_preset (with --tokenizer)")
    if script_args.student:
        return DCCLIPModel.from_pretrained(script_args.student), DCCLIPProcessor.from_pretrained(script_args.student)
    if not script_args.tokenizer:
        raise ValueError("--student_preset needs --tokenizer (a tokenizer folder, e.g. from `dcclip build-tokenizer`)")
    tokenizer = AutoTokenizer.from_pretrained(script_args.tokenizer)
    config = DCCLIPConfig.from_preset(
        script_args.student_preset, vocab_size=len(tokenizer), image_size=script_args.image_size
    )
    processor = DCCLIPProcessor(image_processor=make_image_processor(config.image_size), tokenizer=tokenizer)
    return DCCLIPModel(config), processor


def _alignment_record(
    script_args: AlignmentScriptArguments, args: AlignmentConfig, train_spec: DataSpec
) -> TrainingStage:
    """This stage's entry of `dcclip_training.json` (read by the model card)."""
    names = (
        "learning_rate", "image_tower_learning_rate", "text_tower_learning_rate", "logit_scale_learning_rate",
        "weight_decay", "warmup_steps", "max_steps", "num_train_epochs", "per_device_train_batch_size",
        "gradient_accumulation_steps", "bilingual_captions", "image_to_text_negatives", "local_loss",
        "lock_image_tower", "unlocked_image_layers", "lock_text_tower", "unlocked_text_layers", "teacher_loss_weight",
        "seed",
    )  # fmt: skip
    hyperparameters = {name: getattr(args, name) for name in names}
    hyperparameters["global_batch_size"] = args.per_device_train_batch_size * args.world_size
    hyperparameters["max_text_length"] = script_args.max_text_length
    sources = [DataSource(s.name, s.kind, s.path, s.data_files) for s in train_spec.sources]
    return TrainingStage(stage="alignment", data_sources=sources, hyperparameters=hyperparameters)


def main(argv: list[str] | None = None) -> int:
    """Parse `[config.yaml] [--flag value ...]`, train, and save the aligned student to `<output_dir>/final`."""
    script_args, args = parse_config_and_overrides(
        (AlignmentScriptArguments, AlignmentConfig), sys.argv[1:] if argv is None else argv
    )
    logging.basicConfig(level=logging.INFO if args.process_index == 0 else logging.WARNING)
    check_launcher(args)
    if not script_args.train_data:
        raise ValueError("--train_data (a data spec file) is required")
    if script_args.zero_shot_benchmark and not script_args.eval_data:
        raise ValueError("zero-shot evaluation runs at each evaluation, which needs --eval_data")
    set_seed(args.seed)

    model, processor = load_student(script_args)
    teacher = None
    if args.teacher_loss_weight > 0:
        if not script_args.teacher:
            raise ValueError("--teacher_loss_weight > 0 needs --teacher")
        teacher = DistillationTeacher.load_for_training(script_args.teacher, args)

    train_spec = DataSpec.from_file(script_args.train_data)
    train = load_image_text_data(train_spec)
    evaluation = load_image_text_data(script_args.eval_data) if script_args.eval_data else None
    for data in (train, evaluation):
        if data is not None and data.modality != "pairs":
            raise ValueError(f"alignment trains on image-text pairs, but a data spec gives {data.modality}")
    teacher_processor = teacher.processor if teacher is not None else None
    collator = AlignmentCollator(
        ImageTextCollator(processor, teacher_processor, args.bilingual_captions, script_args.max_text_length)
    )

    callbacks = [CheckpointCompletionCallback(), SampleQualityCallback(train.quality_reports)]
    if script_args.zero_shot_benchmark:
        callbacks.append(
            ZeroShotEvaluationCallback.from_benchmark(
                script_args.zero_shot_benchmark, processor, script_args.zero_shot_languages, script_args.zero_shot_tasks
            )
        )
    trainer = AlignmentTrainer(
        model=model,
        args=args,
        teacher=teacher,
        train_dataset=train.dataset,
        eval_dataset=evaluation.dataset if evaluation else None,
        data_collator=collator,
        processing_class=processor,
        callbacks=callbacks,
    )
    trainer.train(resume_from_checkpoint=resolve_resume_checkpoint(args.resume_from_checkpoint, args.output_dir))

    final_dir = Path(args.output_dir) / FINAL_MODEL_DIR
    trainer.save_model(str(final_dir))  # under ZeRO-3 the shards are gathered into one safetensors file
    trainer.save_state()  # trainer_state.json in output_dir: the log history (losses, zero-shot scores)
    if trainer.is_world_process_zero():
        previous = script_args.student if script_args.student and Path(script_args.student).is_dir() else None
        record_training_stage(
            final_dir,
            _alignment_record(script_args, args, train_spec),
            script_args.teacher,
            script_args.student_preset,
            previous,
        )
        logger.info("aligned student saved to %s", final_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
