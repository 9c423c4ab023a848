"""`dcclip demo` / `python -m dcclip.demo.command`: parse the options (`demo/options.py`), then run the demo
(`demo/run.py`, imported only then: it pulls in torch and the Trainer)."""

from __future__ import annotations

import sys

from dcclip.command_errors import run_command

from .options import build_parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `dcclip demo`; returns the exit status (0 also when a quality target is missed: the report
    says which)."""
    args = build_parser().parse_args(argv)
    from .run import run_demo

    return run_demo(args)


if __name__ == "__main__":
    sys.exit(run_command("demo", main))
