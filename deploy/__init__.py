"""Edge deployment: the camera-side runtime (`deploy.edge`), TensorRT engine building on the
target (`deploy.tensorrt`), and packaging (`docker/`, `systemd/`). Runs with numpy, OpenCV,
ONNX Runtime or TensorRT and `data_contracts` only: never torch, MLflow or Prefect."""
