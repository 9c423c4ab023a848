"""The folder check finds every missing or inconsistent piece of a model folder before upload, naming it."""

import json

import pytest
from safetensors.torch import load_file, save_file

from dcclip.hub.folder_check import FolderCheckError, check_model_folder


def write_card(folder):
    (folder / "README.md").write_text("---\nlibrary_name: transformers\n---\n# card\n")


def test_complete_folder_passes_and_lists_the_files_that_go_up(trained_folder):
    write_card(trained_folder)
    report = check_model_folder(trained_folder)
    assert report.upload_files == sorted([
        "README.md", "config.json", "configuration_dcclip.py", "dcclip_training.json", "model.safetensors",
        "modeling_dcclip.py", "processing_dcclip.py", "processor_config.json", "tokenizer.json",
        "tokenizer_config.json"])
    assert report.excluded_files == ["training_args.bin"]  # the Trainer's pickle stays behind
    assert report.tokenizer_vocab_size == report.config["text_config"]["vocab_size"]


def test_checkpoints_and_logs_stay_behind(trained_folder):
    write_card(trained_folder)
    (trained_folder / "checkpoint-500").mkdir()
    (trained_folder / "checkpoint-500" / "optimizer.pt").write_bytes(b"pickle")
    (trained_folder / "runs").mkdir()
    (trained_folder / "runs" / "events.out.tfevents").write_bytes(b"log")
    report = check_model_folder(trained_folder)
    assert "checkpoint-500/optimizer.pt" in report.excluded_files
    assert "runs/events.out.tfevents" in report.excluded_files
    assert not any(name.startswith(("checkpoint-", "runs/")) for name in report.upload_files)


def remove(name):
    return lambda folder: (folder / name).unlink()


def edit_json(name, change):
    def apply(folder):
        data = json.loads((folder / name).read_text())
        change(data)
        (folder / name).write_text(json.dumps(data))
    return apply


def rename_model_class(folder):
    path = folder / "modeling_dcclip.py"
    path.write_text(path.read_text().replace("class DCCLIPModel(", "class RenamedModel("))


def drop_a_tensor(folder):
    tensors = load_file(folder / "model.safetensors")
    del tensors["text_projection.weight"]
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


def add_pickled_weights(folder):
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")


def shrink_text_vocab_in_config(folder):
    edit_json("config.json", lambda c: c["text_config"].update(vocab_size=c["text_config"]["vocab_size"] - 5))(folder)


@pytest.mark.parametrize("breakage, named_in_error", [
    (remove("modeling_dcclip.py"), "auto_map['AutoModel'] = 'modeling_dcclip.DCCLIPModel', but modeling_dcclip.py is missing"),
    (remove("configuration_dcclip.py"), "modeling_dcclip.py imports .configuration_dcclip, but configuration_dcclip.py is missing"),
    (remove("processing_dcclip.py"), "processor_config.json auto_map['AutoProcessor']"),
    (rename_model_class, "modeling_dcclip.py defines no class DCCLIPModel"),
    (edit_json("config.json", lambda c: c.pop("auto_map")), "config.json has no 'auto_map'"),
    (edit_json("config.json", lambda c: c.pop("minimum_transformers_version")),
     "config.json has no 'minimum_transformers_version': it was saved by an older DC-CLIP"),
    (edit_json("config.json", lambda c: c["auto_map"].pop("AutoModelForZeroShotImageClassification")),
     "auto_map lacks 'AutoModelForZeroShotImageClassification'"),
    (remove("model.safetensors"), "model.safetensors (or model.safetensors.index.json) is missing"),
    (add_pickled_weights, "pytorch_model.bin: a pickled file would be uploaded"),
    (drop_a_tensor, "missing from the weights: text_projection.weight"),
    (shrink_text_vocab_in_config, "but config.json text_config.vocab_size is"),
    (remove("tokenizer.json"), "tokenizer.json (or a SentencePiece .model file) is missing"),
    (remove("tokenizer_config.json"), "tokenizer_config.json is missing"),
    (edit_json("processor_config.json", lambda c: c.pop("image_processor")), "image preprocessing is not saved"),
    (remove("README.md"), "README.md (the model card) is missing"),
])
def test_a_missing_or_inconsistent_piece_is_named(trained_folder, breakage, named_in_error):
    write_card(trained_folder)
    check_model_folder(trained_folder)  # complete before the breakage
    breakage(trained_folder)
    with pytest.raises(FolderCheckError) as error:
        check_model_folder(trained_folder)
    assert named_in_error in str(error.value)


def test_stored_tensor_names_are_compared_as_loading_renames_them(make_tiny_model, tiny_processor, tmp_path):
    # transformers 5 saves a ViT tower's tensors under their original names and renames them on load.
    make_tiny_model("tiny-vit").save_pretrained(tmp_path)
    tiny_processor.save_pretrained(tmp_path)
    stored_query = "vision_model.encoder.layer.0.attention.attention.query.weight"
    tensors = load_file(tmp_path / "model.safetensors")
    assert stored_query in tensors
    check_model_folder(tmp_path, require_card=False)

    del tensors[stored_query]
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(FolderCheckError) as error:
        check_model_folder(tmp_path, require_card=False)
    assert error.value.problems == ["1 tensor(s) missing from the weights: vision_model.layers.0.attention.q_proj.weight"]


def test_a_shrunk_config_vocabulary_is_also_caught_against_the_weights(trained_folder):
    write_card(trained_folder)
    shrink_text_vocab_in_config(trained_folder)
    with pytest.raises(FolderCheckError) as error:
        check_model_folder(trained_folder)
    assert any("text_model.embeddings.word_embeddings.weight has shape" in p for p in error.value.problems)


def test_every_problem_is_reported_at_once(trained_folder):
    for name in ("modeling_dcclip.py", "tokenizer_config.json"):
        (trained_folder / name).unlink()
    add_pickled_weights(trained_folder)
    with pytest.raises(FolderCheckError) as error:
        check_model_folder(trained_folder)
    text = str(error.value)
    for named in ("modeling_dcclip.py is missing", "tokenizer_config.json is missing", "pytorch_model.bin",
                  "README.md (the model card) is missing"):
        assert named in text
    assert len(error.value.problems) >= 4


def test_the_card_is_optional_before_it_is_written(trained_folder):
    assert "README.md" not in check_model_folder(trained_folder, require_card=False).upload_files


def test_non_finite_weights_are_refused_naming_each_tensor_and_its_count(trained_folder):
    write_card(trained_folder)
    weights = load_file(trained_folder / "model.safetensors")
    weights["text_projection.weight"][0, :3] = float("nan")
    weights["logit_scale"].fill_(float("inf"))
    save_file(weights, trained_folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(FolderCheckError) as error:
        check_model_folder(trained_folder)
    (problem,) = [p for p in error.value.problems if "NaN or infinite" in p]
    assert problem.startswith("model.safetensors: 2 tensor(s) hold NaN or infinite values")
    assert "logit_scale (1 values)" in problem and "text_projection.weight (3 values)" in problem
