"""Bad samples never stop a run and never vanish silently: each is repaired or skipped, and counted by reason."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import PIL.Image
import pytest
import torch
from torch.utils.data import DataLoader
from transformers import TrainerControl, TrainerState, TrainingArguments

from dcclip.trainers.data import (
    DataSpec,
    ImageLimits,
    ImageTextCollator,
    SampleQualityCallback,
    SampleQualityCounter,
    SampleQualityReport,
    SourceSpec,
    load_image_text_data,
)
from dcclip.trainers.data.sample_quality import check_image, load_rgb_image, to_rgb

# Limits used by the seeded folders: a 300x300 image counts as huge, a 4x4 one as too small.
LIMITS = {"min_side": 8, "max_pixels": 200 * 200}
CAPTIONS = {"en": "caption_en", "zh": "caption_zh"}


@pytest.fixture
def bad_sample_folder(tmp_path, image_bytes):
    """An imagefolder with every kind of bad sample, and the report its loading must produce."""
    folder = tmp_path / "bad_folder"
    (folder / "images").mkdir(parents=True)
    rows = []

    def add(name, data, caption_en="a red circle", caption_zh="一个红色圆形"):
        if data is not None:
            (folder / "images" / name).write_bytes(data)
        rows.append({"file_name": f"images/{name}", "caption_en": caption_en, "caption_zh": caption_zh})

    for index in range(3):
        add(f"good{index}.png", image_bytes(seed=index))
    add("grey.png", image_bytes("L"))
    add("alpha.png", image_bytes("RGBA"))
    add("cmyk.jpg", image_bytes("CMYK", image_format="JPEG"))
    add("palette.png", image_bytes("P"))
    add("truncated.png", image_bytes(size=(64, 64))[:300])
    add("corrupt.png", np.random.default_rng(0).bytes(500))
    add("missing.png", None)
    (folder / "images" / "folder.png").mkdir()
    add("folder.png", None)
    add("empty.png", b"")
    add("tiny.png", image_bytes(size=(4, 4)))
    add("huge.png", image_bytes(size=(300, 300)))
    add("blank_captions.png", image_bytes(seed=5), caption_en="  ", caption_zh="")
    add("no_captions.png", image_bytes(seed=6), caption_en=None, caption_zh=None)
    add("english_only.png", image_bytes(seed=7), caption_zh=None)
    with open(folder / "metadata.jsonl", "w", encoding="utf-8") as file:
        file.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)

    expected = SampleQualityReport(
        seen=17,
        kept=8,
        skipped={
            "unreadable_file": 1,
            "truncated_image": 1,
            "unreadable_image": 1,
            "missing_file": 1,
            "empty_file": 1,
            "too_small_image": 1,
            "too_large_image": 1,
            "missing_caption": 2,
        },
        repaired={
            "converted_L_to_RGB": 1,
            "converted_RGBA_to_RGB": 1,
            "converted_CMYK_to_RGB": 1,
            "converted_P_to_RGB": 1,
        },
        missing_captions={"zh": 1},
    )
    return folder, expected


def _spec(source: SourceSpec, **options) -> DataSpec:
    return DataSpec(sources=[source], image_limits=LIMITS, **options)


def test_every_bad_sample_kind_is_counted_exactly_and_the_epoch_completes(bad_sample_folder, tiny_processor, tmp_path):
    folder, expected = bad_sample_folder
    data = load_image_text_data(_spec(SourceSpec("seeded", "imagefolder", path=str(folder), caption_columns=CAPTIONS)))

    assert data.quality_reports() == {"seeded": expected}
    loader = DataLoader(data.dataset, batch_size=3, collate_fn=ImageTextCollator(tiny_processor))
    pairs = sum(len(batch["pixel_values"]) for batch in loader)
    assert pairs == expected.kept
    written = json.loads(data.write_quality_report(tmp_path / "run").read_text(encoding="utf-8"))
    assert written["sources"]["seeded"] == expected.to_dict()
    assert written["total"] == expected.to_dict()


def test_map_style_counts_do_not_grow_with_epochs_or_workers(bad_sample_folder, tiny_processor):
    folder, expected = bad_sample_folder
    data = load_image_text_data(_spec(SourceSpec("seeded", "imagefolder", path=str(folder), caption_columns=CAPTIONS)))
    loader = DataLoader(data.dataset, batch_size=4, num_workers=2, collate_fn=ImageTextCollator(tiny_processor))
    for _ in range(2):
        assert sum(len(batch["input_ids"]) for batch in loader) == expected.kept
    assert data.quality_reports()["seeded"] == expected


def _write_shard(path, samples):
    with tarfile.open(path, "w") as tar:
        for key, fields in samples:
            for field, data in fields.items():
                info = tarfile.TarInfo(f"{key}.{field}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def test_streaming_counts_made_in_dataloader_workers_reach_the_main_process(tmp_path, image_bytes, tiny_processor):
    def pair(image, en="a blue square", zh="一个蓝色正方形"):
        fields = {"en.txt": en.encode(), "zh.txt": zh.encode()}
        if image is not None:
            fields["png"] = image
        return fields

    shards = []
    for shard in range(2):
        # The first five samples of a shard carry every field: datasets infers the columns from them.
        samples = [(f"s{shard}_{i}", pair(image_bytes(seed=i))) for i in range(5)]
        samples += [
            (f"s{shard}_grey", pair(image_bytes("L"))),
            (f"s{shard}_corrupt", pair(b"not an image at all")),
            (f"s{shard}_empty", pair(b"")),
            (f"s{shard}_noimage", pair(None)),
            (f"s{shard}_nocaption", pair(image_bytes(seed=9), en="", zh=" ")),
        ]
        shards.append(tmp_path / f"shard-{shard}.tar")
        _write_shard(shards[-1], samples)
    source = SourceSpec(
        "web",
        "webdataset",
        data_files=[str(s) for s in shards],
        image_column="png",
        caption_columns={"en": "en.txt", "zh": "zh.txt"},
    )
    data = load_image_text_data(_spec(source, streaming=True, shuffle_buffer_size=4))
    assert data.quality_reports()["web"].seen == 0, "the start-up probe must not count"

    loader = DataLoader(data.dataset, batch_size=4, num_workers=2, collate_fn=ImageTextCollator(tiny_processor))
    pairs = sum(len(batch["input_ids"]) for batch in loader)

    assert pairs == 12
    assert data.quality_reports()["web"] == SampleQualityReport(
        seen=20,
        kept=12,
        skipped={"unreadable_image": 2, "empty_file": 2, "missing_image": 2, "missing_caption": 2},
        repaired={"converted_L_to_RGB": 2},
    )


def test_a_source_without_any_usable_sample_fails_at_start_up(tmp_path):
    folder = tmp_path / "all_bad"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"")
    (folder / "b.png").write_bytes(b"garbage")
    (folder / "metadata.jsonl").write_text(
        '{"file_name": "a.png", "text": "x"}\n{"file_name": "b.png", "text": "y"}\n', encoding="utf-8"
    )
    source = SourceSpec("broken", "imagefolder", path=str(folder), caption_columns={"en": "text"})
    for streaming in (False, True):
        with pytest.raises(ValueError, match="'broken': no usable sample"):
            load_image_text_data(_spec(source, streaming=streaming))


def test_check_image_tells_truncated_from_unreadable_and_checks_size_before_decoding(image_bytes):
    limits = ImageLimits(min_side=8, max_pixels=100)
    assert (
        check_image({"bytes": image_bytes(size=(64, 64))[:200], "path": None}, ImageLimits()).issue == "truncated_image"
    )
    assert check_image({"bytes": b"\x89PNG\r\n\x1a\nbroken", "path": None}, ImageLimits()).issue == "unreadable_image"
    # An image whose pixel data is cut but whose header says it is huge is skipped as huge: it was never decoded.
    assert check_image({"bytes": image_bytes(size=(64, 64))[:200], "path": None}, limits).issue == "too_large_image"
    assert check_image(None, limits) == check_image({"bytes": None, "path": None}, limits)
    assert check_image(None, limits).issue == "missing_image"


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGBA", "CMYK", "I;16", "I", "F"])
def test_every_repairable_mode_becomes_rgb(mode):
    image = to_rgb(PIL.Image.new("RGB", (8, 8), (10, 200, 30)).convert(mode))
    assert image.mode == "RGB" and image.size == (8, 8)


def test_transparent_pixels_become_white_and_sixteen_bit_grey_is_rescaled():
    transparent = PIL.Image.new("RGBA", (2, 2), (255, 0, 0, 0))
    assert to_rgb(transparent).getpixel((0, 0)) == (255, 255, 255)
    grey16 = PIL.Image.fromarray(np.array([[0, 1000], [2000, 4000]], dtype=np.uint16))
    assert to_rgb(grey16).getpixel((1, 1)) == (255, 255, 255)
    assert to_rgb(grey16).getpixel((0, 1))[0] == 127  # 2000 of 4000


def test_load_rgb_image_names_the_problem_of_a_file_that_went_bad_after_the_check(tmp_path):
    with pytest.raises(ValueError, match="missing_file"):
        load_rgb_image({"bytes": None, "path": str(tmp_path / "gone.png")})


def test_reports_merge_by_summing_every_count():
    a = SampleQualityReport(seen=3, kept=2, skipped={"empty_file": 1}, repaired={"converted_L_to_RGB": 2})
    b = SampleQualityReport(seen=4, kept=1, skipped={"empty_file": 2, "missing_file": 1}, missing_captions={"zh": 1})
    merged = a.merge(b)
    assert merged == SampleQualityReport(
        seen=7,
        kept=3,
        skipped={"empty_file": 3, "missing_file": 1},
        repaired={"converted_L_to_RGB": 2},
        missing_captions={"zh": 1},
    )
    assert SampleQualityReport.from_dict(merged.to_dict()) == merged


def _count_in_worker(counter: SampleQualityCounter, issue: str) -> None:
    counter.record(issue, "", [])


def test_counter_adds_counts_made_in_spawned_processes():
    counter = SampleQualityCounter(max_workers=2)
    counter.record("", "CMYK", ["zh"])
    context = torch.multiprocessing.get_context("spawn")
    process = context.Process(target=_count_in_worker, args=(counter, "missing_file"))
    process.start()
    process.join(timeout=120)
    assert process.exitcode == 0
    assert counter.report() == SampleQualityReport(
        seen=2,
        kept=1,
        skipped={"missing_file": 1},
        repaired={"converted_CMYK_to_RGB": 1},
        missing_captions={"zh": 1},
    )


def test_callback_writes_the_counts_into_the_run_output_folder_at_train_end(tmp_path):
    report = SampleQualityReport(seen=5, kept=4, skipped={"missing_file": 1})
    args = TrainingArguments(output_dir=str(tmp_path / "run"), report_to=[])
    SampleQualityCallback(lambda: {"src": report}).on_train_end(args, TrainerState(), TrainerControl())
    written = json.loads((tmp_path / "run" / "sample_quality.json").read_text(encoding="utf-8"))
    assert written == {"total": report.to_dict(), "sources": {"src": report.to_dict()}}


def test_exif_orientation_is_applied_when_decoding():
    image = PIL.Image.new("RGB", (20, 10), (200, 30, 30))
    exif = image.getexif()
    exif[PIL.Image.ExifTags.Base.Orientation] = 6  # stored sideways: display rotated by 90 degrees
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    assert load_rgb_image({"bytes": buffer.getvalue(), "path": None}).size == (10, 20)
