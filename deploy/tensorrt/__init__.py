"""TensorRT engines for the edge: build on the target, check against ONNX Runtime, add to a bundle.

TensorRT and the CUDA bindings are imported only inside the functions that need them, so every
module here imports (and its pure-numpy parts are tested) on machines without a GPU;
`tensorrt_available()` says why the rest cannot run. Nothing here imports torch.
"""
