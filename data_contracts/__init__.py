"""Data contracts: the shapes of data that cross a boundary (disk, MLflow, the edge, a collector).

Pydantic v2 models only; this package imports nothing else of ours, so the edge runtime
can install it alone. `python -m data_contracts.export` rewrites the JSON Schemas.
"""

from data_contracts.bundle import (
    BundleRefused,
    EdgeBundle,
    EngineEntry,
    GraphInput,
    GraphOutputs,
    ParityCheck,
    load_edge_bundle,
)
from data_contracts.dataset import DatasetLayout, DefectSplit
from data_contracts.drift import (
    DomainClassifier,
    DriftReference,
    DriftReport,
    DriftTest,
    ShiftedFrame,
    UnreadableFrame,
)
from data_contracts.evaluation import (
    CalibrationSummary,
    DefectBreakdown,
    EvaluationReport,
    OperatingPoint,
    SyntheticCheck,
)
from data_contracts.frame import FrameContract
from data_contracts.line import (
    IngestReport,
    LabelCounts,
    LineManifestRow,
    QuarantinedFrame,
    RejectedRow,
)
from data_contracts.score import ScoreRecord
from data_contracts.stress import (
    AttackResult,
    DetectionFigures,
    PerturbationResult,
    SanityCheck,
    StressReport,
)

CONTRACTS = {
    "dataset_layout": DatasetLayout,
    "frame": FrameContract,
    "score_record": ScoreRecord,
    "evaluation_report": EvaluationReport,
    "drift_reference": DriftReference,
    "drift_report": DriftReport,
    "stress_report": StressReport,
    "edge_bundle": EdgeBundle,
    "line_manifest_row": LineManifestRow,
    "ingest_report": IngestReport,
}

__all__ = [
    "BundleRefused",
    "EdgeBundle",
    "EngineEntry",
    "GraphInput",
    "GraphOutputs",
    "ParityCheck",
    "load_edge_bundle",
    "AttackResult",
    "DetectionFigures",
    "PerturbationResult",
    "SanityCheck",
    "StressReport",
    "CONTRACTS",
    "CalibrationSummary",
    "DatasetLayout",
    "DefectBreakdown",
    "DefectSplit",
    "DomainClassifier",
    "DriftReference",
    "DriftReport",
    "DriftTest",
    "EvaluationReport",
    "FrameContract",
    "IngestReport",
    "LabelCounts",
    "LineManifestRow",
    "OperatingPoint",
    "QuarantinedFrame",
    "RejectedRow",
    "ScoreRecord",
    "ShiftedFrame",
    "SyntheticCheck",
    "UnreadableFrame",
]
