"""`aeinspect-edge` / `python -m deploy.edge`: run the camera loop, verify a bundle, build engines.

Problems a user can fix (a refused bundle, a missing source, a bad URL, a busy port) end in one
line `aeinspect-edge: <message>` and exit status 1, without a traceback.
"""

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from data_contracts.bundle import BundleRefused, load_edge_bundle
from deploy.edge.backends import PREFERENCES
from deploy.edge.errors import EdgeError

PROG = "aeinspect-edge"


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="score frames from a source until it ends or a signal")
    run.add_argument(
        "--bundle", type=Path, required=True, metavar="DIR", help="edge bundle folder or symlink"
    )
    run.add_argument(
        "--source",
        required=True,
        metavar="SRC",
        help="image folder, video file, camera index, rtsp:// or http:// URL, or a GStreamer "
        "pipeline (contains '!')",
    )
    run.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="folder for records and overlays"
    )
    run.add_argument(
        "--collector", metavar="URL", help="http(s) URL to POST records to (spooled on disk first)"
    )
    run.add_argument(
        "--port",
        type=int,
        default=9108,
        metavar="N",
        help="health port on 127.0.0.1; 0 picks a free one",
    )
    run.add_argument("--backend", choices=PREFERENCES, default="auto")
    run.add_argument(
        "--threads", type=_positive(int), metavar="N", help="CPU threads for ONNX Runtime"
    )
    run.add_argument(
        "--watch-interval",
        type=float,
        default=2.0,
        metavar="S",
        help="seconds between checks of --bundle for a new version (0: never swap)",
    )
    run.add_argument(
        "--max-frames", type=_positive(int), metavar="N", help="stop after this many frames"
    )
    run.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds to wait at the end of a finite source for the spool to empty",
    )
    run.add_argument(
        "--fps",
        type=_positive(float),
        metavar="F",
        help="read a file source no faster than this (replay)",
    )

    verify = commands.add_parser("verify", help="check a bundle's manifest and file hashes")
    verify.add_argument("--bundle", type=Path, required=True, metavar="DIR")

    commands.add_parser(
        "build-engine",
        add_help=False,
        help="build a TensorRT engine into a bundle (see build-engine --help)",
    )
    return parser


def _verify(bundle: Path) -> int:
    manifest = load_edge_bundle(bundle)
    print(f"{manifest.model_name} version {manifest.model_version} ({manifest.model_family})")
    print(f"files OK: {', '.join(sorted(manifest.files))} (sha256 match bundle.json)")
    for engine in manifest.engines:
        print(
            f"engine {engine.file}: {engine.device}, TensorRT {engine.tensorrt_version}, "
            f"{engine.precision}"
        )
    return 0


def _run(args: argparse.Namespace) -> int:
    from deploy.edge.runtime import RunOptions, run

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    options = RunOptions(
        bundle=args.bundle,
        source=args.source,
        out=args.out,
        collector=args.collector,
        port=args.port,
        backend=args.backend,
        threads=args.threads,
        watch_interval=args.watch_interval,
        max_frames=args.max_frames,
        drain_timeout=args.drain_timeout,
        fps=args.fps,
    )
    summary = run(options)
    print(f"{PROG}: {summary.line()}")
    return 0


def _build_engine(argv: list[str]) -> int:
    try:
        from deploy.tensorrt.cli import build_engine_command
    except ImportError as exc:
        raise EdgeError(f"build-engine is not available here ({exc})") from exc
    return build_engine_command(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv[:1] == ["build-engine"]:  # its own parser owns the rest of the line
            return _build_engine(argv[1:])
        args = _parser().parse_args(argv)
        if args.command == "verify":
            return _verify(args.bundle)
        return _run(args)
    except (EdgeError, BundleRefused) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
