"""`dcclip push`: check a trained folder, write its model card from `results.json`, and upload it to the Hub.

    dcclip push --folder runs/align --results runs/eval/results.json --repo_id org/dc-clip-edge [--private] \
        [--revision v1] [--commit_message "..."] [--latency latency.json] [--dry_run]

The upload is `huggingface_hub`'s `create_repo` + `create_branch` (for a new branch) + `upload_folder`, so
`HF_ENDPOINT`, `HF_TOKEN` and large-file transfer behave as in every Hub client. `--dry_run` changes nothing: it prints
the exact files that would go up and the card text.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import CommitInfo, HfApi
from huggingface_hub.constants import DEFAULT_REVISION

from dcclip.command_errors import run_command
from dcclip.command_line import report_written
from dcclip.evaluation.results import read_results
from dcclip.hub.folder_check import TRAINING_BY_PRODUCTS, FolderReport, check_model_folder
from dcclip.option_help import parse_dataclass_arguments

EPILOG = """examples:
  dcclip push --folder runs/align/final --results runs/eval/results.json --repo_id org/dc-clip-edge --dry_run
  dcclip push --folder runs/align/final --results runs/eval/results.json --repo_id org/dc-clip-edge --private

Writes README.md (the model card) into --folder, then uploads the folder. More: docs/hub.md"""


@dataclass
class PushArguments:
    folder: str = field(metadata={"help": "trained model folder (save_pretrained of the model and processor)"})
    results: str = field(metadata={"help": "results.json written by `dcclip eval` for this model"})
    repo_id: str = field(metadata={"help": "Hub repository, 'namespace/name'"})
    student: str | None = field(
        default=None, metadata={"help": "name of this model in results.json, when it holds several students"}
    )
    latency: str | None = field(default=None, metadata={"help": "latency JSON from benchmarks/latency.py"})
    private: bool = field(default=False, metadata={"help": "create the repository as private (if it does not exist)"})
    revision: str = field(
        default=DEFAULT_REVISION, metadata={"help": "branch to push to; created from the default branch if missing"}
    )
    commit_message: str = field(default="Upload DC-CLIP student", metadata={"help": "commit message"})
    license: str | None = field(default=None, metadata={"help": "license id for the card metadata, e.g. apache-2.0"})
    overwrite_card: bool = field(
        default=False, metadata={"help": "replace a README.md that `dcclip push` did not write"}
    )
    dry_run: bool = field(default=False, metadata={"help": "print the files and the card; write and upload nothing"})


def prepare_card(args: PushArguments) -> tuple[FolderReport, str]:
    """Check the folder (all but the card) and render the card text; nothing is written."""
    # Imported here: the training record's schema comes with transformers' TrainingArguments (torch).
    from dcclip.hub.model_card import CardInputs, build_model_card, read_latency, select_student
    from dcclip.trainers.records import read_training_record

    report = check_model_folder(args.folder, require_card=False)
    results = read_results(args.results)
    card = build_model_card(
        CardInputs(
            repo_id=args.repo_id,
            folder=report,
            results=results,
            student=select_student(results, report, args.student),
            training=read_training_record(args.folder),
            latency=read_latency(args.latency),
            revision=args.revision if args.revision != DEFAULT_REVISION else None,
            license=args.license,
        )
    )
    return report, str(card)


def push(args: PushArguments) -> CommitInfo | None:
    """Check, write README.md, and upload; with `dry_run`, print the plan and return `None`."""
    from dcclip.hub.model_card import is_generated_card

    report, card_text = prepare_card(args)
    card_path = Path(args.folder) / "README.md"
    if card_path.exists() and not args.overwrite_card and not is_generated_card(card_path.read_text(encoding="utf-8")):
        raise FileExistsError(
            f"{card_path} exists and was not written by `dcclip push`; move it away or pass --overwrite_card"
        )
    upload = sorted({*report.upload_files, "README.md"})
    if args.dry_run:
        print(dry_run_summary(args, report, upload, card_text))
        return None

    card_path.write_text(card_text, encoding="utf-8")
    report = check_model_folder(args.folder, require_card=True)
    api = HfApi()
    repo_url = api.create_repo(args.repo_id, private=args.private, exist_ok=True)
    if args.revision != DEFAULT_REVISION:
        api.create_branch(args.repo_id, branch=args.revision, exist_ok=True)
    commit = api.upload_folder(
        repo_id=args.repo_id,
        folder_path=args.folder,
        revision=args.revision,
        commit_message=args.commit_message,
        ignore_patterns=list(TRAINING_BY_PRODUCTS),
    )
    report_written("push", f"the model card {card_path} and uploaded {len(report.upload_files)} files to {repo_url} "
                   f"(branch {args.revision}, commit {commit.commit_url})")  # fmt: skip
    return commit


def dry_run_summary(args: PushArguments, report: FolderReport, upload: list[str], card_text: str) -> str:
    """The plan of a push: target, each file with its size, what stays behind, and the card text."""
    sizes = {name: report.file_size(name) for name in upload if name != "README.md"}
    sizes["README.md"] = len(card_text.encode("utf-8"))
    lines = [
        "dry run: nothing written, nothing uploaded",
        f"repository: {args.repo_id} ({'private' if args.private else 'public'} if created), branch {args.revision}",
        f"commit message: {args.commit_message}",
        f"files to upload ({len(upload)}):",
        *(f"  {name}  {sizes[name]} bytes{'  (model card, written by this push)' if name == 'README.md' else ''}"
          for name in upload),
    ]
    if report.excluded_files:
        lines += ["left out (training by-products):", *(f"  {name}" for name in report.excluded_files)]
    lines += ["", "----- README.md -----", card_text]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `dcclip push` and `python hub/push.py`."""
    (args,) = parse_dataclass_arguments("push", [PushArguments], argv, epilog=EPILOG)
    push(args)
    return 0


if __name__ == "__main__":
    sys.exit(run_command("push", main))
