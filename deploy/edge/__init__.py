"""The camera-side runtime: frames in, one verdict record per frame out, hot-swappable model.

Runs with only numpy, OpenCV, ONNX Runtime or TensorRT and `data_contracts` installed; it
never imports torch, MLflow, Prefect or the `pipeline`/`flows` packages.
"""
