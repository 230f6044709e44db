"""The disk spool between the records and the collector: nothing is lost while it is down.

One file per record (`<seq>.record`), written to a temporary name, flushed to disk and renamed,
so a crash leaves a whole record or none. Sequence numbers never repeat, also across restarts:
`state.json` keeps the spool's id and the highest number handed to the sender. Before a batch
is posted its range is written there as "in flight"; after a restart that same batch goes out
first under the same Idempotency-Key, so a batch the collector stored just before the crash is
recognised as a repeat instead of being counted twice.
"""

import json
import os
import threading
import uuid
from collections import deque
from dataclasses import dataclass
from itertools import islice, takewhile
from pathlib import Path

SUFFIX = ".record"
STATE = "state.json"


@dataclass(frozen=True)
class Batch:
    """Records `seqs` (ascending) posted as one JSON array under one key."""

    seqs: tuple[int, ...]
    key: str
    body: bytes


class Spool:
    """Records waiting for the collector, oldest first. `put` from one thread, the batch
    calls from another."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        for leftover in self.folder.glob("*.tmp"):  # a write a crash cut short: never renamed
            leftover.unlink()
        state_path = self.folder / STATE
        state = json.loads(state_path.read_text()) if state_path.is_file() else {}
        self.spool_id: str = state.get("spool_id") or uuid.uuid4().hex
        self._high: int = state.get("high", 0)
        self._inflight: list[int] | None = state.get("inflight")
        seqs = sorted(int(p.stem) for p in self.folder.glob(f"*{SUFFIX}") if p.stem.isdigit())
        self._pending = deque(seqs)
        self._next = max([self._high, *seqs]) + 1
        self._lock = threading.Lock()
        self.arrived = threading.Event()
        if not state_path.is_file():
            self._save_state()

    def depth(self) -> int:
        with self._lock:
            return len(self._pending)

    def put(self, record_json: str) -> None:
        """Store one record (its JSON text) durably, then wake the sender."""
        with self._lock:
            seq = self._next
            self._next += 1
        _write_durably(self._path(seq), record_json.encode())
        with self._lock:
            self._pending.append(seq)
        self.arrived.set()

    def next_batch(self, limit: int) -> Batch | None:
        """The batch to post now: the one in flight before a restart, else the oldest records.
        Batches are always the oldest pending records, so both cases read the queue's head."""
        with self._lock:
            if self._inflight:
                last = self._inflight[1]
                seqs = tuple(takewhile(lambda s: s <= last, self._pending))
            else:
                seqs = tuple(islice(self._pending, limit))
        if not seqs:
            stale = self._inflight is not None  # its records were deleted just before a crash
            self._inflight = None
            return self.next_batch(limit) if stale else None
        if not self._inflight:
            self._inflight = [seqs[0], seqs[-1]]
            self._high = max(self._high, seqs[-1])
            self._save_state()
        first, last = self._inflight
        parts = [self._path(seq).read_bytes() for seq in seqs]
        return Batch(seqs, f"{self.spool_id}-{first}-{last}", b"[" + b",".join(parts) + b"]")

    def delivered(self, batch: Batch) -> None:
        """The collector acknowledged `batch`: forget it."""
        for seq in batch.seqs:
            self._path(seq).unlink(missing_ok=True)
        with self._lock:
            for _ in batch.seqs:
                self._pending.popleft()
        self._inflight = None
        self._save_state()

    def _path(self, seq: int) -> Path:
        return self.folder / f"{seq:012d}{SUFFIX}"

    def _save_state(self) -> None:
        state = {"spool_id": self.spool_id, "high": self._high, "inflight": self._inflight}
        _write_durably(self.folder / STATE, json.dumps(state).encode())


def _write_durably(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
