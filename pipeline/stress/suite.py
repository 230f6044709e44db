"""Run the stress test of one model version on a labelled test set: every perturbation at
every severity, FGSM and PGD in both directions, the sanity checks, one report.

Decisions are made as deployed: the module's own image score and threshold. For lighting and
optics the drift monitor also looks at the perturbed good images as one batch, so the report
says whether a shift that hurts detection would at least have been noticed.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from data_contracts import (
    AttackResult,
    DetectionFigures,
    DriftReference,
    PerturbationResult,
    SanityCheck,
    StressReport,
)
from pipeline.config import DriftConfig, StressConfig
from pipeline.data.images import read_image, resize_image
from pipeline.data.validate import scan_layout
from pipeline.drift.monitor import check_observation
from pipeline.drift.profile import observe
from pipeline.drift.statistics import image_statistics
from pipeline.errors import DataError, ImageReadError
from pipeline.metrics import image_auroc
from pipeline.scoring import InspectionModule, score_images, to_tensor
from pipeline.stress.attacks import LOWER, RAISE, AttackOutcome, attack
from pipeline.stress.lighting import Perturbation, perturb, suite_for

Progress = Callable[[str], None]


@dataclass
class LabelledFrames:
    """Test images at the camera's resolution, labelled 1 for defective."""

    frames: list[np.ndarray]
    labels: np.ndarray
    paths: list[str]
    unreadable: list[str] = field(default_factory=list)


def load_test_frames(root: Path, channels: int) -> LabelledFrames:
    """test/good and every test/<defect> at full resolution; unreadable files are listed."""
    layout = scan_layout(root)
    items = [(p, 0) for p in layout.test_good]
    items += [(p, 1) for split in layout.defects for p in split.images]
    frames, labels, paths, unreadable = [], [], [], []
    for rel, label in items:
        path = Path(root) / rel
        try:
            frames.append(read_image(path, channels))
        except ImageReadError as err:
            unreadable.append(str(err))
            continue
        labels.append(label)
        paths.append(str(path))
    if not frames:
        raise DataError(f"{Path(root) / 'test'}: no readable test images")
    return LabelledFrames(frames, np.asarray(labels), paths, unreadable)


def detection_figures(labels: np.ndarray, scores: np.ndarray, threshold: float) -> DetectionFigures:
    flagged = scores >= threshold
    good, bad = labels == 0, labels == 1
    return DetectionFigures(
        n_good=int(good.sum()),
        n_defect=int(bad.sum()),
        false_alarm_rate=float(flagged[good].mean()) if good.any() else None,
        miss_rate=float((~flagged[bad]).mean()) if bad.any() else None,
        auroc=image_auroc(labels, scores),
    )


@dataclass
class Example:
    """One frame clean and perturbed, with the perturbed anomaly map, for the report."""

    title: str
    clean: np.ndarray
    perturbed: np.ndarray
    amap: np.ndarray
    score_shift: float
    kind: Literal["lighting", "attack"] = "lighting"


@dataclass
class StressRun:
    report: StressReport
    examples: list[Example]


def _resized(frames: list[np.ndarray], size: int) -> np.ndarray:
    return np.stack([resize_image(f, size) for f in frames])


def _attack_subset(labels: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    good, bad = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    return (
        np.sort(rng.choice(good, min(n, len(good)), replace=False)),
        np.sort(rng.choice(bad, min(n, len(bad)), replace=False)),
    )


def _success(clean: np.ndarray, attacked: np.ndarray, threshold: float, raise_: bool):
    """Share of the images the attack could flip that it did flip (None when none could)."""
    if raise_:
        eligible = clean < threshold
        flipped = attacked >= threshold
    else:
        eligible = clean >= threshold
        flipped = attacked < threshold
    return float(flipped[eligible].mean()) if eligible.any() else None


def run_attacks(
    module: InspectionModule,
    good: torch.Tensor,
    bad: torch.Tensor,
    cfg: StressConfig,
    progress: Progress,
) -> tuple[list[AttackResult], list[SanityCheck], list[Example]]:
    """FGSM and PGD at every eps, both directions; PGD again with more steps at the largest
    eps for the sanity check. Examples: the good part and the defective part that PGD at the
    largest eps moved furthest."""
    threshold = float(module.threshold)
    rows: dict[tuple[str, float, int], AttackResult] = {}
    examples: list[Example] = []
    plans = [("fgsm", e, 1) for e in cfg.eps] + [("pgd", e, cfg.steps) for e in cfg.eps]
    plans.append(("pgd", max(cfg.eps), cfg.check_steps))
    for method, eps, steps in plans:
        progress(f"attack {method} eps {eps:g}/255, {steps} step(s)")
        up = attack(module, good, RAISE, method, eps / 255, steps, cfg.topk, cfg.seed)
        down = attack(module, bad, LOWER, method, eps / 255, steps, cfg.topk, cfg.seed)
        labels = np.r_[np.zeros(len(up.attacked)), np.ones(len(down.attacked))]
        rows[(method, eps, steps)] = AttackResult(
            method=method,
            eps=eps,
            steps=steps,
            n_good=len(up.clean),
            n_defect=len(down.clean),
            false_alarm_success=_success(up.clean, up.attacked, threshold, True),
            hidden_defect_success=_success(down.clean, down.attacked, threshold, False),
            mean_shift_good=float(np.mean(up.attacked - up.clean)) if len(up.clean) else 0.0,
            mean_shift_defect=float(np.mean(down.attacked - down.clean))
            if len(down.clean)
            else 0.0,
            robust_auroc=image_auroc(labels, np.r_[up.attacked, down.attacked]),
        )
        if (method, eps, steps) == ("pgd", max(cfg.eps), cfg.steps):
            name = f"PGD-{steps} eps {eps:g}/255"
            examples += _attack_example(module, good, up, f"{name} raising a good part's score")
            examples += _attack_example(module, bad, down, f"{name} hiding a defect")
    return list(rows.values()), sanity_checks(rows, cfg), examples


def _as_frame(x: torch.Tensor) -> np.ndarray:
    return (x.permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()


@torch.no_grad()
def _attack_example(
    module: InspectionModule, clean: torch.Tensor, outcome: AttackOutcome, title: str
) -> list[Example]:
    """The image whose deployed score the attack moved furthest (none for an empty set)."""
    if not len(outcome.clean):
        return []
    shift = outcome.attacked - outcome.clean
    i = int(np.argmax(np.abs(shift)))
    adversarial = outcome.adversarial[i : i + 1]
    _, amap, _ = module(adversarial)
    return [
        Example(
            title=f"{title}: {outcome.clean[i]:.3g} -> {outcome.attacked[i]:.3g}",
            clean=_as_frame(clean[i]),
            perturbed=_as_frame(adversarial[0]),
            amap=amap[0].numpy(),
            score_shift=float(shift[i]),
            kind="attack",
        )
    ]


def sanity_checks(rows: dict[tuple[str, float, int], AttackResult], cfg: StressConfig):
    """PGD must move the score at least as far as FGSM at every eps, and more steps must not
    move it less (beyond `cfg.sanity_tolerance` of the movement); otherwise the gradients are
    masked and the robust figures are too rosy."""
    checks = []
    tolerance = cfg.sanity_tolerance
    for eps in cfg.eps:
        f, p = rows[("fgsm", eps, 1)], rows[("pgd", eps, cfg.steps)]
        for side, fv, pv in (
            ("raise good", f.mean_shift_good, p.mean_shift_good),
            ("lower defect", -f.mean_shift_defect, -p.mean_shift_defect),
        ):
            checks.append(
                SanityCheck(
                    name=f"PGD >= FGSM, {side}, eps {eps:g}/255",
                    passed=pv >= fv - tolerance * abs(fv),
                    detail=f"score moved {pv:.4g} by PGD-{cfg.steps}, {fv:.4g} by FGSM",
                )
            )
    eps = max(cfg.eps)
    short, long = rows[("pgd", eps, cfg.steps)], rows[("pgd", eps, cfg.check_steps)]
    for side, sv, lv in (
        ("raise good", short.mean_shift_good, long.mean_shift_good),
        ("lower defect", -short.mean_shift_defect, -long.mean_shift_defect),
    ):
        checks.append(
            SanityCheck(
                name=f"PGD-{cfg.check_steps} >= PGD-{cfg.steps}, {side}, eps {eps:g}/255",
                passed=lv >= sv - tolerance * abs(sv),
                detail=f"score moved {lv:.4g} with {cfg.check_steps} steps, {sv:.4g} with "
                f"{cfg.steps}",
            )
        )
    return checks


def run_stress(
    module: InspectionModule,
    test: LabelledFrames,
    cfg: StressConfig,
    *,
    model_name: str,
    model_version: str,
    dataset: str,
    reference: DriftReference | None,
    drift_cfg: DriftConfig,
    progress: Progress = lambda _: None,
) -> StressRun:
    """The whole stress test; `reference` None means the drift column cannot be filled."""
    began = time.perf_counter()
    module.eval()
    size, threshold = module.image_size, float(module.threshold)
    clean_images = _resized(test.frames, size)
    clean_scores, _ = score_images(module, clean_images)
    good_idx = np.flatnonzero(test.labels == 0)
    rows, examples = [], []
    for pert in suite_for(module.channels, cfg.perturbations):
        for severity in cfg.severities:
            progress(f"{pert.name} {severity}")
            frames = perturb(test.frames, pert, severity, cfg.seed)
            images = _resized(frames, size)
            scores, maps = score_images(module, images)
            fired, reasons = _drift(
                module,
                reference,
                drift_cfg,
                [frames[i] for i in good_idx],
                images[good_idx],
                [test.paths[i] for i in good_idx],
            )
            rows.append(
                PerturbationResult(
                    perturbation=pert.name,
                    severity=severity,
                    level=pert.level(severity),
                    description=pert.description,
                    lighting=pert.lighting,
                    figures=detection_figures(test.labels, scores, threshold),
                    mean_score_shift=float(np.mean(scores - clean_scores)),
                    drift_fired=fired,
                    drift_reasons=reasons,
                )
            )
            if severity == cfg.severities[-1]:
                examples.append(
                    _example(
                        pert, severity, test, clean_images, images, maps, scores - clean_scores
                    )
                )
    good_sub, bad_sub = _attack_subset(test.labels, cfg.attack_images, cfg.seed)
    attacks, sanity, attack_examples = run_attacks(
        module, to_tensor(clean_images[good_sub]), to_tensor(clean_images[bad_sub]), cfg, progress
    )
    report = StressReport(
        model_name=model_name,
        model_version=model_version,
        dataset=dataset,
        created=datetime.now(UTC),
        threshold=threshold,
        image_score=module.image_score,
        attack_score=f"mean of the top {cfg.topk} fused-map pixels",
        clean=detection_figures(test.labels, clean_scores, threshold),
        drift_note=(
            "drift monitor consulted: the perturbed good test images as one batch, "
            f"alpha {drift_cfg.alpha}"
            if reference is not None
            else "the model has no drift reference (trained before drift monitoring): "
            "drift column not filled"
        ),
        perturbations=rows,
        attacks=attacks,
        sanity=sanity,
        sanity_passed=all(c.passed for c in sanity),
        unreadable=test.unreadable,
        seconds=time.perf_counter() - began,
    )
    return StressRun(report, examples + attack_examples)


def _drift(
    module: InspectionModule,
    reference: DriftReference | None,
    cfg: DriftConfig,
    frames: list[np.ndarray],
    images: np.ndarray,
    paths: list[str],
) -> tuple[bool | None, list[str]]:
    if reference is None or len(frames) < cfg.min_batch:
        return None, []
    new = observe(module, reference, images, image_statistics(frames, reference.channels))
    report = check_observation(
        reference, new, paths, cfg, model_name="stress", model_version="-", batch="stress"
    )
    return report.drift, report.reasons


def _example(
    pert: Perturbation,
    severity: str,
    test: LabelledFrames,
    clean: np.ndarray,
    images: np.ndarray,
    maps: np.ndarray,
    shifts: np.ndarray,
) -> Example:
    """The defective image (else any) whose score the perturbation moved most."""
    candidates = np.flatnonzero(test.labels == 1)
    if not len(candidates):
        candidates = np.arange(len(images))
    i = int(candidates[np.argmax(np.abs(shifts[candidates]))])
    return Example(
        title=f"{pert.name} ({severity}): {Path(test.paths[i]).name}",
        clean=clean[i],
        perturbed=images[i],
        amap=maps[i],
        score_shift=float(shifts[i]),
    )
