"""`trainers/align.py` end to end: under python (in this process), torchrun (DDP) and DeepSpeed ZeRO-2 / ZeRO-3 on
2 CPU processes. Every run must lower the loss and save a folder that AutoModel loads completely; the three
2-process runs see the same global batches, so their losses must agree step by step."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoProcessor

from modeling_dcclip import DCCLIPModel
from dcclip.trainers.align import FINAL_MODEL_DIR, main

REPO_ROOT = Path(__file__).resolve().parents[2]
MULTIPROCESS_TIMEOUT_S = 300


def _run_flags(scenes, eval_pairs_spec, output_dir: Path) -> list[str]:
    return [
        "--train_data", str(scenes.train_spec_imagefolder),
        "--eval_data", str(eval_pairs_spec),
        "--zero_shot_benchmark", str(scenes.eval_dir),
        "--zero_shot_tasks", "colour",
        "--output_dir", str(output_dir),
        "--max_steps", "12",
        "--per_device_train_batch_size", "8",
        "--per_device_eval_batch_size", "8",
        "--learning_rate", "0.003",
        "--warmup_steps", "2",
        "--logging_steps", "4",
        "--eval_steps", "12",
        "--max_text_length", "32",
    ]  # fmt: skip


def _training_losses(output_dir: Path) -> list[float]:
    state = json.loads((output_dir / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


def _check_saved_folder(output_dir: Path, start: DCCLIPModel | None = None) -> DCCLIPModel:
    """The final folder loads with the Auto classes, every weight present, and the weights moved during training."""
    final = output_dir / FINAL_MODEL_DIR
    model, info = AutoModel.from_pretrained(final, output_loading_info=True)
    assert isinstance(model, DCCLIPModel)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert AutoProcessor.from_pretrained(final).tokenizer is not None
    record = json.loads((final / "dcclip_training.json").read_text())
    assert record["stages"][-1]["stage"] == "alignment"
    if start is not None:
        moved = [name for name, p in model.state_dict().items() if not torch.equal(p, start.state_dict()[name])]
        assert "text_projection.weight" in moved and "visual_projection.weight" in moved
    return model


def test_python_run_from_a_preset_lowers_the_loss_and_saves_a_loadable_folder(
    scenes, eval_pairs_spec, scenes_tokenizer_dir, tmp_path
):
    output_dir = tmp_path / "python"
    argv = [
        "--student_preset",
        "tiny",
        "--tokenizer",
        str(scenes_tokenizer_dir),
        "--image_size",
        "32",
        "--use_cpu",
        "true",
        "--image_to_text_negatives",
        "all_captions",
    ]
    argv += ["--eval_strategy", "steps", "--save_strategy", "no", "--report_to", "none"]
    assert main(argv + _run_flags(scenes, eval_pairs_spec, output_dir)) == 0
    losses = _training_losses(output_dir)
    assert len(losses) == 3 and losses[-1] < losses[0]
    model = _check_saved_folder(output_dir)
    assert model.config.vision_config.image_size == 32
    state = json.loads((output_dir / "trainer_state.json").read_text())
    assert any("eval_zero_shot_colour_zh" in entry for entry in state["log_history"])
    record = json.loads((output_dir / FINAL_MODEL_DIR / "dcclip_training.json").read_text())
    assert record["stages"][-1]["hyperparameters"]["image_to_text_negatives"] == "all_captions"


def test_a_preset_needs_a_tokenizer(scenes, eval_pairs_spec, tmp_path):
    with pytest.raises(ValueError, match="--student_preset needs --tokenizer"):
        main(["--student_preset", "tiny", "--use_cpu", "true", *_run_flags(scenes, eval_pairs_spec, tmp_path)])


def _streamed(spec_path: Path) -> Path:
    """The same data spec, read as a stream (a `datasets.IterableDataset`)."""
    from dcclip.trainers.data import DataSpec

    spec = DataSpec.from_file(spec_path)
    spec.streaming = True
    return spec.save(spec_path.with_name("streamed_" + spec_path.name))


# map-style data with 0 and 2 DataLoader workers; streamed webdataset shards, resumed within their first pass
@pytest.mark.parametrize(("data", "workers"), [("imagefolder", "0"), ("imagefolder", "2"), ("streamed", "2")])
def test_a_run_resumed_mid_epoch_ends_with_the_uninterrupted_weights(data, workers, scenes, student_dir, tmp_path):
    # 64 pairs in batches of 8: checkpoint-3 is mid-epoch, and the map-style runs go on into epoch 2. Captions in one
    # language drawn at random (`sample`) and the text tower's dropout are both random: a resume must replay both.
    spec = scenes.train_spec_imagefolder if data == "imagefolder" else _streamed(scenes.train_spec_webdataset)

    def run(output_dir: Path, *extra: str) -> Path:
        flags = ["--student", str(student_dir), "--train_data", str(spec), "--output_dir", str(output_dir),
                 "--max_steps", "12" if data == "imagefolder" else "6", "--per_device_train_batch_size", "8",
                 "--learning_rate", "0.003", "--warmup_steps", "2", "--max_text_length", "32",
                 "--bilingual_captions", "sample", "--save_strategy", "steps", "--save_steps", "3",
                 "--dataloader_num_workers", workers, "--use_cpu", "true", "--report_to", "none"]  # fmt: skip
        assert main([*flags, *extra]) == 0
        return output_dir / FINAL_MODEL_DIR / "model.safetensors"

    straight = load_file(run(tmp_path / "straight"))
    resumed = load_file(run(tmp_path / "resumed", "--resume_from_checkpoint", str(tmp_path / "straight" / "checkpoint-3")))
    assert straight.keys() == resumed.keys()
    differences = {name: (resumed[name] - straight[name]).abs().max().item() for name in straight}
    assert max(differences.values()) <= 1e-6, sorted(differences.items(), key=lambda item: -item[1])[:5]


# ----- two processes ------------------------------------------------------------------------------------------------


def _torchrun(port: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port)]


def _deepspeed(port: int) -> list[str]:
    # the launcher of this interpreter's environment: CI runs pytest without activating the venv
    return [str(Path(sys.executable).parent / "deepspeed"), "--num_gpus", "2", "--master_port", str(port)]


# launcher, and the flags of the run; the ZeRO-3 run also uses the memory-saving local loss, which must give the same
# updates as the full loss of the other two
LAUNCHERS = {
    "torchrun": (_torchrun, ["--use_cpu", "true"]),
    "zero2": (_deepspeed, ["--use_cpu", "true", "--deepspeed", "ds_configs/zero2.json"]),
    "zero3": (_deepspeed, ["--use_cpu", "true", "--deepspeed", "ds_configs/zero3.json", "--local_loss", "true"]),
}


@pytest.fixture(scope="module")
def teacher_dir(scenes_processor, tmp_path_factory) -> Path:
    """A saved tiny AltCLIP teacher (model + processor) with the student's tokenizer and embedding width."""
    from dcclip.trainers.teacher.model import build_altclip_teacher

    folder = tmp_path_factory.mktemp("teacher")
    torch.manual_seed(0)
    model, processor = build_altclip_teacher(scenes_processor.tokenizer, image_size=32, projection_dim=32)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def two_process_runs(scenes, eval_pairs_spec, student_dir, multiprocess_env, tmp_path_factory):
    """`run(name, *extra)`: launch align.py on 2 processes with the tiny YAML config and `extra` flags (once per
    module and name); the output folder."""
    import socket

    done: dict[str, Path] = {}

    def run(name: str, *extra: str) -> Path:
        if name in done:
            return done[name]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        output_dir = tmp_path_factory.mktemp(name)
        launcher, flags = LAUNCHERS[name.removesuffix("+teacher")]
        command = [
            *launcher(port),
            "trainers/align.py",
            "configs/align_tiny.yaml",
            "--student",
            str(student_dir),
            *flags,
            *extra,
        ]
        result = subprocess.run(
            command + _run_flags(scenes, eval_pairs_spec, output_dir),
            cwd=REPO_ROOT, env=multiprocess_env, capture_output=True, text=True, timeout=MULTIPROCESS_TIMEOUT_S,
        )  # fmt: skip
        assert result.returncode == 0, f"{name} run failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
        (output_dir / "launcher.log").write_text(result.stdout + result.stderr)
        done[name] = output_dir
        return output_dir

    return run


@pytest.mark.multiprocess
@pytest.mark.parametrize("launcher", ["torchrun", "zero2", "zero3"])
def test_two_process_run_lowers_the_loss_and_saves_a_loadable_folder(two_process_runs, launcher, student_dir):
    output_dir = two_process_runs(launcher)
    losses = _training_losses(output_dir)
    assert len(losses) == 3 and losses[-1] < 0.85 * losses[0]
    _check_saved_folder(output_dir, start=DCCLIPModel.from_pretrained(student_dir))
    record = json.loads((output_dir / FINAL_MODEL_DIR / "dcclip_training.json").read_text())
    assert record["stages"][-1]["hyperparameters"]["global_batch_size"] == 16
    # the run ends its process group itself, not at interpreter shutdown, where gloo's threads can abort the process
    assert "rank 0 of 2 released its process group" in (output_dir / "launcher.log").read_text()


@pytest.mark.multiprocess
def test_ddp_zero2_and_zero3_train_on_the_same_global_batches_to_the_same_model(two_process_runs):
    """Same global batches and the same maths: DDP, ZeRO-2 and ZeRO-3 (sharded weights, gathered-with-grad loss,
    consolidated save) must give the same losses and the same saved weights."""
    losses = {name: _training_losses(two_process_runs(name)) for name in LAUNCHERS}
    weights = {
        name: AutoModel.from_pretrained(two_process_runs(name) / FINAL_MODEL_DIR).state_dict() for name in LAUNCHERS
    }
    for name in ("zero2", "zero3"):
        assert losses[name] == pytest.approx(losses["torchrun"], rel=1e-4), name
        for key, value in weights["torchrun"].items():
            torch.testing.assert_close(
                weights[name][key], value, rtol=1e-4, atol=1e-5, msg=lambda m, name=name, key=key: f"{name} {key}: {m}"
            )


@pytest.mark.multiprocess
def test_teacher_term_under_zero3_uses_the_teachers_saved_weights(two_process_runs, teacher_dir):
    """Stage 2's teacher under ZeRO-3 is loaded in full and then sharded (as in stage 1), not through zero.Init:
    its term must equal the DDP run's, step for step, and fall."""
    flags = ("--teacher", str(teacher_dir), "--teacher_loss_weight", "0.5")
    terms = {}
    for name in ("torchrun+teacher", "zero3+teacher"):
        state = json.loads((two_process_runs(name, *flags) / "trainer_state.json").read_text())
        terms[name] = [entry["loss_teacher"] for entry in state["log_history"] if "loss_teacher" in entry]
    assert len(terms["torchrun+teacher"]) == 3 and terms["torchrun+teacher"][-1] < terms["torchrun+teacher"][0]
    assert terms["zero3+teacher"] == pytest.approx(terms["torchrun+teacher"], rel=1e-4)

