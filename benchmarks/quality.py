"""Quality benchmark: train each model family on each dataset with fixed seeds and record
image AUROC, pixel AUROC, PRO, false-alarm rate and recall at the calibrated threshold,
training time and scoring throughput.

    python benchmarks/quality.py [--datasets demo magnetic_tile battery_weld] [--models ae draem]
        [--set key=value ...] [--tag ablation-name]

Writes benchmarks/results/quality-<date>.json (rows of other pairs from the newest such file of
the same machine are kept with the date they were measured, so a subset can be re-run) and
rewrites the table in benchmarks/README.md between the markers. Runs go through the real train
flow, into a workspace of their own (benchmarks/.workspace, not committed). With --tag the
rows go to quality-<date>-<tag>.json alone and the table is left as it is: for ablations and
repeats that should be kept but not replace the benchmark's rows.
"""

import argparse
import json
import os
import platform
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = REPO.parent / "shared" / "data"
os.environ.setdefault("AEINSPECT_HOME", str(HERE / ".workspace"))
sys.path.insert(0, str(REPO))

from pipeline.workspace import configure_environment  # noqa: E402

configure_environment()

from flows.train_flow import train_flow  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.errors import InspectError  # noqa: E402

# Per-dataset settings that the data forces: battery_weld has 48 good training images, so
# its calibration split (12) supports a 10 % false-alarm budget at best.
DATASETS = {
    "demo": {"path": None, "sets": []},
    "magnetic_tile": {"path": SHARED / "magnetic_tile", "sets": ["data.channels=1"]},
    "battery_weld": {
        "path": SHARED / "battery_weld",
        "sets": ["data.channels=1", "calibration.alpha=0.1"],
    },
}
MODELS = ["ae", "vae", "draem"]
BEGIN, END = "<!-- quality:begin -->", "<!-- quality:end -->"
DEFECTS_BEGIN, DEFECTS_END = "<!-- quality-defects:begin -->", "<!-- quality-defects:end -->"
FULL_RESULTS = re.compile(r"quality-\d{4}-\d{2}-\d{2}")  # not the named ablation files


def machine() -> str:
    cpus = os.cpu_count()
    py = platform.python_version()
    return f"{platform.machine()} {cpus} cores, {platform.system()}, Python {py}"


def run_one(dataset: str, model: str, extra: list[str], root: Path | None = None) -> dict:
    """Train one model through the train flow and return its row; `root` replaces the
    dataset's folder (a prepared copy of it), and the row still names the dataset."""
    spec = DATASETS[dataset]
    sets = [
        *spec["sets"],
        *extra,
        f"tracking.experiment=bench-{dataset}",
        f"tracking.registered_model=bench-{dataset}-{model}",
        f"name=bench-{dataset}-{model}",
    ]
    if spec["path"] is not None:
        sets.append(f"data.path={root or spec['path']}")
    cfg = load_config(REPO / "configs" / f"{model}.yaml", sets)
    outcome = train_flow(cfg)
    r = outcome.evaluation.report
    config = cfg.model_dump(mode="json")
    if spec["path"] is not None:  # record where the data is relative to the repo, not this machine
        config["data"]["path"] = f"../shared/data/{dataset}"
    return {
        "dataset": dataset,
        "model": model,
        "config": config,
        "overrides": extra,
        "image_auroc": r.image_auroc,
        "pixel_auroc": r.pixel_auroc,
        "pro": r.pro,
        "alpha": r.calibration.alpha,
        "threshold": r.calibration.threshold,
        "false_alarm_rate": r.at_threshold.false_alarm_rate,
        "recall": r.at_threshold.recall,
        "train_seconds": outcome.train_seconds,
        "train_images_per_s": outcome.train_images_per_s,
        "data_wait_share": outcome.data_wait_share,
        "synthetic_recall": r.synthetic.recall if r.synthetic else None,
        "scoring_images_per_s": r.scoring_images_per_s,
        "n_good": r.n_good,
        "n_defect": r.n_defect,
        "per_defect": [d.model_dump(mode="json") for d in r.per_defect],
        "mlflow_run": outcome.run_id,
        "run": outcome.run_dir.name,
    }


def latest_rows(where: str) -> list[dict]:
    """Rows of the newest full results file from this machine, each with the date it was
    measured, so a re-run of one pair on a later day keeps the others in the table."""
    files = sorted(
        p for p in (HERE / "results").glob("quality-*.json") if FULL_RESULTS.fullmatch(p.stem)
    )
    for path in reversed(files):
        old = json.loads(path.read_text())
        if old.get("machine") == where:
            return [{**r, "date": r.get("date", old["date"])} for r in old["results"]]
    return []


def fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def table(results: list[dict], where: str) -> str:
    lines = [
        f"Measured on {where}; the last column is the date of each row.",
        "",
        "| dataset | model | image AUROC | pixel AUROC | PRO | alpha | FAR@thr | recall@thr "
        "| synthetic recall@thr | train s | train img/s | data wait | score img/s | date |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['dataset']} | {r['model']} | {fmt(r['image_auroc'])} | {fmt(r['pixel_auroc'])} "
            f"| {fmt(r['pro'])} | {r['alpha']} | {fmt(r['false_alarm_rate'])} "
            f"| {fmt(r['recall'])} | {fmt(r.get('synthetic_recall'))} | {r['train_seconds']:.0f} "
            f"| {fmt(r.get('train_images_per_s'), 1)} | {fmt(r.get('data_wait_share'))} "
            f"| {fmt(r['scoring_images_per_s'], 1)} | {r['date']} |"
        )
    return "\n".join(lines)


def defect_table(results: list[dict]) -> str:
    """Image / pixel AUROC per defect type (each type against all good test images): where a
    model fails matters as much as its overall figure."""
    lines = [
        "| dataset | model | defect | images | image AUROC | pixel AUROC | PRO | recall@thr |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for d in r.get("per_defect") or []:
            lines.append(
                f"| {r['dataset']} | {r['model']} | {d['defect']} | {d['n_images']} "
                f"| {fmt(d['image_auroc'])} | {fmt(d['pixel_auroc'])} | {fmt(d['pro'])} "
                f"| {fmt(d['recall'])} |"
            )
    return "\n".join(lines)


def update_readme(block: str, begin: str = BEGIN, end: str = END) -> None:
    """Replace the text between two markers in benchmarks/README.md."""
    path = HERE / "README.md"
    head, _, rest = path.read_text().partition(begin)
    _, _, tail = rest.partition(end)
    path.write_text(f"{head}{begin}\n{block}\n{end}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--models", nargs="+", default=["ae", "vae", "draem"])
    parser.add_argument(
        "--set", action="append", help="Config override for every run (recorded in the row)."
    )
    parser.add_argument("--tag", help="Write quality-<date>-<tag>.json only; leave the table.")
    args = parser.parse_args()
    if args.tag and not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", args.tag):
        parser.error(f"--tag {args.tag!r}: use lower-case letters, digits, '-' and '_'")
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    where = machine()
    out = HERE / "results" / f"quality-{when}{'-' + args.tag if args.tag else ''}.json"
    chosen = {(d, m) for d in args.datasets for m in args.models}
    kept = (
        []
        if args.tag
        else [r for r in latest_rows(where) if (r["dataset"], r["model"]) not in chosen]
    )
    try:  # a typo in --set fails here, in one line, before hours of training
        for model in args.models:
            load_config(REPO / "configs" / f"{model}.yaml", args.set or [])
    except InspectError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    results = []
    for dataset in args.datasets:
        for model in args.models:
            print(f"== {dataset} / {model}", flush=True)
            try:  # a broken dataset: one line
                results.append({**run_one(dataset, model, args.set or []), "date": when})
            except InspectError as exc:
                parser.exit(2, f"{parser.prog}: error: {exc}\n")
            print(json.dumps({k: v for k, v in results[-1].items() if k != "config"}), flush=True)
    order = {(d, m): i for i, (d, m) in enumerate((d, m) for d in DATASETS for m in MODELS)}
    results = sorted(kept + results, key=lambda r: order.get((r["dataset"], r["model"]), 99))
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps({"date": when, "machine": where, "results": results}, indent=2) + "\n"
    )
    if not args.tag:
        update_readme(table(results, where))
        update_readme(defect_table(results), DEFECTS_BEGIN, DEFECTS_END)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
