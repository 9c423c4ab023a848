"""Stage-2 loss: symmetric InfoNCE over image-text pairs, with negatives gathered from every data-parallel rank.

A batch holds each image once (`image_embeds`, N rows) and its captions (`text_embeds`, M rows); `text_image_index`
says which image a caption describes and `text_language` which language it is in. An image with an English and a
Chinese caption therefore gives two pairs that share one image row. Each pair contributes two cross-entropies:

* text -> image: its caption against every image of the global batch, towards its own image;
* image -> text: its image against captions, towards its own caption. Which captions compete is the
  `image_to_text_negatives` option:

  * `"all_captions"` (default): every caption of the global batch except the image's other captions (its
    siblings), which are masked out: neither positives nor negatives;
  * `"per_language"`: only the captions in the pair's language. An image's English and Chinese captions never
    compete, and neither do the captions of other images in the other language.

The loss is their mean over all pairs, `(L_text->image + L_image->text) / 2`. With one caption per image there are no
siblings, so `"all_captions"` is exactly CLIP's symmetric loss (`modeling_dcclip.modeling_dcclip.symmetric_clip_loss`)
whatever the languages; `"per_language"` is CLIP's loss only when every caption is in one language (with two languages
each image ranks only the captions of its caption's language, fewer negatives and a lower loss).

Under data parallelism (torchrun / DDP, DeepSpeed ZeRO-1/2/3) `gather_features` collects the embeddings of every rank
with gradients, so each rank's loss sees the whole global batch as negatives. The loss is normalised so that, once the
trainer averages gradients over ranks (DDP and DeepSpeed both do), the update is the gradient of the loss of one
process on the concatenated batch, in both the full and the memory-saving local form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as functional_collectives
import torch.nn.functional as F
from torch import nn

# which captions the image -> text term ranks (module docstring)
ImageToTextNegatives = Literal["per_language", "all_captions"]


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gather_rows(tensor: torch.Tensor, rows: list[int]) -> torch.Tensor:
    """Concatenate `tensor` from every rank along dim 0, keeping the autograd graph. Ranks may hold different row
    counts (`rows`: e.g. images with one or two captions), so rows are padded to the largest count for the collective.
    """
    padded = F.pad(tensor, (0, 0) * (tensor.dim() - 1) + (0, max(rows) - tensor.shape[0]))
    # autograd-aware: backward reduce-scatters, summing every rank's gradient for this rank's rows (the gradient of
    # the sum of all ranks' losses)
    gathered = functional_collectives.all_gather_single(padded, 0, dist.group.WORLD)
    return torch.cat([piece[:n] for piece, n in zip(gathered.split(max(rows)), rows, strict=True)])


@dataclass
class GatheredFeatures:
    """The global batch seen by one rank.

    Attributes:
        image_embeds: `(N_global, D)` images of every rank, in rank order.
        text_embeds: `(M_global, D)` captions of every rank, in rank order.
        text_image_index: `(M_global,)` row of each caption's image in `image_embeds`.
        text_language: `(M_global,)` language id of each caption.
        local_texts: slice of this rank's captions in the global caption rows.
        world_size: number of ranks that contributed.
    """

    image_embeds: torch.Tensor
    text_embeds: torch.Tensor
    text_image_index: torch.Tensor
    text_language: torch.Tensor
    local_texts: slice
    world_size: int


def gather_features(
    image_embeds: torch.Tensor, text_embeds: torch.Tensor, text_image_index: torch.Tensor, text_language: torch.Tensor
) -> GatheredFeatures:
    """Gather one rank's batch from every data-parallel rank, embeddings with gradients.

    Works under any launcher that initialises `torch.distributed` (torchrun, accelerate, DeepSpeed, whose
    communication runs on the same process group); without a process group it returns the local batch.
    Image indices are shifted to point into the gathered image rows.
    """
    rank, world_size = _world()
    if world_size == 1:
        return GatheredFeatures(
            image_embeds, text_embeds, text_image_index, text_language, slice(0, text_embeds.shape[0]), 1
        )
    local_rows = torch.tensor([[image_embeds.shape[0], text_embeds.shape[0]]], device=text_embeds.device)
    all_rows = [torch.zeros_like(local_rows) for _ in range(world_size)]
    dist.all_gather(all_rows, local_rows)
    image_rows, text_rows = torch.cat(all_rows).t().tolist()
    all_images = _gather_rows(image_embeds, image_rows)
    all_texts = _gather_rows(text_embeds, text_rows)
    all_index, all_language = _gather_rows(torch.stack([text_image_index, text_language], dim=1), text_rows).unbind(1)
    # shift each rank's image indices past the images of the ranks before it
    image_offsets = torch.tensor([0, *image_rows[:-1]], device=all_index.device).cumsum(0)
    all_index = all_index + torch.repeat_interleave(image_offsets, torch.tensor(text_rows, device=all_index.device))
    text_start = sum(text_rows[:rank])
    return GatheredFeatures(
        all_images, all_texts, all_index, all_language, slice(text_start, text_start + text_rows[rank]), world_size
    )


@dataclass
class ContrastiveLossOutput:
    """`loss` to optimise and, per language id, the loss of that language's pairs (`nan` where a language has no
    pair in the global batch) and the global pair count."""

    loss: torch.Tensor
    loss_per_language: torch.Tensor
    pairs_per_language: torch.Tensor


def bilingual_contrastive_loss(
    features: GatheredFeatures,
    logit_scale: torch.Tensor,
    num_languages: int,
    local_loss: bool = False,
    image_to_text_negatives: ImageToTextNegatives = "all_captions",
) -> ContrastiveLossOutput:
    """Symmetric InfoNCE over the pairs of a (gathered) bilingual batch; see the module docstring for the terms.

    Args:
        features: the global batch from `gather_features` (embeddings need not be normalised).
        logit_scale: the exponentiated (and already clamped) temperature, a 0-d or 1-element tensor.
        num_languages: how many language ids exist (ids lie in `[0, num_languages)`).
        local_loss: score only this rank's pairs (as queries) against the global batch: memory O(local x global)
            instead of O(global^2). The returned value is then this rank's share, scaled so that the mean over ranks
            equals the full loss and its gradients, averaged over ranks, equal the full loss's.
        image_to_text_negatives: `"per_language"` or `"all_captions"` (module docstring).

    Raises:
        ValueError: when an image has two captions in one language (it would have two positives among one
            language's captions) or a caption points at no image of the batch.
    """
    if image_to_text_negatives not in get_args(ImageToTextNegatives):
        raise ValueError(
            f"image_to_text_negatives must be one of {get_args(ImageToTextNegatives)}, got {image_to_text_negatives!r}"
        )
    # float32 softmax even when the towers run in bf16 / fp16
    images = F.normalize(features.image_embeds.float(), dim=-1)
    texts = F.normalize(features.text_embeds.float(), dim=-1)
    index, language = features.text_image_index, features.text_language
    num_texts, num_images = texts.shape[0], images.shape[0]
    if num_texts and (index.min() < 0 or index.max() >= num_images):
        raise ValueError(
            f"text_image_index must point at one of the {num_images} images of the batch, "
            f"got values in [{int(index.min())}, {int(index.max())}]"
        )
    if num_texts and (language.min() < 0 or language.max() >= num_languages):
        raise ValueError(
            f"text_language ids must lie in [0, {num_languages}), "
            f"got values in [{int(language.min())}, {int(language.max())}]"
        )
    if torch.unique(index * num_languages + language).numel() != num_texts:
        raise ValueError("an image has more than one caption in the same language in this batch; keep one per language")

    queries = torch.zeros(num_texts, dtype=torch.bool, device=texts.device)
    queries[features.local_texts if local_loss else slice(None)] = True
    # each pair's two cross-entropies, summed per language
    pair_loss = texts.new_zeros(num_texts)
    text_to_image = F.cross_entropy(logit_scale * texts[queries] @ images.t(), index[queries], reduction="none")
    pair_loss = pair_loss.index_put((queries,), text_to_image)
    if image_to_text_negatives == "per_language":
        for language_id in range(num_languages):
            in_language = torch.nonzero(language == language_id).squeeze(1)
            asked = in_language[queries[in_language]]
            if asked.numel() == 0:
                continue
            logits = logit_scale * images[index[asked]] @ texts[in_language].t()
            targets = torch.searchsorted(in_language, asked)
            pair_loss = pair_loss.index_add(0, asked, F.cross_entropy(logits, targets, reduction="none"))
    else:
        asked = torch.nonzero(queries).squeeze(1)
        logits = logit_scale * images[index[asked]] @ texts.t()
        # the image's other captions are true matches too: drop them from its candidates instead of pushing them away
        same_image = index[asked, None] == index[None, :]
        siblings = same_image & (asked[:, None] != torch.arange(num_texts, device=asked.device))
        logits = logits.masked_fill(siblings, float("-inf"))
        pair_loss = pair_loss.index_add(0, asked, F.cross_entropy(logits, asked, reduction="none"))

    share = features.world_size if local_loss else 1
    pairs_per_language = torch.bincount(language, minlength=num_languages)
    loss_sums = torch.zeros(num_languages, dtype=pair_loss.dtype, device=pair_loss.device).index_add(
        0, language, pair_loss
    )
    loss = share * loss_sums.sum() / (2 * max(num_texts, 1))
    loss_per_language = share * loss_sums.detach() / (2 * pairs_per_language)
    return ContrastiveLossOutput(loss=loss, loss_per_language=loss_per_language, pairs_per_language=pairs_per_language)


class ContrastiveLoss(nn.Module):
    """Global-batch bilingual InfoNCE as a module: gathers the batch from every rank, then applies
    `bilingual_contrastive_loss`.

    Args:
        num_languages: how many language ids exist.
        local_loss: use the memory-saving local form (see `bilingual_contrastive_loss`).
        image_to_text_negatives: which captions the image -> text term ranks (module docstring).
    """

    def __init__(
        self,
        num_languages: int,
        local_loss: bool = False,
        image_to_text_negatives: ImageToTextNegatives = "all_captions",
    ):
        super().__init__()
        self.num_languages = num_languages
        self.local_loss = local_loss
        self.image_to_text_negatives = image_to_text_negatives

    def forward(
        self,
        image_embeds: torch.Tensor,
        text_embeds: torch.Tensor,
        text_image_index: torch.Tensor,
        text_language: torch.Tensor,
        logit_scale: torch.Tensor,
    ) -> ContrastiveLossOutput:
        """Loss of one rank's batch. `logit_scale` is the learnable temperature as the model applies it (clamped and
        exponentiated, e.g. `DCCLIPOutput.logit_scale`), so its gradient reaches the model's parameter."""
        features = gather_features(image_embeds, text_embeds, text_image_index, text_language)
        return bilingual_contrastive_loss(
            features, logit_scale, self.num_languages, self.local_loss, self.image_to_text_negatives
        )
