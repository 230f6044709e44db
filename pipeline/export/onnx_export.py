"""Write the deployed graph as ONNX: named input and outputs, dynamic batch, checked opset.

The TorchScript-based exporter is used: it handles every model family here (the einsum of the
latent Gaussian, the reflect-padded smoothing, top-k pooling) and needs no extra packages.
"""

import warnings
from pathlib import Path

import torch

from pipeline.config import ExportConfig
from pipeline.errors import ExportError
from pipeline.export.graph import INPUT_NAME, OUTPUT_NAMES, DeployedGraph
from pipeline.scoring import InspectionModule


def export_onnx(module: InspectionModule, path: Path, cfg: ExportConfig) -> Path:
    """Export `module` behind `cfg.input_layout` to `path` and check the file with onnx."""
    import onnx

    graph = DeployedGraph(module, cfg.input_layout)
    dynamic = {name: {0: "batch"} for name in (INPUT_NAME, *OUTPUT_NAMES)}
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's own deprecation notices
        torch.onnx.export(
            graph,
            (graph.example_input(2),),
            str(path),
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=dynamic,
            opset_version=cfg.opset,
            dynamo=False,
        )
    model = onnx.load(str(path))
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{path}: exported graph fails the ONNX checker ({exc})") from exc
    names = ([i.name for i in model.graph.input], [o.name for o in model.graph.output])
    if names != ([INPUT_NAME], list(OUTPUT_NAMES)):
        raise ExportError(f"{path}: exported graph has inputs/outputs {names}")
    return path


def onnx_opset(path: Path) -> int:
    """The default-domain opset the file declares."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
