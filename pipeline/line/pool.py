"""The training pool of a challenger: which accepted frames it learns from.

Good frames join; unlabelled ones only when the policy allows and the champion scores them
far below its threshold (a defect among them would teach the model that defects are
normal); defects, quarantined frames and the frozen evaluation set never. The champion is
passed in as a scorer, so this module knows nothing of models.
"""

import math
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import AwareDatetime, BaseModel, ConfigDict

from pipeline.errors import DataError
from pipeline.line.config import FrozenSetConfig, PoolPolicy
from pipeline.line.frozen import evaluation_files, held_out, load_frozen_set
from pipeline.line.layout import StorePaths, source_path
from pipeline.line.ledger import LedgerEntry, latest, read_entries
from pipeline.line.storefiles import place_link, write_atomic

Scorer = Callable[[list[Path]], np.ndarray]
"""Champion image scores for the given files, in order (higher = more anomalous)."""

POOL_RECORD = "pool.json"


class PoolFrame(BaseModel):
    """One frame of the pool; `score` is the champion's, for admitted unlabelled frames."""

    model_config = ConfigDict(extra="forbid")

    day: date
    image: str
    name: str
    label: Literal["good", "unknown"]
    sha256: str
    score: float | None = None


class TrainingPool(BaseModel):
    """The frames a challenger trains on, and how many decided frames were left out, by
    reason (keys are valid MLflow metric names)."""

    model_config = ConfigDict(extra="forbid")

    line: str
    camera: str
    created: AwareDatetime
    policy: PoolPolicy
    threshold: float | None
    frozen_fingerprint: str | None
    frames: list[PoolFrame]
    excluded: dict[str, int]


def _admit_unknown(
    unknown: list[LedgerEntry],
    paths: list[Path],
    policy: PoolPolicy,
    scorer: Scorer | None,
    threshold: float | None,
    excluded: Counter,
) -> list[PoolFrame]:
    """The unlabelled frames the policy lets in, each with the champion's score."""
    if not unknown:
        return []
    if policy.unknown == "never":
        excluded["unknown_policy_never"] += len(unknown)
        return []
    if scorer is None or threshold is None:
        excluded["unknown_no_champion"] += len(unknown)
        return []
    scores = np.asarray(scorer(paths), dtype=np.float64).reshape(-1)
    if scores.shape != (len(paths),):
        raise ValueError(f"the scorer returned {scores.size} scores for {len(paths)} frames")
    limit = policy.unknown_max_score * threshold
    admitted = []
    for entry, score in zip(unknown, scores, strict=True):
        if math.isfinite(score) and score <= limit:
            admitted.append(_frame(entry, float(score)))
        else:
            excluded["unknown_above_limit"] += 1
    return admitted


def _frame(entry: LedgerEntry, score: float | None = None) -> PoolFrame:
    return PoolFrame(
        day=entry.day,
        image=entry.image,
        name=entry.name,
        label=entry.label,
        sha256=entry.sha256,
        score=score,
    )


def select_training_pool(
    data_root: Path,
    store_root: Path,
    line: str,
    camera: str,
    *,
    policy: PoolPolicy | None = None,
    frozen_config: FrozenSetConfig | None = None,
    scorer: Scorer | None = None,
    threshold: float | None = None,
) -> TrainingPool:
    """Choose the pool from the ledger. `scorer` and `threshold` are the champion's (None
    before the first model); `frozen_config` must be the one the frozen set is made with,
    so that goods held out for it stay out of training before it exists."""
    policy = policy or PoolPolicy()
    frozen_config = frozen_config or FrozenSetConfig()
    if threshold is not None and threshold <= 0:
        raise ValueError(f"the champion's threshold must be positive, got {threshold}")
    frozen = load_frozen_set(store_root, line, camera)
    frozen_keys = {(f.day, f.image) for f in frozen.frames} if frozen else set()
    frozen_bytes = {f.sha256 for f in frozen.frames} if frozen else set()
    store = StorePaths.of(store_root, line, camera)
    excluded: Counter = Counter()
    goods, unknown = [], []
    for entry in latest(read_entries(store.ledger)).values():
        if entry.verdict != "accepted":
            excluded["quarantined"] += 1
        elif entry.label == "defect":
            excluded["defect"] += 1
        elif entry.key in frozen_keys or entry.sha256 in frozen_bytes:
            excluded["frozen_set"] += 1
        elif frozen is None and entry.label == "good" and held_out(entry.sha256, frozen_config):
            excluded["held_out_for_frozen_set"] += 1
        elif entry.label == "good":
            goods.append(_frame(entry))
        else:
            unknown.append(entry)
    paths = [source_path(data_root, line, camera, e.day, e.image) for e in unknown]
    admitted = _admit_unknown(unknown, paths, policy, scorer, threshold, excluded)
    return TrainingPool(
        line=line,
        camera=camera,
        created=datetime.now(timezone.utc),
        policy=policy,
        threshold=threshold,
        frozen_fingerprint=frozen.fingerprint if frozen else None,
        frames=goods + admitted,
        excluded=dict(excluded),
    )


def materialise_pool(pool: TrainingPool, out: Path, *, data_root: Path, store_root: Path) -> Path:
    """Write the pool as an MVTec-layout folder of links: `train/good/<day>__<name>`, plus
    the frozen set's `test/` and `ground_truth/` so that the train flow evaluates on it, and
    `pool.json`. `out` must be new or empty (e.g. `StorePaths.pool(run_tag)`)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out}: pool folder already exists and is not empty")
    if not pool.frames:
        raise DataError(f"{pool.line}/{pool.camera}: the training pool is empty")
    for frame in pool.frames:
        source = source_path(data_root, pool.line, pool.camera, frame.day, frame.image)
        place_link(source, out / "train" / "good" / frame.name)
    if pool.frozen_fingerprint is not None:
        frozen = load_frozen_set(store_root, pool.line, pool.camera)
        if frozen is None or frozen.fingerprint != pool.frozen_fingerprint:
            raise DataError(f"{pool.line}/{pool.camera}: the frozen set is not the pool's")
        for rel, target in evaluation_files(frozen, data_root, store_root):
            place_link(target, out / rel)
    write_atomic(out / POOL_RECORD, pool.model_dump_json(indent=1).encode())
    return out
