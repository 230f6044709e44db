"""Read a day's manifest into usable rows and rejected ones, each rejection with its reason.

A row is usable when it fits the contract, is the first row for its image, and names an
image (and mask) that exists inside the data root. Whether the files are fit to train on is
decided later, per file (see `frames`).
"""

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from data_contracts.line import LineManifestRow, RejectedRow
from pipeline.errors import DataError
from pipeline.line.layout import UnsafePath, inside, normalise, resolve_safe


@dataclass(frozen=True)
class Row:
    """A usable manifest row; `image` and `mask` are normalised paths in the day folder."""

    number: int
    row: LineManifestRow
    image: str
    mask: str | None


@dataclass
class Manifest:
    """The rows of one manifest, and every file a rejected row names (row number by path)."""

    sha256: str
    row_count: int = 0
    rows: list[Row] = field(default_factory=list)
    rejected: list[RejectedRow] = field(default_factory=list)
    named_by_rejected: dict[str, RejectedRow] = field(default_factory=dict)


def _schema_problem(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def _parse(raw: bytes) -> tuple[LineManifestRow | None, dict | None, str | None]:
    """The row, the raw object (to learn which files a bad row names) and the problem."""
    try:
        obj = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None, None, "not UTF-8 text"
    except json.JSONDecodeError as exc:
        return None, None, f"not valid JSON ({exc.msg})"
    if not isinstance(obj, dict):
        return None, None, "not a JSON object"
    try:
        return LineManifestRow.model_validate(obj), obj, None
    except ValidationError as exc:
        return None, obj, _schema_problem(exc)


def _file_problem(data_root: Path, folder: Path, rel: str, what: str) -> str | None:
    try:
        path = resolve_safe(data_root, folder, rel)
    except UnsafePath as exc:
        return f"{what} {exc}"
    return None if path.is_file() else f"{what} file not found: {rel}"


def _reject(manifest: Manifest, number: int, obj: dict | None, reason: str) -> None:
    image = obj.get("image") if obj else None
    image = normalise(image) if isinstance(image, str) and image else None
    row = RejectedRow(row=number, image=image, reason=reason)
    manifest.rejected.append(row)
    named = [obj.get(key) for key in ("image", "mask")] if obj else []
    for rel in (normalise(p) for p in named if isinstance(p, str) and p):
        manifest.named_by_rejected.setdefault(rel, row)


def read_manifest(path: Path, data_root: Path) -> Manifest:
    """Every non-blank line of `path` as a usable row or a rejected one, in file order."""
    if not inside(path, data_root):
        raise DataError(f"{path}: manifest resolves outside the data root")
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise DataError(f"{path}: no manifest; the day is not complete") from exc
    manifest = Manifest(sha256=hashlib.sha256(data).hexdigest())
    first_row: dict[str, int] = {}
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        manifest.row_count += 1
        row, obj, problem = _parse(raw)
        if row is not None:
            image = normalise(row.image)
            if image in first_row:
                problem = f"duplicate row for {image} (first on row {first_row[image]})"
            else:
                first_row[image] = number
                problem = _file_problem(data_root, path.parent, row.image, "image")
                if problem is None and row.mask is not None:
                    problem = _file_problem(data_root, path.parent, row.mask, "mask")
        if problem is not None:
            _reject(manifest, number, obj, problem)
            continue
        mask = normalise(row.mask) if row.mask is not None else None
        manifest.rows.append(Row(number, row, image, mask))
    return manifest
