"""Teacher cache: run the frozen teacher once over the stage-1 data and store what stage 1's loss reads, so that training
reads it instead of running the teacher every epoch (`dcclip teacher-cache`, then `distill.py --teacher_cache_dir`).

Layout of a cache folder (every array a flat little-endian file, its dtype and shape in the shard's `shard.json`):
    .dcclip-teacher-cache      marker: the folder is the cache command's (it replaces nothing else)
    teacher_cache.json         the build: teacher identity (checkpoint and processor digests), layer mapping, grids,
                               compression, max_text_length, number of shards; the same for every shard
    images-00000-of-00004/     one complete shard of the image tower: sample_ids.bin (SHA-1 digests, 20 bytes each),
                               layer_<k>.bin (float16 codes, rows x h x w x rank), embeds.bin (float16),
                               codecs.safetensors (each layer's basis), shard.json (rows, shapes, SHA-256 per file)
    texts-00000-of-00004/      the text tower: layer_<k>.bin (rows x rank when pooled; else tokens x rank with
                               token_offsets.bin), embeds.bin, ...
    .partial-<shard>-<id>/     a shard being written: renamed to its final name only once complete, never read

What is stored (`compression.py`): image maps pooled to a grid per layer, maps standardised over channels as the loss
does, each feature vector as its coordinates in a per-layer principal-component basis, in float16.

Samples are keyed by content, so the cache does not depend on order, shuffling, source mixing, ranks or shards: an
image's id is the SHA-1 of its encoded file bytes, a text's id the SHA-1 of its teacher token ids (so a cache is only
found for the tokenizer and truncation length it was built with). Targets are stored as the teacher computes them for
the deterministic processor (resize + centre crop): a cache assumes no random augmentation.

Built by `trainers/cache_teacher.py` (`dcclip teacher-cache`: `prepare_cache_folder`, then `write_cache_shards`), in
one process or as shards across processes and SLURM array tasks; read by the collator, which hands the trainer the same `TeacherTargets` a live teacher would.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from datasets.utils.file_utils import xopen
from safetensors.torch import load_file, save_file

from dcclip.trainers.data.sample_quality import load_rgb_image
from dcclip.trainers.data.schema import CAPTION_COLUMNS, IMAGE_COLUMN
from dcclip.trainers.losses.distillation import standardize_channels
from dcclip.trainers.teacher.compression import FeatureCodec, pool_grid
from dcclip.trainers.teacher.geometry import masked_mean_tokens
from dcclip.trainers.teacher.model import DistillationTeacher
from dcclip.trainers.teacher.targets import TeacherLayout, TeacherTargets

logger = logging.getLogger(__name__)

FORMAT = "dcclip-teacher-cache/2"
MARKER_FILE = ".dcclip-teacher-cache"
METADATA_FILE = "teacher_cache.json"
SHARD_FILE = "shard.json"
CODECS_FILE = "codecs.safetensors"
PARTIAL_PREFIX = ".partial-"
TOWERS = ("images", "texts")
_SHARD_NAME = re.compile(r"^(images|texts)-(\d{5})-of-(\d{5})$")
_SHARD_FILES = re.compile(r"^([a-z0-9_]+\.bin|shard\.json|codecs\.safetensors)$")
_DIGEST_BYTES = 20  # SHA-1


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


# ----- what a cache stores ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CacheCompression:
    """How targets are reduced before storage (see `compression.py` and docs/distillation.md).

    Attributes:
        image_grids: the grid each cached image layer is pooled to, by teacher layer.
        image_ranks / text_ranks: principal components kept per feature vector, by teacher layer (None: every
            channel, in float16).
        text_pooled: text maps mean-pooled over real tokens (one vector per caption) instead of token by token.
        standardized: maps standardised over channels before storage (the loss's `standardize_teacher_maps`).
    """

    image_grids: dict[int, tuple[int, int]]
    image_ranks: dict[int, int | None]
    text_ranks: dict[int, int | None]
    text_pooled: bool
    standardized: bool


def shard_name(tower: str, index: int, num_shards: int) -> str:
    """`images-00003-of-00008`: the folder of shard `index` (0-based) of `num_shards` of `tower`."""
    return f"{tower}-{index:05d}-of-{num_shards:05d}"


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
    stored.maps_standardized = compression.standardized
    return {
        "format": FORMAT,
        "teacher": dict(identity),
        "max_text_length": max_text_length,
        "num_shards": num_shards,
        "ranks": {"image": {str(k): compression.image_ranks[k] for k in image_layers},
                  "text": {str(k): compression.text_ranks[k] for k in text_layers}},
        "dtype": "float16",
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
        if _SHARD_NAME.match(shard) and entry.is_dir():
            foreign += [f"{name}/{inner.name}" for inner in entry.iterdir() if not _SHARD_FILES.match(inner.name)]
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
        differs = existing is not None and existing != description
        if differs and not overwrite:
            changes = "; ".join(_differences(existing, description)[:4])
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
                                          "sha256": _file_sha256(self.partial / CODECS_FILE)}  # fmt: skip
        (self.partial / SHARD_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        os.rename(self.partial, self.final)
        return manifest


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


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
        ids = [bytes.fromhex(i) for i in _ids_of_rows(encoded["input_ids"], encoded["attention_mask"])]
        keep = [i for i, sample_id in enumerate(ids) if not (sample_id in seen or seen.add(sample_id))]
        if not keep:
            continue
        input_ids, attention_mask = encoded["input_ids"][keep], encoded["attention_mask"][keep]
        targets = teacher(input_ids=input_ids, attention_mask=attention_mask, text_layers=layers)
        mask = attention_mask.to(teacher.device)
        maps = {}
        for k, tokens in zip(layers, targets.text_maps):
            tokens = tokens.float()
            if compression.text_pooled:
                tokens = masked_mean_tokens(tokens, mask)
            if compression.standardized:
                tokens = standardize_channels(tokens, -1)
            if compression.text_pooled:
                maps[k] = tokens.cpu()
            else:
                maps[k] = [tokens[row][mask[row].bool()].cpu() for row in range(len(keep))]
        yield _Rows([ids[i] for i in keep], maps, targets.text_embeds.float().cpu())


def _vectors(maps: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    """Every feature vector of a batch's map, `(n, C)`."""
    if isinstance(maps, list):
        return torch.cat(maps) if maps else torch.empty(0)
    return maps.reshape(-1, maps.shape[-1])


def _write_tower(
    rows: Iterator[_Rows], writer: _ShardWriter, ranks: Mapping[int, int | None], fit_vectors: int, start: float
) -> dict:
    """Fit each layer's codec on the first `fit_vectors` feature vectors (holding those batches), then encode and
    write every batch; returns the shard's manifest."""
    layers = list(ranks)
    held: list[_Rows] = []  # the first batches, until the codecs are fitted on them
    codecs: dict[int, FeatureCodec] = {}
    count = 0
    token_lengths: list[int] = []

    def fit_and_flush() -> None:
        codecs.update({k: FeatureCodec.fit(torch.cat([_vectors(b.maps[k]) for b in held]), ranks[k]) for k in layers})
        for waiting in held:
            write(waiting)
        held.clear()

    def write(batch: _Rows) -> None:
        nonlocal count
        writer.append("sample_ids", np.frombuffer(b"".join(batch.ids), dtype=np.uint8).reshape(-1, _DIGEST_BYTES))
        for k in layers:
            maps = batch.maps[k]
            if isinstance(maps, list):  # token by token: one flat array, offsets per text
                if k == layers[0]:
                    token_lengths.extend(len(m) for m in maps)
                maps = _vectors(maps)
            writer.append(f"layer_{k}", codecs[k].encode(maps).numpy())
        writer.append("embeds", batch.embeds.to(torch.float16).numpy())
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
    tensors = {name: t for k, codec in codecs.items() for name, t in codec.state(f"layer_{k}").items()}
    channels = {str(k): codec.channels for k, codec in codecs.items()}
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
        compression: grids, rank, text pooling and standardisation of the stored maps.
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
        manifests[tower] = _write_tower(rows, writer, {k: ranks[k] for k in layers}, fit_vectors, start)
        logger.info("teacher cache shard %s: %d rows in %.1f s", writer.final.name, manifests[tower]["rows"],
                    manifests[tower]["build_seconds"])  # fmt: skip
    return manifests


# ----- reading ------------------------------------------------------------------------------------------------------


class _Shard:
    """One complete shard, its arrays memory-mapped on first use in each process."""

    def __init__(self, path: Path):
        self.path = path
        self.manifest = json.loads((path / SHARD_FILE).read_text(encoding="utf-8"))
        self.rows = int(self.manifest["rows"])
        tensors = load_file(str(path / CODECS_FILE))
        self.codecs = {
            int(k): FeatureCodec.from_state(tensors, f"layer_{k}", channels)
            for k, channels in self.manifest["channels"].items()
        }
        self._arrays: dict[str, np.ndarray] = {}
        self._pid = None

    def array(self, name: str) -> np.ndarray:
        if self._pid != os.getpid():  # a DataLoader worker maps the files itself
            self._arrays, self._pid = {}, os.getpid()
        if name not in self._arrays:
            info = self.manifest["arrays"][name]
            self._arrays[name] = np.memmap(
                self.path / f"{name}.bin", dtype=np.dtype(info["dtype"]), mode="r", shape=tuple(info["shape"])
            )
        return self._arrays[name]

    def payload_bytes(self) -> int:
        """Bytes of the per-row files (everything but the per-shard codecs and manifest)."""
        return sum(f["bytes"] for name, f in self.manifest["files"].items() if name != CODECS_FILE)

    def problems(self) -> list[str]:
        """Files whose size or SHA-256 differs from the manifest."""
        found = []
        for name, expected in self.manifest["files"].items():
            path = self.path / name
            if not path.is_file():
                found.append(f"{path} is missing")
            elif path.stat().st_size != expected["bytes"]:
                found.append(f"{path} has {path.stat().st_size} bytes, {expected['bytes']} when written")
            elif _file_sha256(path) != expected["sha256"]:
                found.append(f"{path} fails its SHA-256 checksum (its content changed after it was written)")
        return found

    def __getstate__(self) -> dict:  # spawned DataLoader workers map the files themselves
        return {**self.__dict__, "_arrays": {}, "_pid": None}


class _SampleIndex:
    """Where each sample id lives: sorted 64-bit id prefixes over every shard of a tower, checked on the full id."""

    def __init__(self, shards: list[_Shard]):
        self.shards = shards
        prefixes, shard_of, row_of = [], [], []
        for number, shard in enumerate(shards):
            if not shard.rows:
                continue
            ids = np.asarray(shard.array("sample_ids"))
            prefixes.append(ids[:, :8].copy().view(">u8").reshape(-1))
            shard_of.append(np.full(len(ids), number, dtype=np.int32))
            row_of.append(np.arange(len(ids), dtype=np.int64))
        keys = np.concatenate(prefixes) if prefixes else np.zeros(0, dtype=">u8")
        order = np.argsort(keys, kind="stable")
        self.keys = keys[order]
        self.shard_of = np.concatenate(shard_of)[order] if shard_of else np.zeros(0, dtype=np.int32)
        self.row_of = np.concatenate(row_of)[order] if row_of else np.zeros(0, dtype=np.int64)

    def locate(self, ids: list[bytes]) -> list[tuple[int, int] | None]:
        """(shard number, row) of each id, None where the tower does not hold it."""
        found: list[tuple[int, int] | None] = []
        for sample_id in ids:
            key = np.frombuffer(sample_id[:8], dtype=">u8")[0]
            position = int(np.searchsorted(self.keys, key))
            where = None
            while position < len(self.keys) and self.keys[position] == key:
                shard, row = int(self.shard_of[position]), int(self.row_of[position])
                if bytes(self.shards[shard].array("sample_ids")[row]) == sample_id:
                    where = (shard, row)
                    break
                position += 1
            found.append(where)
        return found


class TeacherCache:
    """A built cache, opened for training: the targets of a batch by sample id (used in DataLoader workers).

    Opening checks that the folder is a complete build of this format: every shard of each tower present. Call
    `check_teacher` and `verify_checksums` before training (stage 1's start-up does).
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        metadata_file = self.folder / METADATA_FILE
        if not metadata_file.is_file():
            raise FileNotFoundError(
                f"no teacher cache at {self.folder} ({METADATA_FILE} missing); build it with "
                "`dcclip teacher-cache <config> --teacher_cache_dir <folder>`"
            )
        self.metadata = json.loads(metadata_file.read_text(encoding="utf-8"))
        if self.metadata.get("format") != FORMAT:
            raise ValueError(
                f"the teacher cache {self.folder} has format {self.metadata.get('format', 'dcclip 0.1 (datasets)')!r}, "
                f"this version reads {FORMAT!r}; rebuild it with `dcclip teacher-cache`"
            )
        layout = dict(self.metadata["layout"])
        layout["image_grid"] = tuple(layout["image_grid"])
        layout["cached_image_grids"] = [tuple(g) for g in layout["cached_image_grids"] or []]
        self.layout = TeacherLayout(**layout)
        self.logit_scale = float(self.metadata["logit_scale"])
        self.max_text_length = int(self.metadata["max_text_length"])
        num_shards = int(self.metadata["num_shards"])
        self.shards: dict[str, list[_Shard]] = {}
        for tower in TOWERS:
            present = [shard_name(tower, i, num_shards) for i in range(num_shards)]
            complete = [name for name in present if (self.folder / name / SHARD_FILE).is_file()]
            if complete and len(complete) < num_shards:
                missing = sorted(set(present) - set(complete))
                raise FileNotFoundError(
                    f"the teacher cache {self.folder} is incomplete: {len(missing)} of {num_shards} {tower} shards "
                    f"are missing or unfinished (e.g. {missing[0]}); finish building them (rerun those shards)"
                )
            self.shards[tower] = [_Shard(self.folder / name) for name in complete]
        self._indexes: dict[str, _SampleIndex] = {}

    @property
    def num_images(self) -> int:
        return sum(shard.rows for shard in self.shards["images"])

    @property
    def num_texts(self) -> int:
        return sum(shard.rows for shard in self.shards["texts"])

    def bytes_per_row(self, tower: str) -> float:
        """Stored bytes per image or caption (per-row files; each shard adds its codecs, `codec_bytes`, once)."""
        rows = sum(shard.rows for shard in self.shards[tower])
        return sum(shard.payload_bytes() for shard in self.shards[tower]) / max(rows, 1)

    def codec_bytes(self, tower: str) -> int:
        """Bytes of the bases of one shard of `tower` (the same for every shard)."""
        shards = self.shards[tower]
        return shards[0].manifest["files"][CODECS_FILE]["bytes"] if shards else 0

    def check_teacher(self, checkpoint_digest: str, processor_sha256: str, teacher: str) -> None:
        """Refuse a cache built from another teacher checkpoint or processor than `teacher`'s."""
        recorded = self.metadata["teacher"]
        for what, expected, found in (
            ("checkpoint", recorded.get("checkpoint_sha256"), checkpoint_digest),
            ("processor", recorded.get("processor_sha256"), processor_sha256),
        ):
            if expected != found:
                raise ValueError(
                    f"the teacher cache {self.folder} was built from another teacher {what} than --teacher {teacher} "
                    f"({what} SHA-256 {str(expected)[:16]}... when built, {found[:16]}... now; built from "
                    f"{recorded.get('name')!r}); rebuild the cache with this teacher or give the teacher it was built with"
                )

    def verify_checksums(self, threads: int = 4) -> None:
        """Re-hash every shard file and refuse the cache if any differs from what its shard recorded."""
        shards = [shard for tower in TOWERS for shard in self.shards[tower]]
        with ThreadPoolExecutor(max(1, threads)) as pool:  # hashlib releases the GIL
            problems = [problem for found in pool.map(_Shard.problems, shards) for problem in found]
        if problems:
            raise ValueError(
                f"the teacher cache {self.folder} is damaged: {'; '.join(problems[:3])}"
                + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")
                + "; rebuild the shards named (remove them and rerun the cache command)"
            )

    def _locate(self, tower: str, ids: list[bytes], kind: str) -> list[tuple[int, int]]:
        if tower not in self._indexes:
            self._indexes[tower] = _SampleIndex(self.shards[tower])
        found = self._indexes[tower].locate(ids)
        missing = [sample_id.hex() for sample_id, where in zip(ids, found) if where is None]
        if missing:
            raise KeyError(
                f"{len(missing)} {kind} sample(s) of this batch are not in the teacher cache {self.folder} "
                f"(e.g. id {missing[0]}); build the cache from the same data spec, teacher tokenizer and "
                f"max_text_length ({self.max_text_length}) as the training run"
            )
        return found

    def _by_shard(self, found: list[tuple[int, int]]) -> dict[int, tuple[list[int], list[int]]]:
        groups: dict[int, tuple[list[int], list[int]]] = {}
        for position, (shard, row) in enumerate(found):
            positions, rows = groups.setdefault(shard, ([], []))
            positions.append(position)
            rows.append(row)
        return groups

    def image_targets(self, image_samples: Sequence[dict], layers: Sequence[int]) -> TeacherTargets:
        """Cached targets of a batch of image samples (canonical `{"image": cell}` dicts), in batch order."""
        if not self.shards["images"]:
            raise ValueError(f"the teacher cache {self.folder} holds no image targets; it was built without image data")
        ids = [bytes.fromhex(image_sample_id(s[IMAGE_COLUMN])) for s in image_samples]
        found = self._locate("images", ids, "image")
        size = len(ids)
        maps = {k: torch.empty(size, self.layout.image_width, *self.layout.image_grid_of(k)) for k in layers}
        embeds = torch.empty(size, self.layout.projection_dim, dtype=torch.float16)
        for number, (positions, rows) in self._by_shard(found).items():
            shard = self.shards["images"][number]
            for k in layers:
                codes = torch.from_numpy(np.asarray(shard.array(f"layer_{k}")[rows]))
                maps[k][positions] = shard.codecs[k].decode(codes).permute(0, 3, 1, 2)
            embeds[positions] = torch.from_numpy(np.asarray(shard.array("embeds")[rows]))
        return TeacherTargets(image_maps=[maps[k] for k in layers], image_embeds=embeds)

    def text_targets(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, layers: Sequence[int]) -> TeacherTargets:
        """Cached targets of a batch of tokenized texts (teacher token ids), laid out on the batch's padded length."""
        if not self.shards["texts"]:
            raise ValueError(f"the teacher cache {self.folder} holds no text targets; it was built without text data")
        ids = [bytes.fromhex(i) for i in _ids_of_rows(input_ids, attention_mask)]
        found = self._locate("texts", ids, "text")
        width, real = self.layout.text_width, attention_mask.bool()
        shape = (len(ids), width) if self.layout.text_pooled else (*attention_mask.shape, width)
        maps = {k: torch.zeros(shape) for k in layers}  # padding positions carry no target
        embeds = torch.empty(len(ids), self.layout.projection_dim, dtype=torch.float16)
        for number, (positions, rows) in self._by_shard(found).items():
            shard = self.shards["texts"][number]
            for k in layers:
                stored = shard.array(f"layer_{k}")
                if self.layout.text_pooled:
                    maps[k][positions] = shard.codecs[k].decode(torch.from_numpy(np.asarray(stored[rows])))
                    continue
                offsets = shard.array("token_offsets")[:, 0]
                for position, row in zip(positions, rows):
                    codes = torch.from_numpy(np.array(stored[offsets[row] : offsets[row + 1]]))
                    maps[k][position, real[position]] = shard.codecs[k].decode(codes)
            embeds[positions] = torch.from_numpy(np.asarray(shard.array("embeds")[rows]))
        return TeacherTargets(text_maps=[maps[k] for k in layers], text_attention_mask=attention_mask, text_embeds=embeds)


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
