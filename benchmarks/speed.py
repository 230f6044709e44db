"""Inference speed: torch eager vs ONNX Runtime on this CPU, and the edge runtime's overhead.

    python benchmarks/speed.py [--models ae vae draem] [--size 256] [--batches 1 8]

Each family is built from its committed config at `--size` (speed does not depend on the
weights, so they are untrained) and exported exactly as `aeinspect export` does (uint8 NHWC
input). Both runtimes start from the same uint8 frames: torch eager converts them with the
lab's `to_tensor` and runs the module under `inference_mode`; ONNX Runtime (CPU provider,
all graph optimisations) takes them as they are. Latency is per call (a batch); p50 and p99
over at least `--seconds` of calls after warm-up; throughput is images per second.

The edge runtime row runs `python -m deploy.edge run` on a folder of real magnetic-tile
JPEGs (decoded from PNG at their own size, checked, resized, scored, recorded) and reports
the share of per-frame wall time spent outside inference. Writes
benchmarks/results/speed-<date>.json and the table in benchmarks/README.md.
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.quality import machine, update_readme  # noqa: E402
from pipeline.bundle import LoadedBundle  # noqa: E402
from pipeline.config import ExportConfig, load_config  # noqa: E402
from pipeline.export.edge_bundle import write_edge_bundle  # noqa: E402
from pipeline.export.graph import INPUT_NAME  # noqa: E402
from pipeline.export.parity import onnx_session  # noqa: E402
from pipeline.models import build_model  # noqa: E402
from pipeline.scoring import InspectionModule, to_tensor  # noqa: E402

BEGIN, END = "<!-- speed:begin -->", "<!-- speed:end -->"
FRAMES = REPO.parent / "shared" / "data" / "magnetic_tile" / "test"


def untrained_module(family: str, size: int) -> tuple[InspectionModule, object]:
    cfg = load_config(REPO / "configs" / f"{family}.yaml", [f"data.image_size={size}"])
    torch.manual_seed(0)
    module = InspectionModule(build_model(cfg.model, size, 1), cfg.score, size, 1).eval()
    module.threshold.fill_(1.0)
    return module, cfg


def timed(call, seconds: float, warmup: int = 3) -> np.ndarray:
    """Per-call latencies in ms, after warm-up, for at least `seconds` and 20 calls."""
    for _ in range(warmup):
        call()
    latencies: list[float] = []
    began = time.perf_counter()
    while time.perf_counter() - began < seconds or len(latencies) < 20:
        start = time.perf_counter()
        call()
        latencies.append((time.perf_counter() - start) * 1000)
    return np.array(latencies)


def row(family: str, runtime: str, batch: int, latencies: np.ndarray) -> dict:
    return {
        "model": family,
        "runtime": runtime,
        "batch": batch,
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
        "images_per_s": batch * 1000 / float(latencies.mean()),
        "calls": int(latencies.size),
    }


def runtime_speeds(family: str, size: int, batches: list[int], seconds: float, onnx_path: Path):
    module, _ = untrained_module(family, size)
    session = onnx_session(onnx_path)
    rng = np.random.default_rng(0)
    rows = []
    for batch in batches:
        frames = rng.integers(0, 256, (batch, size, size, 1), dtype=np.uint8)

        def eager(frames=frames):
            with torch.inference_mode():
                module(to_tensor(frames))

        def ort(frames=frames):
            session.run(None, {INPUT_NAME: frames})

        rows.append(row(family, "torch eager", batch, timed(eager, seconds)))
        rows.append(row(family, "onnxruntime-cpu", batch, timed(ort, seconds)))
        speedup = rows[-1]["images_per_s"] / rows[-2]["images_per_s"]
        rows[-1]["speedup_vs_torch"] = speedup
        print(f"{family} batch {batch}: ORT {speedup:.2f}x torch eager", flush=True)
    return rows


def export_bundle(family: str, size: int, out: Path) -> Path:
    """An edge bundle of the untrained module (parity checked on random frames)."""
    module, cfg = untrained_module(family, size)
    contract = {"channels": 1, "input_height": size, "input_width": size, "max_height": 8192}
    meta = {
        "model_name": f"speed-{family}",
        "model_family": family,
        "model_version": "1",
        "alpha": 0.01,
        "input": {"contract": contract},
        "files": {},
    }
    frames = np.random.default_rng(1).integers(0, 256, (16, size, size, 1), dtype=np.uint8)
    bundle = LoadedBundle(module, cfg, meta, out)
    write_edge_bundle(bundle, out, ExportConfig(), frames, "random frames")
    return out


def edge_overhead(bundle: Path, frames: int, work: Path) -> dict:
    """Run the edge runtime on real images and read its per-frame timing summary."""
    folder = work / "frames"
    folder.mkdir()
    images = sorted(p for p in FRAMES.glob("*/*") if p.suffix.lower() in (".png", ".jpg"))
    for path in images[:: max(1, len(images) // frames)][:frames]:
        shutil.copyfile(path, folder / f"{path.parent.name}-{path.name}")
    out = work / "edge-out"
    command = [
        sys.executable,
        "-m",
        "deploy.edge",
        "run",
        "--bundle",
        str(bundle),
        "--source",
        str(folder),
        "--out",
        str(out),
        "--backend",
        "onnxruntime-cpu",
        "--port",
        "0",
    ]
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=1800)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"edge runtime failed: {done.stderr[-2000:]}")
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    latency = np.array([r["latency_ms"] for r in records])
    inference = np.array([r["inference_ms"] for r in records])
    stamps = [datetime.fromisoformat(r["time"]) for r in records]
    per_frame_ms = (stamps[-1] - stamps[0]).total_seconds() * 1000 / (len(records) - 1)
    return {
        "frames": len(records),
        "wall_seconds": wall,
        "mean_latency_ms": float(latency.mean()),
        "mean_inference_ms": float(inference.mean()),
        "outside_inference_share": float(1 - inference.sum() / latency.sum()),
        "per_frame_wall_ms": per_frame_ms,
        "outside_inference_share_with_decode": float(1 - inference.mean() / per_frame_ms),
        "summary": done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "",
    }


def table(result: dict) -> str:
    lines = [
        f"Machine: {result['machine']}; date {result['date']}; input {result['size']}x"
        f"{result['size']} grayscale, untrained weights (speed does not depend on them); "
        f"torch {result['torch']}, onnxruntime {result['onnxruntime']}, "
        f"{result['threads']} threads.",
        "",
        "| model | runtime | batch | p50 ms | p99 ms | images/s | vs torch |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        speedup = f"{r['speedup_vs_torch']:.2f}x" if "speedup_vs_torch" in r else ""
        lines.append(
            f"| {r['model']} | {r['runtime']} | {r['batch']} | {r['p50_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {r['images_per_s']:.1f} | {speedup} |"
        )
    edge = result.get("edge_runtime")
    if edge:
        lines += [
            "",
            f"Edge runtime (`python -m deploy.edge run`, ONNX Runtime CPU, {edge['model']} at "
            f"{result['size']} px, {edge['frames']} magnetic-tile JPEGs decoded at their own "
            f"size): mean latency {edge['mean_latency_ms']:.1f} ms per frame, of which "
            f"inference {edge['mean_inference_ms']:.1f} ms; **outside inference "
            f"{edge['outside_inference_share']:.1%}** of per-frame time (frame in hand to "
            f"verdict). Counting the source too (reading and decoding each JPEG, from "
            f"consecutive record times: {edge['per_frame_wall_ms']:.1f} ms per frame): "
            f"{edge['outside_inference_share_with_decode']:.1%} outside inference.",
        ]
    lines += [
        "",
        "No GPU was available for these runs, so torch CUDA, ONNX Runtime CUDA and "
        "TensorRT FP16 rows are absent.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["ae", "vae", "draem"])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--edge-model", default="draem")
    parser.add_argument("--edge-frames", type=int, default=300)
    args = parser.parse_args()
    import onnxruntime

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for family in args.models:
            bundle = export_bundle(family, args.size, work / f"bundle-{family}")
            rows += runtime_speeds(
                family, args.size, args.batches, args.seconds, bundle / "model.onnx"
            )
        edge = None
        if args.edge_model:
            bundle = work / f"bundle-{args.edge_model}"
            if not bundle.exists():
                export_bundle(args.edge_model, args.size, bundle)
            edge = {"model": args.edge_model, **edge_overhead(bundle, args.edge_frames, work)}
            print(f"edge runtime: outside inference {edge['outside_inference_share']:.1%}")
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    result = {
        "date": date,
        "machine": machine(),
        "size": args.size,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "threads": torch.get_num_threads(),
        "rows": rows,
        "edge_runtime": edge,
    }
    out = HERE / "results" / f"speed-{date}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    update_readme(table(result), BEGIN, END)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
