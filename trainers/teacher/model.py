"""The frozen stage-1 teacher: a CLIP-like transformers model (AltCLIP by default; CLIP and Chinese-CLIP work the same)
that returns, for a batch, the selected intermediate hidden states of each tower and the final projected embeddings.

The teacher is never trained: weights are frozen (`requires_grad=False`), the model stays in eval mode, every call
runs under `torch.inference_mode()`. It computes only what stage 1's loss reads: the requested hidden states (caught by
hooks on the tower's blocks, not the whole `hidden_states` tuple), and, when no final embedding is a target, it stops
after the deepest requested block. `teacher_dtype: auto` runs it in bfloat16 where the device computes that natively
(`resolve_dtype`: Ampere or newer GPUs; CPUs with AMX / AVX512-BF16 for a teacher at least 768 wide). Under
DeepSpeed ZeRO-3 it is sharded across ranks (`shard_with_deepspeed`), otherwise it is placed on the device once (`to`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from torch import nn
from transformers import AltCLIPConfig, AltCLIPModel, AltCLIPProcessor, AutoConfig, AutoModel, AutoProcessor
from transformers import PreTrainedConfig, PreTrainedModel
from transformers.integrations import is_deepspeed_zero3_enabled
from transformers.integrations.deepspeed import set_hf_deepspeed_config, unset_hf_deepspeed_config

from modeling_dcclip import as_embedding, make_image_processor

from dcclip.trainers.teacher.geometry import tokens_to_grid
from dcclip.trainers.teacher.targets import TeacherLayout, TeacherTargets

logger = logging.getLogger(__name__)

DEFAULT_TEACHER = "BAAI/AltCLIP"


# On CPUs, bfloat16 pays off only on wide layers: on this repository's 2-core Xeon (AMX) a linear layer of width w and
# 4w outputs took, in CPU time, 1.5x longer in bfloat16 than in float32 at w = 64, 1.3x less at w = 512, 1.9x less at
# w = 768 and 3.1x less at w = 1024; the demo's 64-wide teacher took 1.6x longer as a whole.
CPU_BFLOAT16_MIN_WIDTH = 768


def device_computes_bfloat16(device: torch.device | str) -> bool:
    """Whether `device` computes bfloat16 matrix products natively: CUDA GPUs of compute capability 8.0 or newer,
    CPUs with AMX or AVX512-BF16."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
        return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)
    return False


def resolve_dtype(
    name: str, bf16: bool = False, fp16: bool = False, device: torch.device | str | None = None, width: int = 0
) -> torch.dtype:
    """The teacher's dtype. `"auto"` follows the run's mixed precision (bf16 / fp16); without either it is bfloat16
    where `device` computes bfloat16 natively (on a CPU only for a teacher at least `CPU_BFLOAT16_MIN_WIDTH` wide;
    `width`: its wider tower's hidden size), else float32. The teacher is frozen and its outputs are regression
    targets (that a cache stores in float16 anyway), while its forward pass is most of a live stage-1 step.
    Otherwise a torch dtype name (`float32` keeps float32 arithmetic everywhere)."""
    if name == "auto":
        if bf16 or fp16:
            return torch.bfloat16 if bf16 else torch.float16
        if device is not None and device_computes_bfloat16(device):
            if torch.device(device).type != "cpu" or width >= CPU_BFLOAT16_MIN_WIDTH:
                return torch.bfloat16
        return torch.float32
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if name not in dtypes:
        raise ValueError(f"teacher dtype must be 'auto' or one of {sorted(dtypes)}, got {name!r}")
    return dtypes[name]


def teacher_weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 over every parameter's name, shape, dtype and raw bytes: equal digests mean bit-identical weights.

    Under ZeRO-3 each partitioned parameter is gathered in turn, so every rank must call this.
    """
    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters(), key=lambda item: item[0]):
        if hasattr(param, "ds_id"):
            import deepspeed

            gather = deepspeed.zero.GatheredParameters([param])
        else:
            gather = torch.no_grad()
        with gather:
            tensor = param.detach().to("cpu").contiguous()
            # numel, not shape: sharding gives 0-dim parameters shape (1,) (see `shard_with_deepspeed`), same values
            digest.update(f"{name}|{tensor.numel()}|{tensor.dtype}|".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


_CHECKPOINT_FILES = ("config.json", "*.safetensors", "*.safetensors.index.json", "*.bin", "*.bin.index.json")


def teacher_checkpoint_digest(name_or_path: str) -> str:
    """SHA-256 over a teacher checkpoint's `config.json` and weight files (names and bytes), read in chunks.

    The identity a teacher cache records: it needs no model in memory (a cache run never loads the teacher), and any
    change of weights or architecture changes it. The safetensors files are the weights when there are any (what
    transformers loads), else the `.bin` files. A Hub id is resolved to its local snapshot (downloaded if missing).
    """
    folder = Path(name_or_path)
    if not folder.is_dir():
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(name_or_path, allow_patterns=list(_CHECKPOINT_FILES)))
    weights = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    if not weights:
        raise FileNotFoundError(f"no teacher weights (*.safetensors or *.bin) in {folder}")
    digest = hashlib.sha256()
    for path in [folder / "config.json", *weights]:
        digest.update(f"{path.name}|{path.stat().st_size}|".encode())
        with path.open("rb") as file:
            while chunk := file.read(1 << 24):
                digest.update(chunk)
    return digest.hexdigest()


def processor_digest(processor) -> str:
    """SHA-256 of what a teacher processor does to its inputs: the image transform's settings and the vocabulary."""
    image_settings = {
        key: value
        for key, value in processor.image_processor.to_dict().items()
        if key not in ("processor_class", "image_processor_type", "_processor_class")
    }
    tokenizer = processor.tokenizer
    description = {
        "image_processor": image_settings,
        "tokenizer": type(tokenizer).__name__,
        "vocab": sorted(tokenizer.get_vocab().items()),
    }
    return hashlib.sha256(json.dumps(description, sort_keys=True, default=str).encode()).hexdigest()


def shares_tokenizer(student_tokenizer, teacher_tokenizer) -> bool:
    """True when both tokenizers turn text into the same ids, so text feature maps can be compared token by token."""
    if student_tokenizer is teacher_tokenizer:
        return True
    if student_tokenizer.get_vocab() != teacher_tokenizer.get_vocab():
        return False
    probe = ["A photo of 2 cats, 一张两只猫的照片。", "ÉLAN — ｆｕｌｌ－ｗｉｄｔｈ"]
    return student_tokenizer(probe)["input_ids"] == teacher_tokenizer(probe)["input_ids"]


class DistillationTeacher:
    """A frozen CLIP-like teacher with its own processor; `teacher(...)` returns `TeacherTargets`.

    It is deliberately not an `nn.Module` attribute of anything the Trainer sees, so its weights can never reach the
    optimizer, DDP or a checkpoint.
    """

    def __init__(self, model: PreTrainedModel, processor):
        model.requires_grad_(False)
        self.model = model.eval()
        self.processor = processor
        self.layout = TeacherLayout.from_config(model.config)
        self.logit_scale = self._read_logit_scale()
        self._engine = None
        self._blocks = {
            "image": _block_list(getattr(model, "vision_model", None), self.layout.num_image_layers),
            "text": _block_list(getattr(model, "text_model", None), self.layout.num_text_layers),
        }

    @classmethod
    def from_pretrained(
        cls,
        name_or_config: str | PreTrainedConfig = DEFAULT_TEACHER,
        processor=None,
        dtype: torch.dtype | None = None,
    ) -> DistillationTeacher:
        """Load a teacher from a Hub id or a local folder (model + processor), or build one from a config.

        A config gives randomly initialised weights and needs `processor`. Training runs use `load_for_training`.
        """
        if isinstance(name_or_config, PreTrainedConfig):
            if processor is None:
                raise ValueError("a teacher built from a config needs its processor (image processor + tokenizer)")
            model = AutoModel.from_config(name_or_config, dtype=dtype)
        else:
            model = AutoModel.from_pretrained(name_or_config, dtype=dtype)
            processor = processor or AutoProcessor.from_pretrained(name_or_config)
        if not (hasattr(model, "get_image_features") and hasattr(model, "get_text_features")):
            raise TypeError(f"{type(model).__name__} is not a CLIP-like model (needs get_image_features/get_text_features)")
        logger.info("teacher: %s, %d parameters, dtype %s", type(model).__name__, model.num_parameters(), model.dtype)
        return cls(model, processor)

    @classmethod
    def load_for_training(
        cls,
        name: str,
        training_args,
        processor=None,
        dtype: torch.dtype | None = None,
    ) -> DistillationTeacher:
        """`from_pretrained` for a training run (stage 1, or stage 2's teacher term): full weights on every rank.

        With ZeRO-3 on, transformers (5.24) loads AltCLIP into zero.Init shards with some weights differing from
        the checkpoint (seen on 2 ranks: the teacher digest changes). So every rank loads a full copy on CPU and
        `place` partitions it; the teacher digest check guards against a recurrence. `training_args` (the run's
        `TrainingArguments`) holds the DeepSpeed config that is set again afterwards.
        """
        if not is_deepspeed_zero3_enabled():
            return cls.from_pretrained(name, processor=processor, dtype=dtype)
        unset_hf_deepspeed_config()
        try:
            return cls.from_pretrained(name, processor=processor, dtype=dtype)
        finally:
            set_hf_deepspeed_config(training_args.hf_deepspeed_config)

    def place(self, deepspeed_plugin, device: torch.device | str) -> None:
        """Shard the teacher like the student under ZeRO-3 (`deepspeed_plugin` of the Trainer's accelerator, None
        without DeepSpeed); replicate it on `device` otherwise."""
        if deepspeed_plugin is not None and deepspeed_plugin.zero_stage == 3:
            self.shard_with_deepspeed(deepspeed_plugin.deepspeed_config)
        else:
            self.to(device)

    def _read_logit_scale(self) -> torch.Tensor:
        param = self.model.logit_scale
        if hasattr(param, "ds_id"):
            import deepspeed

            with deepspeed.zero.GatheredParameters([param]):
                return param.detach().float().cpu().clone()
        return param.detach().float().cpu().clone()

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: torch.device | str) -> DistillationTeacher:
        """Place the (replicated) teacher on `device`, once."""
        self.model.to(device)
        return self

    def shard_with_deepspeed(self, deepspeed_config: dict) -> None:
        """Wrap the teacher in a ZeRO-3 inference engine so that each rank holds only a shard of its weights.

        `deepspeed_config` is the training run's (already processed) config; values that DeepSpeed sizes from the
        model (`"auto"` bucket sizes) are filled from the teacher's width, optimizer and scheduler are dropped.
        """
        import deepspeed

        config = copy.deepcopy(deepspeed_config)
        zero = config.setdefault("zero_optimization", {})
        if zero.get("stage") != 3:
            raise ValueError("shard_with_deepspeed is for ZeRO stage 3; other stages replicate the teacher (use `to`)")
        width = max(self.layout.image_width, self.layout.text_width)
        sized = {
            "reduce_bucket_size": width * width,
            "stage3_prefetch_bucket_size": int(0.9 * width * width),
            "stage3_param_persistence_threshold": 10 * width,
        }
        for key, value in sized.items():
            if zero.get(key) == "auto":
                zero[key] = value
        config.pop("optimizer", None)
        config.pop("scheduler", None)
        # DeepSpeed cannot broadcast or partition 0-dim parameters (AltCLIP's logit_scale); a (1,) view of the same
        # value broadcasts identically in the teacher's forward.
        for module in self.model.modules():
            for name, param in list(module.named_parameters(recurse=False)):
                if param.dim() == 0:
                    setattr(module, name, torch.nn.Parameter(param.detach().reshape(1), requires_grad=False))
        engine, *_ = deepspeed.initialize(model=self.model, config=config)
        engine.eval()
        self._engine = engine  # keeps the partitioned parameters' hooks alive
        logger.info("teacher sharded with DeepSpeed ZeRO-3")

    def targets_for_batch(
        self,
        batch: Mapping[str, torch.Tensor],
        image_layers: Sequence[int] = (),
        text_layers: Sequence[int] = (),
        with_embeddings: bool = True,
    ) -> TeacherTargets:
        """Targets for a collated batch (`data.collators.ImageTextCollator`): the teacher's own pixel values, and its
        own token ids where its tokenizer differs from the student's (else the student's ids, which it reads the same).
        """
        return self(
            pixel_values=batch.get("teacher_pixel_values"),
            input_ids=batch.get("teacher_input_ids", batch.get("input_ids")),
            attention_mask=batch.get("teacher_attention_mask", batch.get("attention_mask")),
            image_layers=image_layers,
            text_layers=text_layers,
            with_embeddings=with_embeddings,
        )

    def __call__(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_layers: Sequence[int] = (),
        text_layers: Sequence[int] = (),
        with_embeddings: bool = True,
    ) -> TeacherTargets:
        """Teacher targets for the given inputs: the hidden states at `image_layers` / `text_layers` and, with
        `with_embeddings`, the projected embeddings (without them, each tower stops after its deepest requested block).

        Each tower runs only on its own inputs. The returned tensors are ordinary tensors (cloned out of inference
        mode), so that losses may save them for backward.
        """
        targets = TeacherTargets(logit_scale=self.logit_scale.to(self.device))
        with torch.inference_mode():
            if pixel_values is not None:
                pixel_values = pixel_values.to(self.device, self.model.dtype)
                maps, targets.image_embeds = self._tower_outputs(
                    "image", lambda **kw: self.model.get_image_features(pixel_values=pixel_values, **kw),
                    image_layers, with_embeddings,
                )  # fmt: skip
                targets.image_maps = [tokens_to_grid(m) for m in maps]
            if input_ids is not None:
                input_ids = input_ids.to(self.device)
                mask = None if attention_mask is None else attention_mask.to(self.device)
                targets.text_maps, targets.text_embeds = self._tower_outputs(
                    "text", lambda **kw: self.model.get_text_features(input_ids=input_ids, attention_mask=mask, **kw),
                    text_layers, with_embeddings,
                )  # fmt: skip
                targets.text_attention_mask = attention_mask
        return _outside_inference_mode(targets)

    def _tower_outputs(
        self, tower: str, forward: Callable[..., object], layers: Sequence[int], with_embeddings: bool
    ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """The hidden states at `layers` (indices into the tower's `hidden_states`) and the embedding (or None).

        Hooks on the tower's blocks keep only the requested states; without embeddings the forward pass ends after
        the deepest requested block (not under ZeRO-3, whose parameter prefetching follows whole forward passes).
        """
        blocks = self._blocks[tower]
        if blocks is None:  # a model whose blocks could not be found: transformers' own hidden-state capture
            output = forward(output_hidden_states=bool(layers))
            return [output.hidden_states[i] for i in layers], as_embedding(output) if with_embeddings else None
        wanted = sorted(set(layers))
        stop_after = None if with_embeddings or self._engine is not None or not wanted else wanted[-1]
        captured: dict[int, torch.Tensor] = {}

        def keep(index: int, hidden: torch.Tensor) -> None:
            captured[index] = hidden
            if index == stop_after:
                raise _DeepestBlockReached

        handles = []
        if 0 in wanted:  # index 0: the input of the first block (the embeddings)
            handles.append(blocks[0].register_forward_pre_hook(
                lambda module, args, kwargs: keep(0, args[0] if args else kwargs["hidden_states"]), with_kwargs=True
            ))  # fmt: skip
        for index in (i for i in wanted if i > 0):  # index i: the output of block i
            handles.append(blocks[index - 1].register_forward_hook(
                lambda module, args, output, index=index: keep(index, output[0] if isinstance(output, tuple) else output)
            ))  # fmt: skip
        output = None
        try:
            output = forward()
        except _DeepestBlockReached:
            pass
        finally:
            for handle in handles:
                handle.remove()
        return [captured[i] for i in layers], as_embedding(output) if with_embeddings else None


class _DeepestBlockReached(Exception):
    """Ends a teacher forward pass once the deepest hidden state the loss reads is computed."""


def _block_list(tower: nn.Module | None, num_blocks: int) -> nn.ModuleList | None:
    """The tower's list of transformer blocks: its only `ModuleList` of `num_blocks` modules (None if not unique)."""
    if tower is None:
        return None
    candidates = [m for m in tower.modules() if isinstance(m, nn.ModuleList) and len(m) == num_blocks]
    return candidates[0] if len(candidates) == 1 else None


def _outside_inference_mode(targets: TeacherTargets) -> TeacherTargets:
    """Clones of the targets made outside inference mode: autograd may save ordinary tensors, not inference ones."""

    def clone(value):
        if isinstance(value, torch.Tensor):
            return value.clone()
        return [tensor.clone() for tensor in value] if isinstance(value, list) else value

    return TeacherTargets(**{name: clone(value) for name, value in vars(targets).items()})


# BAAI/AltCLIP's sizes as `build_altclip_teacher` arguments: a ViT-L/14 image tower at 224 px and an XLM-R-large text
# tower (24 blocks of width 1024 each), 768-wide projections; with a 250,002-token tokenizer (XLM-R's vocabulary size,
# `build_bilingual_tokenizer(..., pad_vocab_to=250002)` offline) the model has BAAI/AltCLIP's 864,186,113 parameters.
ALTCLIP_SIZES: dict[str, int] = {
    "image_size": 224,
    "patch_size": 14,
    "hidden_size": 1024,
    "num_layers": 24,
    "num_heads": 16,
    "mlp_ratio": 4,
    "projection_dim": 768,
    "text_project_dim": 768,
    "max_position_embeddings": 514,
}


def build_altclip_teacher(
    tokenizer,
    image_size: int = 32,
    patch_size: int = 8,
    hidden_size: int = 64,
    num_layers: int = 3,
    num_heads: int = 2,
    mlp_ratio: int = 2,
    projection_dim: int = 32,
    logit_scale_init_value: float = 2.6592,
    seed: int = 0,
    text_project_dim: int | None = None,
    max_position_embeddings: int | None = None,
) -> tuple[AltCLIPModel, AltCLIPProcessor]:
    """A randomly initialised AltCLIP (ViT image tower + AltRoberta text tower) of the given size, and its processor.

    It has the real teacher's classes and code paths at any size (the defaults: a test-sized teacher of a few hundred
    thousand parameters; the demo trains a larger one); its vocabulary is `len(tokenizer)` so that it shares the
    tokenizer of a student. Save both with `save_pretrained` to get a teacher folder that
    `DistillationTeacher.from_pretrained` (and `--teacher`) accept. Returned in eval mode.

    `text_project_dim` (default `hidden_size`) is the width of the text tower's output before the projection, and
    `max_position_embeddings` (default: the tokenizer's length + 2) its position table. `ALTCLIP_SIZES` holds
    BAAI/AltCLIP's values of every size argument.
    """
    shared = {
        "hidden_size": hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        "intermediate_size": mlp_ratio * hidden_size,
    }
    text_config = {
        **shared,
        "vocab_size": len(tokenizer),
        "project_dim": text_project_dim or hidden_size,
        # XLM-R positions start after the pad id
        "max_position_embeddings": max_position_embeddings or int(tokenizer.model_max_length) + 2,
        "pad_token_id": tokenizer.pad_token_id,
    }
    vision_config = {**shared, "image_size": image_size, "patch_size": patch_size}
    config = AltCLIPConfig(
        text_config=text_config,
        vision_config=vision_config,
        projection_dim=projection_dim,
        logit_scale_init_value=logit_scale_init_value,
    )
    torch.manual_seed(seed)
    model = AltCLIPModel(config).eval()
    processor = AltCLIPProcessor(image_processor=make_image_processor(image_size), tokenizer=tokenizer)
    return model, processor


def load_teacher_layout(name_or_path: str) -> TeacherLayout:
    """The teacher's layout from its config alone (no weights), to validate a run's settings before loading."""
    return TeacherLayout.from_config(AutoConfig.from_pretrained(name_or_path))

