"""Check a batch of new line images against a model's reference profile: one decision.

The decision controls the family-wise false-alarm rate at `alpha` by Bonferroni over every
test run (each per-image statistic, the feature MMD, the score KS and the flag-rate test).
The domain classifier does not vote: it explains, by ranking the frames that typify a shift.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from data_contracts import (
    DomainClassifier,
    DriftReference,
    DriftReport,
    DriftTest,
    ShiftedFrame,
    UnreadableFrame,
)
from pipeline.config import DriftConfig
from pipeline.data.images import list_images, read_image, resize_image
from pipeline.drift.profile import Observation, observe, reference_observation
from pipeline.drift.statistics import frame_statistics
from pipeline.drift.two_sample import (
    TestResult,
    domain_classifier,
    flag_rate_test,
    ks_test,
    mmd_permutation_test,
)
from pipeline.errors import DataError, ImageReadError
from pipeline.scoring import InspectionModule

DISTINGUISHABLE_AUC = 0.55


@dataclass
class Batch:
    """Readable frames at the model's input size with their full-resolution statistics and
    paths, and the frames that were not readable."""

    folder: Path
    images: np.ndarray
    stats: np.ndarray
    paths: list[str]
    unreadable: list[UnreadableFrame]


def batch_files(folder: Path) -> list[Path]:
    """The image files of a batch folder; a missing, non-folder or empty one is a DataError."""
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder (a batch is a folder of images)")
    files = list_images(folder)
    if not files:
        raise DataError(f"{folder}: folder has no image files")
    return files


def load_batch(folder: Path, image_size: int, channels: int, min_frames: int) -> Batch:
    """Every image in `folder`; unreadable ones are listed, the rest are tested."""
    folder = Path(folder)
    files = batch_files(folder)
    images, stats, paths, unreadable = [], [], [], []
    for path in files:
        try:
            frame = read_image(path, channels)
        except ImageReadError as err:
            unreadable.append(UnreadableFrame(path=str(err.path), problem=err.problem))
            continue
        stats.append(frame_statistics(frame))
        images.append(resize_image(frame, image_size))
        paths.append(str(path))
    if len(images) < min_frames:
        raise DataError(
            f"{folder}: {len(images)} readable image(s) of {len(files)}; a drift check "
            f"needs at least {min_frames}"
        )
    return Batch(folder, np.stack(images), np.asarray(stats), paths, unreadable)


def _test(
    name: str,
    kind: str,
    result: TestResult,
    level: float,
    means: tuple[float, float] | None = None,
) -> DriftTest:
    return DriftTest(
        name=name,
        kind=kind,
        statistic=result.statistic,
        p_value=min(max(result.p_value, 0.0), 1.0),
        level=level,
        shifted=result.p_value < level,
        effect_size=result.effect_size,
        reference_mean=None if means is None else means[0],
        batch_mean=None if means is None else means[1],
    )


def _ks(name: str, ref: np.ndarray, new: np.ndarray, level: float) -> DriftTest:
    means = (float(np.mean(ref)), float(np.mean(new)))
    return _test(name, "ks", ks_test(ref, new), level, means)


def run_tests(
    reference: DriftReference, ref: Observation, new: Observation, cfg: DriftConfig
) -> list[DriftTest]:
    """Every test at its Bonferroni level alpha / (number of tests)."""
    level = cfg.alpha / (len(reference.stat_names) + 3)
    tests = [
        _ks(name, ref.stats[:, i], new.stats[:, i], level)
        for i, name in enumerate(reference.stat_names)
    ]
    mmd = mmd_permutation_test(ref.features, new.features, cfg.permutations)
    tests.append(_test("features_mmd", "mmd", mmd, level))
    tests.append(_ks("scores", ref.scores, new.scores, level))
    flags = (new.scores >= reference.threshold).astype(np.float64)
    rates = (reference.flag_rate, float(flags.mean()))
    tests.append(
        _test("flag_rate", "binomial", flag_rate_test(flags, reference.flag_rate), level, rates)
    )
    return tests


def _reason(test: DriftTest) -> str:
    effect = "" if test.effect_size is None else f", effect {test.effect_size:+.2f}"
    return f"{test.name}: p={test.p_value:.2g} < {test.level:.2g}{effect}"


def check_observation(
    reference: DriftReference,
    new: Observation,
    paths: list[str],
    cfg: DriftConfig,
    *,
    model_name: str,
    model_version: str,
    batch: str,
    unreadable: list[UnreadableFrame] | None = None,
) -> DriftReport:
    """The decision on measurements that are already taken (the benchmark reuses these)."""
    ref = reference_observation(reference)
    tests = run_tests(reference, ref, new, cfg)
    both_ref = np.hstack([ref.stats, ref.features])
    both_new = np.hstack([new.stats, new.features])
    clf = domain_classifier(both_ref, both_new, cfg.folds)
    order = np.argsort(-clf.batch_probability)[: cfg.frames_shown]
    shifted = [
        ShiftedFrame(
            path=paths[i],
            batch_probability=float(clf.batch_probability[i]),
            score=float(new.scores[i]),
        )
        for i in order
    ]
    flag_rate = float((new.scores >= reference.threshold).mean())
    return DriftReport(
        model_name=model_name,
        model_version=model_version,
        batch=batch,
        created=datetime.now(UTC),
        alpha=cfg.alpha,
        drift=any(t.shifted for t in tests),
        reasons=[_reason(t) for t in tests if t.shifted],
        n_reference=len(ref.stats),
        n_batch=len(new.scores),
        unreadable=list(unreadable or []),
        flag_rate=flag_rate,
        tests=tests,
        domain_classifier=DomainClassifier(
            auc=clf.auc,
            folds=clf.folds,
            distinguishable=clf.auc is not None and clf.auc > DISTINGUISHABLE_AUC,
        ),
        shifted_frames=shifted,
    )


@dataclass
class DriftCheck:
    """A finished check: the report and the measurements behind its plots."""

    report: DriftReport
    batch: Batch
    observation: Observation


def check_batch(
    module: InspectionModule,
    reference: DriftReference,
    batch: Batch,
    cfg: DriftConfig,
    *,
    model_name: str,
    model_version: str,
) -> DriftCheck:
    """Measure the batch with the model and test it against the reference."""
    new = observe(module, reference, batch.images, batch.stats)
    report = check_observation(
        reference,
        new,
        batch.paths,
        cfg,
        model_name=model_name,
        model_version=model_version,
        batch=str(batch.folder),
        unreadable=batch.unreadable,
    )
    return DriftCheck(report, batch, new)
