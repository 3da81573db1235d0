"""TorchScript, ONNX and TensorRT export, INT8 quantization and the parity gate (needs torch)."""
