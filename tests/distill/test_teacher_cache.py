"""Teacher cache: built once by the teacher-cache command, read by training instead of the live teacher."""

from __future__ import annotations

import json

import pytest
import torch

from dcclip.trainers.distill import run as run_distill
from dcclip.trainers.teacher.model import DistillationTeacher
from dcclip.trainers.cache_teacher import main as cache_main
from dcclip.trainers.teacher.cache import TeacherCache, image_sample_id

SHORT_RUN = ("--max_steps", "3", "--logging_steps", "1")


@pytest.fixture(scope="module")
def built_cache(stage1_workspace, tmp_path_factory):
    """A cache of the workspace's data, built by the command with the tiny config (layers 2 and 3 of each tower)."""
    import datasets

    folder = tmp_path_factory.mktemp("cache") / "teacher_cache"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", str(stage1_workspace.datasets_cache))
        cache_main(stage1_workspace.argv(folder.parent / "unused", "--teacher_cache_dir", str(folder)))
    return folder


def _scene_rows(stage1_workspace) -> list[dict]:
    lines = (stage1_workspace.image_spec.parent / "scenes" / "train" / "metadata.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_cache_holds_every_image_and_every_distinct_caption(built_cache, stage1_workspace):
    metadata = json.loads((built_cache / "teacher_cache.json").read_text())
    rows = _scene_rows(stage1_workspace)
    tokenizer = DistillationTeacher.from_pretrained(str(stage1_workspace.teacher_dir)).tokenizer
    captions = [row[f"caption_{language}"] for row in rows for language in ("en", "zh")]
    distinct = {tuple(ids) for ids in tokenizer(captions, truncation=True, max_length=32)["input_ids"]}
    assert metadata["num_images"] == len(rows) == 48
    assert metadata["num_texts"] == len(distinct)
    assert metadata["layout"]["cached_image_layers"] == [2, 3] and metadata["layout"]["cached_text_layers"] == [2, 3]
    # fp16 payload per image: 2 maps of 64 x 4 x 4 + a 32-wide embedding; the rest is Arrow framing and the id
    payload = 2 * (2 * 64 * 16) + 2 * 32
    assert payload <= metadata["bytes_per_image"] < 3 * payload


def test_cached_targets_are_the_live_teachers_in_fp16(built_cache, stage1_workspace):
    from dcclip.trainers.data.sample_quality import load_rgb_image

    cache = TeacherCache(built_cache)
    teacher = DistillationTeacher.from_pretrained(str(stage1_workspace.teacher_dir))
    image_dir = stage1_workspace.image_spec.parent / "scenes" / "train"
    rows = _scene_rows(stage1_workspace)[:3]
    samples = [{"image": {"bytes": None, "path": str(image_dir / row["file_name"])}} for row in rows]
    cached = cache.image_targets(samples, [3])
    pixels = teacher.processor(images=[load_rgb_image(s["image"]) for s in samples], return_tensors="pt")["pixel_values"]
    live = teacher(pixel_values=pixels, image_layers=[3])
    assert torch.allclose(cached.image_maps[0].float(), live.image_maps[0], atol=2e-2, rtol=1e-2)
    assert torch.allclose(cached.image_embeds.float(), live.image_embeds, atol=2e-2, rtol=1e-2)

    texts = teacher.tokenizer(
        [rows[0]["caption_zh"], rows[1]["caption_en"]], padding=True, truncation=True, max_length=32, return_tensors="pt"
    )
    cached = cache.text_targets(texts["input_ids"], texts["attention_mask"], [2])
    live = teacher(input_ids=texts["input_ids"], attention_mask=texts["attention_mask"], text_layers=[2])
    real = texts["attention_mask"].bool()
    assert torch.allclose(cached.text_maps[0][real].float(), live.text_maps[0][real], atol=2e-2, rtol=1e-2)
    assert (cached.text_maps[0][~real] == 0).all()  # padding positions carry no target


def test_training_from_the_cache_matches_the_live_teacher(built_cache, stage1, tmp_path):
    live = run_distill(stage1.argv(tmp_path / "live", *SHORT_RUN))
    cached = run_distill(stage1.argv(tmp_path / "cached", *SHORT_RUN, "--teacher_cache_dir", str(built_cache)))
    assert cached.teacher is None  # the teacher was never loaded
    live_losses = [entry["loss"] for entry in live.state.log_history if "loss" in entry]
    cached_losses = [entry["loss"] for entry in cached.state.log_history if "loss" in entry]
    assert len(live_losses) == len(cached_losses) == 3
    assert cached_losses == pytest.approx(live_losses, rel=2e-3)


def test_a_sample_missing_from_the_cache_is_a_clear_error(built_cache, tmp_path):
    cache = TeacherCache(built_cache)
    unknown = tmp_path / "new.png"
    unknown.write_bytes(b"not the bytes of any cached image")
    with pytest.raises(KeyError, match="not in the teacher cache"):
        cache.image_targets([{"image": {"bytes": None, "path": str(unknown)}}], [2])
    assert image_sample_id({"bytes": b"abc", "path": None}) == image_sample_id({"bytes": b"abc", "path": "elsewhere"})


def test_cache_must_match_the_run(built_cache, stage1, tmp_path):
    with pytest.raises(ValueError, match="max_text_length=32, this run uses 16"):
        run_distill(stage1.argv(tmp_path / "a", "--teacher_cache_dir", str(built_cache), "--max_text_length", "16"))
    with pytest.raises(ValueError, match=r"teacher image layers \[1\] are not in the teacher cache"):
        run_distill(stage1.argv(tmp_path / "b", "--teacher_cache_dir", str(built_cache),
                                 "--student_image_layers", "1", "--teacher_image_layers", "1"))  # fmt: skip
    with pytest.raises(FileNotFoundError, match="build it with"):
        run_distill(stage1.argv(tmp_path / "c", "--teacher_cache_dir", str(tmp_path / "none")))


def test_pooled_cache_is_smaller_and_trains_on_pooled_targets(stage1, tmp_path, caplog):
    folder = tmp_path / "pooled"
    cache_main(stage1.argv(tmp_path / "unused", "--teacher_cache_dir", str(folder), "--pool_grid", "2", "--pool_text", "true"))
    metadata = json.loads((folder / "teacher_cache.json").read_text())
    assert metadata["layout"]["image_grid"] == [2, 2] and metadata["layout"]["text_pooled"]
    assert metadata["bytes_per_image"] < 2 * (2 * 64 * 16)  # less than the unpooled fp16 maps alone
    with caplog.at_level("WARNING"):
        trainer = run_distill(stage1.argv(tmp_path / "run", *SHORT_RUN, "--teacher_cache_dir", str(folder)))
    assert "NOT token by token" in caplog.text
    assert [a.teacher_grid for a in trainer.model.image_adapters] == [(2, 2), (2, 2)]
    assert all(torch.isfinite(torch.tensor(e["loss"])) for e in trainer.state.log_history if "loss" in e)
    with pytest.raises(FileExistsError, match="overwrite_cache"):
        cache_main(stage1.argv(tmp_path / "unused", "--teacher_cache_dir", str(folder)))
