"""Does keeping a part's proportions help? Train on a letterboxed copy of a dataset and compare
with the quality table, where every frame is squashed to the square input.

Magnetic tiles span aspect ratios 0.43-2.4 and weld frames 1.4-2.1, so squashing stretches the
same texture by a different amount in every frame. The copy pads each frame to a square,
centred, with its own median grey (masks with 0), before the usual resize. Pad pixels are
easy negatives, so pixel AUROC is reported on the part's own pixels only ("tile pixels");
PRO is left out for the same reason. Image AUROC, false-alarm rate and recall are image-level
and comparable with the quality table as they are.

    python benchmarks/letterbox_study.py magnetic_tile --tag magnetic_tile-draem-letterbox \\
        [--set k=v ...]

Writes benchmarks/results/quality-<date>-<tag>.json; the table is left alone.
"""

import argparse
import json
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.quality import DATASETS, REPO, machine, run_one  # noqa: E402
from pipeline.bundle import load_bundle  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.data.images import IMAGE_SUFFIXES  # noqa: E402
from pipeline.data.mvtec import load_test_set  # noqa: E402
from pipeline.errors import InspectError  # noqa: E402
from pipeline.metrics import pixel_auroc  # noqa: E402
from pipeline.scoring import score_images  # noqa: E402

Box = tuple[int, int, int, int, int]  # top, left, height, width, side of the padded square


def letterbox(frame: np.ndarray, fill: int) -> tuple[np.ndarray, Box]:
    """The frame centred on a square of `fill`, and where it sits there."""
    h, w = frame.shape[:2]
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    out = np.full((side, side), fill, frame.dtype)
    out[top : top + h, left : left + w] = frame
    return out, (top, left, h, w, side)


def letterboxed_copy(src: Path, dst: Path) -> dict[str, Box]:
    """Every grayscale image and mask of an MVTec-layout folder, letterboxed, as PNG (no second
    JPEG loss); returns each image's box by its path relative to `dst`."""
    boxes = {}
    for path in sorted(p for p in src.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        rel = path.relative_to(src)
        frame = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        is_mask = rel.parts[0] == "ground_truth"
        padded, box = letterbox(frame, 0 if is_mask else int(np.median(frame)))
        out = (dst / rel).with_suffix(".png")
        out.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out), padded)
        if not is_mask:
            boxes[str(rel.with_suffix(".png"))] = box
    return boxes


def tile_pixels(boxes: dict[str, Box], paths: list[str], root: Path, size: int) -> np.ndarray:
    """(N, size, size) bool: the input pixels that fall inside each part, not the pad."""
    inside = np.zeros((len(paths), size, size), bool)
    for i, path in enumerate(paths):
        top, left, h, w, side = boxes[str(Path(path).relative_to(root))]
        f = size / side
        rows = slice(int(np.ceil(top * f)), int((top + h) * f))
        inside[i, rows, int(np.ceil(left * f)) : int((left + w) * f)] = True
    return inside


def tile_pixel_auroc(run_dir: Path, root: Path, boxes: dict[str, Box]) -> dict:
    """Pixel AUROC over the part's pixels, overall and per defect type against the good parts."""
    bundle = load_bundle(run_dir / "bundle")
    module = bundle.module
    test = load_test_set(root, module.image_size, module.channels)
    _, maps = score_images(module, test.images)
    inside = tile_pixels(boxes, test.paths, root, module.image_size)
    categories = np.array(test.categories)

    def on_tiles(chosen: np.ndarray) -> float | None:
        keep = inside & chosen[:, None, None]
        return pixel_auroc(test.masks[keep][None, None], maps[keep][None, None])

    per_type = {
        d: on_tiles((categories == d) | (categories == "good"))
        for d in sorted(set(categories) - {"good"})
    }
    return {
        "tile_pixel_share": float(inside.mean()),
        "tile_pixel_auroc": on_tiles(np.ones(len(categories), bool)),
        "per_type_tile_pixel_auroc": per_type,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=[d for d, s in DATASETS.items() if s["path"]])
    parser.add_argument("--model", default="draem")
    parser.add_argument("--set", action="append", default=[], help="Config override.")
    parser.add_argument("--tag", required=True, help="Writes quality-<date>-<tag>.json.")
    args = parser.parse_args()
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    try:  # a typo in --set: one line, before the copy is made
        load_config(REPO / "configs" / f"{args.model}.yaml", args.set)
    except InspectError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    with tempfile.TemporaryDirectory(prefix="letterbox-") as tmp:
        root = Path(tmp) / args.dataset
        boxes = letterboxed_copy(DATASETS[args.dataset]["path"], root)
        try:  # a missing or broken dataset: one line
            row = run_one(args.dataset, args.model, args.set, root)
        except InspectError as exc:
            parser.exit(2, f"{parser.prog}: error: {exc}\n")
        row.update(tile_pixel_auroc(HERE / ".workspace" / "runs" / row["run"], root, boxes))
    row.update(input="letterbox", pixel_auroc_with_pad=row.pop("pixel_auroc"), date=when)
    row.pop("pro")  # pad pixels inflate it, see the docstring
    for d in row["per_defect"]:
        d.pop("pro")
        d["tile_pixel_auroc"] = row["per_type_tile_pixel_auroc"][d["defect"]]
        d["pixel_auroc_with_pad"] = d.pop("pixel_auroc")
    out = HERE / "results" / f"quality-{when}-{args.tag}.json"
    out.write_text(json.dumps({"date": when, "machine": machine(), "results": [row]}, indent=2))
    print(json.dumps({k: v for k, v in row.items() if k not in ("config", "per_defect")}))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
