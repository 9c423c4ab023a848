"""Stage 2's `AlignmentTrainer`: wires the global-batch bilingual InfoNCE of `losses/contrastive.py` into the HF
Trainer, with tower locking and CLIP-style optimizer groups.

A batch is the canonical bilingual batch of `data/collators.py`: `pixel_values` (N images, each once),
`input_ids` / `attention_mask` (M captions), `language` (M language ids) and `image_index` (M: the image row each
caption describes).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from transformers import Trainer

from modeling_dcclip import DCCLIPModel

from dcclip.languages import LANGUAGES
from dcclip.trainers.alignment_config import AlignmentConfig
from dcclip.trainers.callbacks.finite_training import FiniteWeightsCheck, check_finite_loss
from dcclip.trainers.losses.contrastive import ContrastiveLoss
from dcclip.trainers.losses.distillation import embedding_distillation_loss
from dcclip.trainers.teacher.model import DistillationTeacher


# ----- towers and parameter groups ----------------------------------------------------------------------------------


def _tower_blocks(tower: nn.Module) -> tuple[nn.ModuleList, list[nn.Module]]:
    """The tower's sequence of blocks (the shallowest ModuleList: ViT `layers`, BERT `encoder.layer`, ConvNeXt
    `encoder.stages`) and the top-level modules registered after it (final norm, pooler)."""
    lists = [(name, module) for name, module in tower.named_modules() if isinstance(module, nn.ModuleList)]
    if not lists:
        raise ValueError(f"{type(tower).__name__} has no list of blocks (nn.ModuleList) to unlock layer by layer")
    depth = min(name.count(".") for name, _ in lists)
    shallowest = [(name, module) for name, module in lists if name.count(".") == depth]
    if len(shallowest) > 1:
        raise ValueError(f"{type(tower).__name__}: ambiguous block lists {[n for n, _ in shallowest]}")
    name, blocks = shallowest[0]
    children = [child_name for child_name, _ in tower.named_children()]
    after = children[children.index(name.split(".")[0]) + 1 :]
    return blocks, [getattr(tower, child) for child in after]


def lock_tower(tower: nn.Module, unlocked_layers: int = 0) -> None:
    """Freeze `tower` except its last `unlocked_layers` blocks and, when any block is unlocked, the modules after
    them (final norm, pooler)."""
    blocks, head = _tower_blocks(tower)
    if unlocked_layers > len(blocks):
        raise ValueError(f"cannot unlock {unlocked_layers} layers of {type(tower).__name__}: it has {len(blocks)}")
    tower.requires_grad_(False)
    if unlocked_layers:
        for module in [*blocks[len(blocks) - unlocked_layers :], *head]:
            module.requires_grad_(True)


def _is_scale_or_shift(parameter: nn.Parameter) -> bool:
    """Biases, norm gains, GRN / layer-scale vectors and the temperature: at most one dimension larger than 1.
    (`ds_shape`: the full shape of a parameter that ZeRO-3 has already partitioned.)"""
    shape = getattr(parameter, "ds_shape", parameter.shape)
    return sum(size > 1 for size in shape) <= 1


def alignment_parameter_groups(model: DCCLIPModel, args: AlignmentConfig) -> list[dict[str, Any]]:
    """Optimizer groups: one learning rate per part (image tower, text tower, temperature, projections), and no
    weight decay on biases, norms, other scale/shift vectors and the temperature, as CLIP trainers do."""
    learning_rates = {
        "vision_model": args.image_tower_learning_rate,
        "text_model": args.text_tower_learning_rate,
        "logit_scale": args.logit_scale_learning_rate,
    }
    groups: dict[tuple[float, float], list[nn.Parameter]] = defaultdict(list)
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        learning_rate = learning_rates.get(name.split(".")[0])
        learning_rate = args.learning_rate if learning_rate is None else learning_rate
        no_decay = name == "logit_scale" or _is_scale_or_shift(parameter)
        groups[(learning_rate, 0.0 if no_decay else args.weight_decay)].append(parameter)
    return [{"params": params, "lr": lr, "weight_decay": decay} for (lr, decay), params in groups.items()]


# ----- trainer ------------------------------------------------------------------------------------------------------


class AlignmentTrainer(Trainer):
    """Trains a `DCCLIPModel` with global-batch bilingual InfoNCE; logs `loss_en` / `loss_zh` beside `loss`, and the
    temperature `logit_scale` (exponentiated). Stops on a non-finite training loss, and never saves non-finite weights
    (`callbacks/finite_training.py`).

    Args:
        model: the student.
        args: an `AlignmentConfig`.
        teacher: the frozen stage-1 teacher, for `args.teacher_loss_weight > 0`; the batches must then carry the
            teacher's inputs (`teacher_pixel_values`, and its own token ids where it tokenizes differently), and its
            embeddings must be as wide as the student's (`projection_dim`).
        **kwargs: the other `Trainer` arguments (`train_dataset`, `data_collator`, `callbacks`, ...).
    """

    def __init__(
        self, model: DCCLIPModel, args: AlignmentConfig, teacher: DistillationTeacher | None = None, **kwargs: Any
    ):
        if args.teacher_loss_weight > 0 and teacher is None:
            raise ValueError("teacher_loss_weight > 0 needs a teacher")
        if teacher is not None and teacher.model.config.projection_dim != model.config.projection_dim:
            raise ValueError(
                f"the teacher term compares embeddings, but the teacher's are {teacher.model.config.projection_dim} "
                f"wide and the student's {model.config.projection_dim} (projection_dim)"
            )
        if args.lock_image_tower:
            lock_tower(model.vision_model, args.unlocked_image_layers)
        if args.lock_text_tower:
            lock_tower(model.text_model, args.unlocked_text_layers)
        super().__init__(model=model, args=args, **kwargs)
        # compute_loss returns a per-micro-batch mean; the Trainer divides it by the accumulation steps
        self.loss_is_scaled_for_ga = False
        self.add_callback(FiniteWeightsCheck())  # never save non-finite weights
        self.teacher = teacher
        if teacher is not None:
            # as in stage 1: sharded like the student under ZeRO-3, replicated otherwise
            teacher.place(self.accelerator.state.deepspeed_plugin if self.is_deepspeed_enabled else None, self.args.device)
        self.contrastive_loss = ContrastiveLoss(len(LANGUAGES), args.local_loss, args.image_to_text_negatives)
        # per mode ("train" / "eval"): metric name -> [weighted sum, total weight] since the last log
        self._metric_sums: dict[str, dict[str, list[float]]] = {
            "train": defaultdict(lambda: [0.0, 0]),
            "eval": defaultdict(lambda: [0.0, 0]),
        }

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        """The Trainer's optimizer choice (`optim`, betas, eps, ...) over `alignment_parameter_groups`."""
        opt_model = self.model if model is None else model
        if self.optimizer is None:
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            self.optimizer = optimizer_cls(alignment_parameter_groups(opt_model, self.args), **optimizer_kwargs)
        return self.optimizer

    def _teacher_loss(
        self, inputs: dict[str, torch.Tensor], image_embeds: torch.Tensor, text_embeds: torch.Tensor
    ) -> torch.Tensor:
        if "teacher_pixel_values" not in inputs:
            raise KeyError("teacher_loss_weight > 0 but the batch has no teacher inputs; give the collator the teacher's processor")
        targets = self.teacher.targets_for_batch(inputs)
        image_term = embedding_distillation_loss(image_embeds, targets.image_embeds.to(image_embeds.dtype))
        text_term = embedding_distillation_loss(text_embeds, targets.text_embeds.to(text_embeds.dtype))
        return (image_term + text_term) / 2

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        """Global-batch bilingual InfoNCE (+ the optional teacher term) of one micro-batch."""
        # Through the wrapped model's forward, so DDP / DeepSpeed see the step; the temperature comes from the output
        # too, since ZeRO-3 has partitioned the parameter again once forward returns.
        outputs = model(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], pixel_values=inputs["pixel_values"]
        )
        contrastive = self.contrastive_loss(
            outputs.image_embeds, outputs.text_embeds, inputs["image_index"], inputs["language"], outputs.logit_scale
        )
        loss = contrastive.loss
        mode = "train" if model.training else "eval"
        # training logs average over steps, as the Trainer does for `loss`; evaluation averages over pairs
        pairs = contrastive.pairs_per_language.tolist() if mode == "eval" else [1] * len(LANGUAGES)
        per_language = self._mean_over_ranks(contrastive.loss_per_language).tolist()
        for language, value, weight in zip(LANGUAGES, per_language, pairs, strict=True):
            self._record(mode, f"loss_{language}", value, weight)
        if self.args.teacher_loss_weight > 0:
            teacher_loss = self._teacher_loss(inputs, outputs.image_embeds, outputs.text_embeds)
            loss = loss + self.args.teacher_loss_weight * teacher_loss
            self._record(mode, "loss_teacher", teacher_loss.item(), sum(pairs))
        if mode == "train":
            terms = {f"loss_{language}": value for language, value in zip(LANGUAGES, per_language, strict=True)}
            check_finite_loss(loss, self.state.global_step + 1, terms)
            self._record(mode, "logit_scale", outputs.logit_scale.item())
        return (loss, outputs) if return_outputs else loss

    def _record(self, mode: str, name: str, value: float, weight: float = 1) -> None:
        if not math.isnan(value) and weight:
            totals = self._metric_sums[mode][name]
            totals[0] += value * weight
            totals[1] += weight

    def _mean_over_ranks(self, values: torch.Tensor) -> torch.Tensor:
        """Per-language losses of the global batch: in the local form each rank holds a share whose mean is the
        global value (in the full form every rank already holds it)."""
        values = values.detach().clone()
        if self.args.local_loss and dist.is_available() and dist.is_initialized():
            dist.all_reduce(values)
            values /= dist.get_world_size()
        return values

    def prediction_step(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ) -> tuple[torch.Tensor, None, None]:
        """Evaluation computes the same loss (on the gathered evaluation batch); there are no predictions to keep."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the per-language losses (and temperature) averaged since the last log; `eval_` prefixed in evaluation."""
        mode = "eval" if any(key.startswith("eval_") for key in logs) else "train"
        prefix = "eval_" if mode == "eval" else ""
        sums = self._metric_sums[mode]
        logs = {**logs, **{f"{prefix}{name}": total / count for name, (total, count) in sums.items()}}
        sums.clear()
        super().log(logs, start_time)
