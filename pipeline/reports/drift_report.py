"""The drift report as one self-contained HTML page, for people deciding whether the line moved.

The decision and the tests come first; the histograms, the feature scatter and the score
distributions show what moved; the thumbnails show the frames that typify the shift.
"""

from html import escape
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from data_contracts import DriftReference, DriftReport
from pipeline.drift.profile import Observation, reference_observation
from pipeline.reports.html import (
    figure_to_data_uri,
    image_to_data_uri,
    metrics_table,
    render_page,
    thumbnail,
)

REF_COLOUR, BATCH_COLOUR = "tab:blue", "tab:orange"
THUMB_PX = 160


def _img(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{escape(alt)}">'


def _summary(report: DriftReport) -> str:
    verdict = "DRIFT" if report.drift else "no drift"
    rows = [
        (
            "decision",
            f"{verdict} at alpha {report.alpha} (Bonferroni over {len(report.tests)} tests)",
        ),
        ("model", f"{report.model_name} version {report.model_version}"),
        ("batch", report.batch),
        ("checked (UTC)", report.created.strftime("%Y-%m-%d %H:%M:%S")),
        ("reference / batch frames", f"{report.n_reference} / {report.n_batch}"),
        ("unreadable frames", len(report.unreadable)),
        ("flag rate at the threshold", report.flag_rate),
        ("domain classifier AUC", report.domain_classifier.auc),
    ]
    table = metrics_table([{"": name, "value": value} for name, value in rows])
    reasons = "".join(f"<li>{escape(r)}</li>" for r in report.reasons)
    return table + (f"<p>Tests that rejected:</p><ul>{reasons}</ul>" if reasons else "")


def _tests_table(report: DriftReport) -> str:
    rows = [
        {
            "test": t.name,
            "kind": t.kind,
            "statistic": t.statistic,
            "p-value": t.p_value,
            "level": t.level,
            "shifted": "yes" if t.shifted else "no",
            "effect size": t.effect_size,
            "reference mean": t.reference_mean,
            "batch mean": t.batch_mean,
        }
        for t in report.tests
    ]
    note = (
        "<p>KS effect: (batch mean - reference mean) / reference std. MMD effect: observed "
        "MMD&sup2; over its median under permutation. Flag-rate effect: observed rate over the "
        "threshold's false-alarm budget.</p>"
    )
    return metrics_table(rows) + note


def _unreadable(report: DriftReport) -> str:
    if not report.unreadable:
        return "<p>Every frame was readable.</p>"
    rows = [{"file": u.path, "problem": u.problem} for u in report.unreadable]
    return f"<p>{len(rows)} frame(s) could not be read and were left out:</p>" + metrics_table(rows)


def _histograms(names: list[str], ref: np.ndarray, new: np.ndarray, tests: dict) -> str:
    cols = 3
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(4.2 * cols, 2.8 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, i, name in zip(axes, range(len(names)), names, strict=False):
        bins = np.histogram_bin_edges(np.concatenate([ref[:, i], new[:, i]]), bins=30)
        ax.hist(ref[:, i], bins=bins, density=True, alpha=0.55, color=REF_COLOUR, label="reference")
        ax.hist(new[:, i], bins=bins, density=True, alpha=0.55, color=BATCH_COLOUR, label="batch")
        test = tests.get(name)
        title = name if test is None else f"{name}  p={test.p_value:.2g}"
        ax.set_title(title, fontsize="small", color="red" if test and test.shifted else "black")
        ax.tick_params(labelsize="x-small")
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize="x-small")
    fig.tight_layout()
    return _img(figure_to_data_uri(fig), "histograms of per-image statistics")


def _scatter(ref: np.ndarray, new: np.ndarray) -> str:
    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.subplots()
    y_ref = ref[:, 1] if ref.shape[1] > 1 else np.zeros(len(ref))
    y_new = new[:, 1] if new.shape[1] > 1 else np.zeros(len(new))
    ax.scatter(ref[:, 0], y_ref, s=10, alpha=0.6, color=REF_COLOUR, label="reference")
    ax.scatter(new[:, 0], y_new, s=14, alpha=0.8, color=BATCH_COLOUR, label="batch")
    ax.set(xlabel="feature PC 1 (whitened)", ylabel="feature PC 2 (whitened)")
    ax.set_title("Encoder features, first two principal components")
    ax.legend(fontsize="small")
    return _img(figure_to_data_uri(fig), "scatter of reference and batch features")


def _scores(ref: np.ndarray, new: np.ndarray, threshold: float) -> str:
    fig = Figure(figsize=(6.5, 3.5))
    ax = fig.subplots()
    bins = np.histogram_bin_edges(np.concatenate([ref, new, [threshold]]), bins=40)
    ax.hist(ref, bins=bins, density=True, alpha=0.55, color=REF_COLOUR, label="reference (calib)")
    ax.hist(new, bins=bins, density=True, alpha=0.55, color=BATCH_COLOUR, label="batch")
    ax.axvline(threshold, color="red", ls="--", label=f"threshold {threshold:.4g}")
    ax.set(xlabel="image score", ylabel="density")
    ax.set_title("Anomaly scores")
    ax.legend(fontsize="small")
    return _img(figure_to_data_uri(fig), "score distributions")


def _frames(report: DriftReport, images: np.ndarray, paths: list[str]) -> str:
    if not report.shifted_frames:
        return "<p>No frames to show.</p>"
    index = {p: i for i, p in enumerate(paths)}
    cells = []
    for frame in report.shifted_frames:
        uri = image_to_data_uri(thumbnail(images[index[frame.path]], THUMB_PX))
        name = Path(frame.path).name
        caption = f"{name}: P(batch) {frame.batch_probability:.2f}, score {frame.score:.3g}"
        cells.append(
            f"<figure>{_img(uri, frame.path)}<figcaption>{escape(caption)}</figcaption></figure>"
        )
    auc = report.domain_classifier.auc
    lead = (
        f"<p>Ranked by a reference-vs-batch classifier (cross-validated AUC "
        f"{'n/a' if auc is None else f'{auc:.3f}'}; above 0.55 the batch is distinguishable).</p>"
    )
    return lead + '<div class="grid">' + "".join(cells) + "</div>"


def write_drift_html(
    report: DriftReport,
    reference: DriftReference,
    new: Observation,
    images: np.ndarray,
    paths: list[str],
    path: Path,
) -> Path:
    """Write the page to `path` (parents created); `images` are the batch frames as tested."""
    ref = reference_observation(reference)
    tests = {t.name: t for t in report.tests}
    sections = [
        ("Decision", _summary(report)),
        ("Tests", _tests_table(report)),
        ("Unreadable frames", _unreadable(report)),
        ("Per-image statistics", _histograms(reference.stat_names, ref.stats, new.stats, tests)),
        ("Feature space", _scatter(ref.features, new.features)),
        ("Score distributions", _scores(ref.scores, new.scores, reference.threshold)),
        ("Most shifted frames", _frames(report, images, paths)),
    ]
    title = f"Drift check of {report.model_name} v{report.model_version}: {Path(report.batch).name}"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_page(title, sections), encoding="utf-8")
    return path
