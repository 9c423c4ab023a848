"""ds_configs/: the Trainer's flags decide precision and batch sizes ("auto").
(ZeRO-2 and ZeRO-3 runs of both stages are tested with the stages.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import TrainingArguments

REPO_ROOT = Path(__file__).resolve().parents[2]
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
