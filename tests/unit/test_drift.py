"""Drift monitor parts: statistics, two-sample tests, the decision's level, batch loading,
the reference in the bundle, and the self-contained report."""

import re

import cv2
import numpy as np
import pytest

from data_contracts import DriftReference
from pipeline.bundle import load_bundle, write_bundle
from pipeline.config import DriftConfig
from pipeline.drift.monitor import check_batch, check_observation, load_batch
from pipeline.drift.profile import Observation, build_reference, fit_pca
from pipeline.drift.statistics import image_statistics, noise_sigma, stat_names
from pipeline.drift.two_sample import (
    domain_classifier,
    flag_rate_test,
    ks_test,
    mmd_permutation_test,
)
from pipeline.errors import BundleError, DataError
from pipeline.reports.drift_report import write_drift_html


def textured(n: int, size: int = 48, seed: int = 0, channels: int = 1) -> np.ndarray:
    """Smooth random textures with varying brightness, like parts under one camera."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 1, (n, size // 8, size // 8, channels)).astype(np.float32)
    out = np.stack([cv2.resize(b, (size, size), interpolation=cv2.INTER_CUBIC) for b in base])
    out = out.reshape(n, size, size, channels)
    level = rng.uniform(100, 140, (n, 1, 1, 1))
    return np.clip(level + 20 * out, 0, 255).astype(np.uint8)


def test_statistics_have_one_column_per_name_and_saturation_only_in_colour():
    grey, colour = textured(3), textured(3, channels=3)
    assert image_statistics(grey, 1).shape == (3, len(stat_names(1)))
    assert image_statistics(colour, 3).shape == (3, len(stat_names(3)))
    assert "saturation" in stat_names(3) and "saturation" not in stat_names(1)


def test_statistics_follow_what_they_name():
    names = stat_names(1)
    img = textured(1, size=96)
    dark = np.clip(img.astype(int) - 120, 0, 255).astype(np.uint8)
    blurred = cv2.GaussianBlur(img[0], (0, 0), 2).reshape(img.shape)
    base, dim, soft = (
        dict(zip(names, image_statistics(x, 1)[0], strict=True)) for x in (img, dark, blurred)
    )
    assert dim["brightness"] < base["brightness"]
    assert dim["clipped_dark"] > 0.1 and base["clipped_dark"] == 0
    assert soft["sharpness"] < 0.75 * base["sharpness"]


def test_noise_estimate_recovers_added_noise():
    smooth = cv2.GaussianBlur(textured(1, size=256)[0, ..., 0].astype(np.float32), (0, 0), 3)
    rng = np.random.default_rng(1)
    noisy = smooth + rng.normal(0, 8, smooth.shape)
    assert noise_sigma(smooth / 255) < 1 / 255
    assert noise_sigma(noisy / 255) * 255 == pytest.approx(8, rel=0.15)


def test_ks_and_mmd_separate_shifted_from_unshifted():
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 1, (200, 4))
    same = rng.normal(0, 1, (50, 4))
    moved = rng.normal(0.8, 1, (50, 4))
    assert ks_test(ref[:, 0], same[:, 0]).p_value > 0.05
    shifted = ks_test(ref[:, 0], moved[:, 0])
    assert shifted.p_value < 1e-3 and shifted.effect_size == pytest.approx(0.8, abs=0.35)
    assert mmd_permutation_test(ref, same, 500).p_value > 0.05
    result = mmd_permutation_test(ref, moved, 500)
    assert result.p_value == pytest.approx(1 / 501) and result.effect_size > 1


def test_constant_statistic_cannot_reject():
    assert ks_test(np.zeros(30), np.zeros(10)).p_value == 1.0


def test_flag_rate_test_is_one_sided():
    assert flag_rate_test(np.array([1.0] * 5 + [0.0] * 45), 0.01).p_value < 1e-3
    assert flag_rate_test(np.zeros(50), 0.01).p_value == 1.0


def test_domain_classifier_auc_near_half_without_shift_and_high_with():
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 1, (200, 5))
    assert abs(domain_classifier(ref, rng.normal(0, 1, (50, 5)), 5).auc - 0.5) < 0.15
    moved = domain_classifier(ref, rng.normal(1.5, 1, (50, 5)), 5)
    assert moved.auc > 0.9 and moved.batch_probability.shape == (50,)


def _reference(rng: np.random.Generator, n: int = 150) -> DriftReference:
    stats = rng.normal(0, 1, (n, 3))
    feats = rng.normal(0, 1, (n, 6))
    mean, comps, scale = fit_pca(feats, 4)
    scores = rng.normal(0, 1, n)
    return DriftReference(
        created="2026-11-21T00:00:00Z",
        image_size=32,
        channels=1,
        stat_names=["a", "b", "c"],
        stats=stats.tolist(),
        feature_mean=mean.tolist(),
        feature_components=comps.tolist(),
        feature_scale=scale.tolist(),
        features=((feats - mean) @ comps.T / scale).tolist(),
        scores=scores.tolist(),
        threshold=float(np.quantile(scores, 0.95)),
        flag_rate=0.05,
    )


def test_decision_level_holds_under_no_shift():
    """Bonferroni over all tests: the family-wise false-alarm rate stays below alpha."""
    rng = np.random.default_rng(3)
    reference = _reference(rng)
    cfg = DriftConfig(alpha=0.05, permutations=199)
    mean, comps = np.asarray(reference.feature_mean), np.asarray(reference.feature_components)
    scale = np.asarray(reference.feature_scale)
    alarms = 0
    for _ in range(60):
        new = Observation(
            rng.normal(0, 1, (30, 3)),
            (rng.normal(0, 1, (30, 6)) - mean) @ comps.T / scale,
            rng.normal(0, 1, 30),
        )
        report = check_observation(
            reference,
            new,
            [f"f{i}" for i in range(30)],
            cfg,
            model_name="m",
            model_version="1",
            batch="b",
        )
        alarms += report.drift
    assert report.tests[0].level == pytest.approx(0.05 / 6)
    assert alarms / 60 <= 0.1


def test_reference_contract_rejects_ragged_rows():
    rng = np.random.default_rng(0)
    data = _reference(rng).model_dump()
    data["stats"][3] = [1.0]
    with pytest.raises(ValueError, match="one value per stat name"):
        DriftReference.model_validate(data)


@pytest.fixture
def tiny_module(tiny_scoring_module):
    """An untrained tiny AE scoring module on textures, with its drift reference."""
    good = textured(60, size=32)
    cfg, module, cal, scores = tiny_scoring_module(good)
    reference = build_reference(
        module, good[20:60], image_statistics(good[20:60], 1), scores, 0.1, 4
    )
    return cfg, module, cal, reference


def _write_frames(folder, images):
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        cv2.imwrite(str(folder / f"{i:03d}.png"), img)
    return folder


def test_batch_with_bad_files_reports_them_and_tests_the_rest(tmp_path, tiny_module):
    cfg, module, _, reference = tiny_module
    folder = _write_frames(tmp_path / "batch", textured(12, size=40, seed=5))
    (folder / "corrupt.png").write_bytes(b"not an image")
    truncated = folder / "truncated.png"
    truncated.write_bytes((folder / "000.png").read_bytes()[:60])
    cv2.imwrite(str(folder / "colour.png"), textured(1, size=40, channels=3)[0])
    batch = load_batch(folder, 32, 1, min_frames=10)
    assert len(batch.paths) == 12 and batch.images.shape == (12, 32, 32, 1)
    problems = {u.path.rsplit("/", 1)[-1]: u.problem for u in batch.unreadable}
    assert set(problems) == {"corrupt.png", "truncated.png", "colour.png"}
    assert "3 channel(s)" in problems["colour.png"]
    result = check_batch(module, reference, batch, DriftConfig(), model_name="m", model_version="1")
    assert result.report.n_batch == 12 and len(result.report.unreadable) == 3


def test_batch_folder_problems_are_one_clear_error(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        load_batch(tmp_path / "missing", 32, 1, 10)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        load_batch(tmp_path / "empty", 32, 1, 10)
    few = _write_frames(tmp_path / "few", textured(4, size=32))
    with pytest.raises(DataError, match="4 readable image"):
        load_batch(few, 32, 1, 10)


def test_a_brightness_shift_is_detected_and_shown(tmp_path, tiny_module):
    cfg, module, _, reference = tiny_module
    shifted = np.clip(textured(30, size=32, seed=9).astype(int) - 40, 0, 255).astype(np.uint8)
    batch = load_batch(_write_frames(tmp_path / "dark", shifted), 32, 1, 10)
    result = check_batch(module, reference, batch, DriftConfig(), model_name="m", model_version="1")
    report = result.report
    assert report.drift and any(r.startswith("brightness") for r in report.reasons)
    brightness = next(t for t in report.tests if t.name == "brightness")
    assert brightness.effect_size < -1 and brightness.p_value < brightness.level
    html = write_drift_html(
        report, reference, result.observation, batch.images, batch.paths, tmp_path / "r.html"
    ).read_text()
    # self-contained: every image inline, nothing fetched from anywhere
    assert "<script" not in html and "http://" not in html and "https://" not in html
    sources = re.findall(r'src="([^"]*)"', html)
    assert len(sources) == 3 + len(report.shifted_frames)
    assert all(s.startswith("data:image/png;base64,") for s in sources)


def test_bundle_carries_the_reference_and_guards_it(tmp_path, tiny_module):
    cfg, module, cal, reference = tiny_module
    out = write_bundle(
        tmp_path / "b", module, cfg, cal, data_fingerprint="x", drift_reference=reference
    )
    assert load_bundle(out).drift_reference() == reference
    path = out / "drift_reference.json"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match="drift_reference.json: sha256 does not match"):
        load_bundle(out)
    old = write_bundle(tmp_path / "old", module, cfg, cal, data_fingerprint="x")
    with pytest.raises(BundleError, match="no drift_reference.json"):
        load_bundle(old).drift_reference()
