"""Stage 1 entry script: distil a frozen AltCLIP teacher's feature maps into a DC-CLIP student.

    python trainers/distill.py configs/distill_tiny.yaml [--flag value ...]
    torchrun --nproc_per_node 2 trainers/distill.py configs/distill_tiny.yaml
    accelerate launch trainers/distill.py configs/distill_tiny.yaml
    deepspeed --num_gpus 2 trainers/distill.py configs/distill_tiny.yaml --deepspeed ds_configs/zero3.json

On a machine without GPUs add `--use_cpu true` (and `DS_ACCELERATOR=cpu` for deepspeed). Options:
`DistillationConfig` (`--help`, docs/distillation.md). The output folder receives:
    final/                  the distilled student: a plain DCCLIPModel folder + processor (no adapters) and
                            dcclip_training.json (this stage's recipe, read by the model card)
    checkpoint-N/           student + adapters + optimizer, for --resume_from_checkpoint (auto)
    teacher_digest.json     SHA-256 of the teacher's weights before and after training (the run fails if they differ)
    sample_quality.json     samples seen, kept, skipped and repaired per source
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoProcessor, AutoTokenizer, set_seed

from hub.training_record import DataSource, TrainingStage, record_training_stage
from modeling_dcclip import DCCLIPConfig, DCCLIPModel, DCCLIPProcessor, make_image_processor
from trainers.arguments import FINAL_MODEL_DIR, check_launcher, parse_config_and_overrides
from trainers.checkpoints import CheckpointCompletionCallback, resolve_resume_checkpoint
from trainers.data import DataSpec, ImageTextData, SampleQualityCallback, load_image_text_data
from trainers.distillation_data import DistillationCollator, pair_tower_data
from trainers.distillation_trainer import DistillationConfig, DistillationPlan, DistillationTrainer, plan_distillation
from trainers.feature_adapters import StudentWithAdapters
from trainers.teacher import DistillationTeacher, TeacherLayout, load_teacher_layout, resolve_dtype, shares_tokenizer
from trainers.teacher_cache import TeacherCache


@dataclass
class Stage1Setup:
    """What start-up resolved before any weights or data load: shapes, tokenizers and the layer mapping."""

    args: DistillationConfig
    layout: TeacherLayout
    teacher_processor: object
    student_config: DCCLIPConfig
    student_tokenizer: object
    shared_tokenizer: bool
    plan: DistillationPlan
    cache: TeacherCache | None

    def load_teacher(self) -> DistillationTeacher:
        """Load the teacher's weights (not yet placed: the Trainer places or shards it)."""
        dtype = resolve_dtype(self.args.teacher_dtype, self.args.bf16, self.args.fp16)
        return DistillationTeacher.load_for_training(
            self.args.teacher, self.args, processor=self.teacher_processor, dtype=dtype
        )


def prepare_stage1(args: DistillationConfig, use_cache: bool = True) -> Stage1Setup:
    """Resolve teacher layout, student config and tokenizers, and check the layer mapping (fails fast)."""
    cache = TeacherCache(args.teacher_cache_dir) if use_cache and args.teacher_cache_dir else None
    if cache is not None and cache.max_text_length != args.max_text_length:
        raise ValueError(
            f"the teacher cache was built with max_text_length={cache.max_text_length}, this run uses "
            f"{args.max_text_length}; use the same value or rebuild the cache"
        )
    layout = cache.layout if cache is not None else load_teacher_layout(args.teacher)
    teacher_processor = AutoProcessor.from_pretrained(args.teacher)
    if args.student:
        student_tokenizer = AutoTokenizer.from_pretrained(args.student)
        student_config = DCCLIPConfig.from_pretrained(args.student)
    else:
        student_tokenizer = (
            AutoTokenizer.from_pretrained(args.student_tokenizer) if args.student_tokenizer else teacher_processor.tokenizer
        )
        student_config = DCCLIPConfig.from_preset(
            args.student_preset, vocab_size=len(student_tokenizer), image_size=args.student_image_size
        )
    shared = shares_tokenizer(student_tokenizer, teacher_processor.tokenizer)
    plan = plan_distillation(args, layout, student_config, shared_tokenizer=shared)
    return Stage1Setup(args, layout, teacher_processor, student_config, student_tokenizer, shared, plan, cache)


def build_student(setup: Stage1Setup) -> tuple[DCCLIPModel, DCCLIPProcessor]:
    """The student model and its processor: from `--student` (a DC-CLIP folder) or a fresh preset."""
    args = setup.args
    if args.student:
        return DCCLIPModel.from_pretrained(args.student), DCCLIPProcessor.from_pretrained(args.student)
    # The student sees images normalised as the teacher does, at its own resolution.
    teacher_images = setup.teacher_processor.image_processor
    image_processor = make_image_processor(
        setup.student_config.image_size, image_mean=list(teacher_images.image_mean), image_std=list(teacher_images.image_std)
    )
    return DCCLIPModel(setup.student_config), DCCLIPProcessor(image_processor=image_processor, tokenizer=setup.student_tokenizer)


def load_tower_data(args: DistillationConfig) -> tuple[ImageTextData | None, ImageTextData | None]:
    """The image tower's and the text tower's data (None for a tower without a data spec)."""
    images = load_image_text_data(args.image_data) if args.image_data else None
    texts = load_image_text_data(args.text_data) if args.text_data else None
    if images is not None and images.modality == "texts":
        raise ValueError(f"--image_data {args.image_data} holds texts only; the image tower needs images")
    if texts is not None and texts.modality == "images":
        raise ValueError(f"--text_data {args.text_data} holds images only; the text tower needs captions")
    return images, texts


def _training_stage(setup: Stage1Setup) -> TrainingStage:
    """This stage's entry of `dcclip_training.json` (flat scalars, see docs/hub.md)."""
    args = setup.args
    names = (
        "distill_target", "feature_loss_weight", "embedding_loss_weight", "smooth_l1_beta", "standardize_teacher_maps",
        "logit_temperature", "max_text_length", "learning_rate", "weight_decay", "warmup_steps", "max_steps",
        "num_train_epochs", "per_device_train_batch_size", "gradient_accumulation_steps", "seed",
    )  # fmt: skip
    hyperparameters = {name: getattr(args, name) for name in names}
    hyperparameters["global_batch_size"] = args.per_device_train_batch_size * args.world_size
    for tower, pairs in (("image", setup.plan.image_pairs), ("text", setup.plan.text_pairs)):
        hyperparameters[f"{tower}_layer_mapping"] = ", ".join(f"{p.student}->{p.teacher}" for p in pairs or []) or None
    hyperparameters["text_token_by_token"] = setup.plan.text_token_by_token
    hyperparameters["teacher_cache"] = setup.cache is not None
    specs = [DataSpec.from_file(path) for path in (args.image_data, args.text_data) if path]
    sources = [DataSource(s.name, s.kind, s.path, s.data_files) for spec in specs for s in spec.sources]
    return TrainingStage(stage="feature_distillation", data_sources=sources, hyperparameters=hyperparameters)


def run(argv: list[str]) -> DistillationTrainer:
    """Run stage 1 from command-line arguments and export the student; returns the trainer (for inspection)."""
    (args,) = parse_config_and_overrides((DistillationConfig,), argv)
    logging.basicConfig(level=logging.INFO if args.process_index == 0 else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    check_launcher(args)
    setup = prepare_stage1(args)
    teacher = None if setup.cache is not None else setup.load_teacher()
    set_seed(args.seed)  # the student's initial weights depend on the seed alone, live teacher or cache
    student, processor = build_student(setup)
    model = StudentWithAdapters(
        student,
        args.distill_target,
        setup.layout,
        setup.plan.image_pairs,
        setup.plan.text_pairs,
        text_token_by_token=setup.plan.text_token_by_token,
        embedding_loss=args.embedding_loss_weight > 0,
    )
    images, texts = load_tower_data(args)
    streaming = any(data.streaming for data in (images, texts) if data is not None)
    train_dataset = pair_tower_data(
        None if images is None else images.dataset, None if texts is None else texts.dataset, streaming
    )
    collator = DistillationCollator(
        processor,
        setup.teacher_processor,
        shared_tokenizer=setup.shared_tokenizer,
        max_text_length=args.max_text_length,
        teacher_cache=setup.cache,
        image_layers=setup.plan.teacher_image_layers,
        text_layers=setup.plan.teacher_text_layers,
    )

    def quality_reports() -> dict:
        towers = (("image", images), ("text", texts))
        return {f"{tower}:{name}": report for tower, data in towers if data is not None
                for name, report in data.quality_reports().items()}  # fmt: skip

    trainer = DistillationTrainer(
        model=model,
        args=args,
        plan=setup.plan,
        teacher=teacher,
        cached_logit_scale=None if setup.cache is None else setup.cache.logit_scale,
        train_dataset=train_dataset,
        data_collator=collator,
        processing_class=processor,
        callbacks=[CheckpointCompletionCallback(), SampleQualityCallback(quality_reports)],
    )
    trainer.train(resume_from_checkpoint=resolve_resume_checkpoint(args.resume_from_checkpoint, args.output_dir))
    final_dir = Path(args.output_dir) / FINAL_MODEL_DIR
    trainer.save_model(str(final_dir))  # every rank: under ZeRO-3 the weights are gathered
    trainer.save_state()  # trainer_state.json: the loss log, in output_dir
    if trainer.is_world_process_zero():
        previous = args.student if args.student and Path(args.student).is_dir() else None
        preset = None if args.student else args.student_preset
        record_training_stage(final_dir, _training_stage(setup), args.teacher, preset, previous)
    return trainer


def main(argv: list[str] | None = None) -> int:
    """`python trainers/distill.py` / `dcclip distill`: `[config.yaml|json] [--flag value ...]`."""
    run(list(sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
