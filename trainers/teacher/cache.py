"""Teacher cache: run the frozen teacher once over the stage-1 data and store its targets, so that training reads
them instead of running the teacher every epoch (`dcclip teacher-cache`, then `distill.py --teacher_cache_dir`).

Layout of a cache folder:
    teacher_cache.json   what was cached: teacher, layers, grid, pooling, logit scale, sizes and bytes per sample
    images/              a `datasets` dataset (save_to_disk): sample_id, image_layer_<k> (fp16, C x h x w), image_embeds
    texts/               sample_id, text_layer_<k> (fp16, real tokens x C, or C when pooled), text_embeds

Samples are keyed by content, so the cache does not depend on order, shuffling, source mixing or ranks:
an image's id is the SHA-1 of its encoded file bytes, a text's id the SHA-1 of its teacher token ids (so a cache is
only found for the tokenizer and truncation length it was built with). Targets are stored exactly as the teacher
computes them for the deterministic processor (resize + centre crop): a cache assumes no random augmentation.

Built by `trainers/cache_teacher.py` (`dcclip teacher-cache`); read by the collator, which hands the trainer the
same `TeacherTargets` a live teacher would.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from datasets.utils.file_utils import xopen

from dcclip.trainers.data.sample_quality import load_rgb_image
from dcclip.trainers.data.schema import CAPTION_COLUMNS, IMAGE_COLUMN
from dcclip.trainers.teacher.geometry import masked_mean_tokens
from dcclip.trainers.teacher.model import DistillationTeacher
from dcclip.trainers.teacher.targets import TeacherLayout, TeacherTargets

logger = logging.getLogger(__name__)

METADATA_FILE = "teacher_cache.json"
IMAGES_DIR, TEXTS_DIR = "images", "texts"


# ----- sample ids ---------------------------------------------------------------------------------------------------


def image_sample_id(image_cell: dict) -> str:
    """SHA-1 of the image's encoded bytes (from the cell's `bytes`, else read from its `path`)."""
    data = image_cell.get("bytes")
    if data is None:
        with xopen(image_cell["path"], "rb") as file:
            data = file.read()
    return hashlib.sha1(data).hexdigest()


def text_sample_id(token_ids: Sequence[int] | torch.Tensor) -> str:
    """SHA-1 of a text's (unpadded) teacher token ids."""
    return hashlib.sha1(np.asarray(token_ids, dtype=np.int64).tobytes()).hexdigest()


def _ids_of_rows(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[str]:
    return [text_sample_id(ids[mask.bool()]) for ids, mask in zip(input_ids, attention_mask)]


# ----- reading ------------------------------------------------------------------------------------------------------


class TeacherCache:
    """A built cache, opened for training: targets of a batch by sample id (used in DataLoader workers)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        metadata_file = self.folder / METADATA_FILE
        if not metadata_file.is_file():
            raise FileNotFoundError(
                f"no teacher cache at {self.folder} ({METADATA_FILE} missing); build it with "
                "`dcclip teacher-cache <config> --teacher_cache_dir <folder>`"
            )
        self.metadata = json.loads(metadata_file.read_text(encoding="utf-8"))
        layout = dict(self.metadata["layout"])
        layout["image_grid"] = tuple(layout["image_grid"])
        self.layout = TeacherLayout(**layout)
        self.logit_scale = float(self.metadata["logit_scale"])
        self.max_text_length = int(self.metadata["max_text_length"])
        self.images, self._image_rows = self._open(IMAGES_DIR)
        self.texts, self._text_rows = self._open(TEXTS_DIR)

    def _open(self, name: str) -> tuple[datasets.Dataset | None, dict[str, int]]:
        path = self.folder / name
        if not path.is_dir():
            return None, {}
        dataset = datasets.load_from_disk(str(path))
        rows = {sample_id: row for row, sample_id in enumerate(dataset["sample_id"])}
        return dataset.with_format("torch"), rows

    def _rows(self, table: dict[str, int], ids: list[str], kind: str) -> list[int]:
        missing = [sample_id for sample_id in ids if sample_id not in table]
        if missing:
            raise KeyError(
                f"{len(missing)} {kind} sample(s) of this batch are not in the teacher cache {self.folder} "
                f"(e.g. id {missing[0]}); build the cache from the same data spec, teacher tokenizer and "
                f"max_text_length ({self.max_text_length}) as the training run"
            )
        return [table[sample_id] for sample_id in ids]

    def image_targets(self, image_samples: Sequence[dict], layers: Sequence[int]) -> TeacherTargets:
        """Cached targets of a batch of image samples (canonical `{"image": cell}` dicts), in batch order."""
        if self.images is None:
            raise ValueError(f"the teacher cache {self.folder} holds no image targets; it was built without image data")
        rows = self._rows(self._image_rows, [image_sample_id(s[IMAGE_COLUMN]) for s in image_samples], "image")
        data = self.images.select_columns([f"image_layer_{k}" for k in layers] + ["image_embeds"])[rows]
        return TeacherTargets(image_maps=[data[f"image_layer_{k}"] for k in layers], image_embeds=data["image_embeds"])

    def text_targets(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, layers: Sequence[int]) -> TeacherTargets:
        """Cached targets of a batch of tokenized texts (teacher token ids), laid out on the batch's padded length."""
        if self.texts is None:
            raise ValueError(f"the teacher cache {self.folder} holds no text targets; it was built without text data")
        rows = self._rows(self._text_rows, _ids_of_rows(input_ids, attention_mask), "text")
        data = self.texts.select_columns([f"text_layer_{k}" for k in layers] + ["text_embeds"])[rows]
        maps = []
        for k in layers:
            stored = data[f"text_layer_{k}"]
            if self.layout.text_pooled:
                maps.append(stored)
                continue
            # Stored without padding; put each text's tokens back where the batch's mask has real tokens.
            padded = torch.zeros(*attention_mask.shape, self.layout.text_width, dtype=stored[0].dtype)
            for row, tokens in enumerate(stored):
                padded[row, attention_mask[row].bool()] = tokens
            maps.append(padded)
        return TeacherTargets(text_maps=maps, text_attention_mask=attention_mask, text_embeds=data["text_embeds"])


class CachedTeacherTargets:
    """The collator's source of teacher targets when training from a cache: `(samples, batch) -> TeacherTargets`,
    the same type the live teacher returns, for the towers the batch feeds.

    Args:
        cache: the opened cache.
        image_layers / text_layers: the teacher layers the run distils (the plan's).
    """

    def __init__(self, cache: TeacherCache, image_layers: Sequence[int], text_layers: Sequence[int]):
        self.cache = cache
        self.image_layers = list(image_layers)
        self.text_layers = list(text_layers)

    def __call__(self, samples: Sequence[dict], batch: Mapping[str, torch.Tensor]) -> TeacherTargets:
        targets = TeacherTargets(logit_scale=torch.tensor(self.cache.logit_scale))
        if "pixel_values" in batch:
            images = self.cache.image_targets(samples, self.image_layers)
            targets.image_maps, targets.image_embeds = images.image_maps, images.image_embeds
        if "input_ids" in batch:
            # the teacher's own token ids where its tokenizer differs from the student's
            input_ids = batch.get("teacher_input_ids", batch["input_ids"])
            attention_mask = batch.get("teacher_attention_mask", batch["attention_mask"])
            texts = self.cache.text_targets(input_ids, attention_mask, self.text_layers)
            targets.text_maps, targets.text_embeds = texts.text_maps, texts.text_embeds
            targets.text_attention_mask = attention_mask
        return targets


# ----- building -----------------------------------------------------------------------------------------------------


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _fp16(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to("cpu", torch.float16).numpy()


def _save(rows: Iterable[dict], features: datasets.Features, folder: Path) -> int:
    """Write rows as Arrow through a scratch folder (bounded memory), then `save_to_disk` into `folder`; returns the
    number of rows."""
    scratch = folder.parent / f".{folder.name}-build"
    # An explicit fingerprint stops `datasets` from hashing the generator, whose closure holds the teacher.
    dataset = datasets.Dataset.from_generator(
        lambda: rows, features=features, cache_dir=str(scratch), fingerprint=uuid.uuid4().hex
    )
    dataset.save_to_disk(str(folder))
    num_rows = len(dataset)
    del dataset
    shutil.rmtree(scratch, ignore_errors=True)
    return num_rows


def _image_rows(
    teacher: DistillationTeacher, samples: Iterable[dict], layers: list[int], pool_grid: int | None, batch_size: int
) -> Iterator[dict]:
    seen: set[str] = set()
    for chunk in _chunks(samples, batch_size):
        ids = [image_sample_id(s[IMAGE_COLUMN]) for s in chunk]
        keep = [i for i, sample_id in enumerate(ids) if not (sample_id in seen or seen.add(sample_id))]
        if not keep:
            continue
        images = [load_rgb_image(chunk[i][IMAGE_COLUMN]) for i in keep]
        pixel_values = teacher.processor(images=images, return_tensors="pt")["pixel_values"]
        targets = teacher(pixel_values=pixel_values, image_layers=layers)
        maps = [F.adaptive_avg_pool2d(m.float(), pool_grid) if pool_grid else m for m in targets.image_maps]
        for row, i in enumerate(keep):
            yield {
                "sample_id": ids[i],
                **{f"image_layer_{k}": _fp16(m[row]) for k, m in zip(layers, maps)},
                "image_embeds": _fp16(targets.image_embeds[row]),
            }


def _captions(samples: Iterable[dict]) -> Iterator[str]:
    """Every caption of every language: training may pick any of them."""
    for sample in samples:
        for column in CAPTION_COLUMNS.values():
            yield from (caption for caption in sample.get(column) or [] if caption)


def _text_rows(
    teacher: DistillationTeacher,
    samples: Iterable[dict],
    layers: list[int],
    max_text_length: int,
    pool_text: bool,
    batch_size: int,
) -> Iterator[dict]:
    seen: set[str] = set()
    for texts in _chunks(_captions(samples), batch_size):
        encoded = teacher.tokenizer(texts, padding=True, truncation=True, max_length=max_text_length, return_tensors="pt")
        ids = _ids_of_rows(encoded["input_ids"], encoded["attention_mask"])
        keep = [i for i, sample_id in enumerate(ids) if not (sample_id in seen or seen.add(sample_id))]
        if not keep:
            continue
        input_ids, attention_mask = encoded["input_ids"][keep], encoded["attention_mask"][keep]
        targets = teacher(input_ids=input_ids, attention_mask=attention_mask, text_layers=layers)
        mask = attention_mask.to(teacher.device)
        if pool_text:
            maps = [masked_mean_tokens(m.float(), mask) for m in targets.text_maps]
        else:
            maps = [[m[row][mask[row].bool()] for row in range(len(keep))] for m in targets.text_maps]
        for row, i in enumerate(keep):
            yield {
                "sample_id": ids[i],
                **{f"text_layer_{k}": _fp16(m[row]) for k, m in zip(layers, maps)},
                "text_embeds": _fp16(targets.text_embeds[row]),
            }


def _folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def build_teacher_cache(
    teacher: DistillationTeacher,
    folder: str | Path,
    image_samples: Iterable[dict] | None,
    text_samples: Iterable[dict] | None,
    image_layers: list[int],
    text_layers: list[int],
    max_text_length: int,
    teacher_name: str = "",
    pool_grid: int | None = None,
    pool_text: bool = False,
    batch_size: int = 32,
) -> dict:
    """Run `teacher` once over the samples and write a cache folder; returns its metadata (sizes, bytes/sample).

    Args:
        image_samples / text_samples: canonical samples (`{"image": cell}` / `{"captions_en": [...], ...}`).
        image_layers / text_layers: the teacher hidden states to store (the training run's mapping).
        max_text_length: truncation length; training must use the same one.
        pool_grid: average-pool image maps to `pool_grid x pool_grid` to bound disk (training then distils on that
            grid); None keeps the teacher's patch grid.
        pool_text: store text maps mean-pooled over real tokens (training then distils pooled text features).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    layout = TeacherLayout(**asdict(teacher.layout))
    layout.cached_image_layers, layout.cached_text_layers = list(image_layers), list(text_layers)
    layout.text_pooled = pool_text
    if pool_grid:
        layout.image_grid = (pool_grid, pool_grid)
    metadata: dict = {"teacher": teacher_name, "max_text_length": max_text_length, "dtype": "float16"}
    fp16 = datasets.Value("float16")

    if image_samples is not None:
        height, width = layout.image_grid
        features = datasets.Features(
            {
                "sample_id": datasets.Value("string"),
                **{
                    f"image_layer_{k}": datasets.Array3D((layout.image_width, height, width), "float16")
                    for k in image_layers
                },
                "image_embeds": datasets.List(fp16, length=layout.projection_dim),
            }
        )
        rows = _image_rows(teacher, image_samples, list(image_layers), pool_grid, batch_size)
        metadata["num_images"] = _save(rows, features, folder / IMAGES_DIR)
        metadata["bytes_per_image"] = _folder_bytes(folder / IMAGES_DIR) / max(metadata["num_images"], 1)

    if text_samples is not None:
        text_map = (
            datasets.List(fp16, length=layout.text_width)
            if pool_text
            else datasets.Array2D((None, layout.text_width), "float16")
        )
        features = datasets.Features(
            {
                "sample_id": datasets.Value("string"),
                **{f"text_layer_{k}": text_map for k in text_layers},
                "text_embeds": datasets.List(fp16, length=layout.projection_dim),
            }
        )
        rows = _text_rows(teacher, text_samples, list(text_layers), max_text_length, pool_text, batch_size)
        metadata["num_texts"] = _save(rows, features, folder / TEXTS_DIR)
        metadata["bytes_per_text"] = _folder_bytes(folder / TEXTS_DIR) / max(metadata["num_texts"], 1)

    metadata["layout"] = asdict(layout)
    metadata["logit_scale"] = float(teacher.logit_scale)
    (folder / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    return metadata
