"""The demo's sizes in one place: data regime, tokenizer, teacher, student, the training budget of every stage, the
student seeds and the pair-set sizes of the data-efficiency study.

`tiny` is for the end-to-end test (a couple of minutes on two cores, numbers not meaningful), `small` is the default
`dcclip demo` (under ten minutes on a 2-core CPU machine), `medium` trains longer for steadier numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from dcclip.trainers.data.synthetic_scenes import pair_subset_size


@dataclass(frozen=True)
class BenchmarkSettings:
    """Arguments of `trainers.data.generate_benchmark`: the data regime.

    The teacher is pre-trained on the corpus (`n_corpus` pairs, every colour); stage 1 distils on the corpus's images
    and texts, unpaired; stage 2 aligns on a subset of the student's pair set (`n_train` pairs, which never show
    `corpus_only_colours`).
    """

    n_train: int  # the student's whole pair set; stage 2 sees a fraction of it
    n_eval: int  # the held-out composition split gets n_eval // 2 images
    n_retrieval: int
    image_size: int  # rendered size; each model's processor resizes to its own input size (rendering larger than
    # the models' 48 px and downsampling smooths edges and noise: the teacher learned count and shape better so)
    n_corpus: int
    corpus_only_colours: tuple[str, ...] = ("purple", "orange")


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
    alignment-only ablation trains for `stage1.steps + stage2.steps` steps. Each run's learning rate suits where it
    starts and what it learns (measured choices in docs/demo.md)."""

    name: str
    benchmark: BenchmarkSettings
    tokenizer_vocab_size: int
    max_text_length: int
    teacher: TeacherSettings
    student: StudentSettings
    stage1: StageBudget  # the learning rate is feature-map distillation's
    logits_learning_rate: float  # stage 1 with logit distillation (the ablation) learns best at its own rate
    stage2: StageBudget  # after stage 1: fine-tuning a distilled student
    align_only_learning_rate: float  # stage 2 from scratch (the alignment-only ablation) needs a larger rate
    pair_fraction: float  # the share of the student's pair set that stage 2 sees in the default demo
    study_pair_fractions: tuple[float, ...]  # the pair-set sizes of `--study data-efficiency`
    seeds: int = 3  # student seeds: every variant is trained once per seed (the teacher is shared)
    eval_batch_size: int = 128
    logging_steps: int = 10
    dataloader_workers: int = 1  # decoding and preprocessing run beside the (single-threaded) training step
    notes: str = field(default="", compare=False)

    @property
    def align_only_steps(self) -> int:
        """Alignment from scratch gets the steps of both stages together: the same number of optimizer steps."""
        return self.stage1.steps + self.stage2.steps

    def num_pairs(self, fraction: float) -> int:
        """Pairs stage 2 sees at `fraction` of the student's pair set."""
        return pair_subset_size(fraction, self.benchmark.n_train)

    def to_dict(self) -> dict:
        return asdict(self)


SCALES: dict[str, DemoScale] = {
    "tiny": DemoScale(
        name="tiny",
        benchmark=BenchmarkSettings(n_train=96, n_eval=96, n_retrieval=48, image_size=32, n_corpus=256),
        tokenizer_vocab_size=200,
        max_text_length=48,
        teacher=TeacherSettings(
            image_size=32, patch_size=8, hidden_size=48, num_layers=2, num_heads=2, mlp_ratio=2, projection_dim=32,
            steps=30, batch_size=32, learning_rate=1e-3, text_learning_rate_ratio=0.5,
        ),  # fmt: skip
        student=StudentSettings(
            image_size=32, hidden_sizes=(8, 16), depths=(1, 1), text_hidden_size=16, text_layers=1, text_heads=2
        ),
        stage1=StageBudget(steps=12, batch_size=32, learning_rate=3e-3),
        logits_learning_rate=1e-3,
        stage2=StageBudget(steps=8, batch_size=32, learning_rate=3e-4),
        align_only_learning_rate=1e-3,
        pair_fraction=0.5,
        study_pair_fractions=(0.25, 1.0),
        seeds=2,
        eval_batch_size=64,
        logging_steps=4,
        dataloader_workers=0,
        notes="test size: checks that every step runs and every output is written; the numbers mean nothing",
    ),
    "small": DemoScale(
        name="small",
        benchmark=BenchmarkSettings(n_train=2000, n_eval=500, n_retrieval=200, image_size=64, n_corpus=6000),
        tokenizer_vocab_size=200,
        max_text_length=48,
        teacher=TeacherSettings(
            image_size=48, patch_size=6, hidden_size=72, num_layers=3, num_heads=2, mlp_ratio=2, projection_dim=64,
            steps=1200, batch_size=64, learning_rate=1e-3, text_learning_rate_ratio=0.5,
        ),  # fmt: skip
        student=StudentSettings(
            image_size=48, hidden_sizes=(12, 24, 48), depths=(1, 1, 1), text_hidden_size=24, text_layers=1,
            text_heads=2,
        ),  # fmt: skip
        stage1=StageBudget(steps=200, batch_size=64, learning_rate=3e-3),
        logits_learning_rate=1e-3,
        stage2=StageBudget(steps=150, batch_size=64, learning_rate=3e-4),
        align_only_learning_rate=1e-3,
        pair_fraction=0.2,
        study_pair_fractions=(0.01, 0.05, 0.2, 1.0),
        notes="the default: the whole method, its ablations and three student seeds in under ten minutes on a 2-core "
        "CPU machine",
    ),
    "medium": DemoScale(
        name="medium",
        benchmark=BenchmarkSettings(n_train=4000, n_eval=1000, n_retrieval=400, image_size=64, n_corpus=12000),
        tokenizer_vocab_size=200,
        max_text_length=48,
        teacher=TeacherSettings(
            image_size=48, patch_size=6, hidden_size=96, num_layers=4, num_heads=3, mlp_ratio=2, projection_dim=64,
            steps=3000, batch_size=64, learning_rate=1e-3, text_learning_rate_ratio=0.5,
        ),  # fmt: skip
        student=StudentSettings(
            image_size=48, hidden_sizes=(16, 32, 64), depths=(1, 1, 2), text_hidden_size=32, text_layers=2,
            text_heads=2,
        ),  # fmt: skip
        stage1=StageBudget(steps=800, batch_size=64, learning_rate=3e-3),
        logits_learning_rate=1e-3,
        stage2=StageBudget(steps=500, batch_size=64, learning_rate=3e-4),
        align_only_learning_rate=1e-3,
        pair_fraction=0.2,
        study_pair_fractions=(0.01, 0.05, 0.2, 1.0),
        logging_steps=25,
        notes="longer training on more data, for steadier numbers (not measured in this version)",
    ),
}


def get_scale(name: str) -> DemoScale:
    """The settings of scale `name` (one of `SCALES`)."""
    if name not in SCALES:
        raise ValueError(f"unknown demo scale {name!r}; choose one of {sorted(SCALES)}")
    return SCALES[name]
