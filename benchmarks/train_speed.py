"""Training speed: images/s and the share of step time spent waiting for data, per model family,
with and without channels-last layout and `torch.compile`.

    python benchmarks/train_speed.py [--size 128] [--epochs 3] [--models ae vae draem]

Trains each variant for a few epochs on generated demo images through `train_model` (the real
loop: prefetching loader, synthetic anomalies for DRAEM) and records the mean of the epochs
after the first (which pays for warm-up and compilation). Writes
benchmarks/results/train-speed-<date>.json and the table in benchmarks/README.md.
"""

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import torch  # noqa: E402

from benchmarks.quality import machine, update_readme  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.data.demo import generate_demo_dataset  # noqa: E402
from pipeline.data.mvtec import load_train_splits  # noqa: E402
from pipeline.training import train_model  # noqa: E402

BEGIN, END = "<!-- train-speed:begin -->", "<!-- train-speed:end -->"
VARIANTS = {
    "baseline (NCHW)": ["train.channels_last=false", "train.amp=false"],
    "channels-last": ["train.channels_last=true", "train.amp=false"],
    "channels-last + compile": [
        "train.channels_last=true",
        "train.amp=false",
        "train.compile=true",
    ],
    "channels-last + bf16": ["train.channels_last=true", "train.amp=true"],
    "channels-last + bf16 + compile": [
        "train.channels_last=true",
        "train.amp=true",
        "train.compile=true",
    ],
}


def measure(model: str, size: int, epochs: int, sets: list[str], splits) -> dict:
    cfg = load_config(
        HERE.parent / "configs" / f"{model}.yaml",
        [
            f"data.image_size={size}",
            f"train.epochs={epochs}",
            f"train.patience={epochs}",
            "train.crop=null",
            "train.max_minutes=null",
            *sets,
        ],
    )
    began = time.perf_counter()
    result = train_model(cfg, splits.fit, splits.val, splits.channels)
    rows = result.history[1:] or result.history
    return {
        "model": model,
        "images_per_s": sum(r["images_per_s"] for r in rows) / len(rows),
        "data_wait_share": sum(r["data_wait_share"] for r in rows) / len(rows),
        "first_epoch_images_per_s": result.history[0]["images_per_s"],
        "epoch_images": max(len(splits.fit), cfg.train.epoch_images or 0),
        "wall_seconds": time.perf_counter() - began,
        "device": result.device,
        "bf16_autocast": result.bf16_autocast,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=160)
    parser.add_argument("--models", nargs="+", default=["ae", "vae", "draem"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "demo"
        generate_demo_dataset(
            root, size=args.size, n_train=args.n_train, n_test_good=4, n_per_defect=1
        )
        cfg = load_config(None, [f"data.path={root}", f"data.image_size={args.size}"])
        splits = load_train_splits(root, cfg.data, seed=0)
    results = []
    for model in args.models:
        for variant in args.variants:
            try:
                measured = measure(model, args.size, args.epochs, VARIANTS[variant], splits)
            except Exception as exc:  # e.g. torch.compile without a working C++ toolchain
                measured = {"model": model, "error": f"{type(exc).__name__}: {exc}"[:300]}
            row = {"variant": variant, **measured}
            results.append(row)
            print(json.dumps(row), flush=True)
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    where = machine() + f", torch {torch.__version__}, {torch.get_num_threads()} threads"
    out = HERE / "results" / f"train-speed-{when}.json"
    out.write_text(
        json.dumps(
            {
                "date": when,
                "machine": where,
                "size": args.size,
                "n_fit": len(splits.fit),
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    lines = [
        f"Measured {when} on {where}; {args.size} px demo images, {len(splits.fit)} distinct "
        f"training images, mean of epochs 2-{args.epochs}.",
        "",
        "| model | variant | images per epoch | train images/s | data wait share "
        "| first epoch images/s |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['variant']} | | failed: {r['error']} | | |")
            continue
        lines.append(
            f"| {r['model']} | {r['variant']} | {r['epoch_images']} | {r['images_per_s']:.1f} "
            f"| {r['data_wait_share']:.3f} | {r['first_epoch_images_per_s']:.1f} |"
        )
    update_readme("\n".join(lines), BEGIN, END)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
