"""Built-in bilingual benchmark: procedurally drawn scenes with English and Chinese captions, and zero-shot tasks.

Each scene holds one to three copies of a coloured shape in the left, middle or right third of the image, on a
light or dark background (plain, gradient or textured) with pixel noise. Captions describe colour, shape, count,
position and background in several phrasings per language. Zero-shot tasks ask for the colour, shape, colour+shape,
count and position. Some colour+shape compositions never appear in training (``HELD_OUT_COMPOSITIONS``): the
``eval_unseen`` split holds only those, so its accuracy measures generalisation to new compositions.

Everything is deterministic given the seed, and written in the formats users' data comes in (imagefolder +
metadata.jsonl, webdataset shards), so the demo and tests go through the same loaders as real data.
"""

from __future__ import annotations

import io
import json
import math
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import PIL.Image
import PIL.ImageDraw

from dcclip.languages import LANGUAGES

from .spec import DataSpec, SourceSpec


@dataclass(frozen=True)
class Colour:
    en: str
    zh: str
    rgb: tuple[int, int, int]


@dataclass(frozen=True)
class Shape:
    en: str
    en_plural: str
    zh: str


COLOURS: tuple[Colour, ...] = (
    Colour("red", "红色", (220, 40, 40)),
    Colour("green", "绿色", (40, 170, 60)),
    Colour("blue", "蓝色", (40, 80, 225)),
    Colour("yellow", "黄色", (240, 215, 40)),
    Colour("purple", "紫色", (150, 60, 190)),
    Colour("orange", "橙色", (245, 135, 25)),
)
SHAPES: tuple[Shape, ...] = (
    Shape("circle", "circles", "圆形"),
    Shape("square", "squares", "正方形"),
    Shape("triangle", "triangles", "三角形"),
    Shape("star", "stars", "五角星"),
    Shape("cross", "crosses", "十字形"),
)
COUNTS: tuple[int, ...] = (1, 2, 3)
COUNT_WORDS = {"en": ("one", "two", "three"), "zh": ("一个", "两个", "三个")}
POSITIONS: tuple[str, ...] = ("left", "middle", "right")
POSITION_PHRASES = {"en": ("on the left", "in the middle", "on the right"), "zh": ("左边", "中间", "右边")}
BACKGROUNDS: tuple[str, ...] = ("light", "dark")
BACKGROUND_WORDS = {"en": ("light", "dark"), "zh": ("浅色", "深色")}

# One composition per colour, spread over the shapes: every colour and every shape is still seen in training.
HELD_OUT_COMPOSITIONS: tuple[tuple[str, str], ...] = (
    ("red", "triangle"),
    ("green", "star"),
    ("blue", "cross"),
    ("yellow", "circle"),
    ("purple", "square"),
    ("orange", "star"),
)

# Caption phrasings. Fields: objects / count, colour, shape, position, background, be (is/are).
EN_CAPTIONS: tuple[str, ...] = (
    "{objects} {position}.",
    "a photo of {objects} {position}.",
    "{objects} {position} on a {background} background.",
    "there {be} {objects} {position}.",
    "an image with {objects} {position}, {background} background.",
)
ZH_CAPTIONS: tuple[str, ...] = (
    "{position}有{count}{colour}的{shape}。",
    "一张{position}有{count}{colour}{shape}的照片。",
    "{background}背景上，{position}是{count}{colour}的{shape}。",
    "图中{position}画着{count}{colour}{shape}。",
    "{count}{colour}{shape}位于{position}，背景是{background}。",
)


@dataclass(frozen=True)
class Scene:
    """The attributes of one image (indices into the tables above)."""

    colour: int
    shape: int
    count: int  # index into COUNTS
    position: int
    background: int

    @property
    def composition(self) -> tuple[str, str]:
        return COLOURS[self.colour].en, SHAPES[self.shape].en

    @property
    def labels(self) -> dict[str, int]:
        """The label of every task (see ``benchmark_tasks``)."""
        return {
            "colour": self.colour,
            "shape": self.shape,
            "colour_shape": self.colour * len(SHAPES) + self.shape,
            "count": self.count,
            "position": self.position,
        }


def scene_caption(scene: Scene, language: str, phrasing: int) -> str:
    """The caption of ``scene`` in ``language`` ("en" or "zh") with phrasing number ``phrasing``."""
    colour, shape, number = COLOURS[scene.colour], SHAPES[scene.shape], COUNTS[scene.count]
    if language == "en":
        if number == 1:
            objects = f"{'an' if colour.en[0] in 'aeiou' else 'a'} {colour.en} {shape.en}"
        else:
            objects = f"{COUNT_WORDS['en'][scene.count]} {colour.en} {shape.en_plural}"
        return EN_CAPTIONS[phrasing].format(
            objects=objects,
            position=POSITION_PHRASES["en"][scene.position],
            background=BACKGROUND_WORDS["en"][scene.background],
            be="is" if number == 1 else "are",
        )
    return ZH_CAPTIONS[phrasing].format(
        count=COUNT_WORDS["zh"][scene.count],
        colour=colour.zh,
        shape=shape.zh,
        position=POSITION_PHRASES["zh"][scene.position],
        background=BACKGROUND_WORDS["zh"][scene.background],
    )


def benchmark_tasks() -> dict[str, dict]:
    """The zero-shot classification tasks, in the ``tasks.json`` schema (labels are indices into ``classnames``)."""
    shape_templates = {
        "en": ["a photo of a {}.", "a {} shape.", "a drawing of a {}."],
        "zh": ["一张{}的照片。", "一个{}。", "画着{}的图片。"],
    }
    return {
        "colour": {
            "label_column": "colour",
            "classnames": {"en": [c.en for c in COLOURS], "zh": [c.zh for c in COLOURS]},
            "templates": {
                "en": ["a photo of a {} shape.", "a {} object.", "something {} on a plain background."],
                "zh": ["一张{}图形的照片。", "一个{}的物体。", "{}的图形。"],
            },
            "metric": "accuracy",
            "description": "colour of the shapes in the scene",
        },
        "shape": {
            "label_column": "shape",
            "classnames": {"en": [s.en for s in SHAPES], "zh": [s.zh for s in SHAPES]},
            "templates": shape_templates,
            "metric": "accuracy",
            "description": "kind of shape in the scene",
        },
        "colour_shape": {
            "label_column": "colour_shape",
            "classnames": {
                "en": [f"{c.en} {s.en}" for c in COLOURS for s in SHAPES],
                "zh": [f"{c.zh}{s.zh}" for c in COLOURS for s in SHAPES],
            },
            "templates": shape_templates,
            "metric": "accuracy",
            "description": "colour and shape together (all compositions, held-out ones included)",
        },
        "count": {
            "label_column": "count",
            "classnames": {
                "en": ["one shape", "two shapes", "three shapes"],
                "zh": ["一个图形", "两个图形", "三个图形"],
            },
            "templates": {
                "en": ["a photo of {}.", "an image with {}.", "a picture showing {}."],
                "zh": ["一张有{}的照片。", "图中有{}。", "画着{}的图片。"],
            },
            "metric": "accuracy",
            "description": "number of shapes in the scene (1 to 3)",
        },
        "position": {
            "label_column": "position",
            "classnames": {
                "en": [f"shapes {phrase}" for phrase in POSITION_PHRASES["en"]],
                "zh": [f"{phrase}的图形" for phrase in POSITION_PHRASES["zh"]],
            },
            "templates": {
                "en": ["a photo of {}.", "an image with {}.", "a picture of {}."],
                "zh": ["一张{}的照片。", "图中是{}。", "画着{}的图片。"],
            },
            "metric": "accuracy",
            "description": "which third of the image (left, middle, right) holds the shapes",
        },
    }


def unseen_composition_tasks() -> dict[str, dict]:
    """Tasks of the ``eval_unseen`` split: colour+shape over all compositions, on images of held-out ones only."""
    task = dict(benchmark_tasks()["colour_shape"])
    task["description"] = (
        "colour and shape together, on images of compositions held out of training only "
        "(classes: all compositions, so a model must not fall back to a seen neighbour)"
    )
    return {"colour_shape": task}


def benchmark_text_corpus() -> list[str]:
    """Every caption and prompt the benchmark can produce, English and Chinese: the tokenizer's training corpus."""
    texts = []
    for colour in range(len(COLOURS)):
        for shape in range(len(SHAPES)):
            for count in range(len(COUNTS)):
                for position in range(len(POSITIONS)):
                    for background in range(len(BACKGROUNDS)):
                        scene = Scene(colour, shape, count, position, background)
                        texts += [scene_caption(scene, "en", p) for p in range(len(EN_CAPTIONS))]
                        texts += [scene_caption(scene, "zh", p) for p in range(len(ZH_CAPTIONS))]
    for task in benchmark_tasks().values():
        for language in LANGUAGES:
            for template in task["templates"][language]:
                texts += [template.format(name) for name in task["classnames"][language]]
    return texts


# ---- rendering -------------------------------------------------------------------------------------------------

_SUPERSAMPLE = 2  # draw at twice the size and downsample: smooth edges at small image sizes


def _polygon(shape: str, cx: float, cy: float, radius: float, angle: float) -> list[tuple[float, float]]:
    if shape == "square":
        points = [(math.pi / 4 + k * math.pi / 2, radius) for k in range(4)]
    elif shape == "triangle":
        points = [(-math.pi / 2 + k * 2 * math.pi / 3, radius) for k in range(3)]
    elif shape == "star":
        points = [(-math.pi / 2 + k * math.pi / 5, radius if k % 2 == 0 else radius * 0.45) for k in range(10)]
    else:  # cross: a plus sign with arms a third of its width
        arm = radius * 0.35
        corners = [(arm, radius), (arm, arm), (radius, arm), (radius, -arm), (arm, -arm), (arm, -radius)]
        corners += [(-x, -y) for x, y in corners]
        points = [(math.atan2(y, x), math.hypot(x, y)) for x, y in corners]
    return [(cx + r * math.cos(a + angle), cy + r * math.sin(a + angle)) for a, r in points]


def _background(rng: np.random.Generator, tone: str, size: int) -> np.ndarray:
    base = rng.uniform(165, 230) if tone == "light" else rng.uniform(25, 85)
    pixels = np.full((size, size, 3), base, dtype=np.float32) + rng.uniform(-12, 12, size=3)
    style = rng.integers(3)
    if style == 1:  # gradient in a random direction
        angle = rng.uniform(0, 2 * math.pi)
        ramp = np.linspace(-1, 1, size, dtype=np.float32)
        pixels += (np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None])[..., None] * rng.uniform(10, 30)
    elif style == 2:  # texture: smooth blotches from upsampled coarse noise
        coarse = PIL.Image.fromarray(rng.normal(0, 14, size=(8, 8)).astype(np.float32), mode="F")
        pixels += np.asarray(coarse.resize((size, size), PIL.Image.BILINEAR))[..., None]
    return pixels


def render_scene(scene: Scene, rng: np.random.Generator, image_size: int) -> PIL.Image.Image:
    """Draw ``scene`` as an RGB image of ``image_size`` px, with random background, sizes, offsets and noise."""
    size = image_size * _SUPERSAMPLE
    canvas = PIL.Image.fromarray(
        np.clip(_background(rng, BACKGROUNDS[scene.background], size), 0, 255).astype(np.uint8)
    )
    draw = PIL.ImageDraw.Draw(canvas)
    cell = size / 3
    colour = np.clip(np.array(COLOURS[scene.colour].rgb) + rng.integers(-18, 19, size=3), 0, 255)
    fill = tuple(int(v) for v in colour)
    shape = SHAPES[scene.shape].en
    # Objects share the position's column, one per vertical third, so they never overlap.
    rows = rng.choice(3, size=COUNTS[scene.count], replace=False)
    for row in rows:
        diameter = cell * rng.uniform(0.55, 0.9)
        radius = diameter / 2
        cx = scene.position * cell + rng.uniform(radius, cell - radius)
        cy = row * cell + rng.uniform(radius, cell - radius)
        if shape == "circle":
            draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=fill)
        else:
            draw.polygon(_polygon(shape, cx, cy, radius, rng.uniform(-0.35, 0.35)), fill=fill)
    image = np.asarray(canvas.reduce(_SUPERSAMPLE), dtype=np.float32)
    image = image + rng.normal(0, rng.uniform(3, 10), size=image.shape)
    return PIL.Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


# ---- splits ----------------------------------------------------------------------------------------------------

# The caption columns of a training split's metadata.jsonl, by language.
_CAPTIONS = {"en": "caption_en", "zh": "caption_zh"}
_SPLIT_CODES = {"train": 0, "eval": 1, "eval_unseen": 2, "retrieval": 3, "corpus": 4}
TRAINING_SPLITS = ("train", "corpus")


def _sample_scene(rng: np.random.Generator, split: str, excluded_colours: frozenset[int] = frozenset()) -> Scene:
    """A scene of `split`: training splits never hold a held-out composition, `eval_unseen` only those; colours in
    `excluded_colours` are redrawn."""
    held_out = set(HELD_OUT_COMPOSITIONS)
    while True:
        scene = Scene(
            colour=int(rng.integers(len(COLOURS))),
            shape=int(rng.integers(len(SHAPES))),
            count=int(rng.integers(len(COUNTS))),
            position=int(rng.integers(len(POSITIONS))),
            background=int(rng.integers(len(BACKGROUNDS))),
        )
        unseen = scene.composition in held_out
        if split in TRAINING_SPLITS and unseen or split == "eval_unseen" and not unseen:
            continue  # rejection sampling keeps the other attributes uniform
        if scene.colour in excluded_colours:
            continue
        return scene


def _encode(image: PIL.Image.Image, image_format: str) -> bytes:
    buffer = io.BytesIO()
    if image_format == "jpeg":
        image.save(buffer, format="JPEG", quality=90)
    else:
        image.save(buffer, format="PNG", compress_level=1)  # fast; the images are small
    return buffer.getvalue()


@dataclass
class _Sample:
    key: str
    image: bytes
    scene: Scene
    captions: dict[str, list[str]]


def _samples(
    seed: int,
    split: str,
    count: int,
    image_size: int,
    image_format: str,
    captions_per_language: int,
    excluded_colours: frozenset[int] = frozenset(),
) -> Iterator[_Sample]:
    for index in range(count):
        # One generator per image: any image can be regenerated alone, and splits never share random streams.
        rng = np.random.default_rng([seed, _SPLIT_CODES[split], index])
        scene = _sample_scene(rng, split, excluded_colours)
        image = render_scene(scene, rng, image_size)
        captions = {
            language: [scene_caption(scene, language, int(p)) for p in rng.permutation(len(phrasings))]
            for language, phrasings in (("en", EN_CAPTIONS), ("zh", ZH_CAPTIONS))
        }
        captions = {language: texts[:captions_per_language] for language, texts in captions.items()}
        yield _Sample(f"{index:06d}", _encode(image, image_format), scene, captions)


def _write_imagefolder(
    folder: Path,
    samples: Iterator[_Sample],
    extension: str,
    caption_lists: bool,
    tar_shards: tuple[Path, int] | None = None,
) -> list[Path]:
    """Write images + metadata.jsonl (and, for training, the same samples as webdataset shards)."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    shards: list[Path] = []
    tar = None
    with open(folder / "metadata.jsonl", "w", encoding="utf-8") as metadata:
        for number, sample in enumerate(samples):
            file_name = f"images/{sample.key}.{extension}"
            (folder / file_name).write_bytes(sample.image)
            row = {"file_name": file_name}
            if caption_lists:
                row.update(captions_en=sample.captions["en"], captions_zh=sample.captions["zh"])
            else:
                row.update(caption_en=sample.captions["en"][0], caption_zh=sample.captions["zh"][0])
            row.update(sample.scene.labels)
            metadata.write(json.dumps(row, ensure_ascii=False) + "\n")
            if tar_shards is not None:
                shard_dir, shard_size = tar_shards
                if number % shard_size == 0:
                    if tar is not None:
                        tar.close()
                    shards.append(shard_dir / f"shard-{len(shards):05d}.tar")
                    tar = tarfile.open(shards[-1], "w", format=tarfile.USTAR_FORMAT)
                labels = json.dumps(sample.scene.labels).encode()
                for name, data in (
                    (f"{sample.key}.{extension}", sample.image),
                    (f"{sample.key}.en.txt", row["caption_en"].encode()),
                    (f"{sample.key}.zh.txt", row["caption_zh"].encode()),
                    (f"{sample.key}.json", labels),
                ):
                    info = tarfile.TarInfo(name)
                    info.size, info.mtime = len(data), 0  # fixed mtime: shards are byte-identical across runs
                    tar.addfile(info, io.BytesIO(data))
    if tar is not None:
        tar.close()
    return shards


@dataclass
class BenchmarkPaths:
    """Where ``generate_benchmark`` wrote each part."""

    root: Path
    train_dir: Path  # imagefolder: images/ + metadata.jsonl (caption_en, caption_zh, task labels)
    train_shards: list[Path]  # the same training samples as webdataset shards (png, en.txt, zh.txt, json)
    eval_dir: Path  # imagefolder with one label column per task, and tasks.json
    eval_unseen_dir: Path  # held-out colour+shape compositions only, and its own tasks.json
    retrieval_dir: Path  # imagefolder with captions_en / captions_zh lists
    tasks_file: Path  # eval_dir / "tasks.json"
    train_spec_imagefolder: Path  # data spec (YAML) reading train_dir
    train_spec_webdataset: Path  # data spec (YAML) reading train_shards
    # The scarce-pairs regime (``n_corpus > 0``; otherwise None / empty):
    corpus_dir: Path | None = None  # imagefolder: the larger pair corpus (images/ + metadata.jsonl)
    corpus_spec: Path | None = None  # data spec (YAML): the corpus as image-text pairs
    unpaired_images_spec: Path | None = None  # data spec: images of the corpus's first half, no captions
    unpaired_texts_spec: Path | None = None  # data spec: captions of the corpus's second half, no images
    pair_subset_specs: dict[float, Path] = field(default_factory=dict)  # fraction -> first fraction of train_dir


def pair_subset_name(fraction: float) -> str:
    """File stem of the pair subset of `fraction` (0.2 -> ``train_pairs_20pct``)."""
    return f"train_pairs_{100 * fraction:g}pct"


def pair_subset_size(fraction: float, n_pairs: int) -> int:
    """Pairs in the subset of `fraction` of `n_pairs` (at least one)."""
    return max(1, round(fraction * n_pairs))


def generate_benchmark(
    out_dir: str | Path,
    seed: int = 0,
    n_train: int = 2000,
    n_eval: int = 500,
    image_size: int = 64,
    n_retrieval: int = 200,
    captions_per_image: int = 3,
    shard_size: int = 500,
    image_format: Literal["png", "jpeg"] = "png",
    n_corpus: int = 0,
    corpus_only_colours: Sequence[str] = (),
    pair_fractions: Sequence[float] = (),
) -> BenchmarkPaths:
    """Render the bilingual benchmark into ``out_dir``; the same arguments give byte-identical files.

    Args:
        n_train: training images (held-out compositions excluded), written as imagefolder and as shards: the
            student's image-text pairs.
        n_eval: evaluation images over all compositions; ``eval_unseen`` gets ``n_eval // 2`` held-out ones.
        image_size: square image side in px.
        n_retrieval: retrieval images, each with ``captions_per_image`` captions per language.
        shard_size: samples per webdataset shard.
        image_format: "png" (lossless, the default) or "jpeg" (smaller, as web corpora ship).
        n_corpus: pairs of the larger corpus (every colour; held-out compositions excluded), a teacher's pre-training
            data; its first half also gives the unpaired images and its second half the unpaired texts. 0: none.
        corpus_only_colours: colours (English names) the corpus shows but the training pairs never do.
        pair_fractions: write a data spec of the first ``fraction`` of the training pairs for each (nested subsets).
    """
    if image_format not in ("png", "jpeg"):
        raise ValueError(f"image_format must be 'png' or 'jpeg', got {image_format!r}")
    if not 1 <= captions_per_image <= min(len(EN_CAPTIONS), len(ZH_CAPTIONS)):
        raise ValueError(f"captions_per_image must be in 1..{min(len(EN_CAPTIONS), len(ZH_CAPTIONS))}")
    colour_index = {colour.en: index for index, colour in enumerate(COLOURS)}
    unknown = sorted(set(corpus_only_colours) - set(colour_index))
    if unknown:
        raise ValueError(f"corpus_only_colours {unknown} are not benchmark colours; choose from {sorted(colour_index)}")
    if corpus_only_colours and n_corpus < 1:
        raise ValueError("corpus_only_colours needs a corpus (n_corpus > 0) that shows them")
    if corpus_only_colours and len(set(corpus_only_colours)) >= len(COLOURS):
        raise ValueError("corpus_only_colours must leave the training pairs at least one colour")
    if n_corpus == 1:
        raise ValueError("n_corpus must be 0 (no corpus) or at least 2 (one unpaired image and one unpaired text)")
    bad_fractions = [fraction for fraction in pair_fractions if not 0 < fraction <= 1]
    if bad_fractions:
        raise ValueError(f"pair_fractions must lie in (0, 1], got {bad_fractions}")
    excluded = frozenset(colour_index[name] for name in corpus_only_colours)
    root = Path(out_dir)
    extension = "jpg" if image_format == "jpeg" else "png"
    paths = BenchmarkPaths(
        root=root,
        train_dir=root / "train",
        train_shards=[],
        eval_dir=root / "eval",
        eval_unseen_dir=root / "eval_unseen",
        retrieval_dir=root / "retrieval",
        tasks_file=root / "eval" / "tasks.json",
        train_spec_imagefolder=root / "train_imagefolder.yaml",
        train_spec_webdataset=root / "train_webdataset.yaml",
    )
    (root / "train_shards").mkdir(parents=True, exist_ok=True)

    def samples(split: str, count: int, captions: int = 1, excluded_colours: frozenset[int] = frozenset()):
        return _samples(seed, split, count, image_size, image_format, captions, excluded_colours)

    paths.train_shards = _write_imagefolder(
        paths.train_dir, samples("train", n_train, excluded_colours=excluded), extension, False,
        (root / "train_shards", shard_size),
    )  # fmt: skip
    _write_imagefolder(paths.eval_dir, samples("eval", n_eval), extension, False)
    _write_imagefolder(paths.eval_unseen_dir, samples("eval_unseen", max(n_eval // 2, 1)), extension, False)
    _write_imagefolder(paths.retrieval_dir, samples("retrieval", n_retrieval, captions_per_image), extension, True)
    _write_json(paths.tasks_file, benchmark_tasks())
    _write_json(paths.eval_unseen_dir / "tasks.json", unseen_composition_tasks())

    DataSpec(sources=[SourceSpec(name="scenes", kind="imagefolder", path="train", caption_columns=_CAPTIONS)]).save(
        paths.train_spec_imagefolder
    )
    shard_names = [str(shard.relative_to(root)) for shard in paths.train_shards]
    DataSpec(
        sources=[
            SourceSpec(
                name="scenes",
                kind="webdataset",
                data_files=shard_names,
                image_column=extension,
                caption_columns={"en": "en.txt", "zh": "zh.txt"},
            )
        ]
    ).save(paths.train_spec_webdataset)
    if n_corpus:
        _write_corpus_regime(paths, samples("corpus", n_corpus), extension)
    for fraction in pair_fractions:
        paths.pair_subset_specs[fraction] = _write_pair_subset(paths, fraction, n_train)
    _write_json(
        root / "benchmark.json",
        {
            "seed": seed,
            "n_train": n_train,
            "n_eval": n_eval,
            "n_eval_unseen": max(n_eval // 2, 1),
            "n_retrieval": n_retrieval,
            "image_size": image_size,
            "image_format": image_format,
            "held_out_compositions": [list(pair) for pair in HELD_OUT_COMPOSITIONS],
            "n_corpus": n_corpus,
            "corpus_only_colours": list(corpus_only_colours),
            "pair_subsets": {
                pair_subset_name(f): pair_subset_size(f, n_train) for f in sorted(paths.pair_subset_specs)
            },
        },
    )
    return paths



def _write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    with open(path, "w", encoding="utf-8") as file:
        for row in rows:
            file.write(json.dumps(row, ensure_ascii=False) + "\n")


def _write_corpus_regime(paths: BenchmarkPaths, samples: Iterator[_Sample], extension: str) -> None:
    """The corpus as an imagefolder with a pair spec, and the unpaired specs: images of its first half (no captions),
    captions of its second half (no images), so that no unpaired image meets its own caption."""
    root = paths.root
    paths.corpus_dir = root / "corpus"
    _write_imagefolder(paths.corpus_dir, samples, extension, False)
    rows = _metadata_rows(paths.corpus_dir)
    half = len(rows) // 2
    unpaired = root / "unpaired"
    unpaired.mkdir(exist_ok=True)
    _write_jsonl(unpaired / "images.jsonl", ({"file_name": row["file_name"]} for row in rows[:half]))
    _write_jsonl(unpaired / "texts.jsonl", ({key: row[key] for key in _CAPTIONS.values()} for row in rows[half:]))
    paths.corpus_spec = DataSpec(
        sources=[SourceSpec(name="corpus", kind="json", data_files=["corpus/metadata.jsonl"], image_column="file_name",
                            image_root="corpus", caption_columns=_CAPTIONS)]
    ).save(root / "corpus_pairs.yaml")  # fmt: skip
    paths.unpaired_images_spec = DataSpec(
        sources=[SourceSpec(name="unpaired_images", kind="json", data_files=["unpaired/images.jsonl"],
                            image_column="file_name", image_root="corpus")]
    ).save(root / "unpaired_images.yaml")  # fmt: skip
    paths.unpaired_texts_spec = DataSpec(
        sources=[SourceSpec(name="unpaired_texts", kind="json", data_files=["unpaired/texts.jsonl"], image_column=None,
                            caption_columns=_CAPTIONS)]
    ).save(root / "unpaired_texts.yaml")  # fmt: skip


def _write_pair_subset(paths: BenchmarkPaths, fraction: float, n_pairs: int) -> Path:
    """A JSON-lines manifest of the first `fraction` of the training pairs and its data spec; returns the spec."""
    name = pair_subset_name(fraction)
    folder = paths.root / "pair_subsets"
    folder.mkdir(exist_ok=True)
    rows = _metadata_rows(paths.train_dir)[: pair_subset_size(fraction, n_pairs)]
    columns = ("file_name", *_CAPTIONS.values())
    _write_jsonl(folder / f"{name}.jsonl", ({key: row[key] for key in columns} for row in rows))
    return DataSpec(
        sources=[SourceSpec(name=name, kind="json", data_files=[f"pair_subsets/{name}.jsonl"], image_column="file_name",
                            image_root="train", caption_columns=_CAPTIONS)]
    ).save(paths.root / f"{name}.yaml")  # fmt: skip


def _metadata_rows(folder: Path) -> list[dict]:
    with open(folder / "metadata.jsonl", encoding="utf-8") as metadata:
        return [json.loads(line) for line in metadata]


def _write_json(path: Path, content) -> None:
    path.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
