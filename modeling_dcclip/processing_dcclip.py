"""DCCLIPProcessor: the student's image processor and tokenizer behind one call, for Chinese and English text.

This file travels to the Hub as remote code, so it imports only transformers (and its sibling config file, which checks
the transformers version); it loads under transformers 5 and under transformers 4.57 or later.
"""

from __future__ import annotations

from transformers import ProcessorMixin
from transformers.utils import is_torchvision_available

from .configuration_dcclip import ON_TRANSFORMERS_4


class DCCLIPProcessor(ProcessorMixin):
    r"""
    Joins an image processor (CLIP-style resize, centre crop, normalise) and a tokenizer (XLM-R or BERT style).

    `processor(text=[...], images=[...], return_tensors="pt")` returns `input_ids`, `attention_mask` and
    `pixel_values`; either argument may be omitted. Text may be English, Chinese or mixed.
    """

    if ON_TRANSFORMERS_4:
        # transformers 4 finds a processor's parts through these class attributes; 5 reads them from `__init__` and
        # calls the attributes deprecated.
        attributes = ["image_processor", "tokenizer"]
        image_processor_class = "AutoImageProcessor"
        tokenizer_class = "AutoTokenizer"

    def __init__(self, image_processor=None, tokenizer=None, **kwargs):
        super().__init__(image_processor, tokenizer, **kwargs)


def make_image_processor(image_size: int, image_mean: list[float] | None = None, image_std: list[float] | None = None):
    """A CLIP image processor for `image_size` px input, on torchvision when it is installed and on PIL otherwise.

    Both backends save the same `preprocessor_config.json`, and `AutoImageProcessor` picks whichever backend the
    loading machine has, so a folder made on one machine loads on the other.
    """
    if is_torchvision_available():
        from transformers import CLIPImageProcessor as image_processor_class
    else:
        from transformers import CLIPImageProcessorPil as image_processor_class
    kwargs = {
        "size": {"shortest_edge": image_size},
        "crop_size": {"height": image_size, "width": image_size},
    }
    if image_mean is not None:
        kwargs["image_mean"] = image_mean
    if image_std is not None:
        kwargs["image_std"] = image_std
    return image_processor_class(**kwargs)


__all__ = ["DCCLIPProcessor", "make_image_processor"]
