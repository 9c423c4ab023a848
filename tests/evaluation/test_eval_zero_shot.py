"""ZeroShotClassifier and evaluate_zero_shot on our DCCLIPModel and transformers' AltCLIPModel, on built-in benchmark
data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dcclip.evaluation.metrics import compute_classification_metrics
from dcclip.evaluation.prompts import ClassPrompts
from dcclip.evaluation.tasks import ZeroShotTask, load_builtin_benchmark
from dcclip.evaluation.zero_shot import ZeroShotClassifier, evaluate_zero_shot, score_zero_shot

PROMPTS = ClassPrompts(["red circle", "blue square", "green triangle"], ["a photo of a {}", "一张{}的照片"])


@pytest.fixture(params=["dcclip", "altclip"])
def model_and_processor(request, make_tiny_model, tiny_processor, tiny_altclip):
    """Our student and the AltCLIP teacher (both return `BaseModelOutputWithPooling` from get_*_features)."""
    if request.param == "dcclip":
        return make_tiny_model("tiny"), tiny_processor
    return tiny_altclip


def reference_class_embeddings(model, processor, prompts: ClassPrompts) -> torch.Tensor:
    """Per class: mean of the unit prompt embeddings, normalised; computed one class at a time, straight from the model."""
    rows = []
    for classname in prompts.classnames:
        encoded = processor(text=prompts.prompts_for(classname), return_tensors="pt", padding=True)
        with torch.no_grad():
            output = model.get_text_features(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"])
        rows.append(F.normalize(F.normalize(output.pooler_output, dim=-1).mean(dim=0), dim=0))
    return torch.stack(rows)


def test_class_embeddings_are_normalised_means_of_prompt_embeddings(model_and_processor):
    model, processor = model_and_processor
    classifier = ZeroShotClassifier(model, processor, PROMPTS, text_batch_size=4)  # batches cross class boundaries
    expected = reference_class_embeddings(model, processor, PROMPTS)
    torch.testing.assert_close(classifier.class_embeddings, expected, atol=1e-5, rtol=1e-4)


def test_class_embeddings_are_computed_once_and_cached(model_and_processor):
    model, processor = model_and_processor
    classifier = ZeroShotClassifier(model, processor, PROMPTS)
    assert classifier.class_embeddings is classifier.class_embeddings


def test_logits_are_scaled_cosine_similarities(model_and_processor, scene):
    model, processor = model_and_processor
    classifier = ZeroShotClassifier(model, processor, PROMPTS)
    images = [scene("red", "circle"), scene("blue", "square", seed=1)]
    encoded = processor(images=images, return_tensors="pt")
    with torch.no_grad():
        output = model.get_image_features(pixel_values=encoded["pixel_values"])
    image_embeddings = F.normalize(output.pooler_output, dim=-1)
    expected = 100.0 * image_embeddings @ classifier.class_embeddings.T
    torch.testing.assert_close(classifier.logits(image_embeddings), expected)
    torch.testing.assert_close(classifier.classify(images), expected.softmax(dim=-1), atol=1e-5, rtol=1e-4)


def test_images_embedded_as_their_own_class_score_perfectly(make_tiny_model, tiny_processor, builtin_benchmark_dir):
    task = load_builtin_benchmark(builtin_benchmark_dir, ["en"], ["shape"])[0]
    classifier = ZeroShotClassifier(make_tiny_model("tiny"), tiny_processor, task.prompts["en"])
    scores, predictions = score_zero_shot(classifier, classifier.class_embeddings[task.labels], task)
    np.testing.assert_array_equal(predictions, task.labels)
    assert scores["score"] == 1.0


def test_evaluate_zero_shot_on_builtin_benchmark_both_languages(model_and_processor, builtin_benchmark_dir):
    model, processor = model_and_processor
    tasks = {task.name: task for task in load_builtin_benchmark(builtin_benchmark_dir)}
    assert set(tasks) == {"color", "shape"}
    for task in tasks.values():
        for language in ("en", "zh"):
            result = evaluate_zero_shot(model, processor, task, language, batch_size=5, device="cpu")
            assert (result.task, result.language, result.metric) == (task.name, language, task.metric)
            assert result.num_images == 12 and len(result.predictions) == 12
            assert result.num_classes == 3
            # The reported score is the metric of the reported predictions.
            one_hot = np.eye(3)[result.predictions]
            expected = compute_classification_metrics(task.metric, task.labels, one_hot)["score"]
            assert result.score == pytest.approx(expected)


def test_precomputed_image_embeddings_give_the_same_result(make_tiny_model, tiny_processor, builtin_benchmark_dir):
    model = make_tiny_model("tiny-vit")
    task = load_builtin_benchmark(builtin_benchmark_dir, ["en"], ["color"])[0]
    first = evaluate_zero_shot(model, tiny_processor, task, "en", batch_size=4)
    from dcclip.evaluation.embeddings import embed_image_dataset

    embeddings = embed_image_dataset(model, tiny_processor, task.images, batch_size=12)
    again = evaluate_zero_shot(model, tiny_processor, task, "en", image_embeddings=embeddings)
    assert again.predictions == first.predictions
    assert again.score == pytest.approx(first.score)


def test_evaluation_runs_in_eval_mode_and_restores_training_mode(make_tiny_model, tiny_processor, builtin_benchmark_dir):
    model = make_tiny_model("tiny-vit").train()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.9  # in training mode the predictions would change from call to call
    task = load_builtin_benchmark(builtin_benchmark_dir, ["zh"], ["shape"])[0]
    runs = [evaluate_zero_shot(model, tiny_processor, task, "zh").predictions for _ in range(3)]
    assert model.training
    assert runs[0] == runs[1] == runs[2]


def test_unknown_language_is_named(make_tiny_model, tiny_processor, builtin_benchmark_dir):
    task = load_builtin_benchmark(builtin_benchmark_dir, ["en"], ["color"])[0]
    with pytest.raises(KeyError, match="no 'zh' prompts"):
        evaluate_zero_shot(make_tiny_model("tiny"), tiny_processor, task, "zh")


def test_task_rejects_labels_outside_the_class_list(builtin_benchmark_dir):
    task = load_builtin_benchmark(builtin_benchmark_dir, ["en"], ["color"])[0]
    with pytest.raises(ValueError, match="label ids span"):
        ZeroShotTask("bad", task.images, task.labels + 5, task.prompts)
