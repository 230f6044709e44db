"""Where line data lives, where the store keeps what it decided, and which paths are safe.

Source: `<data_root>/<line>/<camera>/<YYYY-MM-DD>/manifest.jsonl` plus the images it names.
Store:  `<store_root>/<line>/<camera>/` with the ledger, the quarantine, the frozen set and
the training pools (see `StorePaths`). Source data is only ever read.
"""

import os
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path, PurePosixPath, PureWindowsPath

from pipeline.data.images import IMAGE_SUFFIXES
from pipeline.errors import DataError

MANIFEST = "manifest.jsonl"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_FLAT = "__"  # joins day and sub-folders into one file name


class UnsafePath(ValueError):
    """A manifest path that points outside the data root; the message says how."""


def check_name(kind: str, name: str) -> str:
    """`line` and `camera` become folder names: one plain path component, nothing else."""
    if not _NAME.fullmatch(name):
        raise DataError(f"{kind} name {name!r}: use letters, digits, '.', '_' or '-' only")
    return name


def parse_day(name: str) -> date | None:
    """The date of a day folder named YYYY-MM-DD, or None for any other name."""
    if not _DAY.fullmatch(name):
        return None
    try:
        return date.fromisoformat(name)
    except ValueError:
        return None


def camera_dir(data_root: Path, line: str, camera: str) -> Path:
    return Path(data_root) / check_name("line", line) / check_name("camera", camera)


def day_dir(data_root: Path, line: str, camera: str, day: date) -> Path:
    return camera_dir(data_root, line, camera) / day.isoformat()


def source_path(data_root: Path, line: str, camera: str, day: date, rel: str) -> Path:
    """The source file of a ledger or manifest entry."""
    return day_dir(data_root, line, camera, day) / rel


def day_folders(data_root: Path, line: str, camera: str) -> list[date]:
    """Days of one camera that have a manifest, oldest first; other folders are not days."""
    folder = camera_dir(data_root, line, camera)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such camera folder")
    days = (parse_day(p.name) for p in folder.iterdir() if (p / MANIFEST).is_file())
    return sorted(d for d in days if d is not None)


def link_name(day: date, rel: str) -> str:
    """A file name unique across the days of one camera: `<day>__<sub>__<name>`."""
    return _FLAT.join([day.isoformat(), *PurePosixPath(rel).parts])


def normalise(rel: str) -> str:
    """One spelling per relative path ("./a.png" and "a.png" are the same file)."""
    return PurePosixPath(rel).as_posix()


def inside(path: Path, data_root: Path) -> bool:
    """Whether `path`, with every symlink followed, stays under the data root.

    Following a link to see where it ends reads no file, so it is safe on hostile input."""
    return path.resolve().is_relative_to(Path(data_root).resolve())


def resolve_safe(data_root: Path, folder: Path, rel: str) -> Path:
    """`folder / rel`, or UnsafePath when `rel` is absolute, climbs with '..' or ends, through
    a symlink, outside the data root. Nothing is opened."""
    if PurePosixPath(rel).is_absolute() or PureWindowsPath(rel).drive or rel.startswith("\\"):
        raise UnsafePath(f"{rel}: absolute path, must be relative to the day folder")
    if ".." in PurePosixPath(rel).parts:
        raise UnsafePath(f"{rel}: '..' is not allowed in a manifest path")
    path = folder / rel
    if not inside(path, data_root):
        raise UnsafePath(f"{rel}: resolves outside the data root (symlink)")
    return path


def images_on_disk(folder: Path) -> list[str]:
    """Image files under a day folder, relative and sorted; symlinked folders are not entered."""
    found = []
    for here, _, files in os.walk(folder, followlinks=False):
        for name in files:
            if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                found.append((Path(here) / name).relative_to(folder).as_posix())
    return sorted(found)


@dataclass(frozen=True)
class StorePaths:
    """The store of one (line, camera): everything ingestion, pools and the frozen set write."""

    root: Path

    @classmethod
    def of(cls, store_root: Path, line: str, camera: str) -> "StorePaths":
        root = Path(store_root) / check_name("line", line) / check_name("camera", camera)
        return cls(root)

    @property
    def ledger(self) -> Path:
        """One JSON line per decided file (accepted or quarantined), append-only."""
        return self.root / "ingested.jsonl"

    @property
    def days(self) -> Path:
        """One JSON line per completely ingested day and manifest version, append-only."""
        return self.root / "days.jsonl"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    def quarantine(self, day: date) -> Path:
        return self.root / "quarantine" / day.isoformat()

    @property
    def frozen(self) -> Path:
        return self.root / "frozen"

    @property
    def frozen_manifest(self) -> Path:
        return self.frozen / "manifest.json"

    def pool(self, tag: str) -> Path:
        """A suggested folder for one materialised training pool, e.g. tagged by run."""
        return self.root / "pools" / check_name("pool tag", tag)
