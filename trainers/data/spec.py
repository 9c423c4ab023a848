"""The data spec: which sources to read, how their columns map to images and captions, and how to mix them.

A spec is a YAML or JSON file (see docs/data.md) or the same structure built in Python::

    sources:
      - name: scenes
        kind: imagefolder
        path: train
        caption_columns: {en: caption_en, zh: caption_zh}
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Literal

import yaml

from .sample_quality import ImageLimits
from .schema import LANGUAGES, Modality

SourceKind = Literal["hub", "imagefolder", "parquet", "csv", "json", "webdataset"]
SOURCE_KINDS: tuple[str, ...] = ("hub", "imagefolder", "parquet", "csv", "json", "webdataset")
# Kinds read from `data_files`; the others from `path` (a Hub id or a local folder / dataset repo).
FILE_KINDS: tuple[str, ...] = ("parquet", "csv", "json", "webdataset")


@dataclass
class SourceSpec:
    """One data source and how its columns map to the canonical sample (see ``schema.py``).

    Captions come either from one column per language (``caption_columns``, e.g. ``{"en": "caption", "zh": "zh"}``)
    or from one text column plus a language column (``text_column`` + ``language_column``, values such as ``en``,
    ``zh``, ``zh-CN``). A source without captions is image-only; one with ``image_column: null`` is text-only.
    A caption cell may hold a string or a list of strings (several captions of one image).
    """

    name: str
    kind: SourceKind
    path: str | None = None  # hub: dataset id or local dataset folder; imagefolder: the folder
    data_files: list[str] | None = None  # file kinds: paths or glob patterns
    config: str | None = None  # hub: the dataset configuration name
    split: str = "train"  # hub and imagefolder
    image_column: str | None = "image"  # webdataset: the image extension, e.g. "jpg"
    caption_columns: dict[str, str] = field(default_factory=dict)
    text_column: str | None = None
    language_column: str | None = None
    image_root: str | None = None  # parquet/csv/json: folder that relative image paths start from
    weight: float = 1.0  # sampling weight when several sources are mixed

    def __post_init__(self):
        def fail(problem: str):
            raise ValueError(f"data source {self.name!r}: {problem}")

        if self.kind not in SOURCE_KINDS:
            fail(f"unknown kind {self.kind!r}; expected one of {', '.join(SOURCE_KINDS)}")
        if isinstance(self.data_files, str):
            self.data_files = [self.data_files]
        if self.data_files:
            self.data_files = [path for pattern in self.data_files for path in expand_brace_ranges(pattern)]
        if self.kind in FILE_KINDS:
            if not self.data_files:
                fail(f"kind {self.kind!r} reads `data_files` (paths or glob patterns); none given")
        elif not self.path:
            fail(f"kind {self.kind!r} needs `path` ({'a dataset id' if self.kind == 'hub' else 'a folder'})")
        unknown = sorted(set(self.caption_columns) - set(LANGUAGES))
        if unknown:
            fail(f"caption_columns has languages {unknown}; supported: {list(LANGUAGES)}")
        if self.caption_columns and self.text_column:
            fail("give either caption_columns or text_column + language_column, not both")
        if bool(self.text_column) != bool(self.language_column):
            fail("text_column and language_column go together")
        if self.image_column is None and not self.has_captions:
            fail("neither an image column nor caption columns: nothing to load")
        if not self.weight > 0:
            fail(f"weight must be positive, got {self.weight}")

    @property
    def has_captions(self) -> bool:
        return bool(self.caption_columns or self.text_column)

    @property
    def modality(self) -> Modality:
        if self.image_column is None:
            return "texts"
        return "pairs" if self.has_captions else "images"

    @property
    def columns(self) -> list[str]:
        """Every raw column this source needs."""
        names = [self.image_column, *self.caption_columns.values(), self.text_column, self.language_column]
        return [name for name in names if name]


@dataclass
class DataSpec:
    """Several sources of one modality, mixed with sampling weights, plus the loading options."""

    sources: list[SourceSpec]
    streaming: bool = False  # read lazily (datasets.IterableDataset) instead of preparing Arrow files first
    seed: int = 0  # for source sampling and the streaming shuffle buffer
    # "all_exhausted": every sample of every source is seen (smaller sources are oversampled);
    # "first_exhausted": stop when the first source runs out.
    stopping_strategy: Literal["all_exhausted", "first_exhausted"] = "all_exhausted"
    shuffle_buffer_size: int = 1000  # streaming only (map-style datasets are shuffled by the Trainer's sampler)
    image_limits: ImageLimits = field(default_factory=ImageLimits)
    num_proc: int | None = None  # processes for the map-style quality pre-pass

    def __post_init__(self):
        self.sources = [s if isinstance(s, SourceSpec) else SourceSpec(**s) for s in self.sources]
        if isinstance(self.image_limits, Mapping):
            self.image_limits = ImageLimits(**self.image_limits)
        if not self.sources:
            raise ValueError("data spec: no sources")
        names = [source.name for source in self.sources]
        if len(set(names)) != len(names):
            raise ValueError(f"data spec: source names must be unique, got {names}")
        modalities = {source.name: source.modality for source in self.sources}
        if len(set(modalities.values())) > 1:
            raise ValueError(
                f"data spec: sources of one spec must share a modality (pairs, images or texts), got {modalities}; "
                "use one spec per modality"
            )

    @property
    def modality(self) -> Modality:
        return self.sources[0].modality

    @classmethod
    def from_dict(cls, data: Mapping, base_dir: str | Path | None = None) -> DataSpec:
        """Build a spec from plain data; relative local paths are taken from ``base_dir`` when it is given."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"data spec: unknown keys {unknown}; known keys: {sorted(known)}")
        spec = cls(**data)
        if base_dir is not None:
            for source in spec.sources:
                _resolve_local_paths(source, Path(base_dir))
        return spec

    @classmethod
    def from_file(cls, path: str | Path) -> DataSpec:
        """Read a ``.yaml``/``.yml`` or ``.json`` spec; relative paths in it start from the file's folder."""
        path = Path(path)
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        if not isinstance(data, Mapping):
            raise ValueError(f"data spec {path}: expected a mapping with a `sources` list")
        return cls.from_dict(data, base_dir=path.parent)

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> Path:
        """Write the spec as YAML (``.yaml``/``.yml``) or JSON (any other suffix)."""
        path = Path(path)
        data = self.to_dict()
        if path.suffix in (".yaml", ".yml"):
            path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
        else:
            path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path


_BRACE_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")


def expand_brace_ranges(pattern: str) -> list[str]:
    """Expand webdataset-style ranges, which `datasets` does not: ``shard-{000..002}.tar`` -> three paths.

    Zero padding follows the first bound; several ranges in one pattern expand to their product.
    """
    match = _BRACE_RANGE.search(pattern)
    if match is None:
        return [pattern]
    first, last = match.group(1), match.group(2)
    if int(last) < int(first):
        raise ValueError(f"brace range {match.group(0)!r} in {pattern!r} runs backwards")
    head, tail = pattern[: match.start()], pattern[match.end() :]
    return [
        expanded
        for number in range(int(first), int(last) + 1)
        for expanded in expand_brace_ranges(f"{head}{number:0{len(first)}d}{tail}")
    ]


def _resolve_local_path(value: str, base_dir: Path) -> str:
    return value if "://" in value or Path(value).is_absolute() else str(base_dir / value)


def _resolve_local_paths(source: SourceSpec, base_dir: Path) -> None:
    if source.data_files:
        source.data_files = [_resolve_local_path(pattern, base_dir) for pattern in source.data_files]
    if source.image_root:
        source.image_root = _resolve_local_path(source.image_root, base_dir)
    # A hub `path` is a dataset id unless it names an existing local folder.
    if source.path and (source.kind == "imagefolder" or (base_dir / source.path).is_dir()):
        source.path = _resolve_local_path(source.path, base_dir)
