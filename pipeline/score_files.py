"""Score image files with a bundle: one ScoreRecord per file, appended to a JSONL file.

Records are appended and flushed one by one, so a crash or a bad file never loses the
records already written, and an existing file is extended, never overwritten.
"""

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import torch

from data_contracts import FrameContract, ScoreRecord
from pipeline.bundle import LoadedBundle
from pipeline.data.images import list_images, read_image, resize_image
from pipeline.errors import DataError, ImageReadError
from pipeline.reports.html import overlay
from pipeline.scoring import to_tensor

log = logging.getLogger(__name__)


@dataclass
class ScoreSummary:
    scored: int = 0
    flagged: int = 0
    failed: list[ImageReadError] = field(default_factory=list)


def input_files(target: Path) -> list[Path]:
    """A single image, or every image directly in a folder."""
    if target.is_file():
        return [target]
    if target.is_dir():
        files = list_images(target)
        if not files:
            raise DataError(f"{target}: folder has no image files")
        return files
    raise DataError(f"{target}: no such file or folder")


def _checked_frame(path: Path, contract: FrameContract) -> np.ndarray:
    image = read_image(path)
    problems = contract.problems(image.shape[0], image.shape[1], image.shape[2], str(image.dtype))
    if problems:
        raise ImageReadError(path, "; ".join(problems))
    return image


def _frames(
    files: list[Path], contract: FrameContract, summary: ScoreSummary
) -> Iterator[tuple[Path, np.ndarray]]:
    for path in files:
        try:
            yield path, _checked_frame(path, contract)
        except ImageReadError as err:
            log.warning("skipping %s", err)
            summary.failed.append(err)


@torch.no_grad()
def score_files(
    bundle: LoadedBundle, files: list[Path], out_jsonl: Path, overlay_dir: Path | None = None
) -> ScoreSummary:
    """Score each file; bad files are reported and skipped, good ones are all recorded."""
    contract = FrameContract.model_validate(bundle.meta["input"]["contract"])
    module = bundle.module
    threshold = float(module.threshold)
    summary = ScoreSummary()
    out_jsonl.parent.mkdir(parents=True, exist_ok=True)
    if overlay_dir is not None:
        overlay_dir.mkdir(parents=True, exist_ok=True)
    with open(out_jsonl, "a", encoding="utf-8") as sink:
        for path, frame in _frames(files, contract, summary):
            began = time.perf_counter()
            resized = resize_image(frame, module.image_size)
            score, amap, is_defect = module(to_tensor(resized[None]))
            latency = (time.perf_counter() - began) * 1000
            record = ScoreRecord(
                frame_id=str(path),
                time=datetime.now(UTC),
                score=float(score[0]),
                threshold=threshold,
                verdict="defect" if bool(is_defect[0]) else "good",
                model_name=str(bundle.meta.get("model_name")),
                model_version=bundle.version,
                latency_ms=latency,
            )
            if overlay_dir is not None and record.verdict == "defect":
                target = overlay_dir / f"{path.stem}_overlay.png"
                picture = overlay(resized, amap[0].numpy(), vmax=threshold)
                cv2.imwrite(str(target), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
                record.overlay = str(target)
            sink.write(record.model_dump_json() + "\n")
            sink.flush()
            summary.scored += 1
            summary.flagged += record.verdict == "defect"
    return summary
