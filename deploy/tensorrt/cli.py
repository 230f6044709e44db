"""`build-engine`: add a TensorRT engine for this machine's GPU to an edge bundle.

Meant as the `build-engine` subcommand of `python -m deploy.edge`; `python -m deploy.tensorrt.cli`
runs it on its own. Problems print one line on stderr and exit 1.
"""

import argparse
import sys
from pathlib import Path

from data_contracts.bundle import BundleRefused, load_edge_bundle
from deploy.tensorrt.add_engine import add_engine_to_bundle, default_timing_cache
from deploy.tensorrt.builder import PRECISIONS
from deploy.tensorrt.errors import EngineError
from deploy.tensorrt.frames import load_frames, to_graph_layout


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.edge build-engine",
        description="Build a TensorRT engine for this GPU, check it against ONNX Runtime on "
        "the parity frames and add it to the bundle (bundle.json is rewritten atomically).",
    )
    parser.add_argument("--bundle", type=Path, required=True, metavar="DIR")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp16")
    parser.add_argument(
        "--max-batch", type=int, metavar="N", help="largest batch (default: the bundle's)"
    )
    parser.add_argument("--opt-batch", type=int, default=1, metavar="N", help="tuned for (1)")
    parser.add_argument(
        "--timing-cache",
        type=Path,
        metavar="PATH",
        help="TensorRT timing cache, read and updated (default: one per GPU under ~/.cache)",
    )
    parser.add_argument("--workspace-mb", type=int, default=1024, metavar="MB")
    parser.add_argument(
        "--parity-frames",
        type=Path,
        metavar="DIR",
        help="line images the engine must decide like ONNX Runtime on (200+ recommended)",
    )
    parser.add_argument(
        "--skip-parity", action="store_true", help="add the engine unchecked (parity: null)"
    )
    parser.add_argument("--score-tolerance", type=float, metavar="X")
    parser.add_argument("--map-tolerance", type=float, metavar="X")
    return parser


def build_engine_command(argv: list[str]) -> int:
    """Run `build-engine` with `argv` (no program name); 0 on success, 1 with one error line."""
    parser = _parser()
    args = parser.parse_args(argv)
    if (args.parity_frames is None) == (not args.skip_parity):
        parser.error("give either --parity-frames DIR (line images) or --skip-parity")
    try:
        timing_cache = args.timing_cache or default_timing_cache()  # fails early without TensorRT
        frames = None
        if args.parity_frames is not None:
            graph_input = load_edge_bundle(args.bundle).input
            frames = to_graph_layout(load_frames(args.parity_frames, graph_input), graph_input)
        entry = add_engine_to_bundle(
            args.bundle,
            args.precision,
            parity_images=frames,
            parity_source=str(args.parity_frames),
            opt_batch=args.opt_batch,
            max_batch=args.max_batch,
            timing_cache=timing_cache,
            workspace_mb=args.workspace_mb,
            score_tolerance=args.score_tolerance,
            map_tolerance=args.map_tolerance,
        )
    except (EngineError, BundleRefused, OSError) as exc:
        print(f"build-engine: {exc}", file=sys.stderr)
        return 1
    parity = entry.parity.summary() if entry.parity else "not checked (parity: null)"
    print(
        f"{args.bundle / entry.file}: {entry.precision} engine for {entry.device} "
        f"(compute {entry.compute_capability}), TensorRT {entry.tensorrt_version}, "
        f"batch {entry.batch[0]}..{entry.batch[2]}; parity {parity}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(build_engine_command(sys.argv[1:]))
