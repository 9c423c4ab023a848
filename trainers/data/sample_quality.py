"""Sample quality: decide whether an image is usable, repairable (mode conversion) or must be skipped, and count why.

Bad samples never stop a run and never vanish silently: every skipped or repaired sample is counted by reason, the
counts are logged and written to ``sample_quality.json`` in the run's output folder.

Counting is exact in both loading modes:
- map-style datasets are checked in one pre-pass (``datasets.map``), so counts are known at start-up and do not
  depend on epochs, DataLoader workers or ranks;
- streaming datasets are checked lazily, inside DataLoader workers; ``SampleQualityCounter`` keeps its counts in
  shared memory, one row per worker, so increments made in worker processes reach the main process.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import PIL.Image
import PIL.ImageOps
import torch
import torch.distributed as dist
from datasets.utils.file_utils import xopen
from transformers import TrainerCallback

from .schema import LANGUAGES

logger = logging.getLogger(__name__)

SAMPLE_QUALITY_FILENAME = "sample_quality.json"

# Skip reasons, in the order the checks run (captions first: they cost nothing; then the image).
SKIP_REASONS: tuple[str, ...] = (
    "missing_caption",  # no non-empty caption in any language (pair and text sources)
    "unknown_language",  # text + language column format: the language is neither of LANGUAGES
    "missing_image",  # the image cell is empty (no path, no bytes)
    "missing_file",  # the image path does not exist
    "unreadable_file",  # the path exists but cannot be read (a folder, no permission, an I/O error)
    "empty_file",  # the image file or bytes have zero length
    "unreadable_image",  # not an image format PIL can identify (corrupt header, random bytes)
    "truncated_image",  # identified, but decoding fails (truncated or corrupt pixel data)
    "too_small_image",  # a side below ImageLimits.min_side
    "too_large_image",  # more pixels than ImageLimits.max_pixels
)

# PIL modes repaired by conversion to RGB; anything else PIL can decode is counted under "other".
REPAIRABLE_MODES: tuple[str, ...] = tuple("1 L LA La P PA RGBA RGBa RGBX CMYK YCbCr LAB HSV I I;16 F other".split())


def repair_name(mode: str) -> str:
    """The name a mode conversion is counted under, e.g. ``converted_CMYK_to_RGB``."""
    return f"converted_{mode}_to_RGB"


@dataclass(frozen=True)
class ImageLimits:
    """Bounds outside which an image is skipped rather than trained on."""

    min_side: int = 8  # 1x1 tracking pixels and icons carry no content
    max_pixels: int = 50_000_000  # decoding larger images stalls DataLoader workers and can exhaust memory


@dataclass(frozen=True)
class ImageCheck:
    """The verdict on one image: a skip reason, or the mode it must be converted from (both None: usable as is)."""

    issue: str | None = None
    repaired_from: str | None = None


class _Skip(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _open_image(value, limits: ImageLimits | None) -> PIL.Image.Image:
    """Read and decode an image cell (``{"bytes", "path"}``); raise ``_Skip`` with the reason when it is unusable."""
    if value is None:
        raise _Skip("missing_image")
    if isinstance(value, PIL.Image.Image):
        image = value
    else:
        data, path = value.get("bytes"), value.get("path")
        if data is None:
            if not path:
                raise _Skip("missing_image")
            try:
                with xopen(path, "rb") as file:
                    data = file.read()
            except FileNotFoundError:
                raise _Skip("missing_file") from None
            except OSError:
                raise _Skip("unreadable_file") from None
        if len(data) == 0:
            raise _Skip("empty_file")
        try:
            image = PIL.Image.open(io.BytesIO(data))
        except PIL.Image.DecompressionBombError:
            raise _Skip("too_large_image") from None
        except (PIL.UnidentifiedImageError, OSError, ValueError):
            raise _Skip("unreadable_image") from None
    if limits is not None:
        # The header gives the size: out-of-bounds images are skipped without decoding their pixels.
        width, height = image.size
        if min(width, height) < limits.min_side:
            raise _Skip("too_small_image")
        if width * height > limits.max_pixels:
            raise _Skip("too_large_image")
    try:
        image.load()
        PIL.ImageOps.exif_transpose(image, in_place=True)
    except (OSError, ValueError, SyntaxError):
        raise _Skip("truncated_image") from None
    return image


def _mode_name(mode: str) -> str:
    return mode if mode in REPAIRABLE_MODES else "other"


def check_image(value, limits: ImageLimits) -> ImageCheck:
    """Decode an image cell fully and say whether it is usable, needs a mode conversion, or must be skipped."""
    try:
        image = _open_image(value, limits)
    except _Skip as skip:
        return ImageCheck(issue=skip.reason)
    return ImageCheck(repaired_from=None if image.mode == "RGB" else _mode_name(image.mode))


def to_rgb(image: PIL.Image.Image) -> PIL.Image.Image:
    """Convert any PIL mode to RGB; transparent images are laid on white (a plain convert would show hidden colours)."""
    if image.mode == "RGB":
        return image
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = PIL.Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PIL.Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in ("I", "I;16", "F"):
        # 16/32-bit greyscale: a plain convert clips at 255 instead of rescaling to 8 bits.
        image = image.convert("F")
        scale = 255.0 / max(image.getextrema()[1], 1.0)
        image = image.point(lambda value: value * scale).convert("L")
    return image.convert("RGB")


def load_rgb_image(value) -> PIL.Image.Image:
    """Decode an image cell (already checked) and return it as RGB."""
    try:
        return to_rgb(_open_image(value, limits=None))
    except _Skip as skip:
        raise ValueError(f"image {value.get('path') if isinstance(value, dict) else ''!r}: {skip.reason}") from None


@dataclass
class SampleQualityReport:
    """Counts of one source (or of several, merged): samples seen, kept, skipped by reason, repaired by kind.

    ``missing_captions`` counts kept samples that lack the caption of one configured language (the other language
    was usable, so the sample stays).
    """

    seen: int = 0
    kept: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    repaired: dict[str, int] = field(default_factory=dict)
    missing_captions: dict[str, int] = field(default_factory=dict)

    def merge(self, other: SampleQualityReport) -> SampleQualityReport:
        """The sum of two reports (sources, workers or ranks)."""

        def add(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
            return {key: a.get(key, 0) + b.get(key, 0) for key in sorted(a.keys() | b.keys())}

        return SampleQualityReport(
            seen=self.seen + other.seen,
            kept=self.kept + other.kept,
            skipped=add(self.skipped, other.skipped),
            repaired=add(self.repaired, other.repaired),
            missing_captions=add(self.missing_captions, other.missing_captions),
        )

    def to_dict(self) -> dict:
        return {
            "seen": self.seen,
            "kept": self.kept,
            "skipped": dict(self.skipped),
            "repaired": dict(self.repaired),
            "missing_captions": dict(self.missing_captions),
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> SampleQualityReport:
        return cls(**{key: data[key] for key in ("seen", "kept", "skipped", "repaired", "missing_captions")})

    @classmethod
    def from_records(
        cls, issues: Iterable[str], repairs: Iterable[str], missing: Iterable[Iterable[str]]
    ) -> SampleQualityReport:
        """Count per-sample records: an issue ("" = kept), a repaired mode ("" = none), the languages missing."""
        report = cls()
        for issue, repaired_from, missing_languages in zip(issues, repairs, missing, strict=True):
            report._record(issue, repaired_from, missing_languages)
        return report

    def _record(self, issue: str, repaired_from: str, missing_languages: Iterable[str]) -> None:
        self.seen += 1
        if issue:
            self.skipped[issue] = self.skipped.get(issue, 0) + 1
            return
        self.kept += 1
        if repaired_from:
            name = repair_name(repaired_from)
            self.repaired[name] = self.repaired.get(name, 0) + 1
        for language in missing_languages:
            self.missing_captions[language] = self.missing_captions.get(language, 0) + 1


# Row layout of SampleQualityCounter.
_COUNTER_KEYS: tuple[str, ...] = (
    ("seen", "kept")
    + tuple(f"skipped:{reason}" for reason in SKIP_REASONS)
    + tuple(f"repaired:{repair_name(mode)}" for mode in REPAIRABLE_MODES)
    + tuple(f"missing_captions:{language}" for language in LANGUAGES)
)
_COUNTER_INDEX = {key: index for index, key in enumerate(_COUNTER_KEYS)}


class SampleQualityCounter:
    """Sample quality counts that survive DataLoader worker processes (fork or spawn).

    The counts live in a shared-memory tensor with one row per writer (row 0: the main process, row i + 1: DataLoader
    worker i), so no lock is needed: each process only adds to its own row. ``report()`` sums the rows.
    """

    def __init__(self, max_workers: int = 64):
        self._counts = torch.zeros(max_workers + 1, len(_COUNTER_KEYS), dtype=torch.int64).share_memory_()

    def __deepcopy__(self, memo):
        # datasets deep-copies its iterable pipelines; a copy would count into memory nobody reads.
        return self

    def _row(self) -> torch.Tensor:
        worker = torch.utils.data.get_worker_info()
        row = 0 if worker is None else worker.id + 1
        if row >= self._counts.shape[0]:
            raise RuntimeError(f"SampleQualityCounter holds {self._counts.shape[0] - 1} worker rows; raise max_workers")
        return self._counts[row]

    def record(self, issue: str, repaired_from: str, missing_languages: Iterable[str]) -> None:
        """Count one sample (same fields as ``SampleQualityReport.from_records``)."""
        row = self._row()
        row[_COUNTER_INDEX["seen"]] += 1
        if issue:
            row[_COUNTER_INDEX[f"skipped:{issue}"]] += 1
            return
        row[_COUNTER_INDEX["kept"]] += 1
        if repaired_from:
            row[_COUNTER_INDEX[f"repaired:{repair_name(repaired_from)}"]] += 1
        for language in missing_languages:
            row[_COUNTER_INDEX[f"missing_captions:{language}"]] += 1

    def add(self, report: SampleQualityReport) -> None:
        """Add a finished report (e.g. of a pre-pass) to the main process row."""
        row = self._counts[0]
        row[_COUNTER_INDEX["seen"]] += report.seen
        row[_COUNTER_INDEX["kept"]] += report.kept
        for group, counts in (
            ("skipped", report.skipped),
            ("repaired", report.repaired),
            ("missing_captions", report.missing_captions),
        ):
            for key, count in counts.items():
                row[_COUNTER_INDEX[f"{group}:{key}"]] += count

    def report(self) -> SampleQualityReport:
        """The counts so far, summed over the main process and all workers (zero counts left out)."""
        totals = self._counts.sum(dim=0).tolist()
        report = SampleQualityReport(seen=totals[0], kept=totals[1])
        for key, count in zip(_COUNTER_KEYS[2:], totals[2:], strict=True):
            if count:
                group, name = key.split(":", 1)
                getattr(report, group)[name] = count
        return report


def sum_reports_across_ranks(reports: Mapping[str, SampleQualityReport]) -> dict[str, SampleQualityReport]:
    """Sum per-source reports over all ranks (a no-op outside torch.distributed). Every rank must call it."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return dict(reports)
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, {name: report.to_dict() for name, report in reports.items()})
    summed: dict[str, SampleQualityReport] = {}
    for rank_reports in gathered:
        for name, data in rank_reports.items():
            summed[name] = summed.get(name, SampleQualityReport()).merge(SampleQualityReport.from_dict(data))
    return summed


def total_report(reports: Mapping[str, SampleQualityReport]) -> SampleQualityReport:
    """All sources merged."""
    total = SampleQualityReport()
    for report in reports.values():
        total = total.merge(report)
    return total


def log_sample_quality(reports: Mapping[str, SampleQualityReport]) -> None:
    """One log line per source: seen, kept, and every non-zero skip / repair count."""
    for name, report in reports.items():
        logger.info(
            "sample quality [%s]: seen %d, kept %d, skipped %s, repaired %s, missing captions %s",
            name,
            report.seen,
            report.kept,
            report.skipped or "none",
            report.repaired or "none",
            report.missing_captions or "none",
        )


def write_sample_quality(reports: Mapping[str, SampleQualityReport], output_dir: str | Path) -> Path:
    """Write ``{"total": ..., "sources": {name: ...}}`` to ``output_dir/sample_quality.json``; return its path."""
    path = Path(output_dir) / SAMPLE_QUALITY_FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    content = {
        "total": total_report(reports).to_dict(),
        "sources": {name: report.to_dict() for name, report in reports.items()},
    }
    path.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


class SampleQualityCallback(TrainerCallback):
    """At the end of training, log the sample quality counts and write them into the run's output folder.

    ``quality_reports`` is a callable returning per-source reports (e.g. ``ImageTextData.quality_reports``); it is
    called on every rank, since streaming counts are summed across ranks.
    """

    def __init__(self, quality_reports):
        self.quality_reports = quality_reports

    def on_train_end(self, args, state, control, **kwargs):
        reports = self.quality_reports()
        if state.is_world_process_zero:
            log_sample_quality(reports)
            write_sample_quality(reports, args.output_dir)
