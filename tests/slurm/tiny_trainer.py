"""The smallest Trainer entry script with the stage scripts' checkpoint contract (`CheckpointCompletionCallback`,
`--resume_from_checkpoint auto`): a tiny DCCLIPModel trained by the real HF Trainer on fixed random pairs. The
checkpoint and DeepSpeed-config tests run it so that they need no teacher, data or tokenizer.

    python tests/slurm/tiny_trainer.py tests/slurm/tiny_trainer.yaml --output_dir OUT [--flag value ...]
"""

import sys

import torch
from datasets import Dataset
from transformers import Trainer, TrainingArguments

from modeling_dcclip import DCCLIPConfig, DCCLIPModel
from dcclip.trainers.arguments import parse_config_and_overrides
from dcclip.trainers.callbacks.checkpoints import CheckpointCompletionCallback, resolve_resume_checkpoint


def main(argv: list[str]) -> None:
    """Train, resuming as `--resume_from_checkpoint` says, and save the model to `output_dir`."""
    (args,) = parse_config_and_overrides((TrainingArguments,), argv)
    generator = torch.Generator().manual_seed(0)  # the data stays fixed; args.seed drives init, shuffling, dropout
    pairs = Dataset.from_dict(
        {
            "input_ids": torch.randint(4, 300, (64, 8), generator=generator).tolist(),
            "pixel_values": torch.randn(64, 3, 32, 32, generator=generator).tolist(),
        }
    ).with_format("torch")
    torch.manual_seed(args.seed)
    model = DCCLIPModel(DCCLIPConfig.from_preset("tiny", vocab_size=300))
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=pairs,
        data_collator=lambda rows: {
            "input_ids": torch.stack([r["input_ids"] for r in rows]),
            "pixel_values": torch.stack([r["pixel_values"] for r in rows]),
            "return_loss": True,
        },
        callbacks=[CheckpointCompletionCallback()],
    )
    trainer.train(resume_from_checkpoint=resolve_resume_checkpoint(args.resume_from_checkpoint, args.output_dir))
    trainer.save_model(args.output_dir)


if __name__ == "__main__":
    main(sys.argv[1:])
