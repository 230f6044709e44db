"""The stress report as one self-contained HTML page, for deciding whether a model version
may be promoted: what lighting, optics and attackers do to its decisions at the threshold."""

from html import escape
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from data_contracts import StressReport
from pipeline.reports.html import (
    figure_to_data_uri,
    image_to_data_uri,
    metrics_table,
    overlay,
    render_page,
    thumbnail,
)
from pipeline.stress.lighting import SEVERITIES
from pipeline.stress.suite import Example

PANEL_PX = 160


def _img(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{escape(alt)}">'


def _summary(report: StressReport) -> str:
    failed = [c.name for c in report.sanity if not c.passed]
    rows = [
        ("model", f"{report.model_name} version {report.model_version}"),
        ("test set", report.dataset),
        ("checked (UTC)", report.created.strftime("%Y-%m-%d %H:%M:%S")),
        ("good / defective images", f"{report.clean.n_good} / {report.clean.n_defect}"),
        ("threshold", report.threshold),
        ("clean false-alarm rate", report.clean.false_alarm_rate),
        ("clean miss rate", report.clean.miss_rate),
        ("clean AUROC", report.clean.auroc),
        ("deployed image score", report.image_score),
        ("attacked score", report.attack_score),
        ("gradient-masking checks", "all passed" if not failed else f"FAILED: {failed}"),
        ("drift monitor", report.drift_note),
        ("unreadable test files", len(report.unreadable)),
        ("seconds", report.seconds),
    ]
    return metrics_table([{"": k, "value": v} for k, v in rows])


def _perturbation_table(report: StressReport) -> str:
    rows = [
        {
            "perturbation": p.perturbation,
            "severity": p.severity,
            "level": p.level,
            "meaning": p.description,
            "FAR": p.figures.false_alarm_rate,
            "miss rate": p.figures.miss_rate,
            "AUROC": p.figures.auroc,
            "mean score shift": p.mean_score_shift,
            "drift fired": "n/a" if p.drift_fired is None else ("yes" if p.drift_fired else "no"),
        }
        for p in report.perturbations
    ]
    return metrics_table(rows)


def _severity_curves(report: StressReport) -> str:
    names = list(dict.fromkeys(p.perturbation for p in report.perturbations))
    if not names:
        return "<p>No perturbations were run.</p>"
    fig = Figure(figsize=(13, 4))
    axes = fig.subplots(1, 3)
    x = {"clean": 0, **{s: i + 1 for i, s in enumerate(SEVERITIES)}}
    clean = report.clean
    for name in names:
        rows = [p for p in report.perturbations if p.perturbation == name]
        xs = [0] + [x[p.severity] for p in rows]
        for ax, pick, base in (
            (axes[0], lambda p: p.figures.false_alarm_rate, clean.false_alarm_rate),
            (axes[1], lambda p: p.figures.miss_rate, clean.miss_rate),
            (axes[2], lambda p: p.figures.auroc, clean.auroc),
        ):
            ys = [base] + [pick(p) for p in rows]
            ys = [np.nan if v is None else v for v in ys]
            ax.plot(xs, ys, marker="o", lw=1, label=name)
    for ax, title in zip(axes, ("false-alarm rate", "miss rate", "AUROC"), strict=True):
        ax.set_xticks(list(x.values()), list(x.keys()))
        ax.set_title(title)
    axes[2].legend(fontsize="x-small", loc="lower left", ncol=2)
    fig.tight_layout()
    return _img(figure_to_data_uri(fig), "severity curves")


def _attack_table(report: StressReport) -> str:
    rows = [
        {
            "method": a.method,
            "eps (/255)": a.eps,
            "steps": a.steps,
            "false-alarm success": a.false_alarm_success,
            "hidden-defect success": a.hidden_defect_success,
            "shift good": a.mean_shift_good,
            "shift defect": a.mean_shift_defect,
            "robust AUROC": a.robust_auroc,
            "images good / defect": f"{a.n_good} / {a.n_defect}",
        }
        for a in report.attacks
    ]
    return metrics_table(rows)


def _attack_curves(report: StressReport) -> str:
    fig = Figure(figsize=(13, 4))
    axes = fig.subplots(1, 3)
    steps = {a.steps for a in report.attacks if a.method == "pgd"}
    main_steps = min(steps) if steps else 1
    for method, style in (("fgsm", "--"), ("pgd", "-")):
        rows = [a for a in report.attacks if a.method == method and a.steps in (1, main_steps)]
        rows.sort(key=lambda a: a.eps)
        eps = [a.eps for a in rows]
        for ax, pick in (
            (axes[0], lambda a: a.false_alarm_success),
            (axes[1], lambda a: a.hidden_defect_success),
            (axes[2], lambda a: a.robust_auroc),
        ):
            ys = [np.nan if pick(a) is None else pick(a) for a in rows]
            ax.plot(eps, ys, style, marker="o", label=method.upper())
    titles = ("false alarm raised (success)", "defect hidden (success)", "robust AUROC")
    for ax, title in zip(axes, titles, strict=True):
        ax.set(xlabel="eps (/255)", title=title)
        ax.set_xscale("log", base=2)
    axes[0].legend(fontsize="small")
    fig.tight_layout()
    return _img(figure_to_data_uri(fig), "attack curves")


def _examples(examples: list[Example], threshold: float, kind: str) -> str:
    chosen = [ex for ex in examples if ex.kind == kind]
    if not chosen:
        return "<p>No examples.</p>"
    cells = []
    for ex in chosen:
        panels = [
            thumbnail(ex.clean, PANEL_PX),
            thumbnail(ex.perturbed, PANEL_PX),
            thumbnail(overlay(ex.perturbed, ex.amap, vmax=threshold), PANEL_PX),
        ]
        imgs = "".join(_img(image_to_data_uri(p), ex.title) for p in panels)
        caption = (
            f"{ex.title}: clean / {'attacked' if kind == 'attack' else 'perturbed'} / anomaly "
            f"map; score shift {ex.score_shift:+.3g}"
        )
        cells.append(f"<figure>{imgs}<figcaption>{escape(caption)}</figcaption></figure>")
    return '<div class="grid">' + "".join(cells) + "</div>"


def _sanity(report: StressReport) -> str:
    rows = [
        {"check": c.name, "passed": "yes" if c.passed else "NO", "detail": c.detail}
        for c in report.sanity
    ]
    return metrics_table(rows)


def write_stress_html(report: StressReport, examples: list[Example], path: Path) -> Path:
    sections = [
        ("Summary", _summary(report)),
        ("Lighting and optics: severity curves", _severity_curves(report)),
        ("Lighting and optics: every perturbation", _perturbation_table(report)),
        ("Examples at the highest severity", _examples(examples, report.threshold, "lighting")),
        ("Adversarial attacks", _attack_curves(report) + _attack_table(report)),
        ("Adversarial examples", _examples(examples, report.threshold, "attack")),
        ("Gradient-masking sanity checks", _sanity(report)),
    ]
    title = f"Stress test of {report.model_name} v{report.model_version}"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_page(title, sections), encoding="utf-8")
    return path
