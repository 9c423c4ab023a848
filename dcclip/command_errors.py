"""How every `dcclip` command fails: an expected failure (a missing or unreadable file, a bad option or config key, a
malformed data spec, empty data) is one line on stderr, `dcclip <command>: <message>`, and a non-zero exit status;
an unexpected error keeps its traceback.

The dispatcher (`dcclip <command>`) and each entry script's `__main__` path (`python trainers/distill.py`) both run
the command through `run_command`, so the rule holds however a command is started. `run_command` also ends a
successful multi-process run's process group (`trainers/process_group.py`), for the same reason.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from types import TracebackType

from dcclip.trainers.process_group import release_process_group

# Exit statuses: 1 for a failure of the inputs, 2 for a wrong call (argparse's own status for usage errors).
INPUT_ERROR_STATUS = 1
USAGE_ERROR_STATUS = 2
INTERRUPTED_STATUS = 130
# DCCLIP_TRACEBACK=1 prints the traceback of expected failures too (for bug reports).
TRACEBACK_VARIABLE = "DCCLIP_TRACEBACK"
# Modules whose `ValueError`/`KeyError` are messages about the user's input: the project's own checks (installed under
# `dcclip.`, the shipped model, an entry script run as `__main__`) and the loaders of models, processors and data
# files, which reject a folder or file that is not what it should be ("Unrecognized model in runs/x").
_INPUT_CHECKING_MODULES = (
    "dcclip.", "modeling_dcclip", "__main__",
    "transformers.configuration_utils", "transformers.models.auto.", "transformers.tokenization_utils",
    "transformers.processing_utils", "transformers.image_processing_base", "transformers.feature_extraction_utils",
    "huggingface_hub.utils._validators", "datasets.load", "datasets.data_files", "safetensors",
)  # fmt: skip


class CommandError(Exception):
    """An expected failure that a command reports as one line (exit status 1)."""

    exit_status = INPUT_ERROR_STATUS


class UsageError(CommandError, ValueError):
    """The command was called wrongly: an unknown option or config key, a value of the wrong type or out of range, a
    missing required option (exit status 2). A `ValueError` too, as the checks it replaces raised."""

    exit_status = USAGE_ERROR_STATUS


def _raised_checking_input(traceback_: TracebackType | None) -> bool:
    """Whether the innermost frame of `traceback_` is in a module whose errors are about the input (see above)."""
    last = None
    while traceback_ is not None:
        last, traceback_ = traceback_, traceback_.tb_next
    module = last.tb_frame.f_globals.get("__name__", "") if last is not None else ""
    return module.startswith(_INPUT_CHECKING_MODULES)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def expected_failure(error: BaseException) -> tuple[str, int] | None:
    """`(message, exit status)` when `error` is an expected failure of a command, `None` when it is a bug.

    Expected: `CommandError` (and `UsageError`); file-system and network errors (missing, unreadable, a folder where
    a file was expected, a folder that exists, a Hub that cannot be reached); files that do not parse (YAML, JSON,
    text that is not UTF-8); and `ValueError` / `KeyError` raised by the project's own checks or by the loaders of
    models and data files. The same types raised anywhere else keep their traceback.
    """
    import yaml  # light; YAML errors are input errors wherever a YAML file is read

    if isinstance(error, CommandError):
        return _one_line(str(error)), error.exit_status
    if isinstance(error, OSError):
        if error.filename is not None and error.strerror:
            return _one_line(f"{error.strerror}: {error.filename}"), INPUT_ERROR_STATUS
        return _one_line(str(error)), INPUT_ERROR_STATUS
    if isinstance(error, (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError)):
        return _one_line(f"cannot parse the input ({type(error).__name__}): {error}"), INPUT_ERROR_STATUS
    if isinstance(error, (ValueError, KeyError)) and _raised_checking_input(error.__traceback__):
        message = error.args[0] if isinstance(error, KeyError) and len(error.args) == 1 else error
        return _one_line(str(message)), INPUT_ERROR_STATUS
    return None


def run_command(command: str, main: Callable[[list[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Run `main(argv)` (an entry point) and return its exit status; an expected failure becomes
    `dcclip <command>: <message>` on stderr and its exit status, anything else propagates with its traceback."""
    try:
        status = int(main(None if argv is None else list(argv)) or 0)
        if status == 0:  # after a failure other ranks may still wait in a collective; the launcher stops them
            release_process_group()
        return status
    except BrokenPipeError:  # the reader went away (`dcclip distill --help | head`): nothing left to tell anyone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return INPUT_ERROR_STATUS
    except KeyboardInterrupt:
        print(f"dcclip {command}: interrupted", file=sys.stderr)
        return INTERRUPTED_STATUS
    except Exception as error:
        failure = expected_failure(error)
        if failure is None:
            raise
        message, status = failure
        if os.environ.get(TRACEBACK_VARIABLE, "") not in ("", "0"):
            traceback.print_exc()
        print(f"dcclip {command}: {message}", file=sys.stderr)
        return status
