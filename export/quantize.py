"""int8 weights for an exported tower with onnxruntime's dynamic quantization.

Dynamic quantization stores MatMul and Gather (embedding) weights as int8, per output channel, and quantizes
activations on the fly, so it needs no calibration data. Conv layers stay fp32: onnxruntime runs quantized
convolutions through `ConvInteger`, which on CPU was slower than fp32 for ConvNeXt's 7x7 depthwise convolutions
(docs/deployment.md has the measurements, including static quantization with a calibration set, which was not faster).
"""

from __future__ import annotations

import logging
from pathlib import Path

from onnxruntime.quantization import QuantType, quantize_dynamic

QUANTIZED_OP_TYPES = ("MatMul", "Gather")


class _WithoutPreprocessingAdvice(logging.Filter):
    """Drops onnxruntime's advice to run its pre-processing first, logged at every call; whether an int8 file is good
    is what the parity check against PyTorch (export_report.json) says."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def quantize_int8_dynamic(fp32_path: str | Path, int8_path: str | Path) -> Path:
    """Write an int8 copy of the ONNX model at `fp32_path` to `int8_path` (same inputs and outputs)."""
    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    if not fp32_path.is_file():
        raise FileNotFoundError(f"quantize_int8_dynamic: no ONNX file at {fp32_path}")
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    advice = _WithoutPreprocessingAdvice()
    logging.getLogger().addFilter(advice)  # onnxruntime logs it on the root logger
    try:
        quantize_dynamic(
            fp32_path,
            int8_path,
            op_types_to_quantize=list(QUANTIZED_OP_TYPES),
            per_channel=True,
            weight_type=QuantType.QInt8,
            # 7-bit weights: on x86 CPUs without VNNI (AVX2) onnxruntime multiplies uint8 activations by int8 weights
            # with an instruction whose 16-bit pair sums saturate. Measured on an AVX2 host (docs/deployment.md):
            # the tiny student's image tower at cosine 0.970 to fp32 with 8-bit weights, 0.9999 with 7-bit.
            reduce_range=True,
            # The fp32 file may hold its weights externally (towers over 2 GiB); the int8 one is 4x smaller and fits.
            use_external_data_format=False,
        )
    finally:
        logging.getLogger().removeFilter(advice)
    return int8_path
