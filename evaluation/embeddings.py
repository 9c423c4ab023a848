"""L2-normalised image and text embeddings from any CLIP-like model with ``get_image_features`` / ``get_text_features``.

Our ``DCCLIPModel`` and transformers' ``AltCLIPModel`` (the teacher) return a ``BaseModelOutputWithPooling`` whose
``pooler_output`` is the projected embedding; the ONNX export's ``OnnxCLIPModel`` returns the tensor itself.
``as_embedding`` takes either, so all go through the same code here, each with its own processor, and teacher and
student see the same images and prompts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import datasets
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from modeling_dcclip.utils import as_embedding


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Run the body with ``model`` in eval mode, then put back the mode it had (training code calls evaluation too)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def model_device_and_dtype(model: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of the model's first parameter (where inputs must go); CPU float32 for a model
    without parameters (an ONNX Runtime wrapper)."""
    parameter = next(model.parameters(), None)
    if parameter is None:
        return torch.device("cpu"), torch.float32
    return parameter.device, parameter.dtype


@torch.no_grad()
def embed_images(model: torch.nn.Module, processor, images: Sequence[Image.Image]) -> torch.Tensor:
    """Unit-length embeddings of a batch of PIL images, shape (N, D), on the model's device."""
    device, dtype = model_device_and_dtype(model)
    rgb = [image if image.mode == "RGB" else image.convert("RGB") for image in images]
    pixel_values = processor(images=rgb, return_tensors="pt")["pixel_values"].to(device=device, dtype=dtype)
    return F.normalize(as_embedding(model.get_image_features(pixel_values=pixel_values)).float(), dim=-1)


@torch.no_grad()
def embed_texts(model: torch.nn.Module, processor, texts: Sequence[str]) -> torch.Tensor:
    """Unit-length embeddings of a batch of texts, shape (N, D), on the model's device."""
    device, _ = model_device_and_dtype(model)
    encoded = processor(text=list(texts), return_tensors="pt", padding=True, truncation=True)
    features = model.get_text_features(
        input_ids=encoded["input_ids"].to(device), attention_mask=encoded["attention_mask"].to(device)
    )
    return F.normalize(as_embedding(features).float(), dim=-1)


def embed_text_list(
    model: torch.nn.Module, processor, texts: Sequence[str], batch_size: int = 256, show_progress: bool = False
) -> torch.Tensor:
    """:func:`embed_texts` over a long list, ``batch_size`` texts at a time; shape (N, D), in the order of ``texts``.

    Each distinct text is embedded once, so identical texts (a caption that two images share, a repeated prompt) get
    bit-identical embeddings. Embedded in different batches they would differ in the last bits (the padded length
    and the kernels change with the batch), and an exact tie between them, which retrieval resolves in favour of the
    correct item, would be broken by that noise instead: the scores would change with ``batch_size``.
    """
    if not texts:
        raise ValueError("no texts to embed")
    distinct = list(dict.fromkeys(texts))
    # Batching texts of similar length keeps padding (wasted compute) small; the result is put back in input order.
    order = sorted(range(len(distinct)), key=lambda i: len(distinct[i]))
    batches = range(0, len(distinct), batch_size)
    chunks = [
        embed_texts(model, processor, [distinct[i] for i in order[start : start + batch_size]])
        for start in tqdm(batches, desc="text", unit="batch", disable=not show_progress, leave=False)
    ]
    embeddings = chunks[0].new_empty((len(distinct), chunks[0].shape[1]))
    embeddings[torch.tensor(order, device=embeddings.device)] = torch.cat(chunks)
    position = {text: index for index, text in enumerate(distinct)}
    return embeddings[torch.tensor([position[text] for text in texts], device=embeddings.device)]


def embed_image_dataset(
    model: torch.nn.Module,
    processor,
    dataset: datasets.Dataset,
    batch_size: int = 64,
    image_column: str = "image",
    show_progress: bool = False,
) -> torch.Tensor:
    """Embeddings of every image of a ``datasets.Dataset`` column, in row order; shape (N, D), on the model's device."""
    if image_column not in dataset.column_names:
        raise KeyError(f"the dataset has no image column {image_column!r}; columns: {dataset.column_names}")
    images = dataset.select_columns([image_column])
    chunks = [
        embed_images(model, processor, batch[image_column])
        for batch in tqdm(
            images.iter(batch_size=batch_size),
            total=-(-len(images) // batch_size),
            desc="images",
            unit="batch",
            disable=not show_progress,
            leave=False,
        )
    ]
    if not chunks:
        raise ValueError("the dataset has no images")
    return torch.cat(chunks)
