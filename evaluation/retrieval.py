"""Image-text retrieval: Recall@K in both directions with several captions per image (Flickr30k-CN / COCO-CN style)."""

from __future__ import annotations

import torch

from dcclip.evaluation.embeddings import embed_image_dataset, embed_text_list, eval_mode
from dcclip.evaluation.scores import RetrievalScore
from dcclip.evaluation.tasks import RetrievalTask

RECALL_AT = (1, 5, 10)


def retrieval_recalls(
    similarity: torch.Tensor, caption_to_image: torch.Tensor, ks: tuple[int, ...] = RECALL_AT
) -> dict[str, float]:
    """Recall@K for image->text and text->image retrieval, and their mean.

    Args:
        similarity: image-caption similarities, shape (num_images, num_captions).
        caption_to_image: the image index each caption belongs to, shape (num_captions,).
        ks: the K values.

    Image->text: an image is a hit at K when any of its captions ranks within the K most similar captions.
    Text->image: a caption is a hit at K when its image ranks within the K most similar images. Images without a
    caption are left out of the image->text recall. A rank counts the candidates scoring strictly higher, so ties
    favour the correct item.

    Returns:
        ``{"image_to_text_R@1", ..., "text_to_image_R@10", "mean_recall"}`` as fractions in [0, 1].
    """
    num_images, num_captions = similarity.shape
    if caption_to_image.shape != (num_captions,):
        raise ValueError(f"caption_to_image has shape {tuple(caption_to_image.shape)}, expected ({num_captions},)")
    owns = caption_to_image[None, :] == torch.arange(num_images, device=caption_to_image.device)[:, None]
    has_caption = owns.any(dim=1)
    if not has_caption.any():
        raise ValueError("retrieval needs at least one image with a caption")
    best_own = similarity.masked_fill(~owns, float("-inf")).max(dim=1).values
    image_ranks = (similarity > best_own[:, None]).sum(dim=1)[has_caption]
    own_image_score = similarity[caption_to_image, torch.arange(num_captions)]
    caption_ranks = (similarity > own_image_score[None, :]).sum(dim=0)
    recalls = {}
    for k in ks:
        recalls[f"image_to_text_R@{k}"] = (image_ranks < k).float().mean().item()
    for k in ks:
        recalls[f"text_to_image_R@{k}"] = (caption_ranks < k).float().mean().item()
    recalls["mean_recall"] = sum(recalls.values()) / len(recalls)
    return recalls


def evaluate_retrieval(
    model: torch.nn.Module,
    processor,
    task: RetrievalTask,
    language: str,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    image_embeddings: torch.Tensor | None = None,
    show_progress: bool = False,
) -> RetrievalScore:
    """Image<->text retrieval on ``task`` with the captions of ``language`` (arguments as in ``evaluate_zero_shot``).

    Returns:
        a `RetrievalScore` whose metric is ``mean_recall``; ``scores`` holds every Recall@K (see
        :func:`retrieval_recalls`).
    """
    if language not in task.captions:
        raise KeyError(f"retrieval task {task.name!r} has no {language!r} captions; it has {task.languages}")
    per_image = task.captions[language]
    captions = [caption for image_captions in per_image for caption in image_captions]
    if not captions:
        raise ValueError(f"retrieval task {task.name!r} has no {language!r} captions at all")
    owner = torch.tensor([i for i, image_captions in enumerate(per_image) for _ in image_captions])
    if device is not None:
        model.to(device)
    with eval_mode(model):
        if image_embeddings is None:
            image_embeddings = embed_image_dataset(model, processor, task.images, batch_size, show_progress=show_progress)
        text_embeddings = embed_text_list(model, processor, captions, batch_size, show_progress)
    similarity = image_embeddings.to(text_embeddings.device) @ text_embeddings.T
    scores = retrieval_recalls(similarity.cpu(), owner)
    return RetrievalScore(
        task=task.name,
        language=language,
        metric="mean_recall",
        score=scores["mean_recall"],
        scores=scores,
        num_images=len(per_image),
        num_captions=len(captions),
        images_without_caption=sum(1 for image_captions in per_image if not image_captions),
    )
