"""Contract of the edge bundle: the folder that leaves the lab for the camera's computer.

`bundle.json` names the ONNX graph, its input and outputs, the threshold it decides with, the
engines built on targets and the sha256 of every other file. Hashing lives here, with only the
standard library, so the lab and the edge runtime check a bundle with the same code.
"""

import hashlib
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from data_contracts.frame import FrameContract

BUNDLE_JSON = "bundle.json"


class BundleRefused(Exception):
    """The folder is not an intact edge bundle; the message names the file and the problem."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hash_problems(bundle_dir: Path, files: dict[str, str]) -> list[str]:
    """Every listed file that is missing or whose sha256 differs, as one line each."""
    bundle_dir = Path(bundle_dir)
    if not files:
        return [f"{bundle_dir / BUNDLE_JSON}: lists no files and hashes"]
    found = []
    for name, expected in files.items():
        path = bundle_dir / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            found.append(f"{bundle_dir / BUNDLE_JSON}: file name {name!r} leaves the bundle")
        elif not path.is_file():
            found.append(f"{path}: listed in {BUNDLE_JSON} but missing")
        elif sha256_file(path) != expected:
            found.append(
                f"{path}: sha256 does not match {BUNDLE_JSON} (file changed or corrupt); "
                "refusing this bundle"
            )
    return found


class GraphInput(BaseModel):
    """The graph's one input: a batch of frames already resized to the contract's input size."""

    model_config = ConfigDict(extra="forbid")

    name: str = "images"
    layout: Literal["uint8_nhwc", "float_nchw"] = Field(
        description="uint8_nhwc: raw pixels, the graph scales them; float_nchw: values in [0, 1]."
    )
    channel_order: Literal["rgb", "gray"]
    contract: FrameContract


class GraphOutputs(BaseModel):
    """Output names: score (B,), fused anomaly map (B, H, W), decision (B,) bool."""

    model_config = ConfigDict(extra="forbid")

    score: str = "image_score"
    anomaly_map: str = "anomaly_map"
    is_defect: str = "is_defect"


class ParityCheck(BaseModel):
    """How closely a runtime reproduced a reference (the lab's torch module, or ONNX Runtime
    for an engine) on real images, and whether that is close enough to deploy."""

    model_config = ConfigDict(extra="forbid")

    runtime: str = Field(description="e.g. onnxruntime-cpu, tensorrt-fp16.")
    reference: str = Field(description="What it was compared with, e.g. torch-cpu.")
    images: int = Field(ge=1)
    source: str = Field(description="Which images were compared.")
    max_score_diff: float = Field(ge=0)
    max_map_diff: float = Field(ge=0)
    decision_agreement: float = Field(ge=0, le=1)
    rank_correlation: float = Field(ge=-1, le=1, description="Spearman of the scores.")
    score_tolerance: float | None = Field(None, description="None: not a criterion.")
    map_tolerance: float | None = Field(None, description="None: not a criterion.")
    min_agreement: float = Field(ge=0, le=1)
    min_rank_correlation: float | None = None
    passed: bool

    @classmethod
    def measure(
        cls,
        expected: tuple[np.ndarray, np.ndarray, np.ndarray],
        got: tuple[np.ndarray, np.ndarray, np.ndarray],
        **criteria: Any,
    ) -> "ParityCheck":
        """Compare (scores, maps, decisions) of two runtimes; `criteria` are the other fields
        except the measured ones and `passed`."""
        ref_s, ref_m, ref_d = (np.asarray(a) for a in expected)
        got_s, got_m, got_d = (np.asarray(a) for a in got)
        if ref_s.shape != got_s.shape or ref_m.shape != got_m.shape:
            raise ValueError(f"outputs differ in shape: {ref_m.shape} vs {got_m.shape}")
        figures = {
            "images": int(ref_s.size),
            "max_score_diff": float(np.abs(ref_s.astype(np.float64) - got_s).max()),
            "max_map_diff": float(np.abs(ref_m.astype(np.float64) - got_m).max()),
            "decision_agreement": float(np.mean(ref_d.astype(bool) == got_d.astype(bool))),
            "rank_correlation": spearman(ref_s, got_s),
        }
        check = cls.model_validate({**criteria, **figures, "passed": False})
        return check.model_copy(update={"passed": check.meets_criteria()})

    def meets_criteria(self) -> bool:
        return (
            (self.score_tolerance is None or self.max_score_diff <= self.score_tolerance)
            and (self.map_tolerance is None or self.max_map_diff <= self.map_tolerance)
            and self.decision_agreement >= self.min_agreement
            and (
                self.min_rank_correlation is None
                or self.rank_correlation >= self.min_rank_correlation
            )
        )

    def summary(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        return (
            f"{self.runtime} vs {self.reference} on {self.images} images ({self.source}): "
            f"{verdict}; max |score diff| {self.max_score_diff:.2e}, max |map diff| "
            f"{self.max_map_diff:.2e}, decisions agree {self.decision_agreement:.2%}, "
            f"rank correlation {self.rank_correlation:.5f}"
        )


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation (ties broken by order); 1.0 for fewer than two or constant scores."""
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    if a.size < 2:
        return 1.0
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float(np.clip((ra * rb).sum() / denom, -1, 1)) if denom > 0 else 1.0


class EngineEntry(BaseModel):
    """A TensorRT engine built on a target: valid only for that GPU and TensorRT version."""

    model_config = ConfigDict(extra="forbid")

    file: str
    tensorrt_version: str
    device: str = Field(description="GPU name the engine was built on.")
    compute_capability: str
    precision: Literal["fp32", "fp16", "int8-qdq", "strongly-typed"]
    batch: tuple[int, int, int] = Field(description="Optimisation profile: min, opt, max.")
    built: datetime
    parity: ParityCheck | None = None


class EdgeBundle(BaseModel):
    """bundle.json of an edge bundle."""

    model_config = ConfigDict(extra="forbid")

    format: Literal[1] = 1
    model_name: str
    model_family: str
    model_version: str
    created: datetime
    onnx: str = "model.onnx"
    opset: int = Field(ge=17)
    max_batch: int = Field(ge=1, description="Largest batch the parity check and engines cover.")
    input: GraphInput
    outputs: GraphOutputs = Field(default_factory=GraphOutputs)
    threshold: float
    alpha: float = Field(gt=0, lt=1, description="False-alarm budget the threshold was fitted to.")
    parity: ParityCheck
    drift_reference: str | None = Field(None, description="File name of the drift reference.")
    engines: list[EngineEntry] = Field(default_factory=list)
    source_run: str | None = Field(None, description="MLflow run that trained the model.")
    files: dict[str, str] = Field(description="sha256 of every file except bundle.json.")

    def problems(self, bundle_dir: Path) -> list[str]:
        """Hash mismatches and missing files; empty when the folder is this bundle, intact."""
        found = hash_problems(bundle_dir, self.files)
        named = [self.onnx, *(e.file for e in self.engines)]
        if self.drift_reference:
            named.append(self.drift_reference)
        found += [
            f"{Path(bundle_dir) / BUNDLE_JSON}: {name} is not among the hashed files"
            for name in named
            if name not in self.files
        ]
        return found


def load_edge_bundle(bundle_dir: Path) -> EdgeBundle:
    """The manifest of an intact bundle; BundleRefused naming the first problem otherwise."""
    bundle_dir = Path(bundle_dir)
    path = bundle_dir / BUNDLE_JSON
    if not path.is_file():
        raise BundleRefused(f"{bundle_dir}: not an edge bundle (no {BUNDLE_JSON})")
    try:
        manifest = EdgeBundle.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise BundleRefused(f"{path}: not a valid edge bundle ({where}: {first['msg']})") from exc
    problems = manifest.problems(bundle_dir)
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise BundleRefused(problems[0] + more)
    return manifest
