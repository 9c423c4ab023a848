"""`--help` of the stage commands (`dcclip distill`, `dcclip align`, `dcclip teacher-cache`): the project's own options
first, grouped, then the inherited `TrainingArguments` options under their own heading, in under a second; and of the
other commands parsed by `HfArgumentParser` (`export`, `prune-vocab`, `push`).

The stage options subclass transformers' `TrainingArguments`, whose import pulls in torch (several seconds), and even
`HfArgumentParser` alone imports transformers (seconds on a slow machine). So the description of every such
command's options (`option_help.OptionGroup`s, plain data) is stored in `stage_help.json` and rendered from there
when the installed transformers is the one it was made with; with another transformers the options are described
live (a few seconds). A test keeps the stored description equal to the live one; after changing an option,
regenerate it:

    python -m dcclip.stage_help --write
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path

from dcclip.commands import COMMANDS
from dcclip.option_help import CommandHelp, OptionGroup, OptionHelp, describe_actions, option_groups_from_dicts

STORED_HELP = Path(__file__).with_name("stage_help.json")
# The commands whose options subclass TrainingArguments; each entry script has `option_classes()`.
STAGE_COMMANDS = ("distill", "align", "teacher-cache")
# The other HfArgumentParser commands: their option dataclasses (module:attribute).
DATACLASS_COMMANDS = {
    "export": "dcclip.export.cli:ExportArguments",
    "prune-vocab": "dcclip.export.prune_vocab:PruneArguments",
    "push": "dcclip.hub.push:PushArguments",
}
TRAINER_TITLE = "Trainer options (inherited from transformers.TrainingArguments)"
TRAINER_DESCRIPTION = (
    "The HF Trainer's own options, as in transformers {version}: "
    "https://huggingface.co/docs/transformers/main_classes/trainer#transformers.TrainingArguments"
)
STAGE_DESCRIPTION = (
    "Options come from CONFIG.yaml and from the command line, which wins over the file. Every option is also\n"
    "accepted with dashes (--learning-rate). Runs unchanged under python, torchrun, accelerate launch and\n"
    "deepspeed; on a machine without GPUs add --use_cpu true."
)
CONFIG_ARGUMENT = OptionHelp(
    dest="config",
    flag="CONFIG.yaml",
    help="YAML or JSON file of options, one key per option (output_dir: runs/stage1); any option below",
    positional=True,
)

OptionClasses = Callable[[], Sequence[type]]


def stage_usage(command: str) -> str:
    """The usage line of a stage command."""
    return f"dcclip {command} [CONFIG.yaml] [--option value ...]"


def describe_stage_options(option_classes: Sequence[type]) -> tuple[list[OptionGroup], list[OptionHelp]]:
    """The stage's own options in their groups, and every `TrainingArguments` option (imports torch).

    Each option class gives one group titled by its `help_title`, or several by its `help_groups` (title -> field
    names); a field that a stage config declares again (a new default or help) counts as its own.
    """
    from transformers import HfArgumentParser, TrainingArguments

    inherited_fields = TrainingArguments.__dataclass_fields__
    groups: list[OptionGroup] = []
    for option_class in option_classes:
        by_field: dict[str, list[OptionHelp]] = {}
        for option in describe_actions(HfArgumentParser(option_class)._actions):
            by_field.setdefault(option.dest, []).append(option)
        own = [f.name for f in dataclasses.fields(option_class) if f.init and inherited_fields.get(f.name) is not f]
        titled = getattr(option_class, "help_groups", None) or {option_class.help_title: own}
        left_over = [name for name in own if not any(name in names for names in titled.values())]
        if left_over:
            titled = {**titled, f"other {option_class.__name__} options": left_over}
        groups += [OptionGroup(title, [o for name in names for o in by_field[name]]) for title, names in titled.items()]
    return groups, describe_actions(HfArgumentParser(TrainingArguments)._actions)


def _stored_entry(section: str, command: str) -> tuple[dict, object] | None:
    """The stored file and its `section[command]`, when it was made with the installed transformers (else None)."""
    try:
        stored = json.loads(STORED_HELP.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if stored.get("transformers") != version("transformers") or command not in stored.get(section, {}):
        return None
    return stored, stored[section][command]


def _stored(command: str) -> tuple[list[OptionGroup], list[OptionHelp]] | None:
    """The stored description of a stage command's options and the Trainer's."""
    found = _stored_entry("commands", command)
    if found is None:
        return None
    stored, groups = found
    return option_groups_from_dicts(groups), [OptionHelp(**o) for o in stored["trainer_options"]]


def stored_options(command: str) -> list[OptionHelp] | None:
    """The stored description of a `DATACLASS_COMMANDS` command's options (None: describe them live)."""
    found = _stored_entry("dataclass_commands", command)
    return None if found is None else [OptionHelp(**o) for o in found[1]]


def describe_dataclass_options(command: str) -> list[OptionHelp]:
    """A `DATACLASS_COMMANDS` command's options as `HfArgumentParser` parses them (imports transformers)."""
    from transformers import HfArgumentParser

    module, _, name = DATACLASS_COMMANDS[command].partition(":")
    return describe_actions(HfArgumentParser(getattr(importlib.import_module(module), name))._actions)


def stage_help(command: str, option_classes: OptionClasses, examples: str | None = None) -> CommandHelp:
    """`dcclip <command> --help`: the config file, the stage's own option groups, then the Trainer's options."""
    own, trainer = _stored(command) or describe_stage_options(option_classes())
    own_fields = {option.dest for group in own for option in group.options}
    inherited = OptionGroup(
        TRAINER_TITLE,
        [option for option in trainer if option.dest not in own_fields],
        TRAINER_DESCRIPTION.format(version=version("transformers")),
    )
    return CommandHelp(
        command,
        [OptionGroup("config file", [CONFIG_ARGUMENT]), *own, inherited],
        usage=stage_usage(command),
        description=STAGE_DESCRIPTION,
        epilog=examples,
    )


def live_descriptions() -> dict:
    """The stored file's content, described live from the installed transformers and the option classes."""
    commands = {}
    trainer: list[OptionHelp] = []
    for command in STAGE_COMMANDS:
        entry_script = importlib.import_module(COMMANDS[command].entry_point.partition(":")[0])
        own, trainer = describe_stage_options(entry_script.option_classes())
        commands[command] = [dataclasses.asdict(group) for group in own]
    return {
        "about": "generated by `python -m dcclip.stage_help --write`; read by `dcclip <command> --help`",
        "transformers": version("transformers"),
        "trainer_options": [dataclasses.asdict(option) for option in trainer],
        "commands": commands,
        "dataclass_commands": {
            command: [dataclasses.asdict(option) for option in describe_dataclass_options(command)]
            for command in DATACLASS_COMMANDS
        },
    }


def main(argv: list[str] | None = None) -> int:
    """`python -m dcclip.stage_help [--write]`: check (or rewrite) `stage_help.json`."""
    parser = argparse.ArgumentParser(prog="python -m dcclip.stage_help", description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="rewrite stage_help.json from the live options")
    args = parser.parse_args(argv)
    live = live_descriptions()
    if args.write:
        STORED_HELP.write_text(json.dumps(live, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {STORED_HELP}")
        return 0
    stored = json.loads(STORED_HELP.read_text(encoding="utf-8"))
    if stored != live:
        print(f"{STORED_HELP} is out of date; run `python -m dcclip.stage_help --write`", file=sys.stderr)
        return 1
    print(f"{STORED_HELP} matches the options of transformers {live['transformers']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
