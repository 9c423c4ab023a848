"""The DC-CLIP student model: an image tower and a text tower (any transformers backbones), projected into one space.

This file travels to the Hub as remote code, so it imports only torch/transformers (and its sibling config file); it
loads under transformers 5 and under transformers 4.57 or later.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Union

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.auto.modeling_auto import MODEL_MAPPING
from transformers.utils import ModelOutput
from transformers.utils.generic import can_return_tuple

from .configuration_dcclip import DCCLIPConfig


def contrastive_loss(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of a square similarity matrix whose matching pairs lie on the diagonal."""
    return F.cross_entropy(logits, torch.arange(logits.shape[0], device=logits.device))


def symmetric_clip_loss(logits_per_text: torch.Tensor) -> torch.Tensor:
    """CLIP's loss: the mean of the text->image and image->text cross-entropies."""
    return (contrastive_loss(logits_per_text) + contrastive_loss(logits_per_text.t())) / 2.0


@dataclass
class DCCLIPOutput(ModelOutput):
    """Output of [`DCCLIPModel.forward`], laid out as transformers' `CLIPOutput`.

    Attributes:
        loss: symmetric contrastive loss, when `return_loss=True`.
        logit_scale: the clamped temperature (exp of the log scale) used for the logits, a 0-dim tensor; trainers
            read it here because under ZeRO-3 the parameter itself is only materialised inside forward.
        logits_per_image: `(n_images, n_texts)` scaled cosine similarities.
        logits_per_text: `(n_texts, n_images)`, the transpose.
        text_embeds: L2-normalised projected text embeddings.
        image_embeds: L2-normalised projected image embeddings.
        text_model_output: the text tower's raw output (`hidden_states` when asked).
        vision_model_output: the image tower's raw output (`hidden_states` when asked).
    """

    loss: torch.FloatTensor | None = None
    logit_scale: torch.FloatTensor | None = None
    logits_per_image: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None
    text_model_output: BaseModelOutputWithPooling | None = None
    vision_model_output: BaseModelOutputWithPooling | None = None

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(
            self[k] if k not in ("text_model_output", "vision_model_output") else getattr(self, k).to_tuple()
            for k in self.keys()
        )


# What `output_hidden_states` accepts: a flag, or (transformers 5 towers) the index or indices of the hidden states to
# keep; the others come back as None.
# `Union`, not `|`: this alias is evaluated at import, and transformers 4.57 still runs on Python 3.9.
HiddenStatesSelection = Union[bool, int, list[int], None]

_AUTO_MAP = {
    "AutoConfig": "configuration_dcclip.DCCLIPConfig",
    "AutoModel": "modeling_dcclip.DCCLIPModel",
    "AutoModelForZeroShotImageClassification": "modeling_dcclip.DCCLIPModel",
}


def _features_output(embeds: torch.Tensor, tower_outputs: ModelOutput) -> BaseModelOutputWithPooling:
    """A tower's output with the projected embedding as `pooler_output`, as transformers 5's CLIP models return it."""
    return BaseModelOutputWithPooling(
        last_hidden_state=tower_outputs.last_hidden_state,
        pooler_output=embeds,
        hidden_states=tower_outputs.hidden_states,
        attentions=getattr(tower_outputs, "attentions", None),  # CNN towers have none
    )


def _build_tower(config, use_pooler: bool) -> PreTrainedModel:
    """Instantiate a tower from its config; drop its pooler layer when unused, since DDP rejects unused parameters."""
    model_class = MODEL_MAPPING[type(config)]
    if "add_pooling_layer" in inspect.signature(model_class.__init__).parameters:
        return model_class(config, add_pooling_layer=use_pooler)
    return model_class(config)


def _vision_width(config) -> int:
    """Channel width of the image tower's final feature map (CNNs list per-stage widths, ViTs have one width)."""
    for name in ("neck_hidden_sizes", "hidden_sizes"):
        widths = getattr(config, name, None)
        if widths:
            return int(widths[-1])
    return int(config.hidden_size)


class DCCLIPPreTrainedModel(PreTrainedModel):
    config_class = DCCLIPConfig
    base_model_prefix = "dcclip"
    # The Trainer counts tokens seen and FLOPs from the main input, so it must be the text, not the pixels.
    main_input_name = "input_ids"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    # Filled from the towers' own `_no_split_modules` by transformers when a device map is computed.
    _no_split_modules: list[str] = []
    _supports_sdpa = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # Towers initialise themselves; only the parts this file adds are set here.
        if isinstance(module, DCCLIPModel):
            nn.init.normal_(module.visual_projection.weight, std=module.vision_embed_dim**-0.5)
            nn.init.normal_(module.text_projection.weight, std=module.text_embed_dim**-0.5)
            module.logit_scale.fill_(module.config.logit_scale_init_value)


class DCCLIPModel(DCCLIPPreTrainedModel):
    """Bilingual CLIP student: `vision_model` and `text_model` towers, `visual_projection` / `text_projection` into
    a shared space, and a learnable `logit_scale` (log temperature)."""

    def __init__(self, config: DCCLIPConfig, vision_model: PreTrainedModel | None = None, text_model: PreTrainedModel | None = None):
        super().__init__(config)
        if vision_model is None:
            vision_model = _build_tower(config.vision_config, config.vision_pooling == "pooler")
        if text_model is None:
            text_model = _build_tower(config.text_config, config.text_pooling == "pooler")
        self.vision_model = vision_model
        self.text_model = text_model
        self.vision_embed_dim = _vision_width(config.vision_config)
        self.text_embed_dim = int(config.text_config.hidden_size)
        self.visual_projection = nn.Linear(self.vision_embed_dim, config.projection_dim, bias=False)
        self.text_projection = nn.Linear(self.text_embed_dim, config.projection_dim, bias=False)
        # Shape (1,), not a 0-dim scalar: DeepSpeed ZeRO cannot broadcast or partition 0-dim parameters.
        self.logit_scale = nn.Parameter(torch.full((1,), float(config.logit_scale_init_value)))
        # A saved folder must load with AutoModel and with the zero-shot pipeline's auto class, both as remote code.
        config.auto_map = {**_AUTO_MAP, **(getattr(config, "auto_map", None) or {})}
        self.post_init()

    @classmethod
    def from_vision_text_pretrained(
        cls, vision_model_name_or_path: str, text_model_name_or_path: str, **config_kwargs: Any
    ) -> "DCCLIPModel":
        """Start a student from pretrained backbones (Hub ids or local folders); projections start fresh.

        `config_kwargs` are `DCCLIPConfig` fields such as `projection_dim` or `vision_pooling`.
        """
        vision_model = AutoModel.from_pretrained(vision_model_name_or_path)
        text_model = AutoModel.from_pretrained(text_model_name_or_path)
        # post_init may re-initialise submodules; keep copies of the pretrained weights and put them back afterwards.
        vision_state = {k: v.clone() for k, v in vision_model.state_dict().items()}
        text_state = {k: v.clone() for k, v in text_model.state_dict().items()}
        config = DCCLIPConfig(vision_config=vision_model.config, text_config=text_model.config, **config_kwargs)
        model = cls(config, vision_model=vision_model, text_model=text_model)
        model.vision_model.load_state_dict(vision_state)
        model.text_model.load_state_dict(text_state)
        return model

    # ----- towers ---------------------------------------------------------------------------------------------

    def _check_pixel_values(self, pixel_values: torch.Tensor) -> None:
        expected = int(getattr(self.config.vision_config, "num_channels", 3))
        if pixel_values.dim() != 4:
            raise ValueError(f"pixel_values must be (batch, channels, height, width), got shape {tuple(pixel_values.shape)}")
        if pixel_values.shape[1] != expected:
            raise ValueError(
                f"pixel_values has {pixel_values.shape[1]} channels but the image tower expects {expected} "
                f"(convert images to RGB, e.g. with the processor)"
            )

    def _pool_image(self, outputs: BaseModelOutputWithPooling) -> torch.Tensor:
        pooling = self.config.vision_pooling
        if pooling == "pooler":
            return outputs.pooler_output.flatten(1)
        hidden = outputs.last_hidden_state
        if pooling == "cls":
            if hidden.dim() != 3:
                raise ValueError("vision_pooling='cls' needs a token-sequence (ViT-like) image tower; use 'pooler' or 'mean'")
            return hidden[:, 0]
        # mean: over spatial positions of a CNN map (B, C, H, W) or over the tokens of a ViT (B, N, C)
        return hidden.mean(dim=(2, 3)) if hidden.dim() == 4 else hidden.mean(dim=1)

    def _pool_text(self, outputs: BaseModelOutputWithPooling, attention_mask: torch.Tensor | None) -> torch.Tensor:
        pooling = self.config.text_pooling
        if pooling == "pooler":
            return outputs.pooler_output
        hidden = outputs.last_hidden_state
        if pooling == "cls":
            return hidden[:, 0]
        if attention_mask is None:
            return hidden.mean(dim=1)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)

    def encode_image(self, pixel_values: torch.Tensor, **tower_kwargs: Any) -> tuple[torch.Tensor, BaseModelOutputWithPooling]:
        """Run the image tower: returns (projected embedding, raw tower output).

        `tower_kwargs` (`output_hidden_states`, `output_attentions`, ...) go to the tower unchanged; left out, the
        tower's config decides. transformers 5 towers also take a layer index or list of indices as
        `output_hidden_states` (see `HiddenStatesSelection`).
        """
        self._check_pixel_values(pixel_values)
        outputs = self.vision_model(pixel_values=pixel_values, return_dict=True, **tower_kwargs)
        return self.visual_projection(self._pool_image(outputs)), outputs

    def encode_text(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **tower_kwargs: Any
    ) -> tuple[torch.Tensor, BaseModelOutputWithPooling]:
        """Run the text tower: returns (projected embedding, raw tower output); `tower_kwargs` as in `encode_image`."""
        outputs = self.text_model(input_ids=input_ids, attention_mask=attention_mask, return_dict=True, **tower_kwargs)
        return self.text_projection(self._pool_text(outputs, attention_mask)), outputs

    # ----- public inference API -------------------------------------------------------------------------------

    @can_return_tuple
    def get_image_features(self, pixel_values: torch.Tensor, **kwargs: Any) -> BaseModelOutputWithPooling:
        """Image embeddings in transformers 5's layout: `pooler_output` is the projected, not normalised embedding
        `(batch, projection_dim)`; `last_hidden_state`, `hidden_states` and `attentions` are the image tower's.

        Keyword arguments (`output_hidden_states`, `output_attentions`, ...) go to the image tower; `return_dict=False`
        gives a tuple. `as_embedding(output)` is the embedding tensor, `F.normalize(as_embedding(output), dim=-1)` the
        unit-length one that `forward` returns as `image_embeds`.
        """
        image_embeds, outputs = self.encode_image(pixel_values, **kwargs)
        return _features_output(image_embeds, outputs)

    @can_return_tuple
    def get_text_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any
    ) -> BaseModelOutputWithPooling:
        """Text embeddings in transformers 5's layout, as `get_image_features` (other keyword arguments, such as
        `token_type_ids` or `output_hidden_states`, go to the text tower)."""
        text_embeds, outputs = self.encode_text(input_ids, attention_mask, **kwargs)
        return _features_output(text_embeds, outputs)

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        return_loss: bool | None = None,
        output_hidden_states: HiddenStatesSelection = None,
        **kwargs: Any,
    ) -> DCCLIPOutput:
        """Embed images and texts and score every image against every text, as CLIP does.

        With `return_loss=True` the i-th text must describe the i-th image, and the symmetric contrastive loss is
        returned. `output_hidden_states=True` keeps each tower's intermediate feature maps (stage-1 distillation); a
        layer index or list of indices keeps only those (transformers 5 towers). Other keyword arguments (e.g.
        `output_attentions`) go to both towers; `return_dict=False` gives a tuple.
        """
        if input_ids is None or pixel_values is None:
            raise ValueError("DCCLIPModel.forward needs both input_ids and pixel_values; use get_text_features / get_image_features for one modality")
        if return_loss and input_ids.shape[0] != pixel_values.shape[0]:
            raise ValueError(
                f"return_loss=True pairs the i-th text with the i-th image, but got {pixel_values.shape[0]} images "
                f"and {input_ids.shape[0]} texts"
            )
        # Only what the caller set goes to the towers: an explicit None would override the towers' own configs.
        if output_hidden_states is not None:
            kwargs["output_hidden_states"] = output_hidden_states
        text_kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        image_embeds, vision_outputs = self.encode_image(pixel_values, **kwargs)
        text_embeds, text_outputs = self.encode_text(input_ids, attention_mask, **text_kwargs, **kwargs)

        image_embeds = F.normalize(image_embeds, dim=-1)
        text_embeds = F.normalize(text_embeds, dim=-1)
        logit_scale = self.logit_scale.clamp(max=self.config.max_logit_scale).exp().squeeze()
        logits_per_text = logit_scale * text_embeds @ image_embeds.t()
        logits_per_image = logits_per_text.t()
        loss = symmetric_clip_loss(logits_per_text) if return_loss else None

        return DCCLIPOutput(
            loss=loss,
            logit_scale=logit_scale,
            logits_per_image=logits_per_image,
            logits_per_text=logits_per_text,
            text_embeds=text_embeds,
            image_embeds=image_embeds,
            text_model_output=text_outputs,
            vision_model_output=vision_outputs,
        )


__all__ = ["DCCLIPModel", "DCCLIPPreTrainedModel", "DCCLIPOutput"]
