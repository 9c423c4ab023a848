"""The demo's stand-in for `BAAI/AltCLIP`: a small model of the AltCLIP architecture (transformers' `AltCLIPModel`:
ViT image tower, XLM-R text tower pooled at its first token) trained contrastively with the HF Trainer on the
benchmark's pair corpus, which shows more than the student's pairs do (docs/demo.md, "The data regime").

This is not a DC-CLIP stage: the real teacher comes pretrained. It exists because the real one cannot be downloaded
here; `dcclip demo --teacher BAAI/AltCLIP` skips it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AltCLIPModel, AltCLIPProcessor, Trainer, TrainerCallback, TrainingArguments, set_seed

from dcclip.trainers.data import ImageTextCollator, SampleQualityCallback, load_image_text_data
from dcclip.trainers.teacher.model import build_altclip_teacher

from .scales import TeacherSettings


def build_teacher(tokenizer, settings: TeacherSettings, seed: int) -> tuple[AltCLIPModel, AltCLIPProcessor]:
    """A randomly initialised AltCLIP of `settings`' size that uses `tokenizer`, and its processor, with attention
    started as a token average (see `start_attention_as_token_average`)."""
    set_seed(seed)
    model, processor = build_altclip_teacher(
        tokenizer,
        image_size=settings.image_size,
        patch_size=settings.patch_size,
        hidden_size=settings.hidden_size,
        num_layers=settings.num_layers,
        num_heads=settings.num_heads,
        mlp_ratio=settings.mlp_ratio,
        projection_dim=settings.projection_dim,
        logit_scale_init_value=settings.logit_scale_init,
        seed=seed,
    )
    start_attention_as_token_average(model)
    return model, processor


@torch.no_grad()
def start_attention_as_token_average(model: AltCLIPModel) -> None:
    """Initialise every attention layer of both towers as an exact average over the tokens (query weights zero,
    value and output maps identity), so the first token that AltCLIP pools starts as a summary of the whole caption
    or image.

    Why: with the default random initialisation, the pooled first token of a freshly built small AltCLIP is the same
    vector for every caption (cosine 1.000 between any two), and contrastive training from scratch stalls at
    matching the background brightness (loss stuck near 3.85 at batch 64 for 1000+ steps, zero-shot at chance).
    Starting from the average, it learns colour and position within a few hundred steps. Only the initialisation
    changes; the architecture is AltCLIP's.
    """
    text_layers = [layer.attention for layer in model.text_model.roberta.encoder.layers]
    vision_layers = [layer.self_attn for layer in model.vision_model.encoder.layers]
    pairs = [(a.self.query, a.self.value, a.output.dense) for a in text_layers]
    pairs += [(a.q_proj, a.v_proj, a.out_proj) for a in vision_layers]
    for query, value, output in pairs:
        query.weight.zero_()
        value.weight.copy_(torch.eye(value.weight.shape[0]))
        output.weight.copy_(torch.eye(output.weight.shape[0]))


class ContrastiveBatchCollator:
    """Canonical samples -> `AltCLIPModel` inputs with `return_loss=True` (the model computes CLIP's loss).

    One caption per image, its language drawn at random (`bilingual="sample"`): plain CLIP loss counts every other
    row as a negative, so an image must not appear twice in a batch.
    """

    def __init__(self, processor, max_text_length: int):
        self.collator = ImageTextCollator(processor, bilingual="sample", max_text_length=max_text_length)

    def __call__(self, samples: Sequence[dict]) -> dict:
        batch = self.collator(samples)
        return {
            "pixel_values": batch["pixel_values"],
            "input_ids": batch["input_ids"],
            "attention_mask": batch["attention_mask"],
            "return_loss": True,
        }


def is_text_tower_parameter(name: str) -> bool:
    """Whether `AltCLIPModel` parameter `name` belongs to the text tower (XLM-R and its projection)."""
    return name.startswith(("text_model.", "text_projection."))


class TeacherPretrainingTrainer(Trainer):
    """The HF Trainer with one change: the text tower learns at `text_learning_rate_ratio` times the learning rate
    (the schedule scales both alike).

    Why: trained from scratch at one rate, the text tower soon merges the shape words the young image tower cannot yet
    tell apart (captions differing only in triangle/star or square/cross reach cosine 1.00), and after that nothing
    pushes the image tower to separate those shapes. A slower text tower keeps them apart for longer. Measured at the
    demo's small scale (zero-shot shape accuracy EN/ZH, chance 20%): 27.0/29.4% at one rate, 32.6/35.8% with the text
    tower at 0.3x, 33.0/31.2% (seed 0) and 32.0/32.6% (seed 1) at 0.5x; see docs/demo.md.
    """

    def __init__(self, *args, text_learning_rate_ratio: float = 1.0, **kwargs):
        if text_learning_rate_ratio <= 0:
            raise ValueError(f"text_learning_rate_ratio must be positive, got {text_learning_rate_ratio}")
        super().__init__(*args, **kwargs)
        self.text_learning_rate_ratio = text_learning_rate_ratio

    def create_optimizer(self, model=None):
        """The Trainer's own optimizer (`TrainingArguments.optim`, its weight-decay groups), with the text tower's
        parameters moved into groups of their own at the scaled rate. Runs before the first step: no state to move."""
        creating = self.optimizer is None
        optimizer = super().create_optimizer(model)
        if creating and self.text_learning_rate_ratio != 1.0:
            text_ids = {id(p) for name, p in (model or self.model).named_parameters() if is_text_tower_parameter(name)}
            for group in list(optimizer.param_groups):
                text = [p for p in group["params"] if id(p) in text_ids]
                if not text:
                    continue
                if len(text) == len(group["params"]):
                    group["lr"] *= self.text_learning_rate_ratio
                    continue
                group["params"] = [p for p in group["params"] if id(p) not in text_ids]
                options = {key: value for key, value in group.items() if key != "params"}
                optimizer.add_param_group({**options, "params": text, "lr": group["lr"] * self.text_learning_rate_ratio})
        return optimizer


def pretrain_teacher(
    train_spec: str | Path,
    tokenizer,
    settings: TeacherSettings,
    output_dir: str | Path,
    seed: int,
    max_text_length: int,
    training_options: dict,
    extra_callbacks: Sequence[TrainerCallback] = (),
) -> Path:
    """Train the small AltCLIP contrastively on the pairs of `train_spec` and save model + processor to
    `output_dir/final` (a folder `DistillationTeacher.from_pretrained` and `AutoModel` load); the Trainer's
    `trainer_state.json` (loss curve) goes to `output_dir`.

    Args:
        train_spec: data spec (YAML/JSON) of image-text pairs, read by `trainers.data.load_image_text_data`.
        tokenizer: the bilingual tokenizer the teacher (and later the student) uses.
        settings: model size and training budget.
        output_dir: where the run writes.
        seed: initial weights.
        max_text_length: caption truncation length.
        training_options: the `TrainingArguments` fields every demo run shares (device, seed of the data order,
            schedule, weight decay, logging, data loader workers).
        extra_callbacks: joined to the Trainer's own (the demo's labelled progress bar).
    """
    output_dir = Path(output_dir)
    model, processor = build_teacher(tokenizer, settings, seed)
    data = load_image_text_data(train_spec)
    if data.modality != "pairs":
        raise ValueError(f"teacher pre-training needs image-text pairs; {train_spec} gives {data.modality}")
    args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=settings.steps,
        per_device_train_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        warmup_steps=max(1, settings.steps // 10),
        max_grad_norm=1.0,
        remove_unused_columns=False,  # the collator reads the raw image and caption columns
        **training_options,
    )
    trainer = TeacherPretrainingTrainer(
        model=model,
        args=args,
        train_dataset=data.dataset,
        data_collator=ContrastiveBatchCollator(processor, max_text_length),
        processing_class=processor,
        callbacks=[SampleQualityCallback(data.quality_reports), *extra_callbacks],
        text_learning_rate_ratio=settings.text_learning_rate_ratio,
    )
    trainer.train()
    final_dir = output_dir / "final"
    trainer.save_model(str(final_dir))
    trainer.save_state()
    return final_dir
