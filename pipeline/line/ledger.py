"""The ledger of one (line, camera): every file ever decided, so ingestion is idempotent.

Two append-only JSON-lines files: `ingested.jsonl` (one line per decided file) and
`days.jsonl` (one line per day whose manifest version was ingested to the end). A crash can
only tear the last line; the reader ignores a torn last line and the next append cuts it off,
so a re-run redoes exactly the files whose line did not make it. When a file is decided
twice (its bytes changed after it was accepted), the later line holds.
"""

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from data_contracts.line import Label
from pipeline.errors import DataError

Verdict = Literal["accepted", "quarantined"]
_Entry = TypeVar("_Entry", bound=BaseModel)


class LedgerEntry(BaseModel):
    """The decision on one file of a day folder, with what later steps need to know of it."""

    model_config = ConfigDict(extra="forbid")

    day: date
    image: str  # relative to the day folder
    name: str  # unique file name of its links in the store
    verdict: Verdict
    reason: str | None = None  # why it was quarantined
    sha256: str | None = None  # None when the file was never read (unsafe symlink)
    label: Label | None = None  # None for files without a manifest row
    part_id: str | None = None
    capture_time: AwareDatetime | None = None
    mask: str | None = None
    mask_sha256: str | None = None
    channels: int | None = None
    height: int | None = None
    width: int | None = None
    when: AwareDatetime

    @property
    def key(self) -> tuple[date, str]:
        return (self.day, self.image)


class DayRecord(BaseModel):
    """One day folder ingested to the end, for the manifest with this hash."""

    model_config = ConfigDict(extra="forbid")

    day: date
    manifest_sha256: str
    when: AwareDatetime


def _read(path: Path, model: type[_Entry]) -> list[_Entry]:
    if not path.is_file():
        return []
    # the last piece is empty after the final newline, or a line a crash cut short
    lines = path.read_bytes().split(b"\n")[:-1]
    entries = []
    for number, raw in enumerate(lines, start=1):
        try:
            entries.append(model.model_validate_json(raw))
        except ValidationError as exc:
            raise DataError(f"{path}: line {number} is not a valid ledger entry") from exc
    return entries


def read_entries(path: Path) -> list[LedgerEntry]:
    """Every decision, in the order made; a torn last line (crash) is ignored."""
    return _read(path, LedgerEntry)


def read_days(path: Path) -> list[DayRecord]:
    return _read(path, DayRecord)


def latest(entries: list[LedgerEntry]) -> dict[tuple[date, str], LedgerEntry]:
    """The decision that holds per file: the last one made."""
    return {entry.key: entry for entry in entries}


def _cut_torn_tail(path: Path) -> None:
    """Drop a last line that a crash left without its newline, before appending after it."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        with open(path, "r+b") as out:
            out.truncate(data.rfind(b"\n") + 1)


@contextmanager
def appending(path: Path) -> Iterator[Callable[[BaseModel], None]]:
    """An `append(entry)` that writes one whole line; the lines are made durable on exit
    (once per day is enough: a lost line only means that file is decided again)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _cut_torn_tail(path)
    with open(path, "ab") as out:

        def append(entry: BaseModel) -> None:
            out.write(entry.model_dump_json().encode() + b"\n")
            out.flush()

        yield append
        os.fsync(out.fileno())


@contextmanager
def locked(lock: Path) -> Iterator[None]:
    """One writer per (line, camera) at a time; the OS drops the lock if the process dies."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
