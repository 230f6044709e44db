"""Parity of the exported graph with the lab's torch module, on real preprocessed images.

Both sides get the same uint8 frames; the ONNX side runs in the layout the bundle declares and
at a batch other than 1, so the dynamic batch axis is exercised too. Decisions must agree on
every image, scores and maps within the configured tolerances.
"""

import os
from pathlib import Path

import numpy as np
import torch

from data_contracts.bundle import ParityCheck
from pipeline.config import ExportConfig
from pipeline.export.graph import INPUT_NAME, graph_input
from pipeline.scoring import InspectionModule, to_tensor

Outputs = tuple[np.ndarray, np.ndarray, np.ndarray]


@torch.no_grad()
def torch_outputs(module: InspectionModule, frames: np.ndarray, batch: int) -> Outputs:
    """(scores, maps, decisions) of the lab module on uint8 frames (N, H, W, C)."""
    module.eval()
    parts = [module(to_tensor(frames[i : i + batch])) for i in range(0, len(frames), batch)]
    return tuple(np.concatenate([p[k].numpy() for p in parts]) for k in range(3))  # type: ignore[return-value]


def onnx_session(path: Path):
    """An ONNX Runtime CPU session as the edge runs it: full graph optimisation, one intra-op
    thread per core (measured faster than ONNX Runtime's own default on our 2-core CPU)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = os.cpu_count() or 0
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def session_outputs(session, frames: np.ndarray, layout: str, batch: int) -> Outputs:
    """(scores, maps, decisions) of an ONNX Runtime session, batch by batch."""
    parts = [
        session.run(None, {INPUT_NAME: graph_input(frames[i : i + batch], layout)})
        for i in range(0, len(frames), batch)
    ]
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))  # type: ignore[return-value]


def onnx_parity(
    module: InspectionModule, onnx_path: Path, frames: np.ndarray, source: str, cfg: ExportConfig
) -> ParityCheck:
    """Compare the module (torch, CPU) with its ONNX file (ONNX Runtime, CPU) on `frames`."""
    expected = torch_outputs(module, frames, cfg.max_batch)
    got = session_outputs(onnx_session(onnx_path), frames, cfg.input_layout, cfg.max_batch)
    return ParityCheck.measure(
        expected,
        got,
        runtime="onnxruntime-cpu",
        reference="torch-cpu",
        source=source,
        score_tolerance=cfg.score_tolerance,
        map_tolerance=cfg.map_tolerance,
        min_agreement=1.0,
    )


def evenly_spaced(items: int, wanted: int) -> np.ndarray:
    """Indices of at most `wanted` items spread over all of them (every class of a sorted set)."""
    if items <= wanted:
        return np.arange(items)
    return np.unique(np.linspace(0, items - 1, wanted).round().astype(int))
