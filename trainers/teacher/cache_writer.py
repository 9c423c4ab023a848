"""Writing a teacher cache (layout: `cache.py`): what to store (`CacheCompression`, `cache_description`), whose folder
it is (`check_cache_folder`, `prepare_cache_folder`: a command replaces only what it wrote), and the shards
(`write_cache_shards`: the teacher over one shard of the samples, pooled, standardised and low-rank coded, each shard
written under a `.partial-` name and renamed into place once complete).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from dcclip.trainers.data.sample_quality import load_rgb_image
from dcclip.trainers.data.schema import CAPTION_COLUMNS, IMAGE_COLUMN
from dcclip.trainers.losses.distillation import standardize_channels
from dcclip.trainers.teacher.cache import (
    CODECS_FILE,
    DIGEST_BYTES,
    FORMAT,
    MARKER_FILE,
    METADATA_FILE,
    PARTIAL_PREFIX,
    SHARD_FILE,
    SHARD_FILES,
    SHARD_NAME,
    file_sha256,
    ids_of_rows,
    image_sample_id,
    shard_name,
)
from dcclip.trainers.teacher.compression import FeatureCodec, pool_grid, text_token_positions
from dcclip.trainers.teacher.geometry import masked_segment_means
from dcclip.trainers.teacher.model import DistillationTeacher
from dcclip.trainers.teacher.targets import TeacherLayout

logger = logging.getLogger(__name__)


# ----- what a cache stores ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CacheCompression:
    """How targets are reduced before storage (see `compression.py` and docs/distillation.md).

    Attributes:
        image_grids: the grid each cached image layer is pooled to, by teacher layer.
        image_ranks / text_ranks: principal components kept per feature vector, by teacher layer (None: every
            channel, in float16).
        text_pooled: text maps pooled over real tokens (`text_segments` vectors per caption) instead of token by
            token.
        standardized: maps standardised over channels before storage (the loss's `standardize_teacher_maps`).
        text_segments: means per pooled caption.
        text_tokens: token by token, the real tokens kept per caption (`compression.text_token_positions`; 0: all).
        code_dtype: `"int8"` (with a float16 scale per vector) or `"float16"` codes, for maps and embeddings.
    """

    image_grids: dict[int, tuple[int, int]]
    image_ranks: dict[int, int | None]
    text_ranks: dict[int, int | None]
    text_pooled: bool
    standardized: bool
    text_segments: int = 1
    text_tokens: int = 0
    code_dtype: str = "int8"


def cache_description(
    layout: TeacherLayout,
    image_layers: list[int],
    text_layers: list[int],
    compression: CacheCompression,
    max_text_length: int,
    num_shards: int,
    identity: Mapping[str, str],
    logit_scale: float,
) -> dict:
    """The content of `teacher_cache.json`: everything that makes two builds interchangeable (and nothing that
    differs between the shards of one build)."""
    stored = TeacherLayout(**asdict(layout))
    stored.cached_image_layers, stored.cached_text_layers = list(image_layers), list(text_layers)
    stored.cached_image_grids = [list(compression.image_grids[k]) for k in image_layers]
    stored.text_pooled = compression.text_pooled
    stored.text_segments = compression.text_segments if compression.text_pooled else 1
    stored.text_tokens = 0 if compression.text_pooled else compression.text_tokens
    stored.maps_standardized = compression.standardized
    return {
        "format": FORMAT,
        "teacher": dict(identity),
        "max_text_length": max_text_length,
        "num_shards": num_shards,
        "ranks": {"image": {str(k): compression.image_ranks[k] for k in image_layers},
                  "text": {str(k): compression.text_ranks[k] for k in text_layers}},
        "dtype": compression.code_dtype,
        "logit_scale": logit_scale,
        "layout": json.loads(json.dumps(asdict(stored))),  # tuples as lists, as they read back
    }


# ----- folder ownership ---------------------------------------------------------------------------------------------


def _foreign_entries(folder: Path) -> list[str]:
    """Entries of `folder` that the cache command does not write (relative paths), shard contents included."""
    foreign = []
    for entry in sorted(folder.iterdir()):
        name = entry.name
        if name in (MARKER_FILE, METADATA_FILE) and entry.is_file():
            continue
        shard = name[len(PARTIAL_PREFIX) :].rsplit("-", 1)[0] if name.startswith(PARTIAL_PREFIX) else name
        if SHARD_NAME.match(shard) and entry.is_dir():
            foreign += [f"{name}/{inner.name}" for inner in entry.iterdir() if not SHARD_FILES.match(inner.name)]
            continue
        if name.startswith((PARTIAL_PREFIX + METADATA_FILE, PARTIAL_PREFIX + MARKER_FILE)) and entry.is_file():
            continue
        foreign.append(name)
    return foreign


def check_cache_folder(folder: str | Path) -> None:
    """Refuse a non-empty folder that is not wholly a teacher cache, naming what else it holds (checked before the
    teacher loads, and again by `prepare_cache_folder`)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"--teacher_cache_dir {folder} is a file")
    if not folder.is_dir() or not any(folder.iterdir()):
        return
    foreign = _foreign_entries(folder)
    if not (folder / MARKER_FILE).is_file() or foreign:
        what = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise FileExistsError(
            f"refusing to write into or remove {folder}: it is not a teacher cache folder ("
            + (f"it holds {what}" if foreign else f"no {MARKER_FILE} marker")
            + "); give --teacher_cache_dir an empty or new folder"
        )


def _write_json_atomically(path: Path, content: dict) -> None:
    scratch = path.parent / f"{PARTIAL_PREFIX}{path.name}.{uuid.uuid4().hex[:8]}"
    scratch.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    os.replace(scratch, path)


def _differences(old: Mapping, new: Mapping, prefix: str = "") -> list[str]:
    names = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            names += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            names.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return names


def _comparable(description: Mapping) -> dict:
    """A build's description without the teacher's name: shards may give the same teacher by another path."""
    return {**description, "teacher": {k: v for k, v in description["teacher"].items() if k != "name"}}


def prepare_cache_folder(
    folder: str | Path, description: dict, shard_names: Sequence[str], overwrite: bool, num_shards: int
) -> list[str]:
    """Make `folder` ready for this build and return the shards of `shard_names` still to write.

    A folder is written into only when it is empty or wholly a teacher cache (marker, and nothing else); complete
    shards of the same build are kept (a restarted task resumes), half-written ones of these shards are removed.
    `overwrite` replaces a single-process build's folder, or only this task's own shards in a sharded build (where
    removing the folder would remove the shards of tasks still running).
    """
    folder = Path(folder)
    check_cache_folder(folder)
    if folder.is_dir() and any(folder.iterdir()):
        metadata_file = folder / METADATA_FILE
        existing = json.loads(metadata_file.read_text(encoding="utf-8")) if metadata_file.is_file() else None
        differs = existing is not None and _comparable(existing) != _comparable(description)
        if differs and not overwrite:
            changes = "; ".join(_differences(_comparable(existing), _comparable(description))[:4])
            raise FileExistsError(
                f"{folder} holds a teacher cache of another build ({changes}); pass --overwrite_cache true to "
                "replace it, or choose another folder"
            )
        if overwrite and num_shards > 1 and differs:
            raise ValueError(
                f"--overwrite_cache in a sharded build would remove shards that other tasks are writing: remove "
                f"{folder} once before starting the shards"
            )
        if overwrite and num_shards == 1:
            shutil.rmtree(folder)  # checked above: it holds nothing but this command's files
            logger.info("removed the previous teacher cache %s", folder)
        elif overwrite:
            for name in shard_names:
                shutil.rmtree(folder / name, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / MARKER_FILE).is_file():
        _write_json_atomically(folder / MARKER_FILE, {"written_by": "dcclip teacher-cache", "format": FORMAT})
    if not (folder / METADATA_FILE).is_file():
        _write_json_atomically(folder / METADATA_FILE, description)
    for name in shard_names:  # what an interrupted attempt at these shards left
        for partial in folder.glob(f"{PARTIAL_PREFIX}{name}-*"):
            shutil.rmtree(partial)
    todo = [name for name in shard_names if not (folder / name / SHARD_FILE).is_file()]
    for name in sorted(set(shard_names) - set(todo)):
        logger.info("shard %s is already complete in %s; kept", name, folder)
    return todo


# ----- writing ------------------------------------------------------------------------------------------------------


class _ShardWriter:
    """Appends rows to a shard's flat files in a `.partial-` folder, hashing as it writes; `finish` writes
    `shard.json` and renames the folder to the shard's name, so a shard is either complete or absent."""

    def __init__(self, folder: Path, name: str):
        self.final = folder / name
        self.partial = folder / f"{PARTIAL_PREFIX}{name}-{uuid.uuid4().hex[:8]}"
        self.partial.mkdir()
        self._files: dict[str, tuple] = {}  # array name -> (file, sha256, dtype, row shape, rows)

    def append(self, name: str, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        if name not in self._files:
            handle = (self.partial / f"{name}.bin").open("wb")
            self._files[name] = (handle, hashlib.sha256(), array.dtype.str, list(array.shape[1:]), 0)
        handle, digest, dtype, row_shape, rows = self._files[name]
        if array.dtype.str != dtype or list(array.shape[1:]) != row_shape:
            raise ValueError(f"{name}: rows of {array.dtype} {array.shape[1:]} after {dtype} {row_shape}")
        data = array.tobytes()
        handle.write(data)
        digest.update(data)
        self._files[name] = (handle, digest, dtype, row_shape, rows + len(array))

    def finish(self, rows: int, codecs: Mapping[str, torch.Tensor], extra: Mapping) -> dict:
        manifest = {"rows": rows, "arrays": {}, "files": {}, **extra}
        for name, (handle, digest, dtype, row_shape, count) in self._files.items():
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            manifest["arrays"][name] = {"dtype": dtype, "shape": [count, *row_shape]}
            manifest["files"][f"{name}.bin"] = {"bytes": (self.partial / f"{name}.bin").stat().st_size,
                                                "sha256": digest.hexdigest()}  # fmt: skip
        save_file(dict(codecs), str(self.partial / CODECS_FILE))
        manifest["files"][CODECS_FILE] = {"bytes": (self.partial / CODECS_FILE).stat().st_size,
                                          "sha256": file_sha256(self.partial / CODECS_FILE)}  # fmt: skip
        (self.partial / SHARD_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        os.rename(self.partial, self.final)
        return manifest


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@dataclass
class _Rows:
    """One teacher batch on its way to a shard: ids, per-layer feature vectors (channels last) and embeddings.

    `maps[k]` is `(n, h, w, C)` for images, `(n, C)` for pooled texts, or a list of `(tokens, C)` per text.
    """

    ids: list[bytes]
    maps: dict[int, torch.Tensor | list[torch.Tensor]]
    embeds: torch.Tensor


def _image_rows(
    teacher: DistillationTeacher, samples: Iterable[dict], layers: list[int], compression: CacheCompression,
    batch_size: int,
) -> Iterator[_Rows]:  # fmt: skip
    seen: set[bytes] = set()
    for chunk in _chunks(samples, batch_size):
        ids = [bytes.fromhex(image_sample_id(s[IMAGE_COLUMN])) for s in chunk]
        keep = [i for i, sample_id in enumerate(ids) if not (sample_id in seen or seen.add(sample_id))]
        if not keep:
            continue
        images = [load_rgb_image(chunk[i][IMAGE_COLUMN]) for i in keep]
        pixel_values = teacher.processor(images=images, return_tensors="pt")["pixel_values"]
        targets = teacher(pixel_values=pixel_values, image_layers=layers)
        maps = {}
        for k, feature_map in zip(layers, targets.image_maps):
            pooled = pool_grid(feature_map.float(), compression.image_grids[k])
            if compression.standardized:
                pooled = standardize_channels(pooled, 1)
            maps[k] = pooled.permute(0, 2, 3, 1).cpu()
        yield _Rows([ids[i] for i in keep], maps, targets.image_embeds.float().cpu())


def _captions(samples: Iterable[dict]) -> Iterator[str]:
    """Every caption of every language: training may pick any of them."""
    for sample in samples:
        for column in CAPTION_COLUMNS.values():
            yield from (caption for caption in sample.get(column) or [] if caption)


def _text_rows(
    teacher: DistillationTeacher, samples: Iterable[dict], layers: list[int], max_text_length: int,
    compression: CacheCompression, batch_size: int,
) -> Iterator[_Rows]:  # fmt: skip
    seen: set[bytes] = set()
    for texts in _chunks(_captions(samples), batch_size):
        encoded = teacher.tokenizer(texts, padding=True, truncation=True, max_length=max_text_length, return_tensors="pt")
        ids = [bytes.fromhex(i) for i in ids_of_rows(encoded["input_ids"], encoded["attention_mask"])]
        keep = [i for i, sample_id in enumerate(ids) if not (sample_id in seen or seen.add(sample_id))]
        if not keep:
            continue
        input_ids, attention_mask = encoded["input_ids"][keep], encoded["attention_mask"][keep]
        targets = teacher(input_ids=input_ids, attention_mask=attention_mask, text_layers=layers)
        mask = attention_mask.to(teacher.device)
        kept = None if compression.text_pooled else text_token_positions(mask, compression.text_tokens)
        maps = {}
        for k, tokens in zip(layers, targets.text_maps):
            tokens = tokens.float()
            if compression.text_pooled:
                tokens = masked_segment_means(tokens, mask, compression.text_segments)
            if compression.standardized:
                tokens = standardize_channels(tokens, -1)
            if compression.text_pooled:
                maps[k] = tokens.cpu()
            else:
                maps[k] = [tokens[row][kept[row]].cpu() for row in range(len(keep))]
        yield _Rows([ids[i] for i in keep], maps, targets.text_embeds.float().cpu())


def _vectors(maps: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    """Every feature vector of a batch's map, `(n, C)`."""
    if isinstance(maps, list):
        return torch.cat(maps) if maps else torch.empty(0)
    return maps.reshape(-1, maps.shape[-1])


def _write_tower(
    rows: Iterator[_Rows], writer: _ShardWriter, ranks: Mapping[int, int | None], code_dtype: str, fit_vectors: int,
    start: float,
) -> dict:  # fmt: skip
    """Fit each layer's codec (and the embeddings') on the first `fit_vectors` feature vectors (holding those
    batches), then encode and write every batch; returns the shard's manifest."""
    layers = list(ranks)
    held: list[_Rows] = []  # the first batches, until the codecs are fitted on them
    codecs: dict[str, FeatureCodec] = {}  # by array name: `layer_<k>` and `embeds`, as the reader keys them
    count = 0
    token_lengths: list[int] = []

    def fit_and_flush() -> None:
        for k in layers:
            vectors = torch.cat([_vectors(b.maps[k]) for b in held])
            codecs[f"layer_{k}"] = FeatureCodec.fit(vectors, ranks[k], code_dtype)
        codecs["embeds"] = FeatureCodec.fit(torch.cat([b.embeds for b in held]), None, code_dtype)
        for waiting in held:
            write(waiting)
        held.clear()

    def append_codes(name: str, vectors: torch.Tensor) -> None:
        codes, scales = codecs[name].encode(vectors)
        writer.append(name, codes.numpy())
        if scales is not None:
            writer.append(f"{name}_scale", scales.numpy())

    def write(batch: _Rows) -> None:
        nonlocal count
        writer.append("sample_ids", np.frombuffer(b"".join(batch.ids), dtype=np.uint8).reshape(-1, DIGEST_BYTES))
        for k in layers:
            maps = batch.maps[k]
            if isinstance(maps, list):  # token by token: one flat array, offsets per text
                if k == layers[0]:
                    token_lengths.extend(len(m) for m in maps)
                maps = _vectors(maps)
            append_codes(f"layer_{k}", maps)
        append_codes("embeds", batch.embeds)
        count += len(batch.ids)

    for batch in rows:
        if codecs:
            write(batch)
            continue
        held.append(batch)
        if sum(len(_vectors(b.maps[layers[0]])) for b in held) >= fit_vectors:
            fit_and_flush()
    if held:  # the whole shard had fewer than fit_vectors vectors
        fit_and_flush()
    if token_lengths:
        writer.append("token_offsets", np.concatenate([[0], np.cumsum(token_lengths)]).astype(np.int64)[:, None])
    tensors = {key: t for name, codec in codecs.items() for key, t in codec.state(name).items()}
    channels = {str(k): codecs[f"layer_{k}"].channels for k in layers if f"layer_{k}" in codecs}
    extra = {"layers": layers, "channels": channels, "build_seconds": round(time.perf_counter() - start, 3)}
    return writer.finish(count, tensors, extra)


def write_cache_shards(
    teacher: DistillationTeacher,
    folder: str | Path,
    description: dict,
    image_samples: Iterable[dict] | None,
    text_samples: Iterable[dict] | None,
    compression: CacheCompression,
    shard_index: int = 0,
    batch_size: int = 32,
    fit_vectors: int = 16384,
) -> dict[str, dict]:
    """Run `teacher` over this shard's samples and write its image and text shards into a folder made ready by
    `prepare_cache_folder`; returns their manifests (rows, shapes, checksums, build seconds).

    Args:
        description: the build's `teacher_cache.json` (`cache_description`), the same for every shard.
        image_samples / text_samples: this shard's canonical samples (`{"image": cell}` / `{"captions_en": ...}`);
            None writes no shard for that tower.
        compression: grids, ranks, text pooling or kept tokens, standardisation and code dtype.
        shard_index: this shard (0-based) of `description["num_shards"]`.
        fit_vectors: feature vectors per layer that each shard's basis is fitted on.
    """
    folder = Path(folder)
    layout = description["layout"]
    num_shards, max_text_length = int(description["num_shards"]), int(description["max_text_length"])
    manifests = {}
    for tower, samples in (("images", image_samples), ("texts", text_samples)):
        if samples is None:
            continue
        start = time.perf_counter()
        if tower == "images":
            layers, ranks = list(layout["cached_image_layers"]), compression.image_ranks
            rows = _image_rows(teacher, samples, layers, compression, batch_size)
        else:
            layers, ranks = list(layout["cached_text_layers"]), compression.text_ranks
            rows = _text_rows(teacher, samples, layers, max_text_length, compression, batch_size)
        writer = _ShardWriter(folder, shard_name(tower, shard_index, num_shards))
        manifests[tower] = _write_tower(
            rows, writer, {k: ranks[k] for k in layers}, compression.code_dtype, fit_vectors, start
        )
        logger.info("teacher cache shard %s: %d rows in %.1f s", writer.final.name, manifests[tower]["rows"],
                    manifests[tower]["build_seconds"])  # fmt: skip
    return manifests


