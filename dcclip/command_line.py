"""The argument parser of dcclip's argparse-based commands: every long option is accepted as `--a_b` and as `--a-b`,
as `HfArgumentParser` (the stage commands, export, push) accepts both, so one spelling works across all commands."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


class CommandParser(argparse.ArgumentParser):
    """`argparse.ArgumentParser` whose long options also answer to their other spelling (`_` <-> `-`); `--help`
    shows the spelling the option was declared with (underscores, as the Trainer's options)."""

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None):
        import sys

        argv = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(self._declared_spelling(argv), namespace)

    def _declared_spelling(self, argv: list[str]) -> list[str]:
        declared = {option for action in self._actions for option in action.option_strings}
        spelled: list[str] = []
        for index, arg in enumerate(argv):
            if arg == "--":  # everything after it is positional
                return spelled + argv[index:]
            name, equals, value = arg.partition("=")
            if name.startswith("--") and name not in declared:
                for other in ("--" + name[2:].replace("-", "_"), "--" + name[2:].replace("_", "-")):
                    if other in declared:
                        name = other
                        break
            spelled.append(name + equals + value)
        return spelled
