"""The demo teacher's optimizer: the text tower at a fraction of the learning rate, through the whole schedule."""

from __future__ import annotations

import dataclasses

import pytest
from transformers import TrainingArguments

from dcclip.demo.scales import get_scale
from dcclip.demo.teacher_pretraining import TeacherPretrainingTrainer, build_teacher, is_text_tower_parameter


def _trainer(tiny_tokenizer, tmp_path, ratio: float) -> TeacherPretrainingTrainer:
    settings = dataclasses.replace(get_scale("tiny").teacher, text_learning_rate_ratio=ratio)
    model, _ = build_teacher(tiny_tokenizer, settings, seed=0)
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=10, learning_rate=1e-3, warmup_steps=2, weight_decay=0.1,
        lr_scheduler_type="cosine", use_cpu=True, report_to="none",
    )  # fmt: skip
    return TeacherPretrainingTrainer(model=model, args=args, text_learning_rate_ratio=ratio)


def test_text_tower_learns_at_the_given_fraction_of_the_rate_at_every_step(tiny_tokenizer, tmp_path):
    trainer = _trainer(tiny_tokenizer, tmp_path, ratio=0.3)
    trainer.create_optimizer_and_scheduler(num_training_steps=10)
    groups = trainer.optimizer.param_groups
    names = {id(parameter): name for name, parameter in trainer.model.named_parameters()}

    grouped = [names[id(parameter)] for group in groups for parameter in group["params"]]
    assert sorted(grouped) == sorted(names.values())  # every parameter exactly once
    text_groups = [g for g in groups if all(is_text_tower_parameter(names[id(p)]) for p in g["params"])]
    image_groups = [g for g in groups if not any(is_text_tower_parameter(names[id(p)]) for p in g["params"])]
    assert len(text_groups) == 2 and len(image_groups) == 2  # (decayed, not decayed) per tower, nothing mixed

    for step in range(6):  # warm-up and part of the cosine decay
        image_rate, text_rate = image_groups[0]["lr"], text_groups[0]["lr"]
        if step > 0:
            assert image_rate > 0
        assert text_rate == pytest.approx(0.3 * image_rate)
        assert {g["lr"] for g in text_groups} == {text_rate} and {g["lr"] for g in image_groups} == {image_rate}
        trainer.optimizer.step()
        trainer.lr_scheduler.step()

    for group in groups:  # the Trainer's own weight-decay rule still holds inside each tower
        decayed = {names[id(p)] for p in group["params"]} <= set(trainer.get_decay_parameter_names(trainer.model))
        assert group["weight_decay"] == (0.1 if decayed else 0.0)


def test_ratio_one_gives_both_towers_the_same_rate(tiny_tokenizer, tmp_path):
    trainer = _trainer(tiny_tokenizer, tmp_path, ratio=1.0)
    trainer.create_optimizer_and_scheduler(num_training_steps=10)
    assert {group["initial_lr"] for group in trainer.optimizer.param_groups} == {1e-3}


@pytest.mark.parametrize("ratio", [0.0, -0.5])
def test_a_ratio_that_is_not_positive_is_refused(tiny_tokenizer, tmp_path, ratio):
    with pytest.raises(ValueError, match="text_learning_rate_ratio must be positive"):
        _trainer(tiny_tokenizer, tmp_path, ratio=ratio)
