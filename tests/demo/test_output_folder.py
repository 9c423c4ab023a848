"""The demo's output folder: a later run removes only the files an earlier run wrote, and otherwise refuses, naming
the files it found and deleting nothing."""

from __future__ import annotations

import os

import pytest

from dcclip.demo.output_folder import (
    MARKER,
    OutputFolderError,
    describe_files,
    prepare_output_folder,
    record_output_files,
)


def _earlier_run(folder, finished: bool = True):
    """A folder as a demo run leaves it: its files, recorded in the marker."""
    out = prepare_output_folder(folder)
    (out / "runs" / "seed0").mkdir(parents=True)
    (out / "runs" / "seed0" / "train.log").write_text("loss 1.0\n")
    (out / "report.md").write_text("# report\n")
    (out / "demo.log").write_text("start\n")
    record_output_files(out, finished=finished)
    return out


def test_a_new_folder_is_created_with_the_marker(tmp_path):
    out = prepare_output_folder(tmp_path / "new" / "demo")
    assert out.is_dir() and (out / MARKER).is_file()


def test_a_folder_the_demo_did_not_write_is_refused_and_left_alone(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(OutputFolderError, match="not a demo output folder"):
        prepare_output_folder(foreign)
    assert (foreign / "notes.txt").read_text() == "keep me" and not (foreign / MARKER).exists()


def test_an_earlier_demo_folder_holding_only_its_own_files_is_emptied(tmp_path):
    out = _earlier_run(tmp_path / "demo")
    with open(out / "demo.log", "a") as log:  # the demo's own log may grow after the last record
        log.write("one more line\n")
    again = prepare_output_folder(out)
    assert again == out and sorted(p.name for p in out.iterdir()) == [MARKER]


def test_a_file_the_user_saved_in_an_earlier_demo_folder_survives_and_the_refusal_names_it(tmp_path):
    out = _earlier_run(tmp_path / "demo")
    (out / "my_notes.md").write_text("my analysis")
    (out / "runs" / "seed0" / "plot.png").write_bytes(b"mine too")
    with pytest.raises(OutputFolderError) as refusal:
        prepare_output_folder(out)
    message = str(refusal.value)
    assert "2 file(s) that the earlier demo run did not write" in message
    assert "my_notes.md" in message and "runs/seed0/plot.png" in message and "Nothing was deleted" in message
    assert describe_files(["a/1", "a/2", "b.txt", "c/d/e"]) == "a/ (2 files), b.txt, c/d/e"
    assert (out / "my_notes.md").read_text() == "my analysis" and (out / "report.md").is_file()


def test_a_demo_file_changed_since_the_run_counts_as_the_users(tmp_path):
    out = _earlier_run(tmp_path / "demo")
    report = out / "report.md"
    report.write_text("# report\n\nmy comments on it\n")
    os.utime(report, ns=(report.stat().st_atime_ns, report.stat().st_mtime_ns + 10**9))
    with pytest.raises(OutputFolderError, match="report.md"):
        prepare_output_folder(out)
    assert "my comments" in report.read_text()


def test_after_an_interrupted_run_its_unrecorded_files_in_demo_folders_go_but_other_files_stop_it(tmp_path):
    out = _earlier_run(tmp_path / "demo", finished=False)
    (out / "runs" / "seed1").mkdir()
    (out / "runs" / "seed1" / "train.log").write_text("written after the last record, then interrupted")
    assert sorted(p.name for p in prepare_output_folder(out).iterdir()) == [MARKER]

    out = _earlier_run(tmp_path / "other", finished=False)
    (out / "thesis.tex").write_text("do not delete")
    with pytest.raises(OutputFolderError, match="thesis.tex"):
        prepare_output_folder(out)
    assert (out / "thesis.tex").is_file()
