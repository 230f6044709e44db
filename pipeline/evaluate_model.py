"""Evaluate a scoring module on a labelled MVTec-layout test set and write the reports."""

import json
import time
from dataclasses import dataclass
from pathlib import Path

from data_contracts import CalibrationSummary, EvaluationReport, SyntheticCheck
from pipeline.data.mvtec import load_test_set
from pipeline.evaluation import Predictions, build_report
from pipeline.reports.evaluation_report import write_evaluation_html
from pipeline.scoring import InspectionModule, score_images


@dataclass
class Evaluation:
    report: EvaluationReport
    json_path: Path
    html_path: Path
    skipped: int


def evaluate_module(
    module: InspectionModule,
    calibration: CalibrationSummary,
    data_root: Path,
    out_dir: Path,
    *,
    model_name: str,
    model_version: str | None = None,
    synthetic: SyntheticCheck | None = None,
) -> Evaluation:
    """Score every test image, build the report (contract JSON + self-contained HTML)."""
    test = load_test_set(data_root, module.image_size, module.channels)
    began = time.perf_counter()
    scores, maps = score_images(module, test.images)
    per_s = len(scores) / max(time.perf_counter() - began, 1e-9)
    pred = Predictions(
        paths=test.paths,
        categories=test.categories,
        images=test.images,
        masks=test.masks,
        maps=maps,
        scores=scores,
    )
    report = build_report(
        pred,
        calibration,
        model_name=model_name,
        dataset=str(data_root),
        model_version=model_version,
        scoring_images_per_s=per_s,
        synthetic=synthetic,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "evaluation.json"
    json_path.write_text(json.dumps(report.model_dump(mode="json"), indent=2) + "\n")
    html_path = write_evaluation_html(report, pred, out_dir / "evaluation.html")
    return Evaluation(report, json_path, html_path, len(test.skipped))


def headline_metrics(report: EvaluationReport) -> dict[str, float | None]:
    """The figures logged as MLflow metrics and printed by the CLI."""
    op = report.at_threshold
    out: dict[str, float | None] = {
        "image_auroc": report.image_auroc,
        "pixel_auroc": report.pixel_auroc,
        "pro": report.pro,
        "threshold": op.threshold,
        "precision": op.precision,
        "recall": op.recall,
        "f1": op.f1,
        "false_alarm_rate": op.false_alarm_rate,
        "scoring_images_per_s": report.scoring_images_per_s,
    }
    if report.synthetic is not None:
        out["synthetic.image_auroc"] = report.synthetic.image_auroc
        out["synthetic.pixel_auroc"] = report.synthetic.pixel_auroc
        out["synthetic.recall"] = report.synthetic.recall
    for d in report.per_defect:
        out[f"{d.defect}.image_auroc"] = d.image_auroc
        out[f"{d.defect}.recall"] = d.recall
    return out
