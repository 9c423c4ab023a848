"""The preset table in README.md gives the parameter counts the presets really build."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from modeling_dcclip import DCCLIPConfig, DCCLIPModel

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_rows() -> dict[str, tuple[int, int, int]]:
    """preset name -> (image params, text params, total) from the README's student-preset table."""
    rows = {}
    for line in README.read_text(encoding="utf-8").splitlines():
        match = re.match(r"\| `([\w-]+)`[^|]*\|[^|]*\|[^|]*\| ([\d,]+) \| ([\d,]+) \| ([\d,]+) \|$", line)
        if match:
            rows[match.group(1)] = tuple(int(group.replace(",", "")) for group in match.groups()[1:])
    return rows


def _count(module: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def test_readme_lists_every_preset():
    assert sorted(_readme_rows()) == DCCLIPConfig.preset_names()


@pytest.mark.parametrize("name", DCCLIPConfig.preset_names())
def test_readme_parameter_counts_match_the_built_preset(name):
    with torch.device("meta"):  # shapes only: the edge presets are 100M+ parameters
        model = DCCLIPModel(DCCLIPConfig.from_preset(name))
    assert _readme_rows()[name] == (_count(model.vision_model), _count(model.text_model), _count(model))
