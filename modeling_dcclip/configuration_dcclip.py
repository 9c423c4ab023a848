"""Configuration of the DC-CLIP student: any transformers vision backbone + any text encoder + two projections.

This file travels to the Hub as remote code, so it imports only torch/transformers. It loads under transformers 5 (the
primary target) and under transformers 4.57 or later, which many Hub users still have.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from transformers import AutoConfig
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.utils.versions import require_version

try:  # transformers 5: configs are dataclasses whose sub-configs are declared with SubConfigSpec
    from transformers import PreTrainedConfig
    from transformers.configuration_utils import SubConfigSpec

    ON_TRANSFORMERS_4 = False
except ImportError:  # transformers 4: configs set their fields and build their sub-configs in __init__
    from transformers import PretrainedConfig as PreTrainedConfig

    ON_TRANSFORMERS_4 = True

# The oldest transformers these remote-code files load under (tests/modeling/test_dcclip_transformers_4.py runs 4.57).
# config.json and the model card state it; an older transformers stops here with this message.
MINIMUM_TRANSFORMERS_VERSION = "4.57.0"
MINIMUM_TRANSFORMERS_VERSION_KEY = "minimum_transformers_version"  # its key in config.json
require_version(
    f"transformers>={MINIMUM_TRANSFORMERS_VERSION}",
    f"DC-CLIP models need transformers >= {MINIMUM_TRANSFORMERS_VERSION}: "
    f"pip install -U 'transformers>={MINIMUM_TRANSFORMERS_VERSION}'",
)

VisionPooling = Literal["pooler", "cls", "mean"]
TextPooling = Literal["cls", "mean", "pooler"]

# Named students. Sizes are the tower configs only; the text vocabulary follows the tokenizer (`vocab_size` override).
# Parameter counts (towers + projections, counted with `DCCLIPModel(config).num_parameters()`) are in docs/presets.md.
_PRESETS: dict[str, dict[str, Any]] = {
    # Test-sized CNN student: a 2-stage ConvNeXt-V2 and a 2-layer XLM-R.
    "tiny": {
        "vision_config": {
            "model_type": "convnextv2",
            "num_channels": 3,
            "patch_size": 4,
            "num_stages": 2,
            "hidden_sizes": [16, 32],
            "depths": [1, 1],
            "image_size": 32,
        },
        "text_config": {
            "model_type": "xlm-roberta",
            "vocab_size": 1000,
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "max_position_embeddings": 66,
        },
        "projection_dim": 32,
    },
    # Test-sized transformer student: a 2-layer ViT and a 2-layer BERT.
    "tiny-vit": {
        "vision_config": {
            "model_type": "vit",
            "image_size": 32,
            "patch_size": 8,
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 64,
        },
        "text_config": {
            "model_type": "bert",
            "vocab_size": 1000,
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "max_position_embeddings": 64,
        },
        "projection_dim": 32,
        "vision_pooling": "cls",
    },
    # The default edge student: ConvNeXt-V2-nano image tower (224 px) and a 6-layer, 384-wide XLM-R text tower
    # that shares AltCLIP's XLM-R tokenizer (250,002 tokens), so text feature maps distil token by token.
    "edge": {
        "vision_config": {
            "model_type": "convnextv2",
            "num_channels": 3,
            "patch_size": 4,
            "hidden_sizes": [80, 160, 320, 640],
            "depths": [2, 2, 8, 2],
            "image_size": 224,
        },
        "text_config": {
            "model_type": "xlm-roberta",
            "vocab_size": 250002,
            "hidden_size": 384,
            "num_hidden_layers": 6,
            "num_attention_heads": 6,
            "intermediate_size": 1536,
            "max_position_embeddings": 514,
        },
        "projection_dim": 768,
    },
    # Alternative edge image tower: MobileViT-S (a CNN/transformer hybrid common on phones), same text tower.
    "edge-mobilevit": {
        "vision_config": {"model_type": "mobilevit", "image_size": 256, "num_channels": 3},
        "text_config": {
            "model_type": "xlm-roberta",
            "vocab_size": 250002,
            "hidden_size": 384,
            "num_hidden_layers": 6,
            "num_attention_heads": 6,
            "intermediate_size": 1536,
            "max_position_embeddings": 514,
        },
        "projection_dim": 768,
    },
}


# Tower built when a config leaves it out (transformers' defaults for that model type).
_DEFAULT_TOWER_MODEL_TYPES = {"vision_config": "convnextv2", "text_config": "xlm-roberta"}


def _build_tower_config(value: PreTrainedConfig | dict | None, default_model_type: str) -> PreTrainedConfig:
    """A tower's config object from a config, a dict with `model_type`, or `None` (transformers 4 path)."""
    if isinstance(value, PreTrainedConfig):
        return value
    return AutoConfig.for_model(**{"model_type": default_model_type, **(value or {})})


def _check_tower_config(field: str, value: Any) -> None:
    """Fail early, naming the field, when a tower config cannot be resolved to a transformers config class."""
    if value is None or isinstance(value, PreTrainedConfig):
        return
    if not isinstance(value, dict):
        raise TypeError(f"DCCLIPConfig.{field} must be a dict with 'model_type' or a PreTrainedConfig, got {type(value)}")
    model_type = value.get("model_type")
    if model_type is None:
        raise ValueError(f"DCCLIPConfig.{field} needs a 'model_type' key (e.g. 'convnextv2', 'vit', 'xlm-roberta')")
    if model_type not in CONFIG_MAPPING:
        raise ValueError(
            f"DCCLIPConfig.{field}: unknown model_type {model_type!r}; it must be a model type that this "
            f"transformers version knows (e.g. 'convnextv2', 'resnet', 'mobilevit', 'vit' for images, "
            f"'xlm-roberta', 'bert' for text)"
        )


class DCCLIPConfig(PreTrainedConfig):
    r"""
    Configuration of a [`DCCLIPModel`]: a vision backbone and a text encoder, each a transformers model built from its
    own config, joined by linear projections into a shared embedding space.

    Args:
        vision_config (`dict` or `PreTrainedConfig`):
            Config of the image tower: any transformers vision backbone (ConvNeXt-V2, ResNet, MobileViT, ViT, ...).
            A dict must carry `model_type`. Default: a ConvNeXt-V2 config.
        text_config (`dict` or `PreTrainedConfig`):
            Config of the text tower: any transformers text encoder (XLM-RoBERTa, BERT, ...). Default: XLM-RoBERTa.
        projection_dim (`int`, defaults to 256):
            Width of the shared image-text embedding space.
        logit_scale_init_value (`float`, defaults to 2.6592):
            Initial value of the learnable log temperature; 2.6592 = ln(1 / 0.07), as in CLIP.
        max_logit_scale (`float`, defaults to 4.6052):
            Upper clamp of the log temperature (ln 100, as in CLIP) so the softmax cannot collapse during training.
        vision_pooling (`str`, defaults to `"pooler"`):
            How the image tower's output becomes one vector: `"pooler"` (the backbone's own pooled output: global
            average pool + norm for CNNs), `"cls"` (first token of a ViT), `"mean"` (mean over spatial positions or
            tokens).
        text_pooling (`str`, defaults to `"mean"`):
            How the text tower's output becomes one vector: `"mean"` (attention-masked mean over tokens; stable for
            small text towers trained from scratch), `"cls"` (first token, as AltCLIP does), `"pooler"` (the
            encoder's pooler layer).
    """

    model_type = "dcclip"

    vision_config: PreTrainedConfig | dict | None = None
    text_config: PreTrainedConfig | dict | None = None
    projection_dim: int = 256
    logit_scale_init_value: float = 2.6592
    max_logit_scale: float = 4.6052
    vision_pooling: str = "pooler"
    text_pooling: str = "mean"

    if not ON_TRANSFORMERS_4:
        sub_configs_defaults = {
            field: SubConfigSpec(config_class=AutoConfig, model_type=model_type)
            for field, model_type in _DEFAULT_TOWER_MODEL_TYPES.items()
        }

        def __post_init__(self, **kwargs):
            kwargs.pop(MINIMUM_TRANSFORMERS_VERSION_KEY, None)  # written by `to_dict`, not a setting
            self._check_fields()
            super().__post_init__(**kwargs)

    else:
        sub_configs = {field: AutoConfig for field in _DEFAULT_TOWER_MODEL_TYPES}

        def __init__(self, **kwargs):
            # What transformers 5 does from the field declarations and `sub_configs_defaults`.
            kwargs.pop(MINIMUM_TRANSFORMERS_VERSION_KEY, None)
            for field in DCCLIPConfig.__annotations__:  # the fields above; their class attributes are the defaults
                setattr(self, field, kwargs.pop(field, getattr(DCCLIPConfig, field)))
            self._check_fields()
            for field, model_type in _DEFAULT_TOWER_MODEL_TYPES.items():
                setattr(self, field, _build_tower_config(getattr(self, field), model_type))
            super().__init__(**kwargs)

    def _check_fields(self) -> None:
        _check_tower_config("vision_config", self.vision_config)
        _check_tower_config("text_config", self.text_config)
        if self.vision_pooling not in ("pooler", "cls", "mean"):
            raise ValueError(f"DCCLIPConfig.vision_pooling must be 'pooler', 'cls' or 'mean', got {self.vision_pooling!r}")
        if self.text_pooling not in ("cls", "mean", "pooler"):
            raise ValueError(f"DCCLIPConfig.text_pooling must be 'cls', 'mean' or 'pooler', got {self.text_pooling!r}")
        if self.projection_dim <= 0:
            raise ValueError(f"DCCLIPConfig.projection_dim must be positive, got {self.projection_dim}")

    def to_dict(self) -> dict[str, Any]:
        """The config as `config.json` holds it, including the oldest transformers version that loads the model."""
        return {**super().to_dict(), MINIMUM_TRANSFORMERS_VERSION_KEY: MINIMUM_TRANSFORMERS_VERSION}

    @classmethod
    def preset_names(cls) -> list[str]:
        """Names accepted by [`DCCLIPConfig.from_preset`]."""
        return sorted(_PRESETS)

    @classmethod
    def from_preset(cls, name: str, vocab_size: int | None = None, image_size: int | None = None, **kwargs):
        """Build a named student config (see `preset_names()`).

        Args:
            name: preset name, e.g. `"tiny"` for tests or `"edge"` for the default deployable student.
            vocab_size: text vocabulary size; set it to `len(tokenizer)` of the tokenizer the student will use.
            image_size: input resolution of the image tower.
            kwargs: any other `DCCLIPConfig` field (e.g. `projection_dim`).
        """
        if name not in _PRESETS:
            raise ValueError(f"unknown DC-CLIP preset {name!r}; choose one of {cls.preset_names()}")
        preset = copy.deepcopy(_PRESETS[name])
        if vocab_size is not None:
            preset["text_config"]["vocab_size"] = vocab_size
        if image_size is not None:
            preset["vision_config"]["image_size"] = image_size
        preset.update(kwargs)
        return cls(**preset)

    @property
    def image_size(self) -> int:
        """Input resolution the image tower is configured for."""
        return int(getattr(self.vision_config, "image_size", 224))


__all__ = ["DCCLIPConfig", "MINIMUM_TRANSFORMERS_VERSION"]
