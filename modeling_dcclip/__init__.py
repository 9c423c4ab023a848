"""DC-CLIP: the shipped student model (config, model, processor). Depends on torch + transformers only."""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForZeroShotImageClassification,
    AutoProcessor,
)

from .configuration_dcclip import DCCLIPConfig
from .modeling_dcclip import DCCLIPModel, DCCLIPOutput
from .processing_dcclip import DCCLIPProcessor, make_image_processor
from .utils import as_embedding

# In-process registration, so `AutoModel.from_pretrained(folder)` works without trust_remote_code when this package
# is installed. Saved folders also carry `auto_map` + these source files for users who do not install it.
AutoConfig.register(DCCLIPConfig.model_type, DCCLIPConfig, exist_ok=True)
AutoModel.register(DCCLIPConfig, DCCLIPModel, exist_ok=True)
AutoModelForZeroShotImageClassification.register(DCCLIPConfig, DCCLIPModel, exist_ok=True)
AutoProcessor.register(DCCLIPConfig, DCCLIPProcessor, exist_ok=True)

DCCLIPConfig.register_for_auto_class()
DCCLIPModel.register_for_auto_class("AutoModel")
DCCLIPProcessor.register_for_auto_class("AutoProcessor")

__all__ = ["DCCLIPConfig", "DCCLIPModel", "DCCLIPOutput", "DCCLIPProcessor", "make_image_processor", "as_embedding"]
