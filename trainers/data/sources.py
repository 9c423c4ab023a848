"""Load the sources of a data spec with `datasets`, convert them to canonical samples, check them, and mix them.

Flow per source: ``load_dataset`` (Hub id, imagefolder, parquet/csv/json, webdataset) -> column check -> one
``map`` that builds canonical samples (``schema.py``) and judges each one (``sample_quality.py``) -> drop the bad
ones, counting them -> ``interleave_datasets`` with the sources' weights.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import datasets

from .sample_quality import (
    ImageLimits,
    SampleQualityCounter,
    SampleQualityReport,
    check_image,
    log_sample_quality,
    sum_reports_across_ranks,
    write_sample_quality,
)
from .schema import CAPTION_COLUMNS, IMAGE_COLUMN, LANGUAGES, Modality, canonical_features
from .spec import DataSpec, SourceSpec

logger = logging.getLogger(__name__)

# Per-sample verdict columns, added by the check and removed before the data leaves this module.
_ISSUE, _REPAIR, _MISSING = "quality_issue", "quality_repair", "quality_missing_captions"
_QUALITY_FEATURES = {
    _ISSUE: datasets.Value("string"),
    _REPAIR: datasets.Value("string"),
    _MISSING: datasets.List(datasets.Value("string")),
}

Data = datasets.Dataset | datasets.IterableDataset


@dataclass
class ImageTextData:
    """The loaded training data: canonical samples of one modality, and the quality counts of each source."""

    dataset: Data
    modality: Modality
    streaming: bool
    quality_counters: dict[str, SampleQualityCounter]

    def quality_reports(self) -> dict[str, SampleQualityReport]:
        """Per-source counts. Streaming counts grow as the data is read and are summed across ranks (every rank
        must call this then); map-style counts come from the start-up pre-pass and are the same on every rank."""
        reports = {name: counter.report() for name, counter in self.quality_counters.items()}
        return sum_reports_across_ranks(reports) if self.streaming else reports

    def write_quality_report(self, output_dir: str | Path) -> Path:
        """Log the counts and write them to ``output_dir/sample_quality.json``."""
        reports = self.quality_reports()
        log_sample_quality(reports)
        return write_sample_quality(reports, output_dir)


def load_raw_source(source: SourceSpec, streaming: bool = False) -> Data:
    """Load one source as `datasets` gives it, before any column mapping."""
    if source.kind == "hub":
        return datasets.load_dataset(
            source.path, name=source.config, split=source.split, data_files=source.data_files, streaming=streaming
        )
    if source.kind == "imagefolder":
        return datasets.load_dataset("imagefolder", data_dir=source.path, split=source.split, streaming=streaming)
    return datasets.load_dataset(
        source.kind, data_files={"train": source.data_files}, split="train", streaming=streaming
    )


def _column_names(dataset: Data) -> list[str]:
    if dataset.features is not None:
        return list(dataset.features)
    # Some streaming datasets only know their columns once read.
    first = next(iter(dataset), None)
    return list(first) if first is not None else []


def _caption_list(cell) -> list[str]:
    """A caption cell (string, list of strings or missing) as a list of non-empty captions."""
    if cell is None:
        return []
    values = [cell] if isinstance(cell, str) else cell
    return [value.strip() for value in values if isinstance(value, str) and value.strip()]


def _language_code(value) -> str | None:
    """`en`, `EN`, `en_US`, `zh-CN`, ... -> `en` / `zh`; anything else -> None."""
    if not isinstance(value, str):
        return None
    code = value.strip().lower().replace("_", "-").split("-")[0]
    return code if code in LANGUAGES else None


class CanonicalSampleBuilder:
    """Batched ``map`` function: raw rows of one source -> canonical samples plus a quality verdict per sample.

    The verdict (skip reason, repaired mode, languages without a caption) travels in extra columns so that it can
    be counted exactly, then the bad rows are dropped.
    """

    def __init__(self, source: SourceSpec, image_limits: ImageLimits, image_root: str | None):
        self.source = source
        self.image_limits = image_limits
        self.image_root = image_root

    def _image_cell(self, cell):
        # Paths in parquet/csv/json files are relative to the image root; bytes columns arrive as raw bytes.
        if isinstance(cell, str):
            path = (
                cell
                if "://" in cell or os.path.isabs(cell) or not self.image_root
                else os.path.join(self.image_root, cell)
            )
            return {"bytes": None, "path": path}
        if isinstance(cell, (bytes, bytearray)):
            return {"bytes": bytes(cell), "path": None}
        if isinstance(cell, dict) and cell.get("bytes") is None and not cell.get("path"):
            return None
        return cell

    def _captions(self, batch: dict, index: int) -> tuple[dict[str, list[str]], str]:
        source = self.source
        captions = {language: [] for language in LANGUAGES}
        if source.text_column:
            language = _language_code(batch[source.language_column][index])
            if language is None:
                return captions, "unknown_language"
            captions[language] = _caption_list(batch[source.text_column][index])
        else:
            for language, column in source.caption_columns.items():
                captions[language] = _caption_list(batch[column][index])
        return captions, "" if any(captions.values()) else "missing_caption"

    def __call__(self, batch: dict) -> dict:
        source = self.source
        size = len(next(iter(batch.values())))
        out: dict[str, list] = {name: [] for name in (*canonical_features(source.modality), *_QUALITY_FEATURES)}
        for index in range(size):
            issue, repaired_from, missing = "", "", []
            if source.has_captions:
                captions, issue = self._captions(batch, index)
                for language, column in CAPTION_COLUMNS.items():
                    out[column].append(captions[language])
                # Languages the source promises per sample (one column each) but this sample lacks.
                missing = [language for language in source.caption_columns if not captions[language]]
            if source.image_column:
                image = self._image_cell(batch[source.image_column][index])
                out[IMAGE_COLUMN].append(image)
                if not issue:
                    check = check_image(image, self.image_limits)
                    issue, repaired_from = check.issue or "", check.repaired_from or ""
            out[_ISSUE].append(issue)
            out[_REPAIR].append(repaired_from)
            out[_MISSING].append(missing)
        return out


class _CountAndKeep:
    """Streaming filter: count each sample's verdict (in shared memory, from any worker) and keep the good ones."""

    def __init__(self, counter: SampleQualityCounter):
        self.counter = counter

    def __call__(self, sample: dict) -> bool:
        self.counter.record(sample[_ISSUE], sample[_REPAIR], sample[_MISSING])
        return not sample[_ISSUE]


def _keep_usable(issues: list[str]) -> list[bool]:
    return [not issue for issue in issues]


def _default_image_root(source: SourceSpec) -> str | None:
    if source.image_root:
        return source.image_root
    if source.kind in ("parquet", "csv", "json") and "://" not in source.data_files[0]:
        return str(Path(source.data_files[0]).parent)
    return None


def _canonical_source(source: SourceSpec, spec: DataSpec, counter: SampleQualityCounter) -> Data:
    raw = load_raw_source(source, streaming=spec.streaming)
    available = _column_names(raw)
    missing = [column for column in source.columns if column not in available]
    if missing:
        raise ValueError(
            f"data source {source.name!r}: configured columns {missing} not found; the source has {available}"
        )
    if source.image_column and isinstance((raw.features or {}).get(source.image_column), datasets.Image):
        raw = raw.cast_column(source.image_column, datasets.Image(decode=False))
    features = datasets.Features({**canonical_features(source.modality), **_QUALITY_FEATURES})
    builder = CanonicalSampleBuilder(source, spec.image_limits, _default_image_root(source))

    if spec.streaming:
        # Small batches: a worker yields its first samples after decoding 64 images, not 1000.
        checked = raw.map(builder, batched=True, batch_size=64, remove_columns=available, features=features)
        # Start-up check on a throwaway counter, so that the run's counts start at zero.
        probe = checked.filter(_CountAndKeep(SampleQualityCounter(max_workers=0)))
        if next(iter(probe), None) is None:
            raise ValueError(f"data source {source.name!r}: no usable sample (every sample was skipped)")
        return checked.filter(_CountAndKeep(counter)).remove_columns(list(_QUALITY_FEATURES))

    checked = raw.map(
        builder,
        batched=True,
        remove_columns=available,
        features=features,
        num_proc=spec.num_proc,
        desc=f"checking samples of {source.name}",
    )
    report = SampleQualityReport.from_records(checked[_ISSUE], checked[_REPAIR], checked[_MISSING])
    counter.add(report)
    if report.kept == 0:
        raise ValueError(
            f"data source {source.name!r}: no usable sample among {report.seen}; skipped: {report.skipped}"
        )
    usable = checked.filter(_keep_usable, input_columns=_ISSUE, batched=True, num_proc=spec.num_proc)
    return usable.remove_columns(list(_QUALITY_FEATURES))


def load_image_text_data(spec: DataSpec | str | Path) -> ImageTextData:
    """Load every source of ``spec`` (a ``DataSpec`` or a YAML/JSON file), check and mix them.

    Raises ``ValueError`` at start-up when a source lacks a configured column or has no usable sample.
    Bad samples are skipped or repaired and counted per source (``ImageTextData.quality_reports``).
    """
    if not isinstance(spec, DataSpec):
        spec = DataSpec.from_file(spec)
    counters = {source.name: SampleQualityCounter() for source in spec.sources}
    parts = [_canonical_source(source, spec, counters[source.name]) for source in spec.sources]
    if len(parts) == 1:
        dataset = parts[0]
    else:
        total_weight = sum(source.weight for source in spec.sources)
        dataset = datasets.interleave_datasets(
            parts,
            probabilities=[source.weight / total_weight for source in spec.sources],
            seed=spec.seed,
            stopping_strategy=spec.stopping_strategy,
        )
    if spec.streaming and spec.shuffle_buffer_size > 0:
        dataset = dataset.shuffle(seed=spec.seed, buffer_size=spec.shuffle_buffer_size)
    data = ImageTextData(dataset=dataset, modality=spec.modality, streaming=spec.streaming, quality_counters=counters)
    if not spec.streaming:
        log_sample_quality(data.quality_reports())
    logger.info("loaded %d source(s) of %s: %s", len(parts), spec.modality, [s.name for s in spec.sources])
    return data
