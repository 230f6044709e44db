"""The frozen evaluation set of one (line, camera): drawn once, then never changed, so that
every champion and challenger is compared on the same frames.

Which good frames are held out is decided per frame by a seeded hash of its bytes, not by a
draw over the frames present: the choice never depends on when a frame arrived, and the
training pool can keep held-out frames out even before the set exists (see `pool`). The set
is made the first time the held-out goods and the defects reach the configured minimum; it
then holds all of them. Defects arriving later join neither the set nor any training pool.
"""

import hashlib
import io
import logging
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Literal

from PIL import Image
from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from data_contracts.bundle import sha256_file
from pipeline.errors import DataError
from pipeline.line.config import FrozenSetConfig
from pipeline.line.layout import StorePaths, source_path
from pipeline.line.ledger import latest, locked, read_entries
from pipeline.line.storefiles import place_link, write_atomic

log = logging.getLogger(__name__)

MASK_TAG = "_mask"
UNLOCATED = "defect_unlocated"  # defects without a mask: scored per image, empty masks


class FrozenFrame(BaseModel):
    """One frame of the set, with the hashes its files must keep."""

    model_config = ConfigDict(extra="forbid")

    day: date
    image: str
    name: str
    label: Literal["good", "defect"]
    sha256: str
    mask: str | None
    mask_sha256: str | None
    height: int
    width: int


class FrozenSet(BaseModel):
    """The set as written to `frozen/manifest.json`; `fingerprint` names it in reports."""

    model_config = ConfigDict(extra="forbid")

    line: str
    camera: str
    created: AwareDatetime
    config: FrozenSetConfig
    fingerprint: str
    frames: list[FrozenFrame]

    def count(self, label: str) -> int:
        return sum(f.label == label for f in self.frames)


def held_out(sha256: str, config: FrozenSetConfig) -> bool:
    """Whether a good frame with these bytes belongs to the evaluation share."""
    digest = hashlib.sha256(f"{config.seed}:{sha256}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < config.good_fraction * 2**64


def load_frozen_set(store_root: Path, line: str, camera: str) -> FrozenSet | None:
    """The set of this (line, camera), or None while it has not been made."""
    path = StorePaths.of(store_root, line, camera).frozen_manifest
    if not path.is_file():
        return None
    try:
        return FrozenSet.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise DataError(f"{path}: not a valid frozen-set manifest") from exc


def _fingerprint(frames: list[FrozenFrame]) -> str:
    digest = hashlib.sha256()
    for frame in frames:
        digest.update(f"{frame.name}:{frame.sha256}:{frame.mask_sha256}\n".encode())
    return digest.hexdigest()


def freeze_evaluation_set(
    store_root: Path, line: str, camera: str, config: FrozenSetConfig | None = None
) -> FrozenSet | None:
    """The frozen set: the existing one, else a new one when enough labelled frames have been
    accepted, else None. Once written it is returned unchanged, whatever `config` says."""
    config = config or FrozenSetConfig()
    store = StorePaths.of(store_root, line, camera)
    with locked(store.lock):
        if (existing := load_frozen_set(store_root, line, camera)) is not None:
            if existing.config != config:
                log.warning("%s/%s: the frozen set keeps the config it was made with", line, camera)
            return existing
        accepted = [
            e for e in latest(read_entries(store.ledger)).values() if e.verdict == "accepted"
        ]
        chosen = [
            e
            for e in accepted
            if e.label == "defect" or (e.label == "good" and held_out(e.sha256, config))
        ]
        frames = [
            FrozenFrame(
                day=e.day,
                image=e.image,
                name=e.name,
                label=e.label,
                sha256=e.sha256,
                mask=e.mask,
                mask_sha256=e.mask_sha256,
                height=e.height,
                width=e.width,
            )
            for e in sorted(chosen, key=lambda e: e.key)
        ]
        frozen = FrozenSet(
            line=line,
            camera=camera,
            created=datetime.now(timezone.utc),
            config=config,
            fingerprint=_fingerprint(frames),
            frames=frames,
        )
        if frozen.count("good") < config.min_good or frozen.count("defect") < config.min_defect:
            return None
        write_atomic(store.frozen_manifest, frozen.model_dump_json(indent=1).encode())
        return frozen


def _checked(path: Path, sha256: str) -> Path:
    """`path`, after making sure it still holds the bytes that were frozen."""
    if not path.is_file():
        raise DataError(f"{path}: file of the frozen evaluation set is gone")
    if sha256_file(path) != sha256:
        raise DataError(f"{path}: changed since the evaluation set was frozen (sha256 differs)")
    return path


def _empty_mask(store: StorePaths, frame: FrozenFrame) -> Path:
    """An all-zero mask for a defect the station did not outline, written once."""
    path = store.frozen / "empty_masks" / f"{Path(frame.name).stem}{MASK_TAG}.png"
    if not path.is_file():
        png = io.BytesIO()
        Image.new("L", (frame.width, frame.height)).save(png, format="PNG")
        write_atomic(path, png.getvalue())
    return path


def evaluation_files(
    frozen: FrozenSet, data_root: Path, store_root: Path
) -> list[tuple[str, Path]]:
    """(path in an MVTec-layout folder, file it links to) for every file of the set, each
    verified against its frozen hash. Defects with a mask go to `test/defect`, those without
    to `test/defect_unlocated` with an empty mask."""
    store = StorePaths.of(store_root, frozen.line, frozen.camera)
    files = []
    for frame in frozen.frames:
        source = source_path(data_root, frozen.line, frozen.camera, frame.day, frame.image)
        image = _checked(source, frame.sha256)
        stem = Path(frame.name).stem
        if frame.label == "good":
            files.append((f"test/good/{frame.name}", image))
        elif frame.mask is None or frame.mask_sha256 is None:
            files.append((f"test/{UNLOCATED}/{frame.name}", image))
            files.append(
                (f"ground_truth/{UNLOCATED}/{stem}{MASK_TAG}.png", _empty_mask(store, frame))
            )
        else:
            mask_source = source_path(data_root, frozen.line, frozen.camera, frame.day, frame.mask)
            mask = _checked(mask_source, frame.mask_sha256)
            files.append((f"test/defect/{frame.name}", image))
            files.append((f"ground_truth/defect/{stem}{MASK_TAG}{mask.suffix}", mask))
    return files


def materialise_frozen(frozen: FrozenSet, data_root: Path, store_root: Path) -> Path:
    """Link the set as `frozen/test/...` and `frozen/ground_truth/...` in the store.

    This folder has no `train/good`, so the dataset readers refuse it alone: evaluate on a
    training pool folder (`pool.materialise_pool`), which carries the same `test/`."""
    out = StorePaths.of(store_root, frozen.line, frozen.camera).frozen
    for rel, target in evaluation_files(frozen, data_root, store_root):
        place_link(target, out / rel)
    return out
