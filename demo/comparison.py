"""The students of the comparison and how each is trained: per student seed, one initial student that every variant
starts from, stage 1 on unpaired images and texts (feature maps, or logits for the ablation), and stage 2 on a subset
of the student's image-text pairs (after either stage 1, or from scratch for the alignment-only ablation).

Every run goes through the stage entry points with a YAML config written under `configs/`; outputs go to `runs/`.
The teacher runs once over stage 1's data (`dcclip teacher-cache`); every stage-1 run reads its targets from there:

    runs/teacher_cache/                             the teacher's feature maps and embeddings of stage 1's data
    runs/seed<S>/student_init/                      the initial student of seed S
    runs/seed<S>/stage1_<target>/                   stage 1 (feature_maps | logits)
    runs/seed<S>/<pair subset>/stage2_<variant>/    stage 2 on a pair subset (e.g. train_pairs_20pct)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dcclip.trainers.data.synthetic_scenes import pair_subset_name

from .scales import DemoScale
from .stages import build_teacher_cache, run_alignment, run_distillation, write_config
from .student import save_initial_student

TEACHER = "teacher"
FINAL_STUDENT = "dc-clip"
# Separates a variant from its seed in model names (results.json): "dc-clip@seed0".
SEED_SEPARATOR = "@seed"


@dataclass(frozen=True)
class Variant:
    """One student of the comparison: what it is and how it was trained."""

    name: str
    description: str
    stage1: str | None  # distill_target of stage 1, None: no stage 1
    aligned: bool  # went through stage 2


VARIANTS: tuple[Variant, ...] = (
    Variant(FINAL_STUDENT, "DC-CLIP: feature-map distillation, then bilingual alignment", "feature_maps", True),
    Variant("fm-only", "ablation: feature-map distillation alone (no stage 2)", "feature_maps", False),
    Variant(
        "logits+align", "ablation: logit distillation instead of feature maps, then the same stage 2", "logits", True
    ),
    Variant("logits-only", "ablation: logit distillation alone (no stage 2)", "logits", False),
    Variant("align-only", "ablation: bilingual alignment alone from the same initial student, no teacher", None, True),
)
VARIANT_NAMES: tuple[str, ...] = tuple(variant.name for variant in VARIANTS)


def model_name(variant: str, seed: int) -> str:
    """The name of one trained student in results.json: its variant and student seed."""
    return f"{variant}{SEED_SEPARATOR}{seed}"


def split_model_name(name: str) -> tuple[str, int | None]:
    """`"dc-clip@seed1"` -> `("dc-clip", 1)`; a name without a seed (the teacher) -> `(name, None)`."""
    variant, separator, seed = name.partition(SEED_SEPARATOR)
    return (variant, int(seed)) if separator else (name, None)


def student_seeds(base_seed: int, count: int) -> list[int]:
    """The student seeds of a run: `base_seed`, `base_seed + 1`, ... (`count` of them)."""
    return [base_seed + offset for offset in range(count)]


@dataclass(frozen=True)
class ComparisonData:
    """The data specs the student runs read."""

    unpaired_images: Path  # stage 1, image tower: images only
    unpaired_texts: Path  # stage 1, text tower: captions only, of other scenes
    pair_subsets: dict[float, Path]  # stage 2: fraction of the student's pair set -> its data spec


class StudentComparison:
    """Trains the student variants of one seed through `dcclip distill` and `dcclip align`, with one YAML config
    per run under `configs/` and outputs under `runs/` (layout in the module docstring)."""

    def __init__(self, out: Path, scale: DemoScale, teacher: str, data: ComparisonData, training_options: dict):
        self.out = out
        self.scale = scale
        self.teacher = teacher
        self.data = data
        self.training_options = training_options
        self.teacher_cache = out / "runs" / "teacher_cache"

    def _paths(self, seed: int, *parts: str) -> tuple[Path, Path]:
        """(config file, output folder) of one run."""
        relative = Path(f"seed{seed}", *parts)
        return self.out / "configs" / relative.with_suffix(".yaml"), self.out / "runs" / relative

    def initial_student(self, seed: int) -> Path:
        """The untrained student of `seed`, saved once: every variant of this seed starts from these weights."""
        folder = self.out / "runs" / f"seed{seed}" / "student_init"
        return save_initial_student(self.teacher, self.scale.student, self.scale.max_text_length, seed, folder)

    def _stage1_data(self, student: Path, target: str) -> dict:
        return {
            "teacher": self.teacher,
            "student": str(student),
            "image_data": str(self.data.unpaired_images),
            "text_data": str(self.data.unpaired_texts),
            "distill_target": target,
            "max_text_length": self.scale.max_text_length,
        }

    def cache_teacher(self, student: Path) -> Path:
        """Run the teacher once over stage 1's images and texts (`dcclip teacher-cache`, with the feature-map run's
        config for `student`'s architecture, which every seed shares); returns the cache folder."""
        config_path = self.out / "configs" / "teacher_cache.yaml"
        config = {
            **self._stage1_data(student, "feature_maps"),
            "output_dir": str(self.teacher_cache),
            "teacher_cache_dir": str(self.teacher_cache),
            "cache_batch_size": self.scale.stage1.batch_size,
            # Every token in float16: the demo's cache is small, and its published figures were measured with it
            # (the default keeps 4 tokens per caption in int8, to fit 8 KB per caption for real corpora;
            # docs/distillation.md measures what that costs on this benchmark).
            "pool_text": False,
            "cache_text_tokens": 0,
            "cache_dtype": "float16",
            "use_cpu": self.training_options["use_cpu"],
        }
        return build_teacher_cache(write_config(config, config_path), "teacher cache")

    def distil(self, seed: int, target: str, student: Path) -> Path:
        """Stage 1 with `distill_target` `target` on the unpaired images and texts, the teacher's targets read from
        the cache; returns the student folder."""
        budget = self.scale.stage1
        config_path, output_dir = self._paths(seed, f"stage1_{target}")
        config = {
            **self._stage1_data(student, target),
            "teacher_cache_dir": str(self.teacher_cache),
            "output_dir": str(output_dir),
            "max_steps": budget.steps,
            "per_device_train_batch_size": budget.batch_size,
            "learning_rate": self.scale.logits_learning_rate if target == "logits" else budget.learning_rate,
            "warmup_steps": max(1, budget.steps // 10),
            **self.training_options,
            "seed": seed,
        }
        label = f"seed {seed} stage 1 ({target.replace('_', ' ')})"
        return run_distillation(write_config(config, config_path), label)

    def align(self, seed: int, variant: str, student: Path, fraction: float, from_scratch: bool) -> Path:
        """Stage 2 of `variant` from `student` on the pair subset of `fraction` (`from_scratch`: the alignment-only
        ablation, with both stages' steps and its own learning rate); returns the student folder."""
        budget = self.scale.stage2
        steps = self.scale.align_only_steps if from_scratch else budget.steps
        subset = pair_subset_name(fraction)
        config_path, output_dir = self._paths(seed, subset, f"stage2_{variant}")
        config = {
            "student": str(student),
            "train_data": str(self.data.pair_subsets[fraction]),
            "max_text_length": self.scale.max_text_length,
            "output_dir": str(output_dir),
            "max_steps": steps,
            "per_device_train_batch_size": budget.batch_size,
            "learning_rate": self.scale.align_only_learning_rate if from_scratch else budget.learning_rate,
            "warmup_steps": max(1, steps // 10),
            **self.training_options,
            "seed": seed,
        }
        label = f"seed {seed} {variant} ({self.scale.num_pairs(fraction):,} pairs)"
        return run_alignment(write_config(config, config_path), label)

    def train_seed(self, seed: int, fractions: Sequence[float]) -> dict[float, dict[str, Path]]:
        """Every variant of `seed`, with stage 2 at each pair-set fraction: fraction -> variant name -> student
        folder. Stage 1 does not read pairs, so the stage-1-only variants are the same folders at every fraction."""
        start = self.initial_student(seed)
        if not self.teacher_cache.is_dir():
            self.cache_teacher(start)
        stage1 = {target: self.distil(seed, target, start) for target in ("feature_maps", "logits")}
        students: dict[float, dict[str, Path]] = {}
        for fraction in fractions:
            trained = {}
            for variant in VARIANTS:
                if not variant.aligned:
                    trained[variant.name] = stage1[variant.stage1]
                    continue
                origin = stage1[variant.stage1] if variant.stage1 else start
                scratch = variant.stage1 is None
                trained[variant.name] = self.align(seed, variant.name, origin, fraction, from_scratch=scratch)
            students[fraction] = trained
        return students
