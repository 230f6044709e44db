"""Does an engine decide like the ONNX graph it was built from? Pure numpy apart from the runtimes.

Reduced precision moves scores a little, so the bars are on what matters at the line: decisions
agree on at least 99.5 % of the frames and the scores rank the frames the same way (Spearman at
least 0.999). Score and map differences are recorded, and are criteria only when given.
"""

from pathlib import Path
from typing import Protocol

import numpy as np

from data_contracts.bundle import ParityCheck
from deploy.tensorrt.errors import ParityRefused

MIN_AGREEMENT = 0.995
MIN_RANK = 0.999
Outputs = tuple[np.ndarray, np.ndarray, np.ndarray]


class Runner(Protocol):
    """What both edge backends offer: a name for records and `run(batch)`."""

    name: str

    def run(self, batch: np.ndarray) -> Outputs: ...


def compare_outputs(
    ref_scores: np.ndarray,
    ref_maps: np.ndarray,
    ref_flags: np.ndarray,
    got_scores: np.ndarray,
    got_maps: np.ndarray,
    got_flags: np.ndarray,
    *,
    runtime: str,
    source: str,
    reference: str = "onnxruntime-cpu",
    score_tolerance: float | None = None,
    map_tolerance: float | None = None,
    min_agreement: float = MIN_AGREEMENT,
    min_rank: float = MIN_RANK,
) -> ParityCheck:
    """The parity record of `runtime` against `reference` on the same frames; `passed` says
    whether it clears the bars. Non-finite scores or maps (fp16 overflow) refuse outright."""
    arrays = {
        f"{reference} scores": ref_scores,
        f"{reference} maps": ref_maps,
        f"{runtime} scores": got_scores,
        f"{runtime} maps": got_maps,
    }
    counts = {len(a) for a in (*arrays.values(), ref_flags, got_flags)}
    if len(counts) != 1 or not len(ref_scores):
        raise ValueError(f"{runtime} vs {reference}: outputs cover different or no images")
    for label, values in arrays.items():
        bad = ~np.isfinite(np.asarray(values, dtype=np.float64)).reshape(len(values), -1).all(1)
        if bad.any():
            raise ParityRefused(
                f"{label}: {int(bad.sum())} of {len(values)} images have non-finite values "
                "(overflow in reduced precision?)"
            )
    return ParityCheck.measure(
        (ref_scores, ref_maps, ref_flags),
        (got_scores, got_maps, got_flags),
        runtime=runtime,
        reference=reference,
        source=source,
        score_tolerance=score_tolerance,
        map_tolerance=map_tolerance,
        min_agreement=min_agreement,
        min_rank_correlation=min_rank,
    )


def engine_parity(
    runner: Runner,
    reference: Runner | Outputs,
    images: np.ndarray,
    *,
    source: str,
    score_tolerance: float | None = None,
    map_tolerance: float | None = None,
    min_agreement: float = MIN_AGREEMENT,
    min_rank: float = MIN_RANK,
) -> ParityCheck:
    """Run `images` (already in the graph's layout) through `runner` and compare with
    `reference`: another runner, typically ONNX Runtime, or its outputs computed earlier."""
    if isinstance(reference, tuple):
        expected, reference_name = reference, "reference outputs"
    else:
        expected, reference_name = reference.run(images), reference.name
    return compare_outputs(
        *expected,
        *runner.run(images),
        runtime=runner.name,
        reference=reference_name,
        source=source,
        score_tolerance=score_tolerance,
        map_tolerance=map_tolerance,
        min_agreement=min_agreement,
        min_rank=min_rank,
    )


class OnnxRuntimeCpu:
    """The bundle's ONNX graph in ONNX Runtime on CPU: the reference an engine must reproduce."""

    name = "onnxruntime-cpu"

    def __init__(
        self,
        onnx_path: Path,
        *,
        input_name: str,
        output_names: tuple[str, str, str],
        max_batch: int,
    ) -> None:
        import onnxruntime as ort  # here: building engines needs it, importing this module not

        options = ort.SessionOptions()
        options.log_severity_level = 3
        self._session = ort.InferenceSession(
            str(onnx_path), options, providers=["CPUExecutionProvider"]
        )
        self._input = input_name
        self._outputs = list(output_names)
        self._step = max_batch

    def run(self, batch: np.ndarray) -> Outputs:
        parts = [
            self._session.run(self._outputs, {self._input: batch[i : i + self._step]})
            for i in range(0, len(batch), self._step)
        ]
        scores, maps, flags = (np.concatenate(p) for p in zip(*parts, strict=True))
        return scores, maps, flags
