"""Generated line data: days of camera frames with manifests, in the layout a line delivers,
optionally with the faults real lines produce.

Why: ingestion, the training pool and the scheduled retraining flow need line data that
anyone can make offline in seconds, with known faults to find. Frames are demo renders
(`pipeline.data.demo.render_sample`) keyed by (seed, date, kind, index), so a day's files
are byte-identical whether it is generated alone or with other days.
"""

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np

from pipeline.data.demo import DEFECT_TYPES, render_sample
from pipeline.line.layout import MANIFEST, day_dir

_KINDS = {
    name: i
    for i, name in enumerate(
        ["good", "defect", "unmasked", "unknown", "truncated", "wrong_channels", "tiny"]
        + ["mask_mismatch", "misdated", "unlisted", "invalid_row"]
    )
}
_ZONE = timezone(timedelta(hours=1))  # the line's local time, as a station would write it
_SHIFT_START = time(6, 0)
_CAPTURE_INTERVAL = timedelta(seconds=37)


@dataclass(frozen=True)
class LineFaults:
    """Faults written into the generated day with index `day` (0 = the first day)."""

    day: int = 0
    truncated: int = 0  # PNGs cut short, labelled good
    garbage: int = 0  # random bytes named .png, labelled good
    wrong_channels: int = 0  # a grayscale frame in a colour line, or the reverse
    tiny: int = 0  # 16 x 16 px frames
    mask_mismatch: int = 0  # defects whose mask is half the image size
    misdated: int = 0  # capture_time a day after the folder's date
    escaping_rows: bool = False  # rows '../../../../etc/passwd' and '/etc/passwd'
    missing_image: bool = False  # a row whose image is not on disk
    unlisted_image: bool = False  # an image on disk that no row names
    duplicate_row: bool = False  # the first good row written twice
    invalid_row: bool = False  # a good row that names a mask (breaks the contract)


@dataclass
class GeneratedLine:
    """What was written; frames are named `<day>/<image>` (escaping rows by the path they
    give)."""

    root: Path
    line: str
    camera: str
    days: list[date]
    labels: dict[str, str] = field(default_factory=dict)  # clean frames only
    hidden_defects: list[str] = field(default_factory=list)  # unknown frames showing a defect
    faults: dict[str, list[str]] = field(default_factory=dict)  # fault kind -> frames


class _DayWriter:
    """Writes the files of one day folder and collects its manifest rows."""

    def __init__(self, folder: Path, day: date, out: GeneratedLine, gain: float) -> None:
        self.folder, self.day, self.out, self.gain = folder, day, out, gain
        self.rows: list[dict] = []

    def frame(self, name: str, bgr: np.ndarray, channels: int) -> str:
        """Write a frame under the day's lighting; returns its `<day>/<image>` key."""
        pixels = np.clip(bgr.astype(np.float32) * self.gain + 0.5, 0, 255).astype(np.uint8)
        if channels == 1:
            pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY)
        self.raw(name, _png(pixels))
        return f"{self.day}/{name}"

    def raw(self, name: str, data: bytes) -> None:
        path = self.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def row(self, image: str, label: str, mask: str | None = None, days_late: int = 0) -> None:
        """A manifest row; parts are numbered and captured 37 s apart from 06:00 local."""
        start = datetime.combine(self.day + timedelta(days=days_late), _SHIFT_START, _ZONE)
        row = {
            "image": image,
            "part_id": f"P{self.day:%Y%m%d}-{len(self.rows):04d}",
            "capture_time": (start + _CAPTURE_INTERVAL * len(self.rows)).isoformat(),
            "label": label,
        }
        self.rows.append({**row, "mask": mask} if mask else row)

    def fault(self, kind: str, key: str) -> None:
        self.out.faults.setdefault(kind, []).append(key)

    def finish(self) -> None:
        """The manifest last and atomically, as a station must: a day with one is complete."""
        text = "".join(json.dumps(row) + "\n" for row in self.rows)
        tmp = self.folder / f".{MANIFEST}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, self.folder / MANIFEST)


def _png(pixels: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", pixels)
    if not ok:
        raise OSError(f"could not encode a {pixels.shape} frame as PNG")
    return encoded.tobytes()


@dataclass(frozen=True)
class _Plan:
    """Settings shared by every day of one call."""

    seed: int
    size: int
    channels: int
    goods: int
    defects: int
    unmasked_defects: int
    unknowns: int

    def render(
        self, day: date, kind: str, index: int, defect: str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        return render_sample(self.size, (self.seed, day.toordinal(), _KINDS[kind], index), defect)


def _defect_type(index: int) -> str:
    return DEFECT_TYPES[index % len(DEFECT_TYPES)]


def _clean_frames(w: _DayWriter, plan: _Plan) -> None:
    """Labelled goods and defects, and unknown frames of which every third shows a defect."""
    for i in range(plan.goods):
        name = f"good_{i:03d}.png"
        w.out.labels[w.frame(name, plan.render(w.day, "good", i)[0], plan.channels)] = "good"
        w.row(name, "good")
    for i in range(plan.defects):
        name, mask_name = f"defect_{i:03d}.png", f"masks/defect_{i:03d}_mask.png"
        bgr, mask = plan.render(w.day, "defect", i, _defect_type(i))
        w.out.labels[w.frame(name, bgr, plan.channels)] = "defect"
        w.raw(mask_name, _png(mask))
        w.row(name, "defect", mask_name)
    for i in range(plan.unmasked_defects):
        name = f"unmasked_{i:03d}.png"
        bgr = plan.render(w.day, "unmasked", i, _defect_type(i))[0]
        w.out.labels[w.frame(name, bgr, plan.channels)] = "defect"
        w.row(name, "defect")
    for i in range(plan.unknowns):
        hidden = _defect_type(i) if i % 3 == 2 else None
        key = w.frame(
            f"unknown_{i:03d}.png", plan.render(w.day, "unknown", i, hidden)[0], plan.channels
        )
        w.out.labels[key] = "unknown"
        if hidden:
            w.out.hidden_defects.append(key)
        w.row(f"unknown_{i:03d}.png", "unknown")


def _broken_frames(w: _DayWriter, plan: _Plan, faults: LineFaults) -> None:
    """Frames that ingestion must quarantine, each listed under its fault kind."""
    rng = np.random.default_rng([plan.seed, w.day.toordinal()])

    def good(kind: str, i: int, channels: int = plan.channels, days_late: int = 0) -> str:
        name = f"{kind}_{i:03d}.png"
        w.fault(kind, w.frame(name, plan.render(w.day, kind, i)[0], channels))
        w.row(name, "good", days_late=days_late)
        return name

    for i in range(faults.truncated):
        name = good("truncated", i)
        data = (w.folder / name).read_bytes()
        w.raw(name, data[: len(data) // 2])
    for i in range(faults.garbage):
        w.raw(f"garbage_{i:03d}.png", rng.integers(0, 256, 2048, dtype=np.uint8).tobytes())
        w.fault("garbage", f"{w.day}/garbage_{i:03d}.png")
        w.row(f"garbage_{i:03d}.png", "good")
    for i in range(faults.wrong_channels):
        good("wrong_channels", i, channels=4 - plan.channels)
    for i in range(faults.tiny):
        name = good("tiny", i)
        small = cv2.resize(cv2.imread(str(w.folder / name), cv2.IMREAD_UNCHANGED), (16, 16))
        w.raw(name, _png(small))
    for i in range(faults.mask_mismatch):
        name, mask_name = f"mask_mismatch_{i:03d}.png", f"masks/mask_mismatch_{i:03d}_mask.png"
        bgr, mask = plan.render(w.day, "mask_mismatch", i, _defect_type(i))
        w.fault("mask_mismatch", w.frame(name, bgr, plan.channels))
        half = plan.size // 2
        w.raw(mask_name, _png(cv2.resize(mask, (half, half), interpolation=cv2.INTER_NEAREST)))
        w.row(name, "defect", mask_name)
    for i in range(faults.misdated):
        good("misdated", i, days_late=1)


def _broken_rows(w: _DayWriter, plan: _Plan, faults: LineFaults) -> None:
    """Rows and files that do not match: unsafe paths, missing, unlisted, duplicate, invalid."""
    if faults.escaping_rows:
        for image in ("../../../../etc/passwd", "/etc/passwd"):
            w.row(image, "good")
            w.fault("escaping_rows", image)
    if faults.missing_image:
        w.row("missing_000.png", "good")
        w.fault("missing_image", f"{w.day}/missing_000.png")
    if faults.unlisted_image:
        bgr = plan.render(w.day, "unlisted", 0)[0]
        w.fault("unlisted_image", w.frame("unlisted_000.png", bgr, plan.channels))
    if faults.invalid_row:
        bgr = plan.render(w.day, "invalid_row", 0)[0]
        w.fault("invalid_row", w.frame("invalid_000.png", bgr, plan.channels))
        w.row("invalid_000.png", "good", mask="masks/invalid_000_mask.png")
    if faults.duplicate_row and w.rows:
        w.rows.append(dict(w.rows[0]))
        w.fault("duplicate_row", f"{w.day}/{w.rows[0]['image']}")


def generate_line_data(
    root: Path,
    *,
    line: str = "line-a",
    camera: str = "cam-0",
    start: date = date(2024, 5, 6),
    days: int = 2,
    goods: int = 12,
    defects: int = 3,
    unmasked_defects: int = 0,
    unknowns: int = 3,
    size: int = 64,
    channels: int = 3,
    seed: int = 0,
    faults: Sequence[LineFaults] = (),
    dark_day: int | None = None,
    dark_gain: float = 0.6,
) -> GeneratedLine:
    """Write `days` day folders from `start` under `<root>/<line>/<camera>/`, each with
    `goods` good frames, `defects` defects with masks, `unmasked_defects` without, `unknowns`
    unlabelled frames, the given `faults`, and on day index `dark_day` every frame darker by
    `dark_gain` (a lighting shift). Later days can be added by a second call with a later
    `start`. Raises ValueError for bad settings and FileExistsError for an existing day.
    """
    if not 32 <= size <= 512 or channels not in (1, 3):
        raise ValueError(f"size must be 32..512 px and channels 1 or 3, got {size}, {channels}")
    if min(days, goods, defects, unmasked_defects, unknowns) < 0 or not 0 < dark_gain <= 1:
        raise ValueError("counts must be >= 0 and dark_gain in (0, 1]")
    plan = _Plan(seed, size, channels, goods, defects, unmasked_defects, unknowns)
    dates = [start + timedelta(days=i) for i in range(days)]
    out = GeneratedLine(Path(root), line, camera, dates)
    for index, day in enumerate(dates):
        folder = day_dir(out.root, line, camera, day)
        if folder.exists():
            raise FileExistsError(f"{folder}: day folder already exists")
        folder.mkdir(parents=True)
        gain = dark_gain if index == dark_day else 1.0
        writer = _DayWriter(folder, day, out, gain)
        _clean_frames(writer, plan)
        for fault in (f for f in faults if f.day == index):
            _broken_frames(writer, plan, fault)
            _broken_rows(writer, plan, fault)
        writer.finish()
    return out
