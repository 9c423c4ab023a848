"""AlignmentTrainer in one process: batches, tower locking, optimizer groups, training, evaluation, teacher term."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import TrainerCallback

from dcclip.hub.folder_check import non_finite_tensors
from dcclip.trainers.alignment_config import AlignmentConfig
from dcclip.trainers.alignment_trainer import AlignmentTrainer, alignment_parameter_groups, lock_tower
from dcclip.trainers.data import LANGUAGE_IDS, ImageTextCollator, load_image_text_data
from dcclip.trainers.callbacks.finite_training import NonFiniteTrainingError
from dcclip.trainers.callbacks.zero_shot import ZeroShotEvaluationCallback

EN, ZH = LANGUAGE_IDS["en"], LANGUAGE_IDS["zh"]


def _config(tmp_path, **overrides) -> AlignmentConfig:
    values = dict(
        output_dir=str(tmp_path / "run"),
        per_device_train_batch_size=16,
        per_device_eval_batch_size=16,
        learning_rate=3e-3,
        warmup_steps=2,
        max_steps=16,
        logging_steps=4,
        save_strategy="no",
        report_to="none",
        seed=0,
        dataloader_num_workers=0,
        use_cpu=True,
    )
    values.update(overrides)
    return AlignmentConfig(**values)


@pytest.fixture(scope="module")
def train_data(scenes):
    return load_image_text_data(scenes.train_spec_imagefolder)


# ----- batches ------------------------------------------------------------------------------------------------------


def test_both_mode_batch_embeds_each_image_once_and_points_each_caption_at_it(train_data, scenes_processor):
    samples = [dict(train_data.dataset[i]) for i in range(3)]
    samples[1]["captions_zh"] = []  # an image with an English caption only
    batch = ImageTextCollator(scenes_processor, bilingual="both")(samples)
    assert batch["pixel_values"].shape[0] == 3
    assert batch["image_index"].tolist() == [0, 0, 1, 2, 2]
    assert batch["language"].tolist() == [EN, ZH, EN, EN, ZH]
    expected = ImageTextCollator(scenes_processor)([samples[2]])["pixel_values"][0]
    torch.testing.assert_close(batch["pixel_values"][2], expected)


def test_sample_mode_batch_has_one_caption_per_image(train_data, scenes_processor):
    samples = [train_data.dataset[i] for i in range(4)]
    batch = ImageTextCollator(scenes_processor, bilingual="sample")(samples)
    assert batch["pixel_values"].shape[0] == batch["input_ids"].shape[0] == 4
    assert batch["image_index"].tolist() == [0, 1, 2, 3]


# ----- towers and optimizer groups ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("preset", "tower", "unlocked", "trainable_prefixes"),
    [
        ("tiny", "vision_model", 1, ("encoder.stages.1.", "layernorm.")),  # ConvNeXt-V2: last stage + final norm
        ("tiny", "text_model", 0, ()),
        ("tiny-vit", "vision_model", 1, ("layers.1.", "layernorm.")),  # ViT: last layer + final norm
        ("tiny-vit", "text_model", 2, ("encoder.layer.0.", "encoder.layer.1.")),
    ],
)
def test_lock_tower_leaves_only_the_last_blocks_trainable(
    make_scenes_student, preset, tower, unlocked, trainable_prefixes
):
    model = make_scenes_student(preset)
    lock_tower(getattr(model, tower), unlocked)
    trainable = {name for name, p in getattr(model, tower).named_parameters() if p.requires_grad}
    expected = {name for name, _ in getattr(model, tower).named_parameters() if name.startswith(trainable_prefixes)}
    assert trainable == expected
    # the other tower, the projections and the temperature stay trainable
    assert all(p.requires_grad for n, p in model.named_parameters() if not n.startswith(tower))


def test_lock_tower_rejects_more_layers_than_the_tower_has(make_scenes_student):
    with pytest.raises(ValueError, match="cannot unlock 3 layers of ConvNextV2Model: it has 2"):
        lock_tower(make_scenes_student().vision_model, 3)


def test_unlocked_layers_without_a_lock_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="only applies with lock_text_tower"):
        _config(tmp_path, unlocked_text_layers=1)


def test_unknown_image_to_text_negatives_option_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="image_to_text_negatives must be one of"):
        _config(tmp_path, image_to_text_negatives="every_caption")


def test_parameter_groups_set_learning_rates_per_part_and_spare_norms_biases_and_temperature_from_decay(
    make_scenes_student, tmp_path
):
    model = make_scenes_student()
    lock_tower(model.vision_model, 1)
    args = _config(
        tmp_path, learning_rate=1e-3, weight_decay=0.2, text_tower_learning_rate=1e-4, logit_scale_learning_rate=1e-2
    )
    groups = alignment_parameter_groups(model, args)
    setting = {id(p): (group["lr"], group["weight_decay"]) for group in groups for p in group["params"]}
    params = dict(model.named_parameters())
    assert setting[id(params["logit_scale"])] == (1e-2, 0.0)
    assert setting[id(params["text_model.encoder.layer.0.attention.self.query.weight"])] == (1e-4, 0.2)
    assert setting[id(params["text_model.encoder.layer.0.attention.self.query.bias"])] == (1e-4, 0.0)
    assert setting[id(params["text_model.embeddings.LayerNorm.weight"])] == (1e-4, 0.0)
    assert setting[id(params["vision_model.encoder.stages.1.layers.0.pwconv1.weight"])] == (1e-3, 0.2)
    assert setting[id(params["vision_model.encoder.stages.1.layers.0.grn.weight"])] == (1e-3, 0.0)  # (1, 1, 1, C)
    assert setting[id(params["visual_projection.weight"])] == (1e-3, 0.2)
    # frozen parameters are left out
    assert id(params["vision_model.encoder.stages.0.layers.0.pwconv1.weight"]) not in setting
    assert len(setting) == sum(p.requires_grad for p in model.parameters())


# ----- training and evaluation --------------------------------------------------------------------------------------


def _trainer(model, args, scenes_processor, train_data, bilingual="both", **kwargs) -> AlignmentTrainer:
    collator = ImageTextCollator(scenes_processor, bilingual=bilingual, max_text_length=32)
    return AlignmentTrainer(model=model, args=args, train_dataset=train_data.dataset, data_collator=collator, **kwargs)


def test_training_lowers_the_loss_and_logs_each_language_and_the_temperature(
    make_scenes_student, scenes_processor, train_data, eval_pairs_spec, scenes, tmp_path
):
    model = make_scenes_student()
    start_scale = model.logit_scale.detach().clone()
    # 16 evaluation images in batches of 6, 6 and 4
    args = _config(tmp_path, eval_strategy="steps", eval_steps=16, per_device_eval_batch_size=6)
    callback = ZeroShotEvaluationCallback.from_benchmark(
        scenes.eval_dir, scenes_processor, task_names=["colour", "shape"]
    )
    trainer = _trainer(
        model,
        args,
        scenes_processor,
        train_data,
        eval_dataset=load_image_text_data(eval_pairs_spec).dataset,
        callbacks=[callback],
    )
    trainer.train()
    train_logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(train_logs) == 4
    assert train_logs[-1]["loss"] < 0.8 * train_logs[0]["loss"]
    for entry in train_logs:
        # every pair counts once: the total is the pair-weighted mean of the two languages (equal counts here)
        assert entry["loss"] == pytest.approx((entry["loss_en"] + entry["loss_zh"]) / 2, rel=1e-4)
    assert not torch.equal(model.logit_scale.detach(), start_scale)
    assert train_logs[-1]["logit_scale"] == pytest.approx(model.logit_scale.detach().exp().item(), rel=0.05)

    evaluation = next(entry for entry in trainer.state.log_history if "eval_loss" in entry)
    # averaged over pairs like eval_loss (every evaluation image has a caption in both languages)
    assert evaluation["eval_loss"] == pytest.approx(
        (evaluation["eval_loss_en"] + evaluation["eval_loss_zh"]) / 2, rel=1e-4
    )
    zero_shot = next(entry for entry in trainer.state.log_history if "eval_zero_shot_en" in entry)
    for language in ("en", "zh"):
        scores = [zero_shot[f"eval_zero_shot_{task}_{language}"] for task in ("colour", "shape")]
        assert all(0.0 <= score <= 1.0 for score in scores)
        assert zero_shot[f"eval_zero_shot_{language}"] == pytest.approx(sum(scores) / 2)


def test_evaluate_returns_zero_shot_scores_that_match_the_classifier(
    make_scenes_student, scenes_processor, train_data, eval_pairs_spec, scenes, tmp_path
):
    from dcclip.evaluation.tasks import load_builtin_benchmark
    from dcclip.evaluation.zero_shot import evaluate_zero_shot

    model = make_scenes_student(seed=3)
    callback = ZeroShotEvaluationCallback.from_benchmark(
        scenes.eval_dir, scenes_processor, languages=["zh"], task_names=["count"]
    )
    trainer = _trainer(
        model,
        _config(tmp_path),
        scenes_processor,
        train_data,
        eval_dataset=load_image_text_data(eval_pairs_spec).dataset,
        callbacks=[callback],
    )
    metrics = trainer.evaluate()
    (task,) = load_builtin_benchmark(scenes.eval_dir, ["zh"], ["count"])
    assert metrics["eval_zero_shot_count_zh"] == pytest.approx(
        evaluate_zero_shot(model, scenes_processor, task, "zh").score
    )
    assert math.isfinite(metrics["eval_loss"]) and "eval_zero_shot_count_en" not in metrics


def test_locked_image_tower_stays_fixed_while_the_rest_trains(
    make_scenes_student, scenes_processor, train_data, tmp_path
):
    model = make_scenes_student()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    args = _config(tmp_path, lock_image_tower=True, max_steps=2, weight_decay=0.1)
    _trainer(model, args, scenes_processor, train_data, bilingual="sample").train()
    changed = {name for name, p in model.named_parameters() if not torch.equal(p.detach(), before[name])}
    assert not any(name.startswith("vision_model.") for name in changed)
    assert {"visual_projection.weight", "text_projection.weight", "logit_scale"} <= changed
    assert any(name.startswith("text_model.") for name in changed)


def test_activation_checkpointing_trains_to_the_same_first_loss(
    make_scenes_student, scenes_processor, train_data, tmp_path
):
    losses = []
    for checkpointing in (False, True):
        args = _config(
            tmp_path / str(checkpointing), max_steps=1, logging_steps=1, activation_checkpointing=checkpointing
        )
        trainer = _trainer(make_scenes_student(), args, scenes_processor, train_data)
        trainer.train()
        losses.append(trainer.state.log_history[0]["loss"])
    assert trainer.model.text_model.is_activation_checkpointing
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def test_teacher_term_pulls_the_student_embeddings_towards_the_teacher(
    make_scenes_student, scenes_processor, train_data, tmp_path
):
    from dcclip.trainers.teacher.model import DistillationTeacher, build_altclip_teacher

    teacher = DistillationTeacher(
        *build_altclip_teacher(scenes_processor.tokenizer, image_size=32, projection_dim=32)
    )
    collator = ImageTextCollator(scenes_processor, teacher.processor, bilingual="both", max_text_length=32)
    args = _config(tmp_path, teacher_loss_weight=1.0, max_steps=8)
    trainer = AlignmentTrainer(
        model=make_scenes_student(),
        args=args,
        teacher=teacher,
        train_dataset=train_data.dataset,
        data_collator=collator,
    )
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss_teacher" in entry]
    assert len(logs) == 2
    assert logs[-1]["loss_teacher"] < logs[0]["loss_teacher"]
    for entry in logs:
        assert entry["loss"] == pytest.approx(
            (entry["loss_en"] + entry["loss_zh"]) / 2 + entry["loss_teacher"], rel=1e-4
        )


def test_teacher_of_another_width_is_rejected(make_scenes_student, scenes_processor, train_data, tmp_path):
    from dcclip.trainers.teacher.model import DistillationTeacher, build_altclip_teacher

    teacher = DistillationTeacher(*build_altclip_teacher(scenes_processor.tokenizer, projection_dim=16))
    with pytest.raises(ValueError, match="teacher's are 16 wide and the student's 32"):
        _trainer(
            make_scenes_student(),
            _config(tmp_path, teacher_loss_weight=1.0),
            scenes_processor,
            train_data,
            teacher=teacher,
        )


# ----- non-finite loss and weights ----------------------------------------------------------------------------------


def _saved_steps(output_dir) -> list[int]:
    return sorted(int(path.name.split("-")[1]) for path in output_dir.glob("checkpoint-*"))


def test_a_non_finite_loss_stops_training_before_its_step_is_saved(
    make_scenes_student, scenes_processor, train_data, tmp_path
):
    # a learning rate of 1e30 makes the first update blow the weights up: the loss of step 2 is NaN
    args = _config(tmp_path, learning_rate=1e30, warmup_steps=0, max_steps=6, save_strategy="steps", save_steps=1)
    trainer = _trainer(make_scenes_student(), args, scenes_processor, train_data)
    with pytest.raises(NonFiniteTrainingError, match=r"the training loss of step 2 is nan \(loss_en = nan"):
        trainer.train()
    output_dir = tmp_path / "run"
    assert _saved_steps(output_dir) == [1]
    assert not non_finite_tensors(output_dir / "checkpoint-1" / "model.safetensors")


class _PoisonWeightAtStep(TrainerCallback):
    """Turns one weight into NaN at the end of `step`, as a diverging update would, before the step's save."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step:
            with torch.no_grad():
                model.text_projection.weight[0, 0] = float("nan")


def test_non_finite_weights_are_never_saved(make_scenes_student, scenes_processor, train_data, tmp_path):
    args = _config(tmp_path, max_steps=6, save_strategy="steps", save_steps=2)
    trainer = _trainer(make_scenes_student(), args, scenes_processor, train_data, callbacks=[_PoisonWeightAtStep(4)])
    with pytest.raises(NonFiniteTrainingError, match=r"1 weight tensor\(s\) hold NaN .* after step 4 .*text_projection"):
        trainer.train()
    assert _saved_steps(tmp_path / "run") == [2]


def test_non_finite_weights_at_the_end_of_training_stop_before_the_final_save(
    make_scenes_student, scenes_processor, train_data, tmp_path
):
    args = _config(tmp_path, max_steps=3)  # no checkpoints: the end of training is the only check
    trainer = _trainer(make_scenes_student(), args, scenes_processor, train_data, callbacks=[_PoisonWeightAtStep(3)])
    with pytest.raises(NonFiniteTrainingError, match="at the end of training, before the final save"):
        trainer.train()


def test_the_weights_check_reads_only_the_real_elements_of_a_zero3_partition():
    from torch import nn

    from dcclip.trainers.callbacks.finite_training import all_finite, non_finite_parameters, owned_values

    # DeepSpeed ZeRO-3 pads each parameter to equal partitions and leaves the padding uninitialised: a 3-element
    # parameter on 2 ranks is 2 real elements on rank 0, 1 real element and 1 of padding on rank 1.
    parameter = nn.Parameter(torch.empty(0))
    parameter.ds_numel = 3
    parameter.ds_tensor = torch.tensor([1.0, float("nan")])
    assert torch.equal(owned_values(parameter, rank=1), torch.tensor([1.0]))  # the NaN is padding
    assert not all_finite(owned_values(parameter, rank=0))  # on rank 0 both elements are weights
    assert owned_values(parameter, rank=2).numel() == 0  # a rank past the end holds only padding
    model = nn.Module()
    model.logit_scale = parameter
    assert non_finite_parameters(model) == ["logit_scale"]  # no process group: rank 0
