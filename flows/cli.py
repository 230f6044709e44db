"""The `aeinspect` command line.

It lives in `flows` because it runs flows, and `pipeline` must not import `flows`. Our own
errors print one line and exit 1; `--debug` shows the traceback instead.
"""

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import click
import typer

from pipeline.errors import ExportError, InspectError
from pipeline.workspace import configure_environment, workspace

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Train, calibrate, evaluate and track anomaly detectors for visual inspection.",
)
datasets_app = typer.Typer(no_args_is_help=True, help="Datasets: generate demo data.")
app.add_typer(datasets_app, name="datasets")
REPO_CONFIGS = Path(__file__).resolve().parent.parent / "configs"
# the best configuration measured on real parts (benchmarks/README.md)
DEFAULT_TRAIN_CONFIG = REPO_CONFIGS / "draem.yaml"


def _echo_metrics(metrics: dict[str, float | None]) -> None:
    for key, value in metrics.items():
        shown = "n/a" if value is None else f"{value:.4f}"
        typer.echo(f"  {key:<28} {shown}")


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    level = logging.INFO if debug else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # MLflow configures its own logger when imported (later, inside the commands)
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", logging.getLevelName(level))


@datasets_app.command("demo")
def datasets_demo(
    out: Annotated[Path, typer.Option(help="Folder to create (must not exist or be empty).")],
    size: int = 128,
    channels: int = 3,
    seed: int = 0,
) -> None:
    """Render the procedural demo dataset (machined parts with defects and masks)."""
    from pipeline.data.demo import generate_demo_dataset
    from pipeline.errors import DataError

    try:
        summary = generate_demo_dataset(out, size=size, channels=channels, seed=seed)
    except (FileExistsError, ValueError) as exc:  # the generator refuses to overwrite data
        raise DataError(str(exc)) from exc
    counts = ", ".join(f"{k} {v}" for k, v in summary.counts.items())
    typer.echo(f"wrote {out} in {summary.seconds:.1f} s: {counts}")


@app.command()
def validate(
    data: Annotated[Path, typer.Argument(help="MVTec-layout dataset folder.")],
    channels: Annotated[int | None, typer.Option(help="Expected channels (1 or 3).")] = None,
) -> None:
    """List every problem in a dataset; exit 1 when there is any."""
    from pipeline.data.validate import validate_dataset

    problems = validate_dataset(data, channels=channels)
    for problem in problems:
        typer.echo(str(problem))
    if problems:
        typer.echo(f"{len(problems)} problem(s) in {data}", err=True)
        raise typer.Exit(1)
    typer.echo(f"{data}: no problems found")


def _run_training(cfg, run_dir: Path | None = None):
    from flows.train_flow import data_root, train_flow
    from pipeline.preflight import check_before_training

    # bad input fails here in one line, before Prefect starts and logs tracebacks
    check_before_training(cfg, data_root(cfg))

    outcome = train_flow(cfg, run_dir)
    report = outcome.evaluation.report
    from pipeline.evaluate_model import headline_metrics

    typer.echo(
        f"\nmodel {outcome.registered_model} version {outcome.version} "
        f"(alias challenger), trained in {outcome.train_seconds:.0f} s"
    )
    typer.echo(
        f"test set: {report.n_good} good, {report.n_defect} defective; "
        f"threshold {outcome.calibration.threshold:.4f} at alpha {outcome.calibration.alpha}"
    )
    _echo_metrics(headline_metrics(report))
    if outcome.skipped_images:
        typer.echo(f"skipped {outcome.skipped_images} unreadable image(s); see the warnings above")
    typer.echo(f"reports: {outcome.evaluation.html_path}")
    typer.echo(f"run folder: {outcome.run_dir}")
    return outcome


@app.command()
def train(
    config: Annotated[
        Path | None, typer.Option(help="YAML run config (default configs/draem.yaml).")
    ] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override: key=value.")] = None,
    data: Annotated[Path | None, typer.Option(help="Dataset folder (sets data.path).")] = None,
    resume: Annotated[Path | None, typer.Option(help="Run folder to resume.")] = None,
) -> None:
    """Train, calibrate, evaluate, log to MLflow and register a new version (challenger)."""
    from flows.train_flow import RUN_CONFIG
    from pipeline.config import load_config

    overrides = list(set_ or [])
    if data is not None:
        overrides.append(f"data.path={data}")
    if config is None:  # a resumed run keeps its own config unless told otherwise
        saved = resume / RUN_CONFIG if resume is not None else None
        config = saved if saved is not None and saved.is_file() else DEFAULT_TRAIN_CONFIG
    _run_training(load_config(config, overrides), resume)


@app.command()
def evaluate(
    model: Annotated[str, typer.Option(help="Bundle folder, or registry name@alias / name/N.")],
    data: Annotated[Path, typer.Option(help="MVTec-layout dataset folder.")],
    out: Annotated[Path | None, typer.Option(help="Report folder.")] = None,
) -> None:
    """Evaluate a model on a labelled test set: JSON and HTML reports."""
    from data_contracts import CalibrationSummary
    from pipeline.bundle import load_bundle
    from pipeline.evaluate_model import evaluate_module, headline_metrics
    from pipeline.tracking import resolve_model_uri

    bundle = load_bundle(resolve_model_uri(model))
    calibration = CalibrationSummary.model_validate(bundle.meta["calibration"])
    out = out or workspace() / "evaluations" / f"{bundle.meta['model_name']}-{bundle.version}"
    result = evaluate_module(
        bundle.module,
        calibration,
        data,
        out,
        model_name=bundle.meta["model_name"],
        model_version=bundle.version,
    )
    _echo_metrics(headline_metrics(result.report))
    typer.echo(f"reports: {result.json_path} {result.html_path}")


@app.command()
def score(
    target: Annotated[Path, typer.Argument(help="An image file or a folder of images.")],
    model: Annotated[str, typer.Option(help="Bundle folder, or registry name@alias / name/N.")],
    out: Annotated[Path, typer.Option(help="JSONL file of score records (appended).")] = Path(
        "scores.jsonl"
    ),
    overlays: Annotated[Path | None, typer.Option(help="Folder for overlays of defects.")] = None,
) -> None:
    """Score images: one score record per image (JSONL), overlays for flagged ones."""
    from pipeline.bundle import load_bundle
    from pipeline.score_files import input_files, score_files
    from pipeline.tracking import resolve_model_uri

    files = input_files(target)
    bundle = load_bundle(resolve_model_uri(model))
    summary = score_files(bundle, files, out, overlays)
    typer.echo(f"scored {summary.scored}, flagged {summary.flagged} -> {out}")
    if summary.failed:
        for err in summary.failed:
            typer.echo(f"not scored: {err}", err=True)
        raise typer.Exit(1)


def _check_model(model: str, version: str | None) -> None:
    """The model exists (bundle folder or registry entry) and its files match their hashes."""
    from flows.drift_flow import model_reference
    from pipeline.bundle import verify_bundle
    from pipeline.tracking import resolve_model_uri

    verify_bundle(resolve_model_uri(model_reference(model, version)))


@app.command()
def drift(
    model: Annotated[
        str, typer.Option(help="Registered name (its champion), name@alias, name/N or a bundle.")
    ],
    batch: Annotated[Path, typer.Option(help="Folder of new line images.")],
    version: Annotated[
        str | None, typer.Option(help="Registry version instead of champion.")
    ] = None,
    alpha: Annotated[
        float | None, typer.Option(help="Decision level (default: the model's).")
    ] = None,
    fail_on_drift: Annotated[bool, typer.Option(help="Exit 3 when drift is detected.")] = False,
) -> None:
    """Test a batch of new images against the model's reference profile; report to MLflow."""
    from flows.drift_flow import drift_flow
    from pipeline.config import DriftConfig, override_section
    from pipeline.drift.monitor import batch_files

    # bad input fails here in one line, before Prefect starts and logs tracebacks
    _check_model(model, version)
    batch_files(batch)
    if alpha is not None:
        override_section(DriftConfig(), [f"alpha={alpha}"], "--alpha")
    outcome = drift_flow(model, batch, version=version, alpha=alpha)
    report = outcome.report
    verdict = "DRIFT" if report.drift else "no drift"
    typer.echo(
        f"{verdict}: {report.model_name} v{report.model_version}, {report.n_batch} frames of "
        f"{report.batch} against {report.n_reference} reference frames, alpha {report.alpha}"
    )
    for test in report.tests:
        mark = "*" if test.shifted else " "
        effect = "n/a" if test.effect_size is None else f"{test.effect_size:+.3f}"
        typer.echo(f" {mark} {test.name:<16} p={test.p_value:<10.3g} effect {effect}")
    auc = report.domain_classifier.auc
    typer.echo(f"   domain classifier AUC {'n/a' if auc is None else f'{auc:.3f}'}")
    if report.unreadable:
        typer.echo(f"{len(report.unreadable)} unreadable frame(s) left out:", err=True)
        for frame in report.unreadable:
            typer.echo(f"  {frame.path}: {frame.problem}", err=True)
    typer.echo(f"report: {outcome.html_path}")
    typer.echo(f"MLflow: experiment run {outcome.mlflow_run_id[:8]} (drift monitor)")
    if fail_on_drift and report.drift:
        raise typer.Exit(3)


@app.command()
def stress(
    model: Annotated[
        str, typer.Option(help="Registered name (its champion), name@alias, name/N or a bundle.")
    ],
    data: Annotated[Path, typer.Option(help="MVTec-layout folder with a labelled test set.")],
    version: Annotated[
        str | None, typer.Option(help="Registry version instead of champion.")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Stress setting, e.g. attack_images=8, eps=[2,8]."),
    ] = None,
) -> None:
    """Lighting, optics and adversarial stress test at the deployed threshold; to MLflow."""
    from flows.stress_flow import stress_flow
    from pipeline.config import StressConfig, override_section
    from pipeline.data.validate import scan_layout
    from pipeline.stress.lighting import suite_for

    overrides = list(set_ or [])
    # bad keys or perturbation names fail here, in one line, before any flow starts
    checked = override_section(StressConfig(), overrides, "stress --set")
    suite_for(3, checked.perturbations)
    _check_model(model, version)
    scan_layout(data)
    outcome = stress_flow(model, data, version=version, settings=overrides)
    report = outcome.report
    typer.echo(
        f"stress test of {report.model_name} v{report.model_version} on {report.dataset}: "
        f"{len(report.perturbations)} perturbation settings, {len(report.attacks)} attacks"
    )
    clean = report.clean
    typer.echo(
        f"  clean: FAR {clean.false_alarm_rate}, miss rate {clean.miss_rate}, AUROC {clean.auroc}"
    )
    worst = max(report.perturbations, key=lambda p: p.figures.false_alarm_rate or 0, default=None)
    if worst is not None:
        typer.echo(
            f"  highest FAR: {worst.perturbation} {worst.severity} "
            f"({worst.figures.false_alarm_rate})"
        )
    verdict = "passed" if report.sanity_passed else "FAILED (see the report)"
    typer.echo(f"  gradient-masking checks: {verdict}")
    typer.echo(f"report: {outcome.html_path}")


@app.command()
def export(
    model: Annotated[
        str, typer.Option(help="Registered name (its champion), name@alias, name/N or a bundle.")
    ],
    version: Annotated[
        str | None, typer.Option(help="Registry version instead of champion.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="New folder for the edge bundle (default: workspace).")
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(help="MVTec-layout folder whose test set checks parity (default: training)."),
    ] = None,
    layout: Annotated[
        str | None, typer.Option(help="Graph input: uint8_nhwc or float_nchw (default: config).")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Export setting, e.g. max_batch=16, opset=18."),
    ] = None,
) -> None:
    """Export to ONNX as an edge bundle, after checking it scores as the lab module does."""
    from flows.export_flow import export_flow
    from pipeline.config import ExportConfig, override_section
    from pipeline.data.validate import scan_layout

    overrides = list(set_ or []) + ([f"input_layout={layout}"] if layout else [])
    # bad settings, models and folders fail here in one line, before any flow starts
    override_section(ExportConfig(), overrides, "export --set")
    _check_model(model, version)
    if data is not None:
        scan_layout(data)
    if out is not None and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out}: already exists and is not empty; choose another --out")
    outcome = export_flow(model, version=version, out=out, data=data, settings=overrides)
    manifest = outcome.manifest
    typer.echo(
        f"edge bundle of {manifest.model_name} v{manifest.model_version}: {outcome.bundle_dir}"
    )
    typer.echo(
        f"  ONNX opset {manifest.opset}, input {manifest.input.name} {manifest.input.layout}, "
        f"dynamic batch, threshold {manifest.threshold:.4g}"
    )
    typer.echo(f"  parity: {manifest.parity.summary()}")
    if outcome.mlflow_run_id:
        typer.echo(f"MLflow: logged to run {outcome.mlflow_run_id[:8]} under edge_bundle/")


@app.command()
def retrain(
    config: Annotated[
        Path, typer.Option(help="Retraining config (YAML), see configs/retrain.yaml.")
    ],
) -> None:
    """Ingest new line data, train challengers, gate and promote: once, now."""
    from flows.retrain_flow import retrain_flow
    from flows.schedule import check_prefect_server
    from pipeline.retrain.config import load_retrain_config
    from pipeline.tracking import connect

    load_retrain_config(config)
    connect()
    check_prefect_server()
    for o in retrain_flow(str(config)):
        quarantined = sum(len(r.quarantined) for r in o.ingested)
        head = f"{o.model_name}: {len(o.ingested)} new day(s), {quarantined} quarantined"
        drift = f", drift check: {o.drift}" if o.drift else ""
        if o.skipped:
            typer.echo(f"{head}{drift}; no challenger judged: {o.skipped}")
        else:
            assert o.decision is not None
            typer.echo(f"{head}{drift}; challenger v{o.challenger}: {o.decision.summary()}")


@app.command()
def schedule(
    config: Annotated[
        Path, typer.Option(help="Retraining config (YAML) with a schedule: section.")
    ],
) -> None:
    """Serve the retrain flow on the config's cron or interval against a Prefect server."""
    from flows.schedule import serve_retrain

    serve_retrain(config)


@app.command()
def rollback(
    model: Annotated[str, typer.Option(help="Registered model name, e.g. aeinspect-line-a-cam-0.")],
) -> None:
    """Make the previous champion the champion again."""
    from pipeline.retrain.registry import rollback as roll_back
    from pipeline.tracking import connect

    before, after = roll_back(connect(), model, workspace() / "locks")
    typer.echo(f"{model}: champion v{before} -> v{after} (rolled back)")


@app.command()
def ui(port: int = 5000) -> None:
    """Open the MLflow UI for the workspace on http://127.0.0.1:PORT."""
    from pipeline.tracking import tracking_uri

    uri = tracking_uri()
    typer.echo(f"MLflow UI on http://127.0.0.1:{port} (tracking {uri}); Ctrl+C to stop")
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    raise typer.Exit(subprocess.call(cmd))


@app.command()
def demo(
    config: Annotated[Path | None, typer.Option(help="Config (default configs/demo.yaml).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override: key=value.")] = None,
) -> None:
    """Everything on generated data: demo images, train, calibrate, evaluate, MLflow."""
    from pipeline.config import load_config

    cfg = load_config(config or REPO_CONFIGS / "demo.yaml", list(set_ or []))
    typer.echo(f"workspace: {workspace()}")
    outcome = _run_training(cfg)
    exe = _command_name()
    typer.echo("\nwhere to look:")
    typer.echo(f"  MLflow:  {exe} ui   then open http://127.0.0.1:5000")
    typer.echo(
        f"           experiment '{outcome.experiment}', run {outcome.run_id[:8]}, "
        f"model '{outcome.registered_model}' version {outcome.version}"
    )
    typer.echo(f"  report:  {outcome.evaluation.html_path}")
    typer.echo(f"  score:   {exe} score <image-or-folder> --model {outcome.run_dir / 'bundle'}")


def _command_name() -> str:
    """How the user can call us again: the script path when it is not on PATH (`make demo`)."""
    invoked = Path(sys.argv[0])
    found = shutil.which("aeinspect")
    if invoked.name == "aeinspect" and (
        found is None or Path(found).resolve() != invoked.resolve()
    ):
        return os.path.relpath(invoked)
    return "aeinspect"


# typer >= 0.20 raises usage errors from its own copy of click; catch both kinds
USAGE_ERRORS = tuple(
    {click.ClickException}
    | {c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"}
)


def main() -> None:
    """Console entry point: one line per error of ours, tracebacks only with --debug."""
    configure_environment()
    debug = "--debug" in sys.argv[1:]
    try:
        code = app(standalone_mode=False)  # click returns a typer.Exit's code here
    except InspectError as err:
        if debug:
            raise
        typer.echo(f"error: {err}", err=True)
        sys.exit(1)
    except USAGE_ERRORS as err:  # usage errors: click's own one-line message
        err.show()
        sys.exit(err.exit_code)
    except click.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("interrupted; a training run resumes with --resume <run folder>", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
