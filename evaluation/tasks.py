"""Evaluation tasks and the on-disk formats they load from.

A :class:`ZeroShotTask` is images (a ``datasets.Dataset`` with an ``image`` column), labels, and class names + templates
per language. Sources:

* the built-in benchmark: an imagefolder (``metadata.jsonl`` with ``file_name`` and one label column per task) plus a
  ``tasks.json`` describing each task (:func:`load_builtin_benchmark`);
* an ELEVATER / ``vision-datasets`` dataset folder: an index file in IRIS text format (``<image> <id>[,<id>...]`` per
  line) or COCO JSON, images as files or ``archive.zip@member`` entries (:func:`load_elevater_task`);
* an image folder with one sub-folder per class, including Chinese-CLIP's layout ``<root>/test/000/...`` with a
  ``label_cn.txt`` (:func:`load_image_folder_task`);
* a Hub dataset with an image and a label column (:func:`load_hub_task`).

A :class:`RetrievalTask` is images with several captions per image and language (:func:`load_retrieval_split`).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np

from dcclip.evaluation.metrics import ELEVATER_METRICS, MULTILABEL_METRICS
from dcclip.evaluation.prompts import LANGUAGES, ClassPrompts, PromptCatalog, classnames_source, read_classnames_file

IMAGE_COLUMN = "image"
# Index files the ELEVATER datasets use for their test split (vision_datasets.json), tried in this order.
ELEVATER_TEST_INDEX_NAMES = ("test.txt", "test_ic.txt", "test_images.txt", "test.json", "test_coco.json", "test_meta.json")
ELEVATER_LABELMAP_NAMES = ("labels.txt", "labelmap.txt")


@dataclass
class ZeroShotTask:
    """Images, labels and per-language prompts of one zero-shot classification task.

    Attributes:
        name: task name (ELEVATER datasets keep their ELEVATER key).
        images: a ``datasets.Dataset`` with an ``image`` column, one row per sample.
        labels: class ids (N,), or multi-hot (N, C) for multi-label tasks.
        prompts: language -> class names and templates; every language has the same number of classes.
        metric: one of ``evaluation.metrics.ELEVATER_METRICS``.
        description: free text for reports.
    """

    name: str
    images: datasets.Dataset
    labels: np.ndarray
    prompts: dict[str, ClassPrompts]
    metric: str = "accuracy"
    description: str = ""

    def __post_init__(self) -> None:
        if self.metric not in ELEVATER_METRICS:
            raise ValueError(f"task {self.name!r}: unknown metric {self.metric!r}; expected one of {ELEVATER_METRICS}")
        if len(self.images) != len(self.labels):
            raise ValueError(f"task {self.name!r}: {len(self.images)} images but {len(self.labels)} labels")
        if not self.prompts:
            raise ValueError(f"task {self.name!r}: no language has class names")
        counts = {language: len(p.classnames) for language, p in self.prompts.items()}
        if len(set(counts.values())) != 1:
            raise ValueError(f"task {self.name!r}: languages disagree on the number of classes: {counts}")
        num_classes = self.num_classes
        multilabel = self.metric in MULTILABEL_METRICS
        if multilabel and (self.labels.ndim != 2 or self.labels.shape[1] != num_classes):
            raise ValueError(f"task {self.name!r}: multi-label labels must be multi-hot of shape (N, {num_classes})")
        if not multilabel:
            if self.labels.ndim != 1:
                raise ValueError(f"task {self.name!r}: expected one class id per image, got labels {self.labels.shape}")
            if self.labels.size and (self.labels.min() < 0 or self.labels.max() >= num_classes):
                raise ValueError(
                    f"task {self.name!r}: label ids span [{self.labels.min()}, {self.labels.max()}] but there are "
                    f"{num_classes} class names"
                )

    @property
    def num_classes(self) -> int:
        return len(next(iter(self.prompts.values())).classnames)

    @property
    def languages(self) -> list[str]:
        return list(self.prompts)


@dataclass
class RetrievalTask:
    """Images with several captions each, per language (Flickr30k-CN / COCO-CN style).

    Attributes:
        name: task name.
        images: a ``datasets.Dataset`` with an ``image`` column.
        captions: language -> one list of captions per image (an empty list: the image has none in that language).
    """

    name: str
    images: datasets.Dataset
    captions: dict[str, list[list[str]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for language, per_image in self.captions.items():
            if len(per_image) != len(self.images):
                raise ValueError(
                    f"retrieval task {self.name!r}: {len(per_image)} caption lists in {language!r} for "
                    f"{len(self.images)} images"
                )

    @property
    def languages(self) -> list[str]:
        return list(self.captions)


def resolve_prompts(
    catalog: PromptCatalog, name: str, languages: Sequence[str], english_classnames: list[str] | None = None
) -> dict[str, ClassPrompts]:
    """Class names and templates of task ``name`` for each language (see :meth:`PromptCatalog.lookup`).

    ``english_classnames`` (a dataset's own label names) serve English only when no source has names; other languages
    never fall back to them, so a missing Chinese list is an error rather than English text in a Chinese prompt.
    """
    return {
        language: catalog.lookup(name, language, english_classnames if language == "en" else None)
        for language in languages
    }


# --- built-in benchmark ---------------------------------------------------------------------------------------------


def load_imagefolder(root: str | Path) -> datasets.Dataset:
    """A local imagefolder (images + optional ``metadata.jsonl``) as one ``datasets.Dataset``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    loaded = datasets.load_dataset("imagefolder", data_dir=str(root))
    if len(loaded) != 1:
        raise ValueError(f"{root}: expected one split, found {sorted(loaded)}; point at the split's folder")
    return next(iter(loaded.values()))


def load_builtin_benchmark(
    root: str | Path, languages: Sequence[str] = LANGUAGES, task_names: list[str] | None = None
) -> list[ZeroShotTask]:
    """Every task (or those in ``task_names``) of the built-in benchmark at ``root``.

    ``root`` holds an imagefolder with a ``metadata.jsonl`` (``file_name`` plus one label column per task; a label is
    a class id or an English class name) and ``tasks.json``: ``{task: {"label_column", "classnames": {lang: [...]},
    "templates": {lang: [...]}, "metric", "description"}}``.
    """
    root = Path(root)
    spec_path = root / "tasks.json"
    if not spec_path.is_file():
        raise FileNotFoundError(f"{root} is not a built-in benchmark: {spec_path} is missing")
    with spec_path.open(encoding="utf-8") as handle:
        specs = json.load(handle)
    unknown = sorted(set(task_names or []) - set(specs))
    if unknown:
        raise KeyError(f"{spec_path} has no tasks {unknown}; it has {sorted(specs)}")
    images = load_imagefolder(root)
    tasks = []
    for name, spec in specs.items():
        if task_names is not None and name not in task_names:
            continue
        missing_languages = [
            language
            for language in languages
            if language not in spec.get("classnames", {}) or language not in spec.get("templates", {})
        ]
        if missing_languages:
            raise KeyError(f"{spec_path}: task {name!r} lacks class names or templates in {missing_languages}")
        prompts = {
            language: ClassPrompts(list(spec["classnames"][language]), list(spec["templates"][language]))
            for language in languages
        }
        column = spec["label_column"]
        if column not in images.column_names:
            raise KeyError(f"{root}/metadata.jsonl has no label column {column!r} for task {name!r}")
        labels = _label_ids(images[column], spec["classnames"]["en"], f"task {name!r}")
        tasks.append(
            ZeroShotTask(
                name=name,
                images=images.select_columns([IMAGE_COLUMN]),
                labels=labels,
                prompts=prompts,
                metric=spec.get("metric", "accuracy"),
                description=spec.get("description", ""),
            )
        )
    return tasks


def load_retrieval_split(root: str | Path, name: str = "retrieval", languages: Sequence[str] = LANGUAGES) -> RetrievalTask:
    """An imagefolder whose ``metadata.jsonl`` has list columns ``captions_<lang>`` (e.g. ``captions_en``)."""
    images = load_imagefolder(root)
    captions = {}
    for language in languages:
        column = f"captions_{language}"
        if column not in images.column_names:
            raise KeyError(f"{root}: the retrieval split has no {column!r} column; columns: {images.column_names}")
        captions[language] = [list(entry or []) for entry in images[column]]
    return RetrievalTask(name=name, images=images.select_columns([IMAGE_COLUMN]), captions=captions)


# --- ELEVATER / vision-datasets --------------------------------------------------------------------------------------


def load_elevater_task(
    dataset_dir: str | Path,
    name: str,
    catalog: PromptCatalog,
    languages: Sequence[str] = LANGUAGES,
    index_file: str | None = None,
    metric: str | None = None,
) -> ZeroShotTask:
    """One ELEVATER dataset's test split from its ``vision-datasets`` folder.

    Args:
        dataset_dir: the dataset's folder (index files, label map, image zips or folders).
        name: the ELEVATER dataset key (e.g. ``"cifar-10"``), used to look up class names, templates and metric.
        catalog: class names and templates; a ``label_cn.txt`` in ``dataset_dir`` supplies the Chinese names first,
            then ``labels.txt``/``labelmap.txt`` or the COCO categories the English names when nobody else has them.
        languages: languages to prepare.
        index_file: index file name; by default the first of :data:`ELEVATER_TEST_INDEX_NAMES` that exists.
        metric: overrides the catalog's metric for ``name``.
    """
    dataset_dir = Path(dataset_dir)
    index_path = dataset_dir / index_file if index_file else _first_existing(dataset_dir, ELEVATER_TEST_INDEX_NAMES)
    if index_path is None or not index_path.is_file():
        raise FileNotFoundError(
            f"{dataset_dir}: no index file ({index_file or ' / '.join(ELEVATER_TEST_INDEX_NAMES)}) for dataset {name!r}"
        )
    metric = metric or catalog.metric(name)
    multilabel = metric in MULTILABEL_METRICS
    if index_path.suffix == ".json":
        image_paths, label_lists, dataset_classnames = _read_coco_index(index_path)
    else:
        image_paths, label_lists = _read_iris_index(index_path)
        labelmap = _first_existing(dataset_dir, ELEVATER_LABELMAP_NAMES)
        dataset_classnames = read_classnames_file(labelmap) if labelmap else None
    catalog = _with_label_cn(catalog, dataset_dir, name)
    prompts = resolve_prompts(catalog, name, languages, english_classnames=dataset_classnames)
    num_classes = len(next(iter(prompts.values())).classnames)
    if dataset_classnames is not None and len(dataset_classnames) != num_classes:
        raise ValueError(
            f"{dataset_dir}: the dataset defines {len(dataset_classnames)} classes but the class names for {name!r} "
            f"list {num_classes}; is {name!r} the right dataset key?"
        )
    out_of_range = [ids for ids in label_lists if min(ids) < 0 or max(ids) >= num_classes]
    if out_of_range:
        raise ValueError(f"{index_path}: label ids {out_of_range[0]} outside [0, {num_classes - 1}] for {name!r}")
    if multilabel:
        labels = np.zeros((len(label_lists), num_classes), dtype=np.int64)
        for row, ids in enumerate(label_lists):
            labels[row, ids] = 1
    else:
        several = [row for row, ids in enumerate(label_lists) if len(ids) != 1]
        if several:
            raise ValueError(
                f"{index_path}: {len(several)} images (first: entry {several[0] + 1}) have several labels, but metric "
                f"{metric!r} is single-label"
            )
        labels = np.array([ids[0] for ids in label_lists], dtype=np.int64)
    resolved = [_resolve_image_path(dataset_dir, path) for path in image_paths]
    _check_images_exist(resolved, index_path)
    images = datasets.Dataset.from_dict({IMAGE_COLUMN: resolved}).cast_column(IMAGE_COLUMN, datasets.Image())
    return ZeroShotTask(name=name, images=images, labels=labels, prompts=prompts, metric=metric)


def _read_iris_index(index_path: Path) -> tuple[list[str], list[list[int]]]:
    paths, labels = [], []
    with index_path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.strip()
            if not line:
                continue
            image, _, ids = line.rpartition(" ")
            try:
                parsed = [int(i) for i in ids.split(",")] if image else []
            except ValueError:
                parsed = []
            if not image or not parsed:
                raise ValueError(f"{index_path}:{number}: expected '<image path> <id>[,<id>...]', got {line!r}")
            paths.append(image)
            labels.append(parsed)
    if not paths:
        raise ValueError(f"{index_path}: the index lists no images")
    return paths, labels


def _read_coco_index(index_path: Path) -> tuple[list[str], list[list[int]], list[str] | None]:
    with index_path.open(encoding="utf-8") as handle:
        coco = json.load(handle)
    for key in ("images", "annotations"):
        if key not in coco:
            raise ValueError(f"{index_path}: a COCO index needs an {key!r} list")
    categories = sorted(coco.get("categories", []), key=lambda c: c["id"])
    # vision-datasets numbers COCO categories from 1; the label ids of the class lists start at 0.
    first_id = categories[0]["id"] if categories else min(a["category_id"] for a in coco["annotations"])
    labels_by_image: dict[int, list[int]] = {image["id"]: [] for image in coco["images"]}
    for annotation in coco["annotations"]:
        if annotation["image_id"] not in labels_by_image:
            raise ValueError(
                f"{index_path}: annotation {annotation.get('id')} points at unknown image {annotation['image_id']}"
            )
        labels_by_image[annotation["image_id"]].append(annotation["category_id"] - first_id)
    unlabelled = [image["file_name"] for image in coco["images"] if not labels_by_image[image["id"]]]
    if unlabelled:
        raise ValueError(f"{index_path}: {len(unlabelled)} images have no annotation (first: {unlabelled[0]})")
    paths = [_coco_file_name(image) for image in coco["images"]]
    classnames = [category["name"] for category in categories] or None
    return paths, [sorted(labels_by_image[image["id"]]) for image in coco["images"]], classnames


def _coco_file_name(image: dict) -> str:
    # Older vision-datasets files keep the archive in a separate "zip_file" field.
    if image.get("zip_file") and "@" not in image["file_name"]:
        return f"{image['zip_file']}@{image['file_name']}"
    return image["file_name"]


def _resolve_image_path(dataset_dir: Path, path: str) -> str:
    if path.startswith(("http://", "https://")):
        raise ValueError(f"image {path!r} is a URL; evaluation reads local files only (download the dataset first)")
    if "@" in path:
        archive, member = path.split("@", 1)
        archive_path = Path(archive) if Path(archive).is_absolute() else dataset_dir / archive
        return f"zip://{member}::{archive_path}"
    return str(Path(path) if Path(path).is_absolute() else dataset_dir / path)


def _check_images_exist(paths: list[str], index_path: Path) -> None:
    missing = []
    members_by_archive: dict[str, set[str]] = {}
    for path in paths:
        if path.startswith("zip://"):
            member, archive = path[len("zip://") :].split("::", 1)
            if archive not in members_by_archive:
                if not Path(archive).is_file():
                    raise FileNotFoundError(f"{index_path}: image archive {archive} does not exist")
                with zipfile.ZipFile(archive) as handle:
                    members_by_archive[archive] = set(handle.namelist())
            if member not in members_by_archive[archive]:
                missing.append(f"{archive}@{member}")
        elif not Path(path).is_file():
            missing.append(path)
    if missing:
        raise FileNotFoundError(f"{index_path}: {len(missing)} of {len(paths)} images are missing, e.g. {missing[:3]}")


# --- image folders and Hub datasets ----------------------------------------------------------------------------------


def load_image_folder_task(
    root: str | Path,
    name: str,
    catalog: PromptCatalog,
    languages: Sequence[str] = LANGUAGES,
    metric: str | None = None,
) -> ZeroShotTask:
    """A folder with one sub-folder of images per class.

    Sub-folders named by numbers (Chinese-CLIP: ``000``, ``001``, ...) are class ids; otherwise the sorted
    sub-folder names are the classes (ImageNet-style ``n01440764``... folders sort into the standard order) and serve
    as English names when no other source has names. A ``test/`` sub-folder, if present, holds the images, and a
    ``label_cn.txt`` beside it the Chinese class names.
    """
    root = Path(root)
    image_root = root / "test" if (root / "test").is_dir() else root
    images = load_imagefolder(image_root)
    if "label" not in images.column_names:
        raise ValueError(f"{image_root}: expected one sub-folder per class (no 'label' column was inferred)")
    folder_names = images.features["label"].names
    label_ids = np.array(images["label"], dtype=np.int64)
    folder_classnames: list[str] | None = folder_names
    if all(folder.isdigit() for folder in folder_names):
        label_ids = np.array([int(folder_names[i]) for i in label_ids], dtype=np.int64)
        folder_classnames = None
    catalog = _with_label_cn(catalog, root, name)
    prompts = resolve_prompts(catalog, name, languages, english_classnames=folder_classnames)
    return ZeroShotTask(
        name=name,
        images=images.select_columns([IMAGE_COLUMN]),
        labels=label_ids,
        prompts=prompts,
        metric=metric or catalog.metric(name),
    )


def load_hub_task(
    repo_id: str,
    name: str,
    catalog: PromptCatalog,
    languages: Sequence[str] = LANGUAGES,
    split: str = "test",
    image_column: str = "image",
    label_column: str = "label",
    metric: str | None = None,
) -> ZeroShotTask:
    """A Hub (or local ``datasets``-loadable) dataset with an image column and a class-id label column.

    English names default to the label column's ``ClassLabel`` names when no other source has names.
    """
    loaded = datasets.load_dataset(repo_id, split=split)
    for column in (image_column, label_column):
        if column not in loaded.column_names:
            raise KeyError(f"{repo_id} ({split}) has no column {column!r}; columns: {loaded.column_names}")
    feature = loaded.features[label_column]
    feature_names = feature.names if isinstance(feature, datasets.ClassLabel) else None
    prompts = resolve_prompts(catalog, name, languages, english_classnames=feature_names)
    images = loaded.select_columns([image_column])
    if image_column != IMAGE_COLUMN:
        images = images.rename_column(image_column, IMAGE_COLUMN)
    return ZeroShotTask(
        name=name,
        images=images,
        labels=np.array(loaded[label_column], dtype=np.int64),
        prompts=prompts,
        metric=metric or catalog.metric(name),
    )


def load_task_specs(path: str | Path, catalog: PromptCatalog, languages: Sequence[str] = LANGUAGES) -> list[ZeroShotTask]:
    """Tasks listed in a JSON file: a list of objects with ``name``, ``source`` (``elevater`` | ``imagefolder`` |
    ``hub``) and ``path``, optionally ``metric``, ``split``, ``index_file``, ``image_column``, ``label_column``, and
    ``classnames``: ``{lang: <class-name file>}`` (e.g. an ImageNet-1k name list or a ``label_cn.txt``).
    Relative paths are taken from the spec file's folder.
    """
    path = Path(path)
    with path.open(encoding="utf-8") as handle:
        specs = json.load(handle)
    if not isinstance(specs, list):
        raise ValueError(f"{path}: expected a list of task objects")
    tasks = []
    for spec in specs:
        missing = [key for key in ("name", "source", "path") if key not in spec]
        if missing:
            raise ValueError(f"{path}: task spec {spec} lacks {missing}")
        name, source = spec["name"], spec["source"]
        task_catalog = catalog
        for language, names_file in spec.get("classnames", {}).items():
            names = read_classnames_file(path.parent / names_file)
            task_catalog = task_catalog.prepended(classnames_source(name, language, names, str(names_file)))
        location = spec["path"] if source == "hub" else path.parent / spec["path"]
        if source == "elevater":
            task = load_elevater_task(location, name, task_catalog, languages, spec.get("index_file"), spec.get("metric"))
        elif source == "imagefolder":
            task = load_image_folder_task(location, name, task_catalog, languages, spec.get("metric"))
        elif source == "hub":
            task = load_hub_task(
                location,
                name,
                task_catalog,
                languages,
                split=spec.get("split", "test"),
                image_column=spec.get("image_column", "image"),
                label_column=spec.get("label_column", "label"),
                metric=spec.get("metric"),
            )
        else:
            raise ValueError(f"{path}: task {name!r} has unknown source {source!r} (elevater | imagefolder | hub)")
        tasks.append(task)
    return tasks


# --- helpers ---------------------------------------------------------------------------------------------------------


def _with_label_cn(catalog: PromptCatalog, folder: Path, name: str) -> PromptCatalog:
    label_cn = folder / "label_cn.txt"
    if not label_cn.is_file():
        return catalog
    return catalog.prepended(classnames_source(name, "zh", read_classnames_file(label_cn), str(label_cn)))


def _label_ids(values: list, english_names: list[str], context: str) -> np.ndarray:
    """Class ids from a label column holding ids or English class names."""
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=np.int64)
    index = {classname: i for i, classname in enumerate(english_names)}
    unknown = sorted({str(v) for v in values if v not in index})
    if unknown:
        raise ValueError(f"{context}: labels {unknown[:5]} are neither class ids nor English class names")
    return np.array([index[v] for v in values], dtype=np.int64)


def _first_existing(folder: Path, names: tuple[str, ...]) -> Path | None:
    for candidate in names:
        if (folder / candidate).is_file():
            return folder / candidate
    return None
