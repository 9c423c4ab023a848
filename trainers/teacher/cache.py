"""Teacher cache: run the frozen teacher once over the stage-1 data and store what stage 1's loss reads, so that training
reads it instead of running the teacher every epoch (`dcclip teacher-cache`, then `distill.py --teacher_cache_dir`).

Layout of a cache folder (every array a flat little-endian file, its dtype and shape in the shard's `shard.json`):
    .dcclip-teacher-cache      marker: the folder is the cache command's (it replaces nothing else)
    teacher_cache.json         the build: teacher identity (checkpoint and processor digests), layer mapping, grids,
                               compression, max_text_length, number of shards; the same for every shard
    images-00000-of-00004/     one complete shard of the image tower: sample_ids.bin (SHA-1 digests, 20 bytes each),
                               layer_<k>.bin (codes, rows x h x w x rank, int8 by default) and layer_<k>_scale.bin
                               (float16, one scale per int8 vector), embeds.bin (+ embeds_scale.bin), codecs.safetensors
                               (each layer's basis and spreads), shard.json (rows, shapes, SHA-256 per file)
    texts-00000-of-00004/      the text tower: layer_<k>.bin (rows x rank when pooled; else kept tokens x rank with
                               token_offsets.bin), embeds.bin, ...
    .partial-<shard>-<id>/     a shard being written: renamed to its final name only once complete, never read

What is stored (`compression.py`): image maps pooled to a grid per layer, text maps at evenly spaced tokens (at most a
fixed number per caption), maps standardised over channels as the loss does, each feature vector as its coordinates in
a per-layer principal-component basis, in int8 with a scale per vector (or float16).

Samples are keyed by content, so the cache does not depend on order, shuffling, source mixing, ranks or shards: an
image's id is the SHA-1 of its encoded file bytes, a text's id the SHA-1 of its teacher token ids (so a cache is only
found for the tokenizer and truncation length it was built with). Targets are stored as the teacher computes them for
the deterministic processor (resize + centre crop): a cache assumes no random augmentation.

Written by `cache_writer.py` (`dcclip teacher-cache`, `trainers/cache_teacher.py`), in one process or as shards across
processes and SLURM array tasks; read here (`TeacherCache`) by the collator, which hands the trainer the same
`TeacherTargets` a live teacher would.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from datasets.utils.file_utils import xopen
from safetensors.torch import load_file

from dcclip.trainers.data.schema import IMAGE_COLUMN
from dcclip.trainers.teacher.compression import FeatureCodec, text_token_positions
from dcclip.trainers.teacher.targets import TeacherLayout, TeacherTargets

logger = logging.getLogger(__name__)

FORMAT = "dcclip-teacher-cache/2"
MARKER_FILE = ".dcclip-teacher-cache"
METADATA_FILE = "teacher_cache.json"
SHARD_FILE = "shard.json"
CODECS_FILE = "codecs.safetensors"
PARTIAL_PREFIX = ".partial-"
TOWERS = ("images", "texts")
SHARD_NAME = re.compile(r"^(images|texts)-(\d{5})-of-(\d{5})$")
SHARD_FILES = re.compile(r"^([a-z0-9_]+\.bin|shard\.json|codecs\.safetensors)$")
DIGEST_BYTES = 20  # SHA-1


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


def ids_of_rows(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[str]:
    """The sample id of each row of a tokenized batch (its real tokens)."""
    return [text_sample_id(ids[mask.bool()]) for ids, mask in zip(input_ids, attention_mask)]


# ----- format ------------------------------------------------------------------------------------------------------


def shard_name(tower: str, index: int, num_shards: int) -> str:
    """`images-00003-of-00008`: the folder of shard `index` (0-based) of `num_shards` of `tower`."""
    return f"{tower}-{index:05d}-of-{num_shards:05d}"


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


# ----- reading ------------------------------------------------------------------------------------------------------


class _Shard:
    """One complete shard, its arrays memory-mapped on first use in each process."""

    def __init__(self, path: Path):
        self.path = path
        self.manifest = json.loads((path / SHARD_FILE).read_text(encoding="utf-8"))
        self.rows = int(self.manifest["rows"])
        tensors = load_file(str(path / CODECS_FILE))
        self.codecs = {
            f"layer_{k}": FeatureCodec.from_state(tensors, f"layer_{k}", channels)
            for k, channels in self.manifest["channels"].items()
        }
        # caches written before int8 codes store float16 embeddings without a codec
        self.codecs["embeds"] = FeatureCodec.from_state(tensors, "embeds", 0)
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

    def decoded(self, name: str, rows) -> torch.Tensor:
        """Array `name` (`layer_<k>` or `embeds`) at `rows` (indices or a slice), decoded to float32."""
        codes = torch.from_numpy(np.array(self.array(name)[rows]))
        scale_name = f"{name}_scale"
        scales = None
        if scale_name in self.manifest["arrays"]:  # int8 codes
            scales = torch.from_numpy(np.array(self.array(scale_name)[rows]))
        return self.codecs[name].decode(codes, scales)

    def payload_bytes(self) -> int:
        """Bytes of the per-row files (everything but the per-shard codecs and manifest)."""
        return sum(f["bytes"] for name, f in self.manifest["files"].items() if name != CODECS_FILE)

    def file_problem(self, name: str) -> str | None:
        """What is wrong with file `name` against the manifest (missing, size or SHA-256), or None."""
        path, expected = self.path / name, self.manifest["files"][name]
        if not path.is_file():
            return f"{path} is missing"
        if path.stat().st_size != expected["bytes"]:
            return f"{path} has {path.stat().st_size} bytes, {expected['bytes']} when written"
        if file_sha256(path) != expected["sha256"]:
            return f"{path} fails its SHA-256 checksum (its content changed after it was written)"
        return None

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
        # built here, before DataLoader workers fork: they then share the index's pages instead of each building one
        self._indexes = {tower: _SampleIndex(shards) for tower, shards in self.shards.items()}

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
                    + (" (a processor also reads differently under another transformers version)" if what == "processor" else "")
                )

    def verify_checksums(self, process_index: int = 0, num_processes: int = 1, threads: int = 4) -> None:
        """Re-hash shard files and refuse the cache if any differs from what its shard recorded. The files are split
        over the run's processes (this one hashes every `num_processes`-th, from `process_index`), so a distributed
        start-up reads the cache once in all, not once per process; a process that finds damage stops the run."""
        files = [(shard, name) for tower in TOWERS for shard in self.shards[tower] for name in shard.manifest["files"]]
        mine = files[process_index::num_processes]
        with ThreadPoolExecutor(max(1, threads)) as pool:  # hashlib releases the GIL
            problems = [found for found in pool.map(lambda item: item[0].file_problem(item[1]), mine) if found]
        if problems:
            raise ValueError(
                f"the teacher cache {self.folder} is damaged: {'; '.join(problems[:3])}"
                + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")
                + "; rebuild the shards named (remove them and rerun the cache command)"
            )

    def _locate(self, tower: str, ids: list[bytes], kind: str) -> list[tuple[int, int]]:
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
                maps[k][positions] = shard.decoded(f"layer_{k}", rows).permute(0, 3, 1, 2)
            embeds[positions] = shard.decoded("embeds", rows).to(embeds.dtype)
        return TeacherTargets(image_maps=[maps[k] for k in layers], image_embeds=embeds)

    def text_targets(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, layers: Sequence[int]) -> TeacherTargets:
        """Cached targets of a batch of tokenized texts (teacher token ids), laid out on the batch's padded length."""
        if not self.shards["texts"]:
            raise ValueError(f"the teacher cache {self.folder} holds no text targets; it was built without text data")
        ids = [bytes.fromhex(i) for i in ids_of_rows(input_ids, attention_mask)]
        found = self._locate("texts", ids, "text")
        width, pooled = self.layout.text_width, self.layout.text_pooled
        # token by token, the tokens that carry a target: every real token, or the ones the cache kept (found again
        # from the mask)
        kept = None if pooled else text_token_positions(attention_mask, self.layout.text_tokens)
        shape = (len(ids), self.layout.text_segments, width) if pooled else (*attention_mask.shape, width)
        maps = {k: torch.zeros(shape) for k in layers}  # padding positions carry no target
        embeds = torch.empty(len(ids), self.layout.projection_dim, dtype=torch.float16)
        for number, (positions, rows) in self._by_shard(found).items():
            shard = self.shards["texts"][number]
            if pooled:  # (rows, segments, width); caches from before segments store (rows, width)
                for k in layers:
                    decoded = shard.decoded(f"layer_{k}", rows)
                    maps[k][positions] = decoded.view(len(rows), self.layout.text_segments, width)
            else:  # each layer's kept tokens of all these rows decoded at once, then placed at (caption, token)
                offsets = shard.array("token_offsets")[:, 0]
                stored = np.concatenate([np.arange(offsets[row], offsets[row + 1]) for row in rows])
                caption, token = kept[positions].nonzero(as_tuple=True)  # row-major: the order the rows are stored
                at = (torch.as_tensor(positions)[caption], token)
                for k in layers:
                    maps[k][at] = shard.decoded(f"layer_{k}", stored)
            embeds[positions] = shard.decoded("embeds", rows).to(embeds.dtype)
        subsampled = not pooled and self.layout.text_tokens > 0
        return TeacherTargets(
            text_maps=[maps[k] for k in layers], text_attention_mask=attention_mask, text_maps_pooled=pooled,
            text_target_mask=kept if subsampled else None, text_embeds=embeds,
        )  # fmt: skip


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
            targets.text_attention_mask, targets.text_maps_pooled = attention_mask, texts.text_maps_pooled
            targets.text_target_mask = texts.text_target_mask
        return targets
