"""Loading the models an evaluation compares: the AltCLIP teacher, DC-CLIP students, or another CLIP-like model."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModel, AutoProcessor
from transformers.utils import cached_file

import modeling_dcclip  # noqa: F401  (registers DCCLIP with AutoModel / AutoProcessor)
from dcclip.evaluation.results import ModelInfo, Role

# Folder names that say where a model sits in a run, not which model it is (`<output_dir>/final`, checkpoints).
_GENERIC_FOLDER_NAMES = re.compile(r"final|checkpoint-\d+")


@dataclass
class EvaluatedModel:
    """A model, its processor, and how the reports name and describe it."""

    name: str
    path: str
    role: Role
    model_type: str
    model: torch.nn.Module
    processor: object

    def info(self) -> ModelInfo:
        """Metadata for ``results.json``."""
        vision, text = tower_parameter_counts(self.model)
        return ModelInfo(
            name=self.name,
            path=self.path,
            role=self.role,
            model_type=self.model_type,
            num_parameters=sum(p.numel() for p in self.model.parameters()),
            num_parameters_vision=vision,
            num_parameters_text=text,
        )


def tower_parameter_counts(model: torch.nn.Module) -> tuple[int, int]:
    """Parameters of the image side (``vision_model`` + ``visual_projection``) and the text side (``text_model`` +
    ``text_projection``); a CLIP-like model without such a part counts 0 for it."""

    def count(*names: str) -> int:
        parts = [getattr(model, name, None) for name in names]
        return sum(p.numel() for part in parts if part is not None for p in part.parameters())

    return count("vision_model", "visual_projection"), count("text_model", "text_projection")


def read_model_type(path_or_id: str) -> str:
    """``model_type`` from the ``config.json`` of a local folder or a Hub id."""
    config_path = cached_file(path_or_id, "config.json")
    with open(config_path, encoding="utf-8") as handle:
        model_type = json.load(handle).get("model_type")
    if not model_type:
        raise ValueError(f"{path_or_id}: config.json has no model_type")
    return model_type


def default_model_name(path_or_id: str) -> str:
    """A model's name in reports when none is given: a folder's name, with its parent's when the name only says where
    the model sits in a run (`runs/align/final` -> `align/final`); a Hub id as it is."""
    path = Path(path_or_id)
    if not path.exists():
        return path_or_id
    path = path.resolve()
    if _GENERIC_FOLDER_NAMES.fullmatch(path.name) and path.parent.name:
        return f"{path.parent.name}/{path.name}"
    return path.name


def load_evaluated_model(
    path_or_id: str, role: Role, name: str | None = None, device: str | torch.device = "cpu"
) -> EvaluatedModel:
    """Load a model and its processor for evaluation, in eval mode on ``device``.

    ``altclip`` folders / ids load as transformers' ``AltCLIPModel`` (the teacher), ``dcclip`` ones as our
    ``DCCLIPModel``, other model types as ``AutoModel`` gives them, provided they have ``get_image_features`` and
    ``get_text_features``. Remote code is never run.

    Args:
        path_or_id: a saved model folder or a Hub id.
        role: ``"teacher"`` or ``"student"``.
        name: label in reports; defaults to `default_model_name(path_or_id)`.
        device: where to run it.
    """
    model_type = read_model_type(path_or_id)
    # Importing modeling_dcclip registered DCCLIP with the Auto classes, so one code path serves every model type.
    model = AutoModel.from_pretrained(path_or_id)
    processor = AutoProcessor.from_pretrained(path_or_id)
    if not (hasattr(model, "get_image_features") and hasattr(model, "get_text_features")):
        raise ValueError(
            f"{path_or_id}: {type(model).__name__} is not CLIP-like (needs get_image_features and get_text_features)"
        )
    model.to(device).eval()
    return EvaluatedModel(name or default_model_name(path_or_id), str(path_or_id), role, model_type, model, processor)
