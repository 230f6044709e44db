"""Export of the deployed module to ONNX, its parity with the lab, and the edge bundle."""
