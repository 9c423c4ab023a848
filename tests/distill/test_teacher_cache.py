"""Teacher cache: built once by the teacher-cache command (in one process or as shards), read by training instead of
the live teacher; it stores what the loss reads, only for the teacher it was built from, and never replaces a folder
it did not write."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from dcclip.trainers.cache_teacher import main as cache_main
from dcclip.trainers.cache_teacher import resolve_shard
from dcclip.trainers.distill import run as run_distill
from dcclip.trainers.losses.distillation import standardize_channels
from dcclip.trainers.teacher.cache import TeacherCache, image_sample_id
from dcclip.trainers.teacher.compression import FeatureCodec, text_token_positions
from dcclip.trainers.teacher.geometry import masked_segment_means
from dcclip.trainers.teacher.model import DistillationTeacher, build_altclip_teacher

SHORT_RUN = ("--max_steps", "3", "--logging_steps", "1")
# float16, every token and channel: nothing dropped
FULL_MAPS = ("--pool_grid", "0", "--cache_rank", "0", "--cache_text_tokens", "0", "--cache_dtype", "float16")
FLOAT32_TEACHER = ("--teacher_dtype", "float32")
KEPT_TOKENS = 3  # not the default 4, so that the option is seen to take effect


def _build(workspace, folder, *options: str) -> None:
    cache_main(workspace.argv(folder.parent / "unused", "--teacher_cache_dir", str(folder), *options))


@pytest.fixture(scope="module")
def caches(stage1_workspace, tmp_path_factory):
    """The workspace's data cached by the command with the tiny config: the default cache; the full maps in float16
    from a float32 teacher; and, from that teacher too, every channel in float16 with the text pooled into two
    segment means per caption, and every channel in int8 (the default dtype) with `KEPT_TOKENS` tokens kept per
    caption."""
    import datasets

    root = tmp_path_factory.mktemp("caches")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", str(stage1_workspace.datasets_cache))
        _build(stage1_workspace, root / "default")
        _build(stage1_workspace, root / "full", *FULL_MAPS, *FLOAT32_TEACHER)
        _build(stage1_workspace, root / "pooled", "--pool_grid", "0", "--cache_rank", "0", "--pool_text", "true",
               "--text_segments", "2", "--cache_dtype", "float16", *FLOAT32_TEACHER)  # fmt: skip
        _build(stage1_workspace, root / "kept_tokens", "--pool_grid", "0", "--cache_rank", "0", "--cache_text_tokens",
               str(KEPT_TOKENS), *FLOAT32_TEACHER)  # fmt: skip
    return {name: root / name for name in ("default", "full", "pooled", "kept_tokens")}


def _scene_rows(stage1_workspace) -> list[dict]:
    lines = (stage1_workspace.image_spec.parent / "scenes" / "train" / "metadata.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _two_captions(teacher, rows) -> dict:
    """A Chinese and an English caption of the workspace, tokenized by the teacher as the cache builder does."""
    captions = [rows[0]["caption_zh"], rows[1]["caption_en"]]
    return teacher.tokenizer(captions, padding=True, truncation=True, max_length=32, return_tensors="pt")


def _losses(trainer) -> list[float]:
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def test_cache_holds_every_image_and_every_distinct_caption(caches, stage1_workspace):
    cache = TeacherCache(caches["default"])
    rows = _scene_rows(stage1_workspace)
    tokenizer = DistillationTeacher.from_pretrained(str(stage1_workspace.teacher_dir)).tokenizer
    captions = [row[f"caption_{language}"] for row in rows for language in ("en", "zh")]
    distinct = {tuple(ids) for ids in tokenizer(captions, truncation=True, max_length=32)["input_ids"]}
    assert cache.num_images == len(rows) == 48
    assert cache.num_texts == len(distinct)
    assert cache.layout.cached_image_layers == [2, 3] and cache.layout.cached_text_layers == [2, 3]


def test_default_cache_stores_the_students_grid_and_widths_as_int8_codes_at_four_tokens(caches):
    cache = TeacherCache(caches["default"])
    # tiny student: image stages 16 and 32 wide, its last stage on a 4 x 4 grid; text tower 32 wide; teacher 64 wide
    assert cache.layout.cached_image_grids == [(4, 4), (4, 4)]
    assert cache.metadata["ranks"] == {"image": {"2": 16, "3": 32}, "text": {"2": 32, "3": 32}}
    assert not cache.layout.text_pooled and cache.layout.text_tokens == 4 and cache.layout.maps_standardized
    assert cache.metadata["dtype"] == "int8"
    digest, embedding = 20, 32 + 2  # SHA-1 id; int8 projection and its float16 scale
    # int8 codes with a 2-byte scale per vector: 16 positions x (16 + 2 and 32 + 2)
    assert cache.bytes_per_row("images") == digest + 16 * ((16 + 2) + (32 + 2)) + embedding
    offsets = 8 * (cache.num_texts + 1) / cache.num_texts  # one int64 offset per caption, plus the first
    assert cache.bytes_per_row("texts") == pytest.approx(digest + offsets + 2 * 4 * (32 + 2) + embedding)
    pooled = TeacherCache(caches["pooled"])  # every channel in float16, two segment means per layer
    embedding = 2 * 32
    assert pooled.layout.text_segments == 2 and pooled.bytes_per_row("texts") == digest + 2 * 2 * (64 + 64) + embedding
    full = TeacherCache(caches["full"])
    assert full.bytes_per_row("images") == digest + 2 * 16 * (64 + 64) + embedding  # every channel, no offsets


def test_full_cache_decodes_to_the_live_teachers_standardised_maps(caches, stage1_workspace):
    from dcclip.trainers.data.sample_quality import load_rgb_image

    cache = TeacherCache(caches["full"])
    teacher = DistillationTeacher.from_pretrained(str(stage1_workspace.teacher_dir))
    image_dir = stage1_workspace.image_spec.parent / "scenes" / "train"
    rows = _scene_rows(stage1_workspace)[:3]
    samples = [{"image": {"bytes": None, "path": str(image_dir / row["file_name"])}} for row in rows]
    cached = cache.image_targets(samples, [3])
    pixels = teacher.processor(images=[load_rgb_image(s["image"]) for s in samples], return_tensors="pt")["pixel_values"]
    live = teacher(pixel_values=pixels, image_layers=[3])
    assert torch.allclose(cached.image_maps[0], standardize_channels(live.image_maps[0], 1), atol=1e-2)
    assert torch.allclose(cached.image_embeds.float(), live.image_embeds, atol=2e-2, rtol=1e-2)

    texts = _two_captions(teacher, rows)
    cached = cache.text_targets(texts["input_ids"], texts["attention_mask"], [2])
    live = teacher(input_ids=texts["input_ids"], attention_mask=texts["attention_mask"], text_layers=[2])
    real = texts["attention_mask"].bool()
    expected = standardize_channels(live.text_maps[0], -1)
    assert torch.allclose(cached.text_maps[0][real], expected[real], atol=1e-2)
    assert (cached.text_maps[0][~real] == 0).all()  # padding positions carry no target


def test_pooled_cache_decodes_to_the_live_teachers_standardised_segment_means(caches, stage1_workspace):
    cache = TeacherCache(caches["pooled"])
    teacher = DistillationTeacher.from_pretrained(str(stage1_workspace.teacher_dir))
    texts = _two_captions(teacher, _scene_rows(stage1_workspace))
    cached = cache.text_targets(texts["input_ids"], texts["attention_mask"], [2, 3])
    live = teacher(input_ids=texts["input_ids"], attention_mask=texts["attention_mask"], text_layers=[2, 3])
    assert cached.text_maps_pooled
    for cached_map, live_map in zip(cached.text_maps, live.text_maps):
        expected = standardize_channels(masked_segment_means(live_map, texts["attention_mask"], 2), -1)
        assert cached_map.shape == (2, 2, 64)
        assert torch.allclose(cached_map, expected, atol=1e-2)


def test_a_cache_of_kept_tokens_decodes_to_the_live_teacher_there_and_targets_nothing_else(caches, stage1_workspace):
    cache = TeacherCache(caches["kept_tokens"])
    assert cache.layout.text_tokens == KEPT_TOKENS and cache.metadata["dtype"] == "int8"
    teacher = DistillationTeacher.from_pretrained(str(stage1_workspace.teacher_dir))
    texts = _two_captions(teacher, _scene_rows(stage1_workspace))
    mask = texts["attention_mask"]
    assert int(mask.sum(dim=1).min()) > KEPT_TOKENS  # both captions are longer: some tokens are dropped
    cached = cache.text_targets(texts["input_ids"], mask, [2])
    live = teacher(input_ids=texts["input_ids"], attention_mask=mask, text_layers=[2])
    kept = cached.text_target_mask
    assert torch.equal(kept, text_token_positions(mask, KEPT_TOKENS)) and kept.sum(dim=1).tolist() == [KEPT_TOKENS] * 2
    expected = standardize_channels(live.text_maps[0], -1)
    assert torch.allclose(cached.text_maps[0][kept], expected[kept], atol=3e-2)  # int8: 1/127 of the largest value
    assert (cached.text_maps[0][~kept] == 0).all()
    assert torch.allclose(cached.text_embeds.float(), live.text_embeds, atol=3e-2, rtol=2e-2)
    # int8 codes, each vector with a float16 scale: 64 channels + 2 bytes per kept token and per embedding
    offsets = 8 * (cache.num_texts + 1) / cache.num_texts
    assert cache.bytes_per_row("texts") == pytest.approx(20 + offsets + 2 * KEPT_TOKENS * (64 + 2) + 32 + 2)


def test_training_takes_the_caches_segments_and_refuses_others(caches, stage1, tmp_path, caplog):
    cache = ("--teacher_cache_dir", str(caches["pooled"]))
    with caplog.at_level("WARNING"):
        trainer = run_distill(stage1.argv(tmp_path / "run", *SHORT_RUN, *cache, "--text_segments", "2"))
    assert "distilled as 2 mean(s) over runs of real tokens per caption" in caplog.text
    losses = _losses(trainer)
    assert len(losses) == 3 and all(np.isfinite(losses))
    with pytest.raises(ValueError, match="pooled into 2 segment.*--text_segments is 3"):
        run_distill(stage1.argv(tmp_path / "other", *SHORT_RUN, *cache, "--text_segments", "3"))


def test_training_from_the_full_cache_matches_the_live_teacher(caches, stage1, tmp_path):
    live = run_distill(stage1.argv(tmp_path / "live", *SHORT_RUN, *FLOAT32_TEACHER))
    cached = run_distill(stage1.argv(tmp_path / "cached", *SHORT_RUN, "--teacher_cache_dir", str(caches["full"])))
    assert cached.teacher is None  # the teacher was never loaded
    assert len(_losses(live)) == len(_losses(cached)) == 3
    assert _losses(cached) == pytest.approx(_losses(live), rel=2e-3)


def test_training_from_the_default_cache_distils_four_tokens_per_caption_on_the_cached_grids(
    caches, stage1, tmp_path, caplog
):
    with caplog.at_level("INFO"):
        trainer = run_distill(stage1.argv(tmp_path / "run", *SHORT_RUN, "--teacher_cache_dir", str(caches["default"])))
    assert "keeps at most 4 evenly spaced tokens per caption" in caplog.text and "NOT token by token" not in caplog.text
    assert [a.teacher_grid for a in trainer.model.image_adapters] == [(4, 4), (4, 4)]
    losses = _losses(trainer)
    assert len(losses) == 3 and all(np.isfinite(losses))


def test_low_rank_code_is_exact_on_data_of_that_rank_and_the_best_fit_otherwise():
    generator = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(64, 8, generator=generator)).Q
    vectors = torch.randn(500, 8, generator=generator) @ basis.T + 3.0
    codec = FeatureCodec.fit(vectors, rank=8)
    codes, scales = codec.encode(vectors)
    assert codec.width == 8 and codes.dtype == torch.float16 and scales is None
    assert torch.allclose(codec.decode(codes), vectors, atol=2e-2)
    # rank 4 keeps the 4 directions of largest variance: the error is that of the best rank-4 approximation
    noisy = vectors + 0.01 * torch.randn(vectors.shape, generator=generator)
    top4 = FeatureCodec.fit(noisy, rank=4)
    error = float((top4.decode(top4.encode(noisy)[0]) - noisy).square().sum())
    singular = torch.linalg.svdvals(noisy - noisy.mean(0))
    assert error == pytest.approx(float(singular[4:].square().sum()), rel=5e-2)
    assert FeatureCodec.fit(vectors, rank=None).width == 64  # identity: every channel
    restored = FeatureCodec.from_state(codec.state("layer_3"), "layer_3", 64)
    assert torch.equal(restored.decode(codes), codec.decode(codes))


def test_int8_codes_keep_every_coordinate_to_within_its_rounding_step():
    generator = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(64, 8, generator=generator)).Q
    # coordinates of very different spreads: one scale per vector alone would round the weak ones away
    coordinates = torch.randn(500, 8, generator=generator) * torch.tensor([100.0, 30, 10, 3, 1, 0.3, 0.1, 0.03])
    vectors = coordinates @ basis.T
    codec = FeatureCodec.fit(vectors, rank=8, code_dtype="int8")
    codes, scales = codec.encode(vectors)
    assert codes.dtype == torch.int8 and scales.dtype == torch.float16 and scales.shape == (500, 1)
    decoded_coordinates = (codec.decode(codes, scales) - codec.mean) @ codec.basis
    centred = (vectors - codec.mean) @ codec.basis
    # each coordinate is off by at most half a step: (largest normalised coordinate / 127) / 2, times its spread
    step = scales.float() * codec.spread
    assert ((decoded_coordinates - centred).abs() <= 0.51 * step + 1e-4).all()
    relative = (decoded_coordinates - centred).norm(dim=0) / centred.norm(dim=0)
    assert float(relative.max()) < 0.02  # the weakest coordinate (spread 0.03) as well as the strongest
    restored = FeatureCodec.from_state(codec.state("layer_1"), "layer_1", 64)
    assert restored.code_dtype == "int8" and torch.equal(restored.decode(codes, scales), codec.decode(codes, scales))
    with pytest.raises(ValueError, match="scales"):
        codec.decode(codes)
    identity = FeatureCodec.fit(vectors, rank=None, code_dtype="int8")  # every channel, int8
    assert identity.width == 64
    assert torch.allclose(identity.decode(*identity.encode(vectors)), vectors, atol=0.01 * float(vectors.abs().max()))


def test_the_kept_tokens_are_evenly_spaced_first_to_last_and_found_again_from_the_mask():
    mask = torch.tensor([[1] * 10 + [0] * 2, [1] * 3 + [0] * 9, [0] * 2 + [1] * 10])  # right and left padding
    kept = text_token_positions(mask, 4)
    assert kept[0].nonzero().flatten().tolist() == [0, 3, 6, 9]  # round(i * 9 / 3)
    assert kept[1].nonzero().flatten().tolist() == [0, 1, 2]  # a short caption keeps every token
    assert kept[2].nonzero().flatten().tolist() == [2, 5, 8, 11]  # ranks among the real tokens, not positions
    assert torch.equal(text_token_positions(mask, 0), mask.bool())
    with pytest.raises(ValueError, match="at least 2"):
        text_token_positions(mask, 1)


def test_a_sample_missing_from_the_cache_is_a_clear_error(caches, tmp_path):
    cache = TeacherCache(caches["default"])
    unknown = tmp_path / "new.png"
    unknown.write_bytes(b"not the bytes of any cached image")
    with pytest.raises(KeyError, match="not in the teacher cache"):
        cache.image_targets([{"image": {"bytes": None, "path": str(unknown)}}], [2])
    assert image_sample_id({"bytes": b"abc", "path": None}) == image_sample_id({"bytes": b"abc", "path": "elsewhere"})


def test_cache_must_match_the_run(caches, stage1, tmp_path):
    cache = str(caches["default"])
    with pytest.raises(ValueError, match="max_text_length=32, this run uses 16"):
        run_distill(stage1.argv(tmp_path / "a", "--teacher_cache_dir", cache, "--max_text_length", "16"))
    with pytest.raises(ValueError, match=r"teacher image layers \[1\] are not in the teacher cache"):
        run_distill(stage1.argv(tmp_path / "b", "--teacher_cache_dir", cache,
                                "--student_image_layers", "1", "--teacher_image_layers", "1"))  # fmt: skip
    with pytest.raises(ValueError, match="standardize_teacher_maps false"):
        run_distill(stage1.argv(tmp_path / "c", "--teacher_cache_dir", cache, "--standardize_teacher_maps", "false"))
    with pytest.raises(FileNotFoundError, match="build it with"):
        run_distill(stage1.argv(tmp_path / "d", "--teacher_cache_dir", str(tmp_path / "none")))


# ----- integrity (issue 22) -----------------------------------------------------------------------------------------


def test_a_noised_cache_is_refused_at_start_up(caches, stage1, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(caches["default"], damaged)
    layer = damaged / "images-00000-of-00001" / "layer_3.bin"
    noise = np.random.default_rng(0).standard_normal(layer.stat().st_size // 2).astype(np.float16)
    layer.write_bytes(noise.tobytes())  # same shape, same size: only the content changed
    with pytest.raises(ValueError, match=r"damaged: .*layer_3\.bin fails its SHA-256 checksum"):
        run_distill(stage1.argv(tmp_path / "run", *SHORT_RUN, "--teacher_cache_dir", str(damaged)))
    assert not (tmp_path / "run").exists()  # refused before anything trained


def test_processes_of_a_distributed_run_each_hash_their_own_share_of_the_cache_files(caches, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(caches["default"], damaged)
    layer = damaged / "images-00000-of-00001" / "layer_3.bin"
    layer.write_bytes(bytes(reversed(layer.read_bytes())))  # same size, other content
    cache = TeacherCache(damaged)
    refused = []
    for index in range(3):
        try:
            cache.verify_checksums(process_index=index, num_processes=3)
        except ValueError as error:
            refused.append((index, str(error)))
    assert len(refused) == 1 and "layer_3.bin fails its SHA-256 checksum" in refused[0][1]
    with pytest.raises(ValueError, match=r"layer_3\.bin fails"):
        cache.verify_checksums()  # one process hashes every file


def test_a_cache_of_another_teacher_is_refused_at_start_up(stage1, tmp_path):
    other = tmp_path / "other_teacher"
    model, processor = build_altclip_teacher(stage1.tokenizer, seed=1)  # same shapes and processor, other weights
    model.save_pretrained(other)
    processor.save_pretrained(other)
    folder = tmp_path / "cache"
    _build(stage1, folder, "--teacher", str(other))
    with pytest.raises(ValueError, match="built from another teacher checkpoint than --teacher"):
        run_distill(stage1.argv(tmp_path / "run", *SHORT_RUN, "--teacher_cache_dir", str(folder)))
    assert not (tmp_path / "run").exists()


def test_overwrite_never_removes_a_folder_with_other_files(stage1, tmp_path):
    folder = tmp_path / "data_not_a_cache"
    folder.mkdir()
    (folder / "my_notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match=r"refusing to write into or remove .*data_not_a_cache.*my_notes\.txt"):
        _build(stage1, folder, "--overwrite_cache", "true")
    assert (folder / "my_notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in folder.iterdir()) == ["my_notes.txt"]


def test_overwrite_replaces_a_previous_cache_but_not_one_holding_a_foreign_file(caches, stage1, tmp_path):
    folder = tmp_path / "cache"
    shutil.copytree(caches["default"], folder)
    with pytest.raises(FileExistsError, match="another build .*pass --overwrite_cache true"):
        _build(stage1, folder, *FULL_MAPS)
    _build(stage1, folder, *FULL_MAPS, "--overwrite_cache", "true")
    assert TeacherCache(folder).layout.text_pooled is False
    (folder / "images-00000-of-00001" / "user_file.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"user_file\.txt"):
        _build(stage1, folder, "--overwrite_cache", "true")
    assert (folder / "images-00000-of-00001" / "user_file.txt").exists()


# ----- shards -------------------------------------------------------------------------------------------------------


def test_shards_written_by_separate_processes_form_one_cache(caches, stage1, tmp_path):
    folder = tmp_path / "sharded"
    _build(stage1, folder, "--num_shards", "2", "--shard_index", "1")
    with pytest.raises(FileNotFoundError, match=r"incomplete: 1 of 2 images shards .*images-00000-of-00002"):
        TeacherCache(folder)
    # a shard interrupted mid-write leaves only a .partial- folder: never read, removed when the shard reruns
    half_written = folder / ".partial-images-00000-of-00002-1a2b3c4d"
    half_written.mkdir()
    (half_written / "layer_2.bin").write_bytes(b"\0" * 10)
    _build(stage1, folder, "--num_shards", "2", "--shard_index", "0")
    assert not half_written.exists()
    sharded, single = TeacherCache(folder), TeacherCache(caches["default"])
    assert [shard.rows for shard in sharded.shards["images"]] == [24, 24]
    assert sharded.num_images == single.num_images and sharded.num_texts >= single.num_texts
    trainer = run_distill(stage1.argv(tmp_path / "run", *SHORT_RUN, "--teacher_cache_dir", str(folder)))
    assert len(_losses(trainer)) == 3
    # a rerun of a finished shard keeps it
    before = (folder / "images-00000-of-00002" / "shard.json").stat().st_mtime_ns
    _build(stage1, folder, "--num_shards", "2", "--shard_index", "0")
    assert (folder / "images-00000-of-00002" / "shard.json").stat().st_mtime_ns == before


def test_shard_comes_from_slurm_array_and_torchrun(monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "4")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "10")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "12")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert resolve_shard(None, None) == (8, 5)
    assert resolve_shard(3, 2) == (3, 2)
    with pytest.raises(ValueError, match="both --num_shards and --shard_index"):
        resolve_shard(3, None)
    with pytest.raises(ValueError, match=r"--shard_index must be in 0\.\.2"):
        resolve_shard(3, 3)


@pytest.mark.integration
def test_torchrun_processes_each_write_a_shard(caches, stage1, run_launcher, tmp_path):
    import socket
    from pathlib import Path

    folder = tmp_path / "torchrun_cache"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    torchrun = str(Path(stage1.python).parent / "torchrun")
    script = stage1.script.parent / "cache_teacher.py"
    run_launcher([torchrun, "--nproc_per_node", "2", "--master_port", port, str(script),
                  *stage1.argv(tmp_path / "unused", "--teacher_cache_dir", str(folder), "--use_cpu", "true")])  # fmt: skip
    cache = TeacherCache(folder)
    assert [shard.path.name for shard in cache.shards["images"]] == ["images-00000-of-00002", "images-00001-of-00002"]
    assert cache.num_images == TeacherCache(caches["default"]).num_images
