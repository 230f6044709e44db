"""New line data for scheduled retraining: ingestion with quarantine, the training pool and
the frozen evaluation set of each (line, camera).

    ingest_new_days(...)        -> IngestReport per new day (ledger, quarantine)
    freeze_evaluation_set(...)  -> FrozenSet, made once, then unchanged
    select_training_pool(...)   -> TrainingPool (goods, unknowns under the policy)
    materialise_pool(...)       -> MVTec-layout folder of links for the train flow
"""

from pipeline.line.config import FrozenSetConfig, IngestConfig, LineConfig, PoolPolicy
from pipeline.line.frozen import (
    FrozenSet,
    freeze_evaluation_set,
    load_frozen_set,
    materialise_frozen,
)
from pipeline.line.generate import GeneratedLine, LineFaults, generate_line_data
from pipeline.line.ingest import ingest_day, ingest_new_days, pending_days
from pipeline.line.layout import StorePaths
from pipeline.line.pool import Scorer, TrainingPool, materialise_pool, select_training_pool

__all__ = [
    "FrozenSet",
    "FrozenSetConfig",
    "GeneratedLine",
    "IngestConfig",
    "LineConfig",
    "LineFaults",
    "PoolPolicy",
    "Scorer",
    "StorePaths",
    "TrainingPool",
    "freeze_evaluation_set",
    "generate_line_data",
    "ingest_day",
    "ingest_new_days",
    "load_frozen_set",
    "materialise_frozen",
    "materialise_pool",
    "pending_days",
    "select_training_pool",
]
