"""Stage 1 end to end: `trainers/distill.py` under python, torchrun and deepspeed (ZeRO-2 and ZeRO-3) on CPU.

Each run distils the tiny AltCLIP teacher into the tiny student on the synthetic scenes and must show: the loss
falls, the teacher's weights are bit-identical to its checkpoint before and after, and the exported student (no
adapters) loads with AutoModel / AutoProcessor.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AltCLIPModel, AutoModel, AutoProcessor

from dcclip.trainers.callbacks.finite_training import NonFiniteTrainingError
from dcclip.trainers.distill import run as run_distill
from dcclip.trainers.teacher.model import teacher_weights_digest

MULTI_PROCESS_RUN = ("--max_steps", "20", "--logging_steps", "4")


def _free_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


def _check_run(output_dir: Path, losses: list[float], teacher_dir: Path) -> None:
    assert len(losses) >= 4 and losses[-1] < 0.5 * losses[0], f"loss did not fall: {losses}"
    digest = json.loads((output_dir / "teacher_digest.json").read_text())
    expected = teacher_weights_digest(AltCLIPModel.from_pretrained(teacher_dir))
    assert digest == {"before": expected, "after": expected}
    final = output_dir / "final"
    student = AutoModel.from_pretrained(final)
    processor = AutoProcessor.from_pretrained(final)
    assert type(student).__name__ == "DCCLIPModel"
    with safe_open(str(final / "model.safetensors"), "pt") as weights:
        assert not [name for name in weights.keys() if "adapter" in name]
    record = json.loads((final / "dcclip_training.json").read_text())
    assert record["student_preset"] == "tiny" and record["stages"][0]["stage"] == "feature_distillation"
    assert record["stages"][0]["hyperparameters"]["image_layer_mapping"] == "1->2, 2->3"
    inputs = processor(text=["a red circle", "一个红色的圆形"], return_tensors="pt", padding=True)
    with torch.no_grad():
        assert student.get_text_features(**inputs).pooler_output.shape == (2, student.config.projection_dim)


@pytest.mark.integration
def test_python_run_distils_and_exports_a_plain_student(stage1, run_launcher, read_losses, tmp_path):
    output_dir = tmp_path / "python"
    result = run_launcher([stage1.python, str(stage1.script), *stage1.argv(output_dir)])
    _check_run(output_dir, read_losses(result.stdout + result.stderr), stage1.teacher_dir)


@pytest.mark.integration
def test_torchrun_two_processes(stage1, run_launcher, read_losses, tmp_path):
    output_dir = tmp_path / "torchrun"
    torchrun = str(Path(stage1.python).parent / "torchrun")
    command = [torchrun, "--nproc_per_node", "2", "--master_port", _free_port(), str(stage1.script),
               *stage1.argv(output_dir, *MULTI_PROCESS_RUN, "--use_cpu", "true")]  # fmt: skip
    result = run_launcher(command)
    output = result.stdout + result.stderr
    _check_run(output_dir, read_losses(output), stage1.teacher_dir)
    # 20 steps x 2 ranks x 8 = 320 samples over 48 rows: the data really was split between two processes
    assert "'epoch': '6.667'" in output
    assert "rank 0 of 2 released its process group" in output  # not left to gloo at interpreter shutdown


@pytest.mark.integration
@pytest.mark.parametrize("zero_config", ["zero2.json", "zero3.json"])
def test_deepspeed_two_processes(zero_config, stage1, run_launcher, read_losses, tmp_path):
    output_dir = tmp_path / zero_config.replace(".json", "")
    deepspeed = str(Path(stage1.python).parent / "deepspeed")
    config = stage1.script.parents[1] / "ds_configs" / zero_config
    # On a CPU-only machine accelerate needs --use_cpu to see 2 processes; DS_ACCELERATOR=cpu selects DeepSpeed's
    # CPU accelerator (set by run_launcher).
    command = [deepspeed, "--num_gpus", "2", "--master_port", _free_port(), str(stage1.script),
               *stage1.argv(output_dir, *MULTI_PROCESS_RUN, "--deepspeed", str(config), "--use_cpu", "true")]  # fmt: skip
    result = run_launcher(command, timeout=400)
    output = result.stdout + result.stderr
    _check_run(output_dir, read_losses(output), stage1.teacher_dir)
    assert "'epoch': '6.667'" in output
    assert ("teacher sharded with DeepSpeed ZeRO-3" in output) == (zero_config == "zero3.json")
    assert "rank 0 of 2 released its process group" in output


@pytest.mark.parametrize("workers", ["0", "2"])
def test_checkpoints_keep_adapters_and_a_mid_epoch_resume_ends_with_the_uninterrupted_weights(workers, stage1, tmp_path):
    # 48 rows in batches of 8: 6 steps per epoch, so checkpoint-4 is mid-epoch and the run goes on into epoch 2
    steps = ("--max_steps", "9", "--save_strategy", "steps", "--save_steps", "4", "--logging_steps", "3",
             "--dataloader_num_workers", workers)  # fmt: skip
    straight = run_distill(stage1.argv(tmp_path / "straight", *steps))
    checkpoint = tmp_path / "straight" / "checkpoint-4"
    with safe_open(str(checkpoint / "model.safetensors"), "pt") as weights:
        names = set(weights.keys())
    assert {"image_adapters.0.conv.weight", "text_adapters.1.linear.weight", "student.logit_scale"} <= names
    # Resuming from step 4 must land exactly where the uninterrupted run landed at step 9: adapters, student and
    # optimizer state came back from the whole-wrapper checkpoint, and the text tower's dropout and the collator's
    # caption-language draws replay as they were.
    resumed = run_distill(stage1.argv(tmp_path / "resumed", *steps, "--resume_from_checkpoint", str(checkpoint)))
    assert resumed.state.global_step == 9
    expected, actual = straight.model.state_dict(), resumed.model.state_dict()
    assert expected.keys() == actual.keys()
    differences = {name: (actual[name] - expected[name]).abs().max().item() for name in expected}
    assert max(differences.values()) <= 1e-6, sorted(differences.items(), key=lambda item: -item[1])[:5]


def test_a_non_finite_loss_stops_the_run_naming_the_loss_parts_and_saves_nothing_of_that_step(stage1, tmp_path):
    # a learning rate of 1e30 blows the weights up in the first update: step 2's loss is not finite
    flags = ("--learning_rate", "1e30", "--warmup_steps", "0", "--save_strategy", "steps", "--save_steps", "1")
    with pytest.raises(NonFiniteTrainingError, match=r"the training loss of step 2 is (nan|inf) \(.*image_feature"):
        run_distill(stage1.argv(tmp_path / "diverged", *flags))
    assert sorted(path.name for path in (tmp_path / "diverged").glob("checkpoint-*")) == ["checkpoint-1"]
    assert not (tmp_path / "diverged" / "final").exists()


@pytest.mark.parametrize("target", ["embeddings", "logits"])
def test_ablation_targets_train(target, stage1, tmp_path):
    trainer = run_distill(stage1.argv(tmp_path / target, "--distill_target", target, "--max_steps", "6",
                                       "--logging_steps", "2"))  # fmt: skip
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    expected_parts = {"embeddings": {"image_embedding_loss", "text_embedding_loss"}, "logits": {"logit_loss"}}[target]
    assert expected_parts <= set(logs[0]) and not {"image_feature_loss", "text_feature_loss"} & set(logs[0])
    assert len(trainer.model.image_adapters) == 0
    assert trainer.model.student.logit_scale.requires_grad == (target == "logits")


def test_different_student_tokenizer_distils_pooled_text(stage1, tmp_path, caplog):
    with caplog.at_level("WARNING"):
        trainer = run_distill(stage1.argv(tmp_path / "pooled", "--tokenizer", str(stage1.other_tokenizer_dir),
                                           "--max_steps", "4", "--logging_steps", "2"))  # fmt: skip
    assert "student and teacher tokenizers differ" in caplog.text
    assert "1 mean(s) over runs of real tokens" in caplog.text
    assert trainer.model.student.config.text_config.vocab_size != trainer.teacher.model.config.text_config.vocab_size
    assert all(entry["text_feature_loss"] > 0 for entry in trainer.state.log_history if "loss" in entry)


def test_one_tower_alone(stage1, tmp_path):
    import yaml

    config = yaml.safe_load(Path(stage1.argv(tmp_path)[0]).read_text())
    del config["image_data"]
    (tmp_path / "text_only.yaml").write_text(yaml.safe_dump(config))
    argv = stage1.argv(tmp_path / "text_only", "--max_steps", "3", "--logging_steps", "1")
    argv[0] = str(tmp_path / "text_only.yaml")
    argv[argv.index("--image_data") : argv.index("--image_data") + 2] = []
    trainer = run_distill(argv)
    assert {"text_feature_loss", "text_embedding_loss"} <= set(trainer.state.log_history[0])
    assert "image_feature_loss" not in trainer.state.log_history[0]
    assert not any(p.requires_grad for p in trainer.model.student.vision_model.parameters())


def test_a_student_folder_continues_distillation(stage1, tmp_path):
    first = run_distill(stage1.argv(tmp_path / "first", "--max_steps", "12", "--logging_steps", "1"))
    second = run_distill(stage1.argv(tmp_path / "second", "--student", str(tmp_path / "first" / "final"),
                                     "--max_steps", "1", "--logging_steps", "1"))  # fmt: skip
    first_losses = [entry["image_embedding_loss"] for entry in first.state.log_history if "loss" in entry]
    second_loss = second.state.log_history[0]["image_embedding_loss"]
    # the second run starts where the first ended (its adapters are new, so compare the embedding part)
    assert second_loss < 0.5 * first_losses[0]
    record = json.loads((tmp_path / "second" / "final" / "dcclip_training.json").read_text())
    assert [stage["stage"] for stage in record["stages"]] == ["feature_distillation", "feature_distillation"]
    assert record["student_preset"] == "tiny"  # carried over from the folder the run started from
