"""Retrain throughput: (line, camera) pairs retrained per minute by the retrain flow on a local
Dask cluster of 1 and 2 worker processes.

    python benchmarks/retrain_scale.py [--lines 4] [--workers 1 2] [--repeats 1]

`--lines` pairs of line data (`line-1/cam-0`, ...: one day each, the same counts, a different
seed per line; see DATA) are generated once. For each worker count, `retrain_flow` runs with
`task_runner: {kind: dask, workers: N}`: the local cluster the flow starts itself, so its
start-up and the workers' imports are in the wall time, as in a real run. Each run starts
from an empty workspace (no champion, no checkpoint), so every line is ingested, gets its
frozen evaluation set, trains a challenger (see MODEL), which is evaluated, stress-smoke
tested (the retrain config's default smoke test), exported with the parity check and gated.
Dask runs each worker's torch on one thread (OMP_NUM_THREADS=1): one worker, one core.

The workers reach Prefect through this process's local server, as the workers of a served
deployment reach its server (in ephemeral mode each worker process would start a temporary
server of its own). Wall time is the `retrain_flow` call; lines per minute = lines / wall.
Writes benchmarks/results/retrain-scale-<date>.json and the table in benchmarks/README.md;
`--out DIR --no-readme --workspace DIR` for a trial that leaves both alone.
"""

import argparse
import json
import os
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

BEGIN, END = "<!-- retrain-scale:begin -->", "<!-- retrain-scale:end -->"
# generated line data per (line, camera): one day, 96 px colour frames
DATA = {"days": 1, "goods": 120, "defects": 6, "unknowns": 4, "size": 96}
# challengers: the default AE, shrunk so that one line takes tens of seconds on one core
MODEL = [
    "data.image_size=64",
    "model.width=16",
    "model.depth=3",
    "model.latent_dim=16",
    "train.epochs=5",
    "train.patience=5",
    "train.batch_size=16",
    "calibration.alpha=0.05",
]
FROZEN = {"min_good": 10, "min_defect": 4, "good_fraction": 0.2, "seed": 0}
CAMERA = "cam-0"
SECTION = f"""
## Retrain throughput (`benchmarks/retrain_scale.py`)

The retrain flow on the local Dask cluster it starts itself (`task_runner: {{kind: dask,
workers: N}}`), one task per (line, camera) pair of generated line data, each from an empty
workspace: ingestion, frozen set, training, evaluation, stress smoke test, export with parity,
gate. Wall time includes the cluster's start-up; the data and model settings are in the JSON.

{BEGIN}
{END}
"""


def quiet_environment(workspace: Path) -> None:
    """Prefect's home in our workspace and quiet, offline settings, before Prefect, MLflow or
    Dask are imported. Worker processes inherit these."""
    os.environ.setdefault("PREFECT_HOME", str(workspace / "prefect"))
    for key, value in {
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "NO_ALBUMENTATIONS_UPDATE": "1",
        "DASK_LOGGING__DISTRIBUTED": "warning",
    }.items():
        os.environ.setdefault(key, value)


def line_names(n: int) -> list[str]:
    return [f"line-{i + 1}" for i in range(n)]


def generate(root: Path, lines: list[str]) -> None:
    from pipeline.line import generate_line_data

    shutil.rmtree(root, ignore_errors=True)
    for seed, line in enumerate(lines):
        generate_line_data(root, line=line, camera=CAMERA, seed=seed, **DATA)


def retrain_config(data_root: Path, workers: int, model: list[str]) -> dict:
    return {
        "data_root": str(data_root),
        "model_overrides": model,
        "line_data": {"frozen": FROZEN},
        "task_runner": {"kind": "dask", "workers": workers},
    }


def run_once(data_root: Path, home: Path, workers: int, model: list[str]) -> dict:
    """One flow run on an empty workspace `home`: wall time and what each line came to."""
    import yaml

    from flows.retrain_flow import retrain_flow

    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    config = home / "retrain.yaml"
    config.write_text(yaml.safe_dump(retrain_config(data_root, workers, model)))
    os.environ["AEINSPECT_HOME"] = str(home)  # read per call, inherited by the new workers
    began = time.perf_counter()
    outcomes = retrain_flow(str(config))
    wall = time.perf_counter() - began
    done = [o for o in outcomes if o.challenger is not None]
    return {
        "wall_seconds": wall,
        "lines_retrained": len(done),
        "outcomes": [
            {
                "model": o.model_name,
                "challenger": o.challenger,
                "promoted": o.promoted,
                "skipped": o.skipped,
                "decision": o.decision.summary() if o.decision else None,
            }
            for o in outcomes
        ],
    }


def row(workers: int, lines: int, runs: list[dict]) -> dict:
    walls = [r["wall_seconds"] for r in runs]
    mean = sum(walls) / len(walls)
    return {
        "workers": workers,
        "lines": lines,
        "repeats": len(runs),
        "wall_seconds": mean,
        "wall_seconds_all": walls,
        "lines_per_minute": lines * 60 / mean,
        "runs": runs,
    }


def table(result: dict) -> str:
    data = result["data"]
    lines = [
        f"Measured {result['date']} on {result['machine']}; {result['lines']} (line, camera) "
        f"pairs of {data['goods']} good, {data['defects']} defective and {data['unknowns']} "
        f"unlabelled {data['size']} px frames each; challengers: "
        f"{', '.join(result['model_overrides'])}; dask {result['versions']['distributed']}, "
        f"prefect {result['versions']['prefect']}, torch {result['versions']['torch']}.",
        "",
        "| Dask workers | lines | runs | wall s per run | lines/min | vs 1 worker |",
        "|---|---|---|---|---|---|",
    ]
    base = next((r for r in result["rows"] if r["workers"] == 1), None)
    for r in result["rows"]:
        speedup = f"{r['lines_per_minute'] / base['lines_per_minute']:.2f}x" if base else ""
        lines.append(
            f"| {r['workers']} | {r['lines']} | {r['repeats']} | {r['wall_seconds']:.0f} | "
            f"{r['lines_per_minute']:.2f} | {speedup} |"
        )
    return "\n".join(lines)


def write_readme(block: str) -> None:
    from benchmarks.quality import update_readme

    readme = HERE / "README.md"
    if BEGIN not in readme.read_text():
        readme.write_text(readme.read_text().rstrip("\n") + "\n" + SECTION)
    update_readme(block, BEGIN, END)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=4, help="(line, camera) pairs.")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=1, help="Flow runs per worker count.")
    parser.add_argument(
        "--set", action="append", default=[], help="Extra challenger override (recorded)."
    )
    parser.add_argument("--workspace", type=Path, default=HERE / ".workspace" / "retrain-scale")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--no-readme", action="store_true", help="Leave README.md alone.")
    args = parser.parse_args()
    work = args.workspace.resolve()
    work.mkdir(parents=True, exist_ok=True)
    quiet_environment(work)

    import distributed
    import mlflow
    import prefect
    import torch
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from benchmarks.quality import machine

    lines = line_names(args.lines)
    model = [*MODEL, *args.set]
    data_root = work / "data"
    generate(data_root, lines)
    server = SubprocessASGIServer()  # this process's temporary Prefect server, for all
    server.start()
    rows = []
    with temporary_settings({PREFECT_API_URL: server.api_url}):
        for workers in args.workers:
            runs = []
            for repeat in range(args.repeats):
                run = run_once(data_root, work / f"w{workers}-r{repeat}", workers, model)
                runs.append(run)
                print(
                    f"{workers} worker(s), run {repeat + 1}: {run['lines_retrained']}/"
                    f"{len(lines)} lines retrained in {run['wall_seconds']:.1f} s",
                    flush=True,
                )
                if run["lines_retrained"] != len(lines):
                    raise SystemExit(f"not every line was retrained: {run['outcomes']}")
            rows.append(row(workers, len(lines), runs))
            print(f"{workers} worker(s): {rows[-1]['lines_per_minute']:.2f} lines/min", flush=True)
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    result = {
        "date": date,
        "machine": machine(),
        "lines": len(lines),
        "data": DATA,
        "model_overrides": model,
        "frozen": FROZEN,
        "task_runner": "dask LocalCluster started by the flow, 1 thread per worker process",
        "prefect": "one local Prefect server shared by the flow and its workers",
        "versions": {
            "torch": torch.__version__,
            "prefect": prefect.__version__,
            "distributed": distributed.__version__,
            "mlflow": mlflow.__version__,
        },
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"retrain-scale-{date}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    block = table(result)
    print(block)
    if not args.no_readme:
        write_readme(block)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
