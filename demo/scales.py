"""The demo's sizes in one place: benchmark, tokenizer, teacher, student and the training budget of every stage.

`tiny` is for the end-to-end test (a couple of minutes on two cores, numbers not meaningful), `small` is the default
`dcclip demo` (under ten minutes on a 2-core CPU machine), `medium` trains longer for steadier numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class BenchmarkSettings:
    """Arguments of `trainers.data.generate_benchmark`."""

    n_train: int
    n_eval: int  # the held-out composition split gets n_eval // 2 images
    n_retrieval: int
    image_size: int  # rendered size; each model's processor resizes to its own input size


@dataclass(frozen=True)
class TeacherSettings:
    """The small AltCLIP-architecture teacher (ViT image tower + XLM-R text tower) and its contrastive pre-training."""

    image_size: int
    patch_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    mlp_ratio: int
    projection_dim: int
    steps: int
    batch_size: int
    learning_rate: float
    text_learning_rate_ratio: float = 1.0  # the text tower's rate / the image tower's (TeacherPretrainingTrainer)
    logit_scale_init: float = 2.6592  # CLIP's ln(1 / 0.07)


@dataclass(frozen=True)
class StageBudget:
    """Steps, batch and learning rate of one training run."""

    steps: int
    batch_size: int
    learning_rate: float


@dataclass(frozen=True)
class StudentSettings:
    """A scaled-down `edge` student: ConvNeXt-V2 image tower + XLM-R text tower (vocabulary: the teacher's tokenizer).

    The projection width is the teacher's, so stage 1 distils the embeddings directly (no adapter) and the
    stage-1-only ablation is a usable zero-shot model on its own.
    """

    image_size: int
    hidden_sizes: tuple[int, ...]
    depths: tuple[int, ...]
    text_hidden_size: int
    text_layers: int
    text_heads: int

    def vision_config(self) -> dict:
        return {
            "model_type": "convnextv2",
            "num_channels": 3,
            "patch_size": 4,
            "num_stages": len(self.hidden_sizes),
            "hidden_sizes": list(self.hidden_sizes),
            "depths": list(self.depths),
            "image_size": self.image_size,
        }

    def text_config(self, vocab_size: int, max_text_length: int) -> dict:
        return {
            "model_type": "xlm-roberta",
            "vocab_size": vocab_size,
            "hidden_size": self.text_hidden_size,
            "num_hidden_layers": self.text_layers,
            "num_attention_heads": self.text_heads,
            "intermediate_size": 2 * self.text_hidden_size,
            "max_position_embeddings": max_text_length + 2,  # XLM-R positions start after the padding id
        }


@dataclass(frozen=True)
class DemoScale:
    """Everything the demo sizes. Stage 1 and stage 2 budgets apply to every student variant alike; the
    alignment-only ablation trains for `stage1.steps + stage2.steps` steps (see docs/demo.md)."""

    name: str
    benchmark: BenchmarkSettings
    tokenizer_vocab_size: int
    max_text_length: int
    teacher: TeacherSettings
    student: StudentSettings
    stage1: StageBudget
    stage2: StageBudget
    eval_batch_size: int = 128
    logging_steps: int = 10
    zero_shot_evals_in_stage2: int = 2  # zero-shot scores logged during stage 2 (for the training curves)
    dataloader_workers: int = 1  # decoding and preprocessing run beside the (single-threaded) training step
    notes: str = field(default="", compare=False)

    @property
    def align_only_steps(self) -> int:
        """Alignment from scratch gets the steps of both stages together: the same number of optimizer steps."""
        return self.stage1.steps + self.stage2.steps

    def to_dict(self) -> dict:
        return asdict(self)


SCALES: dict[str, DemoScale] = {
    "tiny": DemoScale(
        name="tiny",
        benchmark=BenchmarkSettings(n_train=256, n_eval=96, n_retrieval=48, image_size=32),
        tokenizer_vocab_size=200,
        max_text_length=48,
        teacher=TeacherSettings(
            image_size=32, patch_size=8, hidden_size=32, num_layers=2, num_heads=2, mlp_ratio=2, projection_dim=32,
            steps=40, batch_size=32, learning_rate=1e-3, text_learning_rate_ratio=0.5,
        ),  # fmt: skip
        student=StudentSettings(
            image_size=32, hidden_sizes=(16, 32), depths=(1, 1), text_hidden_size=32, text_layers=1, text_heads=2
        ),
        stage1=StageBudget(steps=20, batch_size=32, learning_rate=3e-3),
        stage2=StageBudget(steps=20, batch_size=32, learning_rate=1e-3),
        eval_batch_size=64,
        logging_steps=5,
        zero_shot_evals_in_stage2=1,
        dataloader_workers=0,
        notes="test size: checks that every step runs and every output is written; the numbers mean nothing",
    ),
    "small": DemoScale(
        name="small",
        benchmark=BenchmarkSettings(n_train=2000, n_eval=500, n_retrieval=200, image_size=64),
        tokenizer_vocab_size=200,
        max_text_length=48,
        teacher=TeacherSettings(
            image_size=48, patch_size=6, hidden_size=64, num_layers=3, num_heads=2, mlp_ratio=2, projection_dim=64,
            steps=2000, batch_size=64, learning_rate=1e-3, text_learning_rate_ratio=0.5,
        ),  # fmt: skip
        student=StudentSettings(
            image_size=48, hidden_sizes=(16, 32, 64), depths=(1, 1, 1), text_hidden_size=32, text_layers=2,
            text_heads=2,
        ),  # fmt: skip
        stage1=StageBudget(steps=400, batch_size=64, learning_rate=3e-3),
        stage2=StageBudget(steps=300, batch_size=64, learning_rate=1e-3),
        notes="the default: the whole method and its ablations in under ten minutes on a 2-core CPU machine",
    ),
    "medium": DemoScale(
        name="medium",
        benchmark=BenchmarkSettings(n_train=6000, n_eval=1000, n_retrieval=400, image_size=64),
        tokenizer_vocab_size=200,
        max_text_length=48,
        teacher=TeacherSettings(
            image_size=48, patch_size=6, hidden_size=96, num_layers=4, num_heads=3, mlp_ratio=2, projection_dim=64,
            steps=4000, batch_size=64, learning_rate=1e-3,
            text_learning_rate_ratio=1.0,  # measured so; the 0.5 of `small` was chosen after this scale's last run
        ),  # fmt: skip
        student=StudentSettings(
            image_size=48, hidden_sizes=(24, 48, 96), depths=(1, 1, 2), text_hidden_size=64, text_layers=2,
            text_heads=2,
        ),  # fmt: skip
        stage1=StageBudget(steps=1500, batch_size=64, learning_rate=3e-3),
        stage2=StageBudget(steps=1000, batch_size=64, learning_rate=1e-3),
        logging_steps=25,
        zero_shot_evals_in_stage2=4,
        notes="longer training: about 45 minutes on a 2-core CPU machine (measured 44:26 while other jobs shared it)",
    ),
}


def get_scale(name: str) -> DemoScale:
    """The settings of scale `name` (one of `SCALES`)."""
    if name not in SCALES:
        raise ValueError(f"unknown demo scale {name!r}; choose one of {sorted(SCALES)}")
    return SCALES[name]
