"""Task loading from each on-disk format: built-in benchmark, ELEVATER (IRIS text / COCO JSON, zipped images),
Chinese-CLIP / ImageNet-style image folders, datasets-loadable (Hub) datasets, and task-spec files."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from dcclip.evaluation.builtin_prompts import BUILTIN_PROMPTS
from dcclip.evaluation.prompts import default_catalog
from dcclip.evaluation.tasks import (
    load_builtin_benchmark,
    load_elevater_task,
    load_hub_task,
    load_image_folder_task,
    load_retrieval_split,
    load_task_specs,
)

COLOR_NAMES = ["red", "blue", "green"]


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_zipped_images(archive: Path, members: list[str], scene) -> None:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as handle:
        for index, member in enumerate(members):
            handle.writestr(member, png_bytes(scene(COLOR_NAMES[index % 3], "circle", seed=index)))


def test_builtin_benchmark_reads_id_and_name_labels(builtin_benchmark_dir):
    tasks = {task.name: task for task in load_builtin_benchmark(builtin_benchmark_dir)}
    color, shape = tasks["color"], tasks["shape"]
    np.testing.assert_array_equal(color.labels, [0, 1, 2] * 4)
    np.testing.assert_array_equal(shape.labels, [0] * 3 + [1] * 3 + [2] * 3 + [0] * 3)  # from English names
    assert shape.metric == "mean-per-class" and shape.description == "which shape"
    assert color.prompts["zh"].classnames == ["红色", "蓝色", "绿色"]
    assert color.images[0]["image"].size == (40, 40)


def test_builtin_benchmark_names_unknown_tasks(builtin_benchmark_dir):
    with pytest.raises(KeyError, match="no tasks \\['colour'\\]"):
        load_builtin_benchmark(builtin_benchmark_dir, task_names=["colour"])


def test_retrieval_split_keeps_caption_lists_per_language(retrieval_dir):
    task = load_retrieval_split(retrieval_dir, "pairs")
    assert len(task.images) == 6
    assert task.captions["en"][0] == ["a photo of a red circle", "a red circle"]
    assert task.captions["zh"][0][1] == "红色的圆形"


def test_elevater_iris_index_with_zipped_images_and_label_cn(tmp_path, scene):
    members = [f"images/{i}.png" for i in range(6)]
    write_zipped_images(tmp_path / "test.zip", members, scene)
    (tmp_path / "test.txt").write_text("".join(f"test.zip@{m} {i % 3}\n" for i, m in enumerate(members)), encoding="utf-8")
    names_zh = ["零", "一", "二", "三", "四", "五", "六", "七", "八", "九"]
    (tmp_path / "label_cn.txt").write_text("\n".join(names_zh) + "\n", encoding="utf-8")
    task = load_elevater_task(tmp_path, "cifar-10", default_catalog())
    np.testing.assert_array_equal(task.labels, [0, 1, 2, 0, 1, 2])
    assert task.metric == "accuracy"
    assert task.prompts["zh"].classnames == names_zh  # label_cn.txt before the built-in list
    assert task.prompts["en"].classnames == BUILTIN_PROMPTS["cifar-10"]["en"]["classnames"]
    assert task.images[5]["image"].getpixel((20, 20)) == (30, 180, 30)  # image 5 is a green circle


def test_elevater_multilabel_index_becomes_multi_hot(tmp_path, scene):
    members = ["a.png", "b.png"]
    write_zipped_images(tmp_path / "test.zip", members, scene)
    (tmp_path / "test_ic.txt").write_text("test.zip@a.png 0,14\ntest.zip@b.png 6\n", encoding="utf-8")
    task = load_elevater_task(tmp_path, "voc-2007-classification", default_catalog())
    assert task.metric == "11point_mAP"
    assert task.labels.shape == (2, 20)
    assert np.flatnonzero(task.labels[0]).tolist() == [0, 14] and np.flatnonzero(task.labels[1]).tolist() == [6]


def test_elevater_coco_index_shifts_category_ids_and_names_english_classes(tmp_path, scene):
    (tmp_path / "images").mkdir()
    for index in range(3):
        scene(COLOR_NAMES[index], "square", seed=index).save(tmp_path / "images" / f"{index}.png")
    coco = {
        "images": [{"id": i + 1, "file_name": f"images/{i}.png"} for i in range(3)],
        "annotations": [{"id": i + 1, "image_id": i + 1, "category_id": [2, 1, 2][i]} for i in range(3)],
        "categories": [{"id": 1, "name": "near"}, {"id": 2, "name": "far"}],
    }
    (tmp_path / "test.json").write_text(json.dumps(coco), encoding="utf-8")
    task = load_elevater_task(tmp_path, "my-distance", default_catalog(), languages=["en"])
    np.testing.assert_array_equal(task.labels, [1, 0, 1])
    assert task.prompts["en"].classnames == ["near", "far"]  # the categories serve when no source knows the dataset


def test_elevater_missing_image_and_bad_line_are_named(tmp_path, scene):
    write_zipped_images(tmp_path / "test.zip", ["images/0.png"], scene)
    (tmp_path / "test.txt").write_text("test.zip@images/0.png 0\ntest.zip@images/9.png 1\n", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match="1 of 2 images are missing.*images/9.png"):
        load_elevater_task(tmp_path, "cifar-10", default_catalog())
    (tmp_path / "test.txt").write_text("test.zip@images/0.png zero\n", encoding="utf-8")
    with pytest.raises(ValueError, match="test.txt:1: expected"):
        load_elevater_task(tmp_path, "cifar-10", default_catalog())


def test_elevater_single_label_metric_rejects_several_labels(tmp_path, scene):
    write_zipped_images(tmp_path / "test.zip", ["0.png"], scene)
    (tmp_path / "test.txt").write_text("test.zip@0.png 0,1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="single-label"):
        load_elevater_task(tmp_path, "cifar-10", default_catalog())


def test_elevater_label_ids_beyond_the_class_list_are_named(tmp_path, scene):
    write_zipped_images(tmp_path / "test.zip", ["a.png"], scene)
    (tmp_path / "test.txt").write_text("test.zip@a.png 3,20\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"label ids \[3, 20\] outside \[0, 19\]"):
        load_elevater_task(tmp_path, "voc-2007-classification", default_catalog())


def test_elevater_label_map_of_another_size_flags_a_wrong_dataset_key(tmp_path, scene):
    write_zipped_images(tmp_path / "test.zip", ["a.png"], scene)
    (tmp_path / "test.txt").write_text("test.zip@a.png 0\n", encoding="utf-8")
    (tmp_path / "labels.txt").write_text("negative\npositive\n", encoding="utf-8")
    with pytest.raises(ValueError, match="defines 2 classes but the class names for 'cifar-10' list 10"):
        load_elevater_task(tmp_path, "cifar-10", default_catalog())


def test_chinese_clip_image_folder_with_numbered_class_folders(tmp_path, scene):
    for class_id in range(3):
        folder = tmp_path / "test" / f"{class_id:03d}"
        folder.mkdir(parents=True)
        for copy in range(2):
            scene(COLOR_NAMES[class_id], "triangle", seed=copy).save(folder / f"{copy}.png")
    (tmp_path / "label_cn.txt").write_text("红色\n蓝色\n绿色\n", encoding="utf-8")
    task = load_image_folder_task(tmp_path, "colors", default_catalog(), languages=["zh"])
    assert sorted(task.labels.tolist()) == [0, 0, 1, 1, 2, 2]
    for row, label in enumerate(task.labels):
        assert task.images[row]["image"].getpixel((20, 30)) == scene(COLOR_NAMES[label], "triangle").getpixel((20, 30))
    assert task.prompts["zh"].classnames == ["红色", "蓝色", "绿色"]
    with pytest.raises(KeyError, match="no 'en' class names for dataset 'colors'"):
        load_image_folder_task(tmp_path, "colors", default_catalog(), languages=["en"])


def test_imagenet_style_folder_with_a_user_class_name_file_via_task_spec(tmp_path, scene):
    for wnid, color in [("n001", "red"), ("n002", "blue")]:
        (tmp_path / "val" / wnid).mkdir(parents=True)
        scene(color, "circle").save(tmp_path / "val" / wnid / "x.png")
    (tmp_path / "classnames.json").write_text(json.dumps({"0": "red thing", "1": "blue thing"}), encoding="utf-8")
    (tmp_path / "classnames_zh.txt").write_text("红色的东西\n蓝色的东西\n", encoding="utf-8")
    spec = [
        {
            "name": "imagenet-1k",
            "source": "imagefolder",
            "path": "val",
            "classnames": {"en": "classnames.json", "zh": "classnames_zh.txt"},
        }
    ]
    (tmp_path / "tasks.json").write_text(json.dumps(spec), encoding="utf-8")
    (task,) = load_task_specs(tmp_path / "tasks.json", default_catalog())
    assert task.prompts["en"].classnames == ["red thing", "blue thing"]
    assert task.prompts["zh"].classnames == ["红色的东西", "蓝色的东西"]
    assert sorted(task.labels.tolist()) == [0, 1]


def test_hub_dataset_path_with_classlabel_names(tmp_path, scene):
    import datasets

    features = datasets.Features({"img": datasets.Image(), "fine_label": datasets.ClassLabel(names=["cat", "dog"])})
    table = datasets.Dataset.from_dict(
        {"img": [scene("red", "circle"), scene("blue", "square")], "fine_label": [1, 0]}, features=features
    )
    table.to_parquet(str(tmp_path / "test-00000.parquet"))
    # A test-*.parquet file is the "test" split, the default, as on the Hub.
    task = load_hub_task(
        str(tmp_path), "pets-mini", default_catalog(), ["en"], image_column="img", label_column="fine_label"
    )
    assert task.prompts["en"].classnames == ["cat", "dog"]
    np.testing.assert_array_equal(task.labels, [1, 0])
    assert task.images.column_names == ["image"]


def test_task_spec_names_unknown_source(tmp_path):
    (tmp_path / "tasks.json").write_text(json.dumps([{"name": "x", "source": "ftp", "path": "x"}]), encoding="utf-8")
    with pytest.raises(ValueError, match="unknown source 'ftp'"):
        load_task_specs(tmp_path / "tasks.json", default_catalog())
