"""Does the conformal threshold keep its promise? Score fresh good parts from the demo
generator (never seen in training or calibration) and compare the false-alarm rate at each
calibrated budget with the budget itself.

    python benchmarks/calibration_check.py --model bench-demo-ae@challenger [--n 2000]

Writes benchmarks/results/calibration-<date>.json and the table between the markers in
benchmarks/README.md. Only the demo data can be checked this way: it is the one source of
unlimited fresh good images.
"""

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("AEINSPECT_HOME", str(HERE / ".workspace"))

from benchmarks.quality import machine, update_readme  # noqa: E402
from pipeline.bundle import load_bundle  # noqa: E402
from pipeline.data.demo import render_sample  # noqa: E402
from pipeline.scoring import score_images  # noqa: E402
from pipeline.tracking import resolve_model_uri  # noqa: E402

FRESH_SPLIT = 99  # a generator key no dataset folder uses
BEGIN, END = "<!-- calibration:begin -->", "<!-- calibration:end -->"


def fresh_good(n: int, size: int, seed: int) -> np.ndarray:
    frames = [render_sample(size, (seed, FRESH_SPLIT, i))[0] for i in range(n)]
    return np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bench-demo-ae@challenger")
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    bundle = load_bundle(resolve_model_uri(args.model))
    images = fresh_good(args.n, bundle.module.image_size, seed=12345)
    scores, _ = score_images(bundle.module, images)
    calib = bundle.meta["calibration"]
    rows = [
        {"budget": float(b), "threshold": t, "false_alarm_rate": float(np.mean(scores >= t))}
        for b, t in sorted(calib["thresholds"].items(), key=lambda kv: float(kv[0]))
    ]
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    result = {
        "date": when,
        "machine": machine(),
        "model": args.model,
        "n_fresh_good": args.n,
        "n_calibration": calib["n_calibration"],
        "rows": rows,
    }
    out = HERE / "results" / f"calibration-{when}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"Measured {when} on {machine()}: model `{args.model}`, "
        f"{calib['n_calibration']} calibration images, {args.n} fresh good demo parts.",
        "",
        "| budget alpha | threshold | false-alarm rate on fresh good parts |",
        "|---|---|---|",
    ]
    lines += [
        f"| {r['budget']:g} | {r['threshold']:.4f} | {r['false_alarm_rate']:.4f} |" for r in rows
    ]
    update_readme("\n".join(lines), BEGIN, END)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
