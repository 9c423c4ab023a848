"""`dcclip push` through huggingface_hub's real client against a local fake Hub (tests/hub/conftest.py): the exact API
calls and files, and the pushed repository loading from that Hub as a user would, without this project."""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from dcclip.evaluation.results import write_results
from dcclip.hub.folder_check import FolderCheckError
from dcclip.hub.push import main
from modeling_dcclip import DCCLIPConfig, DCCLIPModel, DCCLIPProcessor, make_image_processor

REPO_ROOT = Path(__file__).resolve().parents[2]
REPO_ID = "org/dc-clip-tiny"


@pytest.fixture
def in_process_hub(hub_env, fake_hub, monkeypatch):
    """Also point this process's already-imported huggingface_hub at the fake Hub: HF_ENDPOINT and HF_HUB_OFFLINE (which
    the suite's conftest turns on) are read at import."""
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", fake_hub.url)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    return fake_hub


def push_args(folder, results, *extra):
    return ["--folder", str(folder), "--results", str(results), "--repo_id", REPO_ID, *extra]


def files_on_disk(folder, names):
    return {name: (folder / name).read_bytes() for name in names}


def test_push_sends_exactly_the_checked_files_and_the_card_through_the_hub_client(
    trained_folder, results_json, hub_env, fake_hub
):
    # The real command line, in its own process, finding the Hub through HF_ENDPOINT (set by hub_env) like any client.
    result = subprocess.run(
        [sys.executable, "hub/push.py", *push_args(trained_folder, results_json, "--private",
                                                   "--commit_message", "DC-CLIP tiny, stage 2")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    assert fake_hub.requests == [
        ("POST", "/api/repos/create"),
        ("POST", "/api/validate-yaml"),
        ("POST", f"/api/models/{REPO_ID}/preupload/main"),
        ("POST", f"/api/models/{REPO_ID}/commit/main"),
    ]
    repo = fake_hub.repos[REPO_ID]
    assert repo.private
    head = repo.commits[repo.branches["main"]]
    assert head["message"] == "DC-CLIP tiny, stage 2"
    expected = sorted(["README.md", "config.json", "configuration_dcclip.py", "dcclip_training.json",
                       "model.safetensors", "modeling_dcclip.py", "processing_dcclip.py", "processor_config.json",
                       "tokenizer.json", "tokenizer_config.json"])
    assert sorted(head["files"]) == expected  # training_args.bin (a pickle) stayed behind
    assert head["files"] == files_on_disk(trained_folder, expected)  # byte for byte
    card = head["files"]["README.md"].decode()
    assert fake_hub.validated_cards == [card]
    assert "pipeline_tag: zero-shot-image-classification" in card


def test_dry_run_lists_what_a_push_then_sends_and_changes_nothing(
    trained_folder, results_json, in_process_hub, capsys
):
    before = sorted(p.name for p in trained_folder.iterdir())
    assert main(push_args(trained_folder, results_json, "--dry_run")) == 0
    printed = capsys.readouterr().out
    assert in_process_hub.requests == []  # not even a repository lookup
    assert sorted(p.name for p in trained_folder.iterdir()) == before  # README.md not written

    listed = re.findall(r"^  (\S+)  \d+ bytes", printed.split("files to upload")[1].split("left out")[0], re.MULTILINE)
    assert "  training_args.bin" in printed.split("left out (training by-products):")[1]
    card_text = printed.split("----- README.md -----\n", 1)[1]
    assert card_text.startswith("---\n") and "## Zero-shot image classification" in card_text

    main(push_args(trained_folder, results_json))
    received = in_process_hub.repos[REPO_ID].files("main")
    assert sorted(received) == listed
    assert received["README.md"].decode().strip() == card_text.strip()


@pytest.mark.parametrize("preset", DCCLIPConfig.preset_names())
def test_dry_run_accepts_the_saved_folder_of_every_preset(preset, tiny_tokenizer, make_results, tmp_path,
                                                          in_process_hub, capsys):
    # The edge presets with the tiny tokenizer's vocabulary: same towers, a smaller embedding matrix.
    config = DCCLIPConfig.from_preset(preset, vocab_size=len(tiny_tokenizer))
    folder = tmp_path / preset
    DCCLIPModel(config).save_pretrained(folder)
    processor = DCCLIPProcessor(image_processor=make_image_processor(config.image_size), tokenizer=tiny_tokenizer)
    processor.save_pretrained(folder)
    results = write_results(make_results(folder), tmp_path / "results.json")

    assert main(push_args(folder, results, "--dry_run")) == 0
    assert re.search(r"^  model\.safetensors  \d+ bytes", capsys.readouterr().out, re.MULTILINE)
    assert in_process_hub.requests == []


def documented_hf_upload_line() -> list[str]:
    """The `hf upload` command docs/hub.md gives as the upload step of `dcclip push`."""
    lines = [line for line in (REPO_ROOT / "docs" / "hub.md").read_text().splitlines() if line.startswith("hf upload ")]
    assert len(lines) == 1, lines
    return shlex.split(lines[0])


def test_the_documented_hf_upload_line_sends_the_same_files_as_push(trained_folder, results_json, in_process_hub):
    main(push_args(trained_folder, results_json))
    (trained_folder / "checkpoint-10").mkdir()
    (trained_folder / "checkpoint-10" / "optimizer.pt").write_bytes(b"pickle")
    command = documented_hf_upload_line()
    assert command[:5] == ["hf", "upload", "org/dc-clip-edge", "runs/align", "."]
    command[0] = str(Path(sys.executable).with_name("hf"))
    command[2:4] = ["org/dc-clip-cli", str(trained_folder)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert in_process_hub.unhandled == []
    assert in_process_hub.repos["org/dc-clip-cli"].files("main") == in_process_hub.repos[REPO_ID].files("main")


def test_push_to_a_new_branch_creates_it_from_main_and_leaves_main_alone(trained_folder, results_json, in_process_hub):
    main(push_args(trained_folder, results_json, "--revision", "v1"))
    assert ("POST", f"/api/models/{REPO_ID}/branch/v1") in in_process_hub.requests
    assert ("POST", f"/api/models/{REPO_ID}/commit/v1") in in_process_hub.requests
    repo = in_process_hub.repos[REPO_ID]
    assert repo.files("main") == {}
    assert 'revision="v1"' in repo.files("v1")["README.md"].decode()  # the usage snippet loads that branch
    assert not repo.private

    # a second push to the existing branch reuses it and regenerates the card
    main(push_args(trained_folder, results_json, "--revision", "v1", "--commit_message", "again"))
    head = repo.commits[repo.branches["v1"]]
    assert head["message"] == "again"
    assert repo.commits[head["parent"]]["message"] == "Upload DC-CLIP student"


def test_push_stops_before_any_request_when_the_folder_is_incomplete(trained_folder, results_json, in_process_hub):
    (trained_folder / "processing_dcclip.py").unlink()
    with pytest.raises(FolderCheckError, match="processing_dcclip.py is missing"):
        main(push_args(trained_folder, results_json))
    assert in_process_hub.requests == []
    assert not (trained_folder / "README.md").exists()


def test_push_never_overwrites_a_hand_written_readme(trained_folder, results_json, in_process_hub):
    (trained_folder / "README.md").write_text("# my own notes\n")
    with pytest.raises(FileExistsError, match="--overwrite_card"):
        main(push_args(trained_folder, results_json))
    assert (trained_folder / "README.md").read_text() == "# my own notes\n"
    assert in_process_hub.requests == []
    main(push_args(trained_folder, results_json, "--overwrite_card"))
    assert "## Zero-shot image classification" in (trained_folder / "README.md").read_text()


# Appended to the card's own usage snippet: what the user's code computed, plus embeddings to compare.
REPORT_USAGE = """
import json
with torch.no_grad():
    image_embedding = model.get_image_features(inputs["pixel_values"]).pooler_output
    text_embedding = model.get_text_features(inputs["input_ids"], inputs["attention_mask"]).pooler_output
json.dump({"probs": probs.tolist(), "english": english, "chinese": chinese, "texts": texts,
           "image_embedding": image_embedding.tolist(), "text_embedding": text_embedding.tolist(),
           "model_module": type(model).__module__}, open("usage.json", "w"), ensure_ascii=False)
"""


def test_the_cards_usage_snippet_runs_against_the_hub_without_this_project(
    trained_folder, results_json, in_process_hub, tmp_path, run_without_project, random_images, tiny_processor,
    make_tiny_model,
):
    main(push_args(trained_folder, results_json, "--revision", "v1"))
    card = in_process_hub.repos[REPO_ID].files("v1")["README.md"].decode()
    snippet = re.search(r"```python\n(.*?)```", card, re.DOTALL).group(1)
    user_dir = tmp_path / "user"
    user_dir.mkdir()
    random_images[0].save(user_dir / "cat.jpg")
    in_process_hub.requests.clear()

    # HF_ENDPOINT (set by hub_env) is inherited: from_pretrained("org/dc-clip-tiny") downloads from the fake Hub.
    result = run_without_project(snippet + REPORT_USAGE, user_dir)
    assert result.returncode == 0, result.stderr[-4000:]
    assert in_process_hub.unhandled == []
    assert ("GET", f"/{REPO_ID}/resolve/{in_process_hub.repos[REPO_ID].branches['v1']}/model.safetensors") in (
        in_process_hub.requests)
    usage = json.loads((user_dir / "usage.json").read_text())
    assert usage["model_module"].startswith("transformers_modules.")  # the pushed remote code, not this project

    # The downloaded model computes what the trained one does (on the same decoded JPEG).
    model = make_tiny_model("tiny")
    batch = tiny_processor(text=usage["texts"], images=[Image.open(user_dir / "cat.jpg")], return_tensors="pt",
                           padding=True)
    with torch.no_grad():
        image = model.get_image_features(batch["pixel_values"]).pooler_output
        text = model.get_text_features(batch["input_ids"], batch["attention_mask"]).pooler_output
        probs = model(**batch).logits_per_image.softmax(dim=-1)
    assert (torch.tensor(usage["image_embedding"]) - image).abs().max() < 1e-5
    assert (torch.tensor(usage["text_embedding"]) - text).abs().max() < 1e-5
    assert (torch.tensor(usage["probs"]) - probs).abs().max() < 1e-5

    # The pipeline answers in both languages with a softmax over the candidate labels.
    for key, labels in (("english", {"cat", "dog"}), ("chinese", {"猫", "狗"})):
        assert {r["label"] for r in usage[key]} == labels
        assert sum(r["score"] for r in usage[key]) == pytest.approx(1.0, abs=1e-4)


def test_dry_run_refuses_a_folder_with_nan_weights_naming_the_tensor(trained_folder, results_json):
    weights = load_file(trained_folder / "model.safetensors")
    weights["visual_projection.weight"].fill_(float("nan"))
    save_file(weights, trained_folder / "model.safetensors", metadata={"format": "pt"})
    dcclip = Path(sys.executable).with_name("dcclip")
    result = subprocess.run([str(dcclip), "push", *push_args(trained_folder, results_json, "--dry_run")],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode != 0
    assert "visual_projection.weight" in result.stderr and "hold NaN or infinite values" in result.stderr
    assert "files to upload" not in result.stdout
    assert not (trained_folder / "README.md").exists()
