"""The evaluation report as one self-contained HTML page, for people deciding on a model.

Tables give the numbers; the ROC curves, the score histogram and the overlays of the worst
false alarms, worst misses and best detections show where the numbers come from.
"""

from html import escape
from pathlib import Path

import cv2
import numpy as np
from matplotlib.figure import Figure

from data_contracts.evaluation import EvaluationReport
from pipeline.evaluation import GOOD, Predictions
from pipeline.metrics import roc_curve_points
from pipeline.reports.html import (
    as_rgb,
    figure_to_data_uri,
    image_to_data_uri,
    metrics_table,
    overlay,
    render_page,
    thumbnail,
)

CASES_PER_GRID = 6
PANEL_PX = 160  # 3 panels x 18 cases: about 3 MB for noisy 256 px inputs, far less for clean
GOOD_MAP_QUANTILE = 0.999  # colour-scale top when the threshold cannot be used
OUTLINE_RGB = (255, 0, 0)


def _summary_table(report: EvaluationReport) -> str:
    point = report.at_threshold
    rows = [
        ("model", f"{report.model_name} {report.model_version or ''}".strip()),
        ("dataset", report.dataset),
        ("created (UTC)", report.created.strftime("%Y-%m-%d %H:%M:%S")),
        ("good / defect test images", f"{report.n_good} / {report.n_defect}"),
        ("image AUROC", report.image_auroc),
        ("pixel AUROC", report.pixel_auroc),
        ("PRO (FPR up to 0.3)", report.pro),
        ("threshold", report.calibration.threshold),
        ("alpha (false-alarm budget)", report.calibration.alpha),
        ("precision", point.precision),
        ("recall", point.recall),
        ("F1", point.f1),
        ("false-alarm rate", point.false_alarm_rate),
        ("scoring throughput (images/s)", report.scoring_images_per_s),
    ]
    return metrics_table([{"metric": name, "value": value} for name, value in rows])


def _budget_key(budget: str) -> tuple[float, str]:
    try:
        return float(budget), budget
    except ValueError:
        return float("inf"), budget


def _calibration_table(report: EvaluationReport) -> str:
    cal = report.calibration
    intro = (
        f"<p>Split-conformal thresholds from {cal.n_calibration} held-out good images; "
        f"the report uses the budget alpha = {cal.alpha:g}.</p>"
    )
    rows = [
        {"false-alarm budget": budget, "threshold": cal.thresholds[budget]}
        for budget in sorted(cal.thresholds, key=_budget_key)
    ]
    return intro + metrics_table(rows)


def _synthetic_table(report: EvaluationReport) -> str:
    check = report.synthetic
    if check is None:
        return "<p>No synthetic-defect check was recorded for this model.</p>"
    intro = (
        f"<p>Model selection set: {check.n_images} held-out good images, {check.n_anomalous} "
        "of them with synthetic anomalies (never the test set). Fusion weights: "
        + ", ".join(f"{name} {weight:.2f}" for name, weight in check.fusion_weights.items())
        + ".</p>"
    )
    rows = [
        {"metric": "synthetic image AUROC", "value": check.image_auroc},
        {"metric": "synthetic pixel AUROC", "value": check.pixel_auroc},
        {"metric": "synthetic recall at the threshold", "value": check.recall},
    ]
    return intro + metrics_table(rows)


def _defect_table(report: EvaluationReport) -> str:
    rows = [
        {
            "defect": d.defect,
            "images": d.n_images,
            "image AUROC": d.image_auroc,
            "pixel AUROC": d.pixel_auroc,
            "PRO": d.pro,
            "recall at threshold": d.recall,
        }
        for d in report.per_defect
    ]
    return "<p>Each defect type against all good test images.</p>" + metrics_table(rows)


def _img(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{escape(alt)}">'


def _roc_figure(pred: Predictions) -> str:
    labels, categories = pred.labels, np.asarray(pred.categories)
    if not (labels.any() and (labels == 0).any()):
        return "<p>n/a: a ROC curve needs both good and defect images.</p>"
    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.subplots()
    ax.plot(*roc_curve_points(labels, pred.scores), color="black", lw=2, label="all defects")
    for defect in pred.defect_types:
        chosen = (categories == defect) | (categories == GOOD)
        ax.plot(*roc_curve_points(labels[chosen], pred.scores[chosen]), lw=1, label=defect)
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1)
    ax.set(xlabel="false-positive rate (good images)", ylabel="true-positive rate")
    ax.set_title("Image ROC")
    ax.legend(loc="lower right", fontsize="small")
    return _img(figure_to_data_uri(fig), "image ROC curves")


def _histogram_figure(pred: Predictions, threshold: float) -> str:
    labels = pred.labels
    fig = Figure(figsize=(6.5, 3.5))
    ax = fig.subplots()
    bins = np.histogram_bin_edges(np.append(pred.scores, threshold), bins=40)
    for flag, name, colour in ((0, "good", "tab:blue"), (1, "defect", "tab:orange")):
        if (labels == flag).any():
            ax.hist(pred.scores[labels == flag], bins=bins, alpha=0.6, color=colour, label=name)
    ax.axvline(threshold, color="red", ls="--", label=f"threshold {threshold:.4g}")
    ax.set(xlabel="image score", ylabel="images")
    ax.set_title("Image scores")
    ax.legend(fontsize="small")
    return _img(figure_to_data_uri(fig), "histogram of image scores")


def _colour_top(pred: Predictions, threshold: float) -> tuple[float, str]:
    """One colour scale for every overlay, so colours compare across images.

    Our image score pools the fused map (max or top-k mean), so the threshold is in map units
    and red means "as high as what flags an image". A threshold at or below 0 cannot top a
    scale that starts at 0; then the scale tops at a high quantile of the good images' maps.
    """
    if 0 < threshold < np.inf:
        return threshold, "the calibrated threshold"
    good = np.flatnonzero(pred.labels == 0)
    rows = good if good.size else np.arange(len(pred.maps))
    sample = pred.maps[rows, ::4, ::4]  # strided: a quantile needs no full copy of the maps
    top = float(np.quantile(sample, GOOD_MAP_QUANTILE)) if sample.size else 0.0
    if top > 0:
        return top, f"the {GOOD_MAP_QUANTILE:.1%} quantile of good-image maps"
    return 1.0, "a fixed 1.0: neither the threshold nor the maps give a positive scale"


def _outlined(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image with the ground-truth outline drawn in red, at the image's (thumbnail) size,
    so the line stays one crisp pixel wide."""
    small = cv2.resize(mask.astype(np.uint8), rgb.shape[1::-1], interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(small, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    return cv2.drawContours(rgb.copy(), contours, -1, OUTLINE_RGB, 1)


def _case(pred: Predictions, index: int, vmax: float) -> str:
    shown = thumbnail(as_rgb(pred.images[index]), PANEL_PX)
    panels = (
        ("input", shown),
        ("ground truth", _outlined(shown, pred.masks[index])),
        ("anomaly map", overlay(shown, pred.maps[index], vmax=vmax)),
    )
    imgs = "".join(_img(image_to_data_uri(p), alt) for alt, p in panels)
    name = "/".join(Path(pred.paths[index]).parts[-2:])
    caption = f"{pred.categories[index]} · score {float(pred.scores[index]):.4f} · {name}"
    return f"<figure>{imgs}<figcaption>{escape(caption)}</figcaption></figure>"


def _grid(pred: Predictions, indices: np.ndarray, vmax: float, empty: str) -> str:
    if not indices.size:
        return f"<p>{escape(empty)}</p>"
    return '<div class="grid">' + "".join(_case(pred, int(i), vmax) for i in indices) + "</div>"


def _case_grids(pred: Predictions, threshold: float) -> list[tuple[str, str]]:
    by_score = np.argsort(pred.scores, kind="stable")
    rising_defect = by_score[pred.labels[by_score] == 1]
    falling_good = by_score[pred.labels[by_score] == 0][::-1]
    vmax, source = _colour_top(pred, threshold)
    note = (
        f"<p>Input | ground truth (red outline) | anomaly map. In every overlay colours run "
        f"from 0 (blue) to {vmax:.4g} (red), {escape(source)}.</p>"
    )
    n = CASES_PER_GRID
    return [
        (
            "Worst false alarms (highest-scoring good images)",
            note + _grid(pred, falling_good[:n], vmax, "No good images."),
        ),
        (
            "Worst misses (lowest-scoring defect images)",
            _grid(pred, rising_defect[:n], vmax, "No defect images."),
        ),
        (
            "Best detections (highest-scoring defect images)",
            _grid(pred, rising_defect[::-1][:n], vmax, "No defect images."),
        ),
    ]


def write_evaluation_html(report: EvaluationReport, pred: Predictions, path: Path) -> Path:
    """Write the report page to `path` (parents created) and return the path."""
    threshold = report.calibration.threshold
    sections = [
        ("Summary", _summary_table(report)),
        ("Calibration", _calibration_table(report)),
        ("Per defect type", _defect_table(report)),
        ("Synthetic defects (selection set)", _synthetic_table(report)),
        ("ROC curves", _roc_figure(pred)),
        ("Score distribution", _histogram_figure(pred, threshold)),
        *_case_grids(pred, threshold),
    ]
    title = f"Evaluation of {report.model_name} on {report.dataset}"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_page(title, sections), encoding="utf-8")
    return path
