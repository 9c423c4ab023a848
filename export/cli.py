"""`dcclip export`: write a trained model's image and text towers as ONNX (fp32 and int8) beside its processor, and
check each file against PyTorch.

    dcclip export --model_name_or_path runs/align/final --output_dir deploy/

The output folder holds everything a device needs: `image_encoder.onnx`, `text_encoder.onnx`, their `.int8.onnx`
twins, the processor files (tokenizer + image preprocessing config) and `export_report.json` (opset, inputs, outputs,
file sizes, parity of every file against PyTorch). The work is done in `deployment_folder.py`.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field

from dcclip.command_errors import run_command
from dcclip.command_line import check_model_location, report_written
from dcclip.option_help import parse_dataclass_arguments

EPILOG = """example:
  dcclip export --model_name_or_path runs/align/final --output_dir deploy/ --benchmark runs/benchmark/eval

Writes image_encoder.onnx, text_encoder.onnx, their .int8.onnx twins, the processor files and export_report.json to
--output_dir. More: docs/deployment.md"""


@dataclass
class ExportArguments:
    model_name_or_path: str = field(metadata={"help": "Folder (or Hub id) of a saved DCCLIPModel with its processor."})
    output_dir: str = field(metadata={"help": "Folder for the ONNX files, the processor files and the report."})
    opset: int | None = field(
        default=None, metadata={"help": "ONNX opset version. Default: the one torch's exporter emits natively (18)."}
    )
    int8: bool = field(default=True, metadata={"help": "Also write dynamically quantized int8 copies (*.int8.onnx)."})
    fp32_tolerance: float = field(
        default=1e-3,
        metadata={"help": "Largest element-wise difference between ONNX fp32 and PyTorch embeddings before the "
                          "export is declared broken (non-zero exit)."},
    )
    parity_images: int = field(default=4, metadata={"help": "Random images in the parity check."})
    benchmark: str | None = field(
        default=None,
        metadata={"help": "Built-in benchmark folder (imagefolder + tasks.json, from `dcclip make-benchmark`): "
                          "also report the zero-shot scores of PyTorch, ONNX fp32 and ONNX int8 on it, EN and ZH."},
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of `dcclip export`."""
    (args,) = parse_dataclass_arguments("export", [ExportArguments], argv, epilog=EPILOG)
    check_model_location(args.model_name_or_path, "--model_name_or_path")
    # onnxscript and the quantizer log every graph pass at INFO; keep their warnings and this command's progress.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("dcclip.export").setLevel(logging.INFO)
    from dcclip.export.deployment_folder import REPORT_FILE, export_model  # after parsing: it imports torch, onnx

    report = export_model(args, show_progress=True)
    print(json.dumps({key: report[key] for key in ("files", "parity", "zero_shot") if key in report}, indent=2))
    report_written("export", f"{', '.join(sorted(report['files']))}, the processor files and {REPORT_FILE} to "
                   f"{args.output_dir}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(run_command("export", main))
