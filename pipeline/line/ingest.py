"""Ingest a day of line data: accept what is fit to use, quarantine the rest with a reason.

Every file of the day folder gets one decision, recorded in the ledger (see `ledger`):
accepted, or quarantined as a link under `quarantine/<day>/` beside a `<name>.reason.txt`.
Rows that name no usable file are rejected in the report. Source files are only read; paths
that leave the data root are never opened. Running a day again decides only files the
ledger does not hold yet (or whose bytes changed), so a crashed run is completed by a re-run.
"""

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

from pydantic import BaseModel

from data_contracts.bundle import sha256_file
from data_contracts.line import IngestReport, LabelCounts, QuarantinedFrame
from pipeline.errors import DataError
from pipeline.line.config import IngestConfig
from pipeline.line.frames import FrameFacts, inspect_frames
from pipeline.line.layout import (
    MANIFEST,
    StorePaths,
    day_dir,
    day_folders,
    images_on_disk,
    inside,
    link_name,
)
from pipeline.line.ledger import (
    DayRecord,
    LedgerEntry,
    appending,
    latest,
    locked,
    read_days,
    read_entries,
)
from pipeline.line.manifest import Manifest, Row, read_manifest
from pipeline.line.storefiles import place_link, write_atomic

log = logging.getLogger(__name__)

NOT_IN_MANIFEST = "not in manifest"


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class _Day:
    """One ingestion of one day folder in progress: the ledger so far and what it added."""

    store: StorePaths
    folder: Path
    day: date
    config: IngestConfig
    decided: dict[tuple[date, str], LedgerEntry]
    append: Callable[[BaseModel], None]
    accepted: Counter = field(default_factory=Counter)
    quarantined: list[QuarantinedFrame] = field(default_factory=list)
    already: int = 0
    accepted_bytes: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        """sha256 -> `<day>/<image>` of every accepted frame, to refuse copies of them."""
        self.accepted_bytes = {
            e.sha256: f"{e.day}/{e.image}"
            for e in self.decided.values()
            if e.verdict == "accepted" and e.sha256 is not None
        }

    def _record(self, entry: LedgerEntry) -> None:
        self.append(entry)
        self.decided[entry.key] = entry

    def accept(self, rel: str, **facts) -> None:
        entry = LedgerEntry(
            day=self.day,
            image=rel,
            name=link_name(self.day, rel),
            verdict="accepted",
            when=_now(),
            **facts,
        )
        self._record(entry)
        self.accepted[entry.label] += 1
        self.accepted_bytes[entry.sha256] = f"{self.day}/{rel}"

    def quarantine(self, rel: str, reason: str, *, readable: bool = True, **facts) -> None:
        """Link the file (unless it must not be followed) and say why, then record it."""
        name = link_name(self.day, rel)
        folder = self.store.quarantine(self.day)
        if readable:
            place_link(self.folder / rel, folder / name)
        write_atomic(folder / f"{name}.reason.txt", f"{self.day}/{rel}: {reason}\n".encode())
        self._record(
            LedgerEntry(
                day=self.day,
                image=rel,
                name=name,
                verdict="quarantined",
                reason=reason,
                when=_now(),
                **facts,
            )
        )
        self.quarantined.append(QuarantinedFrame(path=rel, reason=reason))


def _expected_channels(
    contract_channels: int | None,
    decided: dict[tuple[date, str], LedgerEntry],
    facts: list[FrameFacts],
) -> tuple[int | None, str]:
    """The channel count every frame must have, and why: the model's contract when given,
    else the first frames this camera had accepted, else most readable frames of this day."""
    if contract_channels is not None:
        return contract_channels, "the model's contract"
    for entry in decided.values():
        if entry.verdict == "accepted" and entry.channels is not None:
            return entry.channels, "like the frames accepted before"
    counts = Counter(f.channels for f in facts if f.problem is None)
    if not counts:
        return None, "no readable frame"
    return counts.most_common(1)[0][0], "like most frames of this day"


def _row_problem(
    work: _Day, row: Row, facts: FrameFacts, sha: str, channels: tuple[int | None, str]
) -> str | None:
    """Why a readable frame named by a usable row cannot be accepted, or None."""
    if facts.problem is not None:
        return facts.problem
    expected, why = channels
    if facts.channels != expected:
        return f"has {facts.channels} channel(s), expected {expected} ({why})"
    captured = row.row.capture_time.date()
    if abs((captured - work.day).days) > work.config.date_tolerance_days:
        return f"captured on {captured} ({row.row.capture_time.isoformat()}), not on {work.day}"
    if sha in work.accepted_bytes:
        return f"same bytes as {work.accepted_bytes[sha]}, already accepted"
    return None


def _ingest_rows(work: _Day, manifest: Manifest, contract_channels: int | None) -> int | None:
    """Decide every frame named by a usable row; returns the channel count required."""
    todo = []
    for row in manifest.rows:
        sha = sha256_file(work.folder / row.image)
        prior = work.decided.get((work.day, row.image))
        if prior is not None and prior.sha256 == sha:
            work.already += 1
        else:
            todo.append((row, sha, prior))
    frames = [(work.folder / r.image, work.folder / r.mask if r.mask else None) for r, _, _ in todo]
    looks = inspect_frames(frames, work.config.min_size)
    channels = _expected_channels(contract_channels, work.decided, looks)
    for (row, sha, prior), facts in zip(todo, looks, strict=True):
        known = {
            "sha256": sha,
            "label": row.row.label,
            "part_id": row.row.part_id,
            "capture_time": row.row.capture_time,
            "mask": row.mask,
            "mask_sha256": facts.mask_sha256,
            "channels": facts.channels,
            "height": facts.height,
            "width": facts.width,
        }
        if prior is not None and prior.verdict == "accepted":
            problem = f"bytes changed since it was accepted on {prior.when.date()}"
        else:
            problem = _row_problem(work, row, facts, sha, channels)
        if problem is None:
            work.accept(row.image, **known)
        else:
            work.quarantine(row.image, problem, **known)
    return channels[0]


def _unlisted_problem(path: Path, data_root: Path) -> str | None:
    """Why a file found on disk must not even be read, or None."""
    if not inside(path, data_root):
        return "symlink resolves outside the data root, not followed"
    if not path.is_file():
        return "broken symlink or not a regular file"
    return None


def _ingest_unlisted(work: _Day, manifest: Manifest, data_root: Path) -> None:
    """Quarantine every image file of the day folder that no usable row names."""
    listed = {r.image for r in manifest.rows} | {r.mask for r in manifest.rows if r.mask}
    for rel in images_on_disk(work.folder):
        if rel in listed:
            continue
        path = work.folder / rel
        unsafe = _unlisted_problem(path, data_root)
        sha = None if unsafe else sha256_file(path)
        prior = work.decided.get((work.day, rel))
        if prior is not None and prior.sha256 == sha:
            work.already += 1
            continue
        rejected = manifest.named_by_rejected.get(rel)
        if unsafe is not None:
            reason = unsafe
        elif rejected is not None:
            reason = f"its manifest row {rejected.row} was rejected: {rejected.reason}"
        else:
            reason = NOT_IN_MANIFEST
        work.quarantine(rel, reason, readable=unsafe is None, sha256=sha)


def _mark_done(store: StorePaths, day: date, manifest_sha256: str) -> None:
    done = read_days(store.days)
    if not any(r.day == day and r.manifest_sha256 == manifest_sha256 for r in done):
        with appending(store.days) as append:
            append(DayRecord(day=day, manifest_sha256=manifest_sha256, when=_now()))


def ingest_day(
    data_root: Path,
    line: str,
    camera: str,
    day: date,
    store_root: Path,
    contract_channels: int | None = None,
    *,
    config: IngestConfig | None = None,
) -> IngestReport:
    """Ingest `<data_root>/<line>/<camera>/<day>/` into the store; see the module docstring.

    `contract_channels` fixes the channel count frames must have (the model's); None takes
    it from the frames. Raises DataError when the day folder or its manifest is missing or
    lies outside the data root.
    """
    data_root = Path(data_root)
    folder = day_dir(data_root, line, camera, day)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such day folder")
    if not inside(folder, data_root):
        raise DataError(f"{folder}: day folder resolves outside the data root")
    store = StorePaths.of(store_root, line, camera)
    with locked(store.lock):
        manifest = read_manifest(folder / MANIFEST, data_root)
        with appending(store.ledger) as append:
            decided = latest(read_entries(store.ledger))
            work = _Day(store, folder, day, config or IngestConfig(), decided, append)
            channels = _ingest_rows(work, manifest, contract_channels)
            _ingest_unlisted(work, manifest, data_root)
        _mark_done(store, day, manifest.sha256)
    report = IngestReport(
        line=line,
        camera=camera,
        day=day,
        manifest_rows=manifest.row_count,
        channels=channels,
        accepted=LabelCounts(**work.accepted),
        quarantined=work.quarantined,
        already_ingested=work.already,
        rejected_rows=manifest.rejected,
        when=_now(),
    )
    log.info(
        "%s/%s/%s: accepted %s, quarantined %d, rejected rows %d, already ingested %d",
        line,
        camera,
        day,
        dict(work.accepted),
        len(work.quarantined),
        len(manifest.rejected),
        work.already,
    )
    return report


def pending_days(data_root: Path, line: str, camera: str, store_root: Path) -> list[date]:
    """Days with a manifest whose current version has not been ingested to the end. A
    manifest outside the data root is not read: its day is pending, and `ingest_day` refuses
    it by name."""
    store = StorePaths.of(store_root, line, camera)
    done = {(r.day, r.manifest_sha256) for r in read_days(store.days)}
    pending = []
    for day in day_folders(data_root, line, camera):
        manifest = day_dir(data_root, line, camera, day) / MANIFEST
        if not inside(manifest, data_root) or (day, sha256_file(manifest)) not in done:
            pending.append(day)
    return pending


def ingest_new_days(
    data_root: Path,
    line: str,
    camera: str,
    store_root: Path,
    contract_channels: int | None = None,
    *,
    config: IngestConfig | None = None,
) -> list[IngestReport]:
    """`ingest_day` for every pending day, oldest first."""
    return [
        ingest_day(data_root, line, camera, day, store_root, contract_channels, config=config)
        for day in pending_days(data_root, line, camera, store_root)
    ]
