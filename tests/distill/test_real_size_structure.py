"""The shipped edge recipes on the real teacher's structure at reduced width: an AltCLIP with BAAI/AltCLIP's depth
(24 + 24 blocks), ViT-L/14 grid at 224 px and 250,002-token vocabulary, only 32 wide, distilled into the full `edge`
student by `configs/distill_edge.yaml` (live and from a default cache) and aligned by `configs/align_edge.yaml`, in
bfloat16 on CPU: the layer mapping, the grid resampling, the 250k embeddings and every bfloat16 path of the recipes.
(`benchmarks/real_size.py` runs the same at full width.)"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from dcclip.trainers.align import main as align_main
from dcclip.trainers.cache_teacher import main as cache_main
from dcclip.trainers.distill import run as run_distill
from dcclip.trainers.teacher.cache import TeacherCache
from dcclip.trainers.teacher.geometry import LayerPair
from dcclip.trainers.teacher.model import ALTCLIP_SIZES, build_altclip_teacher

REPO_ROOT = Path(__file__).resolve().parents[2]
XLM_R_VOCABULARY = 250_002
CPU_RUN = ("--max_steps", "2", "--per_device_train_batch_size", "2", "--use_cpu", "true", "--bf16", "true",
           "--dataloader_num_workers", "0", "--logging_steps", "1", "--disable_tqdm", "true")  # fmt: skip


@pytest.fixture(scope="module")
def real_structure(tmp_path_factory) -> dict[str, Path]:
    """The reduced-width AltCLIP folder and stage-1 / stage-2 data specs of scenes at 224 px."""
    from dcclip.trainers.data import DataSpec, SourceSpec, benchmark_text_corpus, generate_benchmark
    from dcclip.trainers.data.tokenizer import build_bilingual_tokenizer

    root = tmp_path_factory.mktemp("real_structure")
    tokenizer = build_bilingual_tokenizer(benchmark_text_corpus(), vocab_size=400, model_max_length=77,
                                          pad_vocab_to=XLM_R_VOCABULARY)  # fmt: skip
    narrow = {**ALTCLIP_SIZES, "hidden_size": 32, "num_heads": 2, "mlp_ratio": 2, "projection_dim": 32,
              "text_project_dim": 32}  # fmt: skip
    model, processor = build_altclip_teacher(tokenizer, **narrow)
    model.save_pretrained(root / "teacher")
    processor.save_pretrained(root / "teacher")
    scenes = generate_benchmark(root / "scenes", n_train=4, n_eval=2, n_retrieval=2, image_size=224, shard_size=4)
    captions = {"en": "caption_en", "zh": "caption_zh"}
    return {
        "teacher": root / "teacher",
        "image_data": DataSpec(sources=[SourceSpec(name="images", kind="imagefolder", path=str(scenes.train_dir))])
        .save(root / "images.yaml"),
        "text_data": DataSpec(sources=[SourceSpec(name="captions", kind="json", image_column=None,
                                                  caption_columns=captions,
                                                  data_files=[str(scenes.train_dir / "metadata.jsonl")])])
        .save(root / "texts.yaml"),
        "train_data": scenes.train_spec_imagefolder,
        "benchmark": scenes.eval_dir,
        "root": root,
    }  # fmt: skip


def _stage1(inputs: dict, output_dir: Path, *extra: str) -> list[str]:
    return [str(REPO_ROOT / "configs" / "distill_edge.yaml"), "--teacher", str(inputs["teacher"]),
            "--image_data", str(inputs["image_data"]), "--text_data", str(inputs["text_data"]),
            "--output_dir", str(output_dir), *CPU_RUN, *extra]  # fmt: skip


def _finite_losses(trainer) -> list[float]:
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses), losses
    return losses


def test_edge_recipe_distils_the_real_teacher_structure_live_and_from_a_cache_and_aligns(real_structure, tmp_path):
    live = run_distill(_stage1(real_structure, tmp_path / "live"))
    _finite_losses(live)
    assert live.plan.image_pairs == [LayerPair(1, 6), LayerPair(2, 12), LayerPair(3, 18), LayerPair(4, 24)]
    assert live.plan.text_pairs == [LayerPair(2, 8), LayerPair(3, 12), LayerPair(5, 20), LayerPair(6, 24)]
    adapters = live.model.image_adapters
    assert [a.conv.in_channels for a in adapters] == [80, 160, 320, 640]  # ConvNeXt-V2-nano stages: 56, 28, 14, 7 px
    assert {a.teacher_grid for a in adapters} == {(16, 16)}  # ViT-L/14 at 224 px
    assert live.model.student.config.text_config.vocab_size == XLM_R_VOCABULARY == len(live.teacher.tokenizer)
    assert str(live.teacher.model.dtype) == "torch.bfloat16"  # --bf16: the teacher's weights follow

    cache = tmp_path / "cache"
    cache_main(_stage1(real_structure, tmp_path / "unused", "--teacher_cache_dir", str(cache)))
    assert TeacherCache(cache).layout.cached_image_grids == [(7, 7)] * 4  # the student's last-stage grid
    cached = run_distill(_stage1(real_structure, tmp_path / "cached", "--teacher_cache_dir", str(cache)))
    _finite_losses(cached)
    assert {a.teacher_grid for a in cached.model.image_adapters} == {(7, 7)}

    align = [str(REPO_ROOT / "configs" / "align_edge.yaml"), "--student", str(tmp_path / "live" / "final"),
             "--train_data", str(real_structure["train_data"]), "--eval_data", str(real_structure["train_data"]),
             "--zero_shot_benchmark", str(real_structure["benchmark"]), "--output_dir", str(tmp_path / "align"),
             "--per_device_eval_batch_size", "2", *CPU_RUN]  # fmt: skip
    assert align_main(align) == 0
    assert (tmp_path / "align" / "final" / "model.safetensors").is_file()
