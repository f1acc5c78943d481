"""A trained policy written as ONNX and TorchScript files that carry its recurrent state."""
