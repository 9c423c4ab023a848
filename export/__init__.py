"""Deployment of a trained DC-CLIP student: ONNX export of each tower (`onnx_export`), int8 quantization
(`quantize`), parity checks (`parity`), an onnxruntime-backed model (`onnx_model`) and vocabulary pruning
(`prune_vocab`). Submodules are imported on their own so that pruning works without onnx / onnxruntime installed."""
