"""`dcclip demo`'s options: parsed before the demo's heavy imports, with one-line refusals."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from dcclip.command_errors import UsageError
from dcclip.demo.options import SCALE_NAMES, build_parser
from dcclip.demo.run import resolve_device
from dcclip.demo.scales import SCALES


def test_the_parser_offers_exactly_the_scales_that_exist():
    assert set(SCALE_NAMES) == set(SCALES)


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:3"])
def test_device_accepts_a_gpu_index(device):
    assert build_parser().parse_args(["--device", device]).device == device


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--device", "gpu1"], "'gpu1' is not auto, cpu, cuda or cuda:N"),
        (["--seeds", "1"], "the seed spread needs two runs of each variant"),
        (["--scale", "huge"], "invalid choice: 'huge'"),
    ],
)
def test_a_bad_option_is_refused_in_one_line_before_anything_runs(argv, message, tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "dcclip.cli", "demo", "--out", str(tmp_path / "out"), *argv],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert completed.returncode == 2
    assert message in completed.stderr and "Traceback" not in completed.stderr
    assert not (tmp_path / "out").exists()


def test_a_gpu_index_beyond_the_visible_gpus_is_refused_naming_the_count():
    with pytest.raises(UsageError, match=f"torch sees {torch.cuda.device_count()} GPU"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")
