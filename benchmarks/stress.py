"""Stress benchmark on magnetic_tile: the stress report of each model family, before and after
hardening.

    python benchmarks/stress.py --baseline ae vae draem
    python benchmarks/stress.py --harden draem --variants none both --minutes 10 \
        --set "severities=[medium]" --set "eps=[2]"

Baseline rows stress the magnetic_tile bundles that `benchmarks/quality.py` trained (the
newest per family in benchmarks/.workspace); their drift reference is rebuilt as the train
flow builds it, because they were trained before drift monitoring. Hardened rows first train
the family's committed config plus the variant's overrides (below) through the real train
flow, at one wall-clock budget (`--minutes`) for all variants, so they compare at equal
training time; variant `none` is the committed config under that budget. `--set` changes the
stress settings (recorded in the row). Writes benchmarks/results/stress-<date>.json (rows of other
(model, variant) pairs from the same day and machine are kept), the HTML and JSON reports
under benchmarks/.workspace/stress/, and the table in benchmarks/README.md.
"""

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = REPO.parent / "shared" / "data"
os.environ.setdefault("AEINSPECT_HOME", str(HERE / ".workspace"))
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from benchmarks.quality import DATASETS, machine, update_readme  # noqa: E402
from flows.train_flow import train_flow  # noqa: E402
from pipeline.bundle import LoadedBundle, load_bundle  # noqa: E402
from pipeline.config import load_config, override_section  # noqa: E402
from pipeline.data.mvtec import load_train_splits  # noqa: E402
from pipeline.drift.profile import reference_from_splits  # noqa: E402
from pipeline.reports.stress_report import write_stress_html  # noqa: E402
from pipeline.scoring import score_images  # noqa: E402
from pipeline.stress.suite import load_test_frames, run_stress  # noqa: E402

BEGIN, END = "<!-- stress:begin -->", "<!-- stress:end -->"
DATA = SHARED / "magnetic_tile"
PHOTOMETRIC = (
    "train.augment=["
    "{name: RandomBrightnessContrast,"
    " params: {brightness_limit: 0.2, contrast_limit: 0.3, p: 0.8}},"
    "{name: RandomGamma, params: {gamma_limit: [67, 150], p: 0.5}},"
    "{name: Illumination, params: {intensity_range: [0.01, 0.2], p: 0.3}},"
    "{name: GaussNoise, params: {std_range: [0.005, 0.03], p: 0.3}},"
    "{name: RandomShadow, params: {shadow_roi: [0, 0, 1, 1], num_shadows_limit: [1, 2],"
    " shadow_intensity_range: [0.2, 0.6], p: 0.3}}]"
)
ADVERSARIAL = ["train.adversarial.eps=2", "train.adversarial.steps=2"]
VARIANTS = {
    "none": [],
    "augment": [PHOTOMETRIC],
    "adversarial": ADVERSARIAL,
    "both": [PHOTOMETRIC, *ADVERSARIAL],
}


def newest_bundle(model: str) -> Path:
    runs = sorted((HERE / ".workspace" / "runs").glob(f"bench-magnetic_tile-{model}-*/bundle"))
    if not runs:
        raise SystemExit(f"no magnetic_tile {model} bundle: run benchmarks/quality.py first")
    return runs[-1]


def rebuilt_reference(bundle: LoadedBundle):
    """The reference the train flow would have saved (same seeded held-out split)."""
    cfg, module = bundle.config, bundle.module
    splits = load_train_splits(DATA, cfg.data, cfg.train.seed)
    scores, _ = score_images(module, splits.calib)
    return reference_from_splits(module, splits, scores, bundle.meta["alpha"], cfg.drift.components)


def train_variant(model: str, variant: str, minutes: float) -> tuple[Path, float]:
    """Adversarial steps cost ~3x, so variants share a wall-clock budget, not an epoch count."""
    sets = [
        *DATASETS["magnetic_tile"]["sets"],
        f"data.path={DATA}",
        *VARIANTS[variant],
        f"train.max_minutes={minutes}",
        "tracking.experiment=bench-magnetic_tile-hardened",
        f"tracking.registered_model=bench-magnetic_tile-{model}-{variant}",
        f"name=bench-magnetic_tile-{model}-{variant}-{minutes:g}min",
    ]
    outcome = train_flow(load_config(REPO / "configs" / f"{model}.yaml", sets))
    return outcome.run_dir / "bundle", outcome.train_seconds


def medium_lighting(report) -> dict:
    rows = [p for p in report.perturbations if p.lighting and p.severity == "medium"]
    fars = [p.figures.false_alarm_rate for p in rows]
    return {
        "mean_far": float(np.mean(fars)) if fars else None,
        "max_far": max(fars) if fars else None,
        "mean_miss": float(np.mean([p.figures.miss_rate for p in rows])) if rows else None,
        "drift_fired": sum(bool(p.drift_fired) for p in rows),
        "n": len(rows),
    }


def stress_one(
    model: str, variant: str, bundle_dir: Path, train_seconds: float | None, sets: list[str]
) -> dict:
    bundle = load_bundle(bundle_dir)
    settings = override_section(bundle.config.stress, sets, "--set")
    reference = (
        bundle.drift_reference() if bundle.has_drift_reference else rebuilt_reference(bundle)
    )
    test = load_test_frames(DATA, bundle.module.channels)
    began = time.perf_counter()
    run = run_stress(
        bundle.module,
        test,
        settings,
        model_name=str(bundle.meta["model_name"]),
        model_version=bundle.version,
        dataset="../shared/data/magnetic_tile",
        reference=reference,
        drift_cfg=bundle.config.drift,
        progress=lambda line: print(f"  {line}", flush=True),
    )
    out = HERE / ".workspace" / "stress" / f"{model}-{variant}"
    out.mkdir(parents=True, exist_ok=True)
    report = run.report
    (out / "stress_report.json").write_text(report.model_dump_json(indent=2) + "\n")
    write_stress_html(report, run.examples, out / "stress_report.html")
    pgd2 = next(a for a in report.attacks if a.method == "pgd" and a.eps == 2.0)
    return {
        "model": model,
        "variant": variant,
        "stress_settings": sets,
        "bundle": os.path.relpath(bundle_dir, REPO),
        "train_seconds": train_seconds,
        "clean": report.clean.model_dump(),
        "medium_lighting": medium_lighting(report),
        "pgd_eps2": pgd2.model_dump(),
        "sanity_passed": report.sanity_passed,
        "failed_checks": [c.name for c in report.sanity if not c.passed],
        "stress_seconds": time.perf_counter() - began,
        "report": report.model_dump(mode="json"),
    }


def fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict], when: str, where: str) -> str:
    lines = [
        f"Measured {when} on {where}.",
        "",
        "| model | variant | train s | clean AUROC | clean FAR | medium lighting: mean FAR "
        "| max FAR | mean miss | drift fired | PGD 2/255: false-alarm success "
        "| hidden-defect success | robust AUROC | sanity |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m, a, c = r["medium_lighting"], r["pgd_eps2"], r["clean"]
        train = "n/a" if r["train_seconds"] is None else f"{r['train_seconds']:.0f}"
        lines.append(
            f"| {r['model']} | {r['variant']} | {train} | {fmt(c['auroc'])} "
            f"| {fmt(c['false_alarm_rate'])} | {fmt(m['mean_far'])} | {fmt(m['max_far'])} "
            f"| {fmt(m['mean_miss'])} | {m['drift_fired']}/{m['n']} "
            f"| {fmt(a['false_alarm_success'])} | {fmt(a['hidden_defect_success'])} "
            f"| {fmt(a['robust_auroc'])} | {'passed' if r['sanity_passed'] else 'FAILED'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", nargs="*", default=[], choices=["ae", "vae", "draem"])
    parser.add_argument("--harden", nargs="*", default=[], choices=["ae", "vae", "draem"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--minutes", type=float, default=10.0, help="Training budget per variant.")
    parser.add_argument("--set", action="append", default=[], help="Stress setting key=value.")
    args = parser.parse_args()
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    where = machine()
    out = HERE / "results" / f"stress-{when}.json"
    rows: dict[tuple[str, str], dict] = {}
    if out.exists():
        old = json.loads(out.read_text())
        if old.get("machine") == where:
            rows = {(r["model"], r["variant"]): r for r in old["results"]}
    plans = [(m, "baseline") for m in args.baseline]
    plans += [(m, f"{v} {args.minutes:g} min") for m in args.harden for v in args.variants]
    for model, variant in plans:
        print(f"== {model} / {variant}", flush=True)
        if variant == "baseline":
            bundle_dir = newest_bundle(model)
            newest = sorted((HERE / "results").glob("quality-????-??-??.json"))[-1]
            quality = json.loads(newest.read_text())["results"]
            seconds = next(
                (
                    q["train_seconds"]
                    for q in quality
                    if q["dataset"] == "magnetic_tile" and q["model"] == model
                ),
                None,
            )
        else:
            bundle_dir, seconds = train_variant(model, variant.split()[0], args.minutes)
        rows[(model, variant)] = stress_one(model, variant, bundle_dir, seconds, args.set)
        ordered = sorted(rows.values(), key=lambda r: (r["model"], r["variant"] != "baseline"))
        out.write_text(
            json.dumps({"date": when, "machine": where, "results": ordered}, indent=2) + "\n"
        )
        update_readme(table(ordered, when, where), BEGIN, END)
        print(json.dumps({k: v for k, v in rows[(model, variant)].items() if k != "report"}))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
