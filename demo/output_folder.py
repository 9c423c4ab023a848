"""The demo's output folder: which files the demo wrote there, so that a later run into the same folder removes only
those, and refuses (naming them, deleting nothing) when the folder holds anything else.

The marker file `.dcclip-demo` lists every file of the run with its size and modification time; it is rewritten
after each step, and marked finished at the end. A later run into the folder refuses when it finds a file the list
does not hold (a file the user saved there), or a listed file that changed since (a report the user edited). After an
interrupted run, files under the demo's own folders that the list does not hold yet are the interrupted step's own.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from dcclip.command_errors import CommandError

MARKER = ".dcclip-demo"
MARKER_VERSION = 1
# Top-level folders that only the demo writes into: after an interrupted run, unlisted files inside them are its own.
DEMO_FOLDERS = ("benchmark", "tokenizer", "teacher", "runs", "configs", "final_student", "reload_check")
# The demo's own log, appended to until the run ends: it may have grown after the last record.
DEMO_LOG = "demo.log"
SHOWN_ENTRIES = 10  # files or folders named in a refusal


class OutputFolderError(CommandError):
    """The output folder cannot be used; the message says why and what to do."""


def _files(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under `root` but the marker: relative path -> (size, modification time in ns)."""
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder, name)
            relative = path.relative_to(root).as_posix()
            if relative != MARKER:
                status = path.lstat()
                found[relative] = (status.st_size, status.st_mtime_ns)
    return found


def _read_marker(root: Path) -> dict | None:
    try:
        marker = json.loads((root / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and isinstance(marker.get("files"), dict) else None


def foreign_files(root: Path) -> list[str]:
    """Files under `root` that the demo run recorded in its marker did not write, or that changed since."""
    marker = _read_marker(root)
    if marker is None:
        return sorted(_files(root))
    recorded = {path: tuple(entry) for path, entry in marker["files"].items()}
    interrupted = not marker.get("finished", False)
    foreign = []
    for path, entry in _files(root).items():
        in_demo_folder = interrupted and path.split("/")[0] in DEMO_FOLDERS
        if path not in recorded:
            if not in_demo_folder:
                foreign.append(path)
        elif recorded[path] != entry and not (path == DEMO_LOG or in_demo_folder):
            foreign.append(path)
    return sorted(foreign)


def describe_files(paths: list[str]) -> str:
    """Relative paths, grouped by their first folder: `notes.md, runs/ (3 files)`; at most `SHOWN_ENTRIES` entries."""
    groups: dict[str, list[str]] = {}
    for path in paths:
        top, _, rest = path.partition("/")
        groups.setdefault(top + ("/" if rest else ""), []).append(path)
    entries = [
        files[0] if len(files) == 1 else f"{top} ({len(files)} files)" for top, files in sorted(groups.items())
    ]
    hidden = len(entries) - SHOWN_ENTRIES
    return ", ".join(entries[:SHOWN_ENTRIES]) + (f" and {hidden} more" if hidden > 0 else "")


def prepare_output_folder(out: Path) -> Path:
    """Create `out`, or empty an earlier demo's folder: only when every file in it is the demo's own (see the
    module docstring); otherwise refuse, naming the files and deleting nothing."""
    if out.exists() and not out.is_dir():
        raise OutputFolderError(f"--out {out} is a file, not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise OutputFolderError(
                f"{out} exists, is not empty and is not a demo output folder (no {MARKER}); nothing was "
                "deleted. Choose another --out"
            )
        foreign = foreign_files(out)
        if foreign:
            raise OutputFolderError(
                f"refusing to reuse {out}: it holds {len(foreign)} file(s) that the earlier demo run did "
                f"not write or that changed since it wrote them ({describe_files(foreign)}). Nothing was deleted. Move "
                "those files elsewhere, or choose another --out"
            )
        shutil.rmtree(out)  # every file in it is the earlier run's own
    out.mkdir(parents=True, exist_ok=True)
    record_output_files(out, finished=False)
    return out.resolve()


def record_output_files(out: Path, finished: bool) -> None:
    """Write the marker: every file now under `out` (the run's own), and whether the run has finished."""
    marker = {
        "written_by": "dcclip demo; a later run into this folder removes these files, and refuses if it finds others",
        "version": MARKER_VERSION,
        "finished": finished,
        "files": {path: list(entry) for path, entry in sorted(_files(out).items())},
    }
    (out / MARKER).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
