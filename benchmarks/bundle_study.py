"""The command line shared by studies of already-trained bundles (selection agreement, scoring
variants): analyse each run folder, print one JSON line per run, save the results with the
date and machine, and rewrite the study's table in benchmarks/README.md."""

import argparse
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.quality import HERE, machine, update_readme
from pipeline.errors import InspectError


def run_study(
    description: str,
    name: str,
    markers: tuple[str, str],
    analyse: Callable[[Path], dict],
    table: Callable[[list[dict], str, str], str],
    printed: Callable[[dict], dict] = lambda result: result,
) -> None:
    """Parse RUN_DIR arguments and run the study; `printed` trims what each JSON line shows."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("runs", nargs="+", type=Path, help="train-flow run folders")
    args = parser.parse_args()
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    where = machine()
    try:
        results = [analyse(run) for run in args.runs]
    except InspectError as exc:  # a wrong folder or a broken bundle: one line, nothing written
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    for r in results:
        print(json.dumps(printed(r)), flush=True)
    out = HERE / "results" / f"{name}-{when}.json"
    out.write_text(
        json.dumps({"date": when, "machine": where, "results": results}, indent=2) + "\n"
    )
    update_readme(table(results, when, where), *markers)
    print(f"wrote {out}")
