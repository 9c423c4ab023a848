"""Stop training at the first non-finite loss or weight, before anything non-finite is saved.

The HF Trainer logs a NaN loss as the average of the previous ones (`logging_nan_inf_filter`) and goes on training:
the optimizer turns NaN gradients into NaN weights, which the next checkpoint and the final model then hold. Here the
stage trainers check each training loss before its backward pass (`check_finite_loss`), and `FiniteWeightsCheck`
checks the weights before every save and at the end of training, on every rank together, so that a run stops with a
message naming the step and the tensors at fault, and its last complete checkpoint stays the one to resume from.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.distributed as dist
from torch import nn
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from dcclip.command_errors import CommandError

_ADVICE = ("Nothing from this step was saved; resume from the last complete checkpoint (--resume_from_checkpoint auto) "
           "with a lower learning rate or bf16 instead of fp16, or check the data.")  # fmt: skip


class NonFiniteTrainingError(CommandError, RuntimeError):
    """Training produced a non-finite loss or non-finite weights and stopped before saving them. A `CommandError`:
    the message says what to do, so the command reports it as one line."""


def check_finite_loss(loss: torch.Tensor, step: int, parts: Mapping[str, float | torch.Tensor] | None = None) -> None:
    """Raise `NonFiniteTrainingError` when the training loss of `step` is NaN or infinite; `parts` (the loss terms)
    are named in the message."""
    if bool(torch.isfinite(loss.detach()).all()):
        return
    terms = ", ".join(f"{name} = {float(torch.as_tensor(value).detach()):.6g}" for name, value in (parts or {}).items())
    raise NonFiniteTrainingError(
        f"the training loss of step {step} is {float(loss.detach())}{f' ({terms})' if terms else ''}; training stopped "
        f"before its backward pass. {_ADVICE}"
    )


def all_finite(tensor: torch.Tensor) -> bool:
    """Whether `tensor` holds no NaN and no infinity. Its minimum and maximum tell (a NaN propagates to both, an
    infinity is one of them), and one min-max reduction costs about a tenth of an elementwise `isfinite` pass."""
    if not tensor.is_floating_point() or tensor.numel() == 0:
        return True
    return bool(torch.isfinite(torch.stack(torch.aminmax(tensor.detach()))).all())


def owned_values(parameter: torch.Tensor, rank: int | None = None) -> torch.Tensor:
    """The values of `parameter` this rank holds: the whole tensor, or under ZeRO-3 the real elements of this rank's
    partition (`ds_tensor`). A partition is padded to equal sizes and DeepSpeed leaves the padding uninitialised (the
    one-element `logit_scale` on 2 ranks is all padding on rank 1), so reading it would find NaNs that are not
    weights. `rank`: this rank in the parameter's partition group (default: looked up)."""
    partition = getattr(parameter, "ds_tensor", None)
    if partition is None:
        return parameter
    if rank is None:
        initialized = dist.is_available() and dist.is_initialized()
        rank = dist.get_rank(group=getattr(parameter, "ds_process_group", None)) if initialized else 0
    size = partition.numel()
    real = max(0, min(size, int(parameter.ds_numel) - rank * size))
    return partition.detach().reshape(-1).narrow(0, 0, real)


def non_finite_parameters(model: nn.Module) -> list[str]:
    """Names of the parameters holding a NaN or an infinite value (under ZeRO-3: in this rank's partition)."""
    return [name for name, parameter in model.named_parameters() if not all_finite(owned_values(parameter))]


class FiniteWeightsCheck(TrainerCallback):
    """Before every save (`on_step_end` / `on_epoch_end` with `should_save`) and at the end of training (before the
    entry scripts save the final model), raise `NonFiniteTrainingError` when any weight is NaN or infinite.

    Every rank checks its own weights and the verdict is shared (one all-reduce), so all ranks stop together instead
    of the healthy ones waiting in the save's barrier.
    """

    def _check(self, args: TrainingArguments, state: TrainerState, model: nn.Module | None, moment: str) -> None:
        if model is None:
            return
        bad = non_finite_parameters(model)
        if dist.is_available() and dist.is_initialized():
            flag = torch.tensor(float(bool(bad)), device=args.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            if flag.item() and not bad:
                raise NonFiniteTrainingError(f"another rank holds non-finite weights after step {state.global_step}")
        if bad:
            listed = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
            raise NonFiniteTrainingError(
                f"{len(bad)} weight tensor(s) hold NaN or infinite values after step {state.global_step} ({moment}): "
                f"{listed}. {_ADVICE}"
            )

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model=None, **kwargs):
        if control.should_save:
            self._check(args, state, model, "before saving a checkpoint")

    def on_epoch_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model=None, **kwargs):
        if control.should_save:
            self._check(args, state, model, "before saving a checkpoint")

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model=None, **kwargs):
        self._check(args, state, model, "at the end of training, before the final save")
