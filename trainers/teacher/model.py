"""The frozen stage-1 teacher: a CLIP-like transformers model (AltCLIP by default; CLIP and Chinese-CLIP work the same)
that returns, for a batch, the selected intermediate hidden states of each tower and the final projected embeddings.

The teacher is never trained: weights are frozen (`requires_grad=False`), the model stays in eval mode, every call
runs under `torch.no_grad()`. Under DeepSpeed ZeRO-3 it is sharded across ranks (`shard_with_deepspeed`), otherwise it
is placed on the device once (`to`).
"""

from __future__ import annotations

import copy
import hashlib
import logging
from collections.abc import Mapping, Sequence

import torch
from transformers import AltCLIPConfig, AltCLIPModel, AltCLIPProcessor, AutoConfig, AutoModel, AutoProcessor
from transformers import PreTrainedConfig, PreTrainedModel
from transformers.integrations import is_deepspeed_zero3_enabled
from transformers.integrations.deepspeed import set_hf_deepspeed_config, unset_hf_deepspeed_config

from modeling_dcclip import as_embedding, make_image_processor

from dcclip.trainers.teacher.geometry import tokens_to_grid
from dcclip.trainers.teacher.targets import TeacherLayout, TeacherTargets

logger = logging.getLogger(__name__)

DEFAULT_TEACHER = "BAAI/AltCLIP"


def resolve_dtype(name: str, bf16: bool = False, fp16: bool = False) -> torch.dtype:
    """`"auto"` follows the run's mixed precision (bf16 / fp16 / float32); otherwise a torch dtype name."""
    if name == "auto":
        return torch.bfloat16 if bf16 else torch.float16 if fp16 else torch.float32
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

    @classmethod
    def from_pretrained(
        cls, name_or_config: str | PreTrainedConfig = DEFAULT_TEACHER, processor=None, dtype: torch.dtype | None = None
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
        cls, name: str, training_args, processor=None, dtype: torch.dtype | None = None
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
        self, batch: Mapping[str, torch.Tensor], image_layers: Sequence[int] = (), text_layers: Sequence[int] = ()
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
        )

    @torch.no_grad()
    def __call__(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_layers: Sequence[int] = (),
        text_layers: Sequence[int] = (),
    ) -> TeacherTargets:
        """Teacher targets for the given inputs: the hidden states at `image_layers` / `text_layers` and embeddings."""
        targets = TeacherTargets(logit_scale=self.logit_scale.to(self.device))
        dtype = self.model.dtype
        if pixel_values is not None:
            output = self.model.get_image_features(
                pixel_values=pixel_values.to(self.device, dtype), output_hidden_states=bool(image_layers)
            )
            targets.image_embeds = as_embedding(output)
            targets.image_maps = [tokens_to_grid(output.hidden_states[i]) for i in image_layers]
        if input_ids is not None:
            output = self.model.get_text_features(
                input_ids=input_ids.to(self.device),
                attention_mask=None if attention_mask is None else attention_mask.to(self.device),
                output_hidden_states=bool(text_layers),
            )
            targets.text_embeds = as_embedding(output)
            targets.text_maps = [output.hidden_states[i] for i in text_layers]
            targets.text_attention_mask = attention_mask
        return targets


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
) -> tuple[AltCLIPModel, AltCLIPProcessor]:
    """A randomly initialised AltCLIP (ViT image tower + AltRoberta text tower) of the given size, and its processor.

    It has the real teacher's classes and code paths at any size (the defaults: a test-sized teacher of a few hundred
    thousand parameters; the demo trains a larger one); its vocabulary is `len(tokenizer)` so that it shares the
    tokenizer of a student. Save both with `save_pretrained` to get a teacher folder that
    `DistillationTeacher.from_pretrained` (and `--teacher`) accept. Returned in eval mode.
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
        "project_dim": hidden_size,
        "max_position_embeddings": int(tokenizer.model_max_length) + 2,  # XLM-R positions start after pad id
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

