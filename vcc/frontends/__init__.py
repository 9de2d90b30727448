"""Front ends: ONNX import and export, torch export, and the model zoo."""
