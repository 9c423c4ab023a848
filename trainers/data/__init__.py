"""Training data: sources (spec + loading), sample quality (checks, repair, counts), collators, built-in benchmark."""

from .collators import ImageTextCollator
from .sample_quality import (
    ImageLimits,
    SampleQualityCallback,
    SampleQualityCounter,
    SampleQualityReport,
    write_sample_quality,
)
from .schema import CAPTION_COLUMNS, IMAGE_COLUMN, LANGUAGE_IDS, LANGUAGES
from .sources import ImageTextData, load_image_text_data
from .spec import DataSpec, SourceSpec
from .synthetic_scenes import BenchmarkPaths, benchmark_tasks, benchmark_text_corpus, generate_benchmark

__all__ = [
    "CAPTION_COLUMNS",
    "IMAGE_COLUMN",
    "LANGUAGE_IDS",
    "LANGUAGES",
    "BenchmarkPaths",
    "DataSpec",
    "ImageLimits",
    "ImageTextCollator",
    "ImageTextData",
    "SampleQualityCallback",
    "SampleQualityCounter",
    "SampleQualityReport",
    "SourceSpec",
    "benchmark_tasks",
    "benchmark_text_corpus",
    "generate_benchmark",
    "load_image_text_data",
    "write_sample_quality",
]
