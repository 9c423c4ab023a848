"""ds_configs/: the Trainer's flags decide precision and batch sizes ("auto"), and ZeRO-3 with CPU offload trains with
the Trainer's own optimizer under torchrun on CPU, checkpoints every rank's shards and resumes to the same weights.
(ZeRO-2 and ZeRO-3 runs of both stages are tested with the stages.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import TrainingArguments

from trainers.checkpoints import AUTO_RESUME, COMPLETION_MARKER, find_resume_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DS_CONFIGS = sorted((REPO_ROOT / "ds_configs").glob("*.json"))


@pytest.mark.parametrize("ds_config", DS_CONFIGS, ids=lambda path: path.stem)
@pytest.mark.parametrize("bf16", [True, False])
def test_trainer_flags_fill_precision_and_batch_sizes(ds_config, bf16, tmp_path):
    args = TrainingArguments(
        output_dir=str(tmp_path), use_cpu=True, bf16=bf16, deepspeed=str(ds_config), report_to="none",
        per_device_train_batch_size=3, gradient_accumulation_steps=2, max_grad_norm=0.5,
    )  # fmt: skip
    filled = args.hf_deepspeed_config.config
    assert filled["bf16"]["enabled"] is bf16 and filled["fp16"]["enabled"] is False
    assert (filled["train_micro_batch_size_per_gpu"], filled["gradient_accumulation_steps"]) == (3, 2)
    assert filled["gradient_clipping"] == 0.5
    # left out on purpose: DeepSpeed derives it from its own world size (see docs/scale_out.md)
    assert "train_batch_size" not in filled


def _torchrun_tiny_trainer(*flags: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(HERE / "tiny_trainer.py"), str(HERE / "tiny_trainer.yaml"), *flags]  # fmt: skip
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def test_zero3_offload_checkpoints_every_rank_and_resumes_to_the_same_weights(tmp_path, assert_same_weights):
    output_dir = tmp_path / "out"
    flags = ("--output_dir", str(output_dir), "--deepspeed", str(REPO_ROOT / "ds_configs/zero3_offload.json"))
    first = _torchrun_tiny_trainer(*flags)
    assert first.returncode == 0, first.stderr[-4000:]
    listed = json.loads((output_dir / "checkpoint-8" / COMPLETION_MARKER).read_text())["files"]
    shards = [name for name in listed if "optim_states" in name]
    assert len(shards) == 2 and {"rng_state_0.pth", "rng_state_1.pth"} <= listed.keys()  # one of each per rank
    uninterrupted = tmp_path / "uninterrupted"
    uninterrupted.mkdir()
    (output_dir / "model.safetensors").rename(uninterrupted / "model.safetensors")

    # as if the job had been killed while saving step 8: that checkpoint never completed, the final model never came
    (output_dir / "checkpoint-8" / COMPLETION_MARKER).unlink()
    assert find_resume_checkpoint(output_dir) == str(output_dir / "checkpoint-4")
    resumed = _torchrun_tiny_trainer(*flags, "--resume_from_checkpoint", AUTO_RESUME)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert f"auto-resume: {output_dir / 'checkpoint-4'}" in resumed.stderr
    assert_same_weights(output_dir, uninterrupted)
