"""Stress parts: the perturbation suite, the attacks, the sanity checks and the report."""

import re

import numpy as np
import pytest
import torch

from data_contracts import AttackResult
from pipeline.config import StressConfig, load_config, override_section
from pipeline.errors import ConfigError
from pipeline.models import build_model
from pipeline.reports.stress_report import write_stress_html
from pipeline.scoring import to_tensor
from pipeline.stress.attacks import LOWER, RAISE, fgsm, pgd, smooth_score
from pipeline.stress.hardening import adversarial_inputs
from pipeline.stress.lighting import SEVERITIES, SUITE, perturb, suite_for
from pipeline.stress.suite import LabelledFrames, run_stress, sanity_checks


def frames(n: int, channels: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(60, 200, (40, 52, channels), dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize("channels", [1, 3])
def test_every_perturbation_is_deterministic_and_changes_the_frame(channels):
    originals = frames(3, channels)
    for pert in suite_for(channels):
        for severity in SEVERITIES:
            once = perturb(originals, pert, severity, seed=1)
            again = perturb(originals, pert, severity, seed=1)
            for src, a, b in zip(originals, once, again, strict=True):
                assert a.shape == src.shape and a.dtype == np.uint8
                np.testing.assert_array_equal(a, b)
            assert any(not np.array_equal(a, s) for a, s in zip(once, originals, strict=True)), (
                pert.name,
                severity,
            )


def test_a_frame_gets_the_same_perturbation_whatever_else_is_in_the_batch():
    shadow = next(p for p in SUITE if p.name == "cast_shadow")
    batch = frames(4, 1)
    alone = perturb(batch[:1], shadow, "high")[0]
    np.testing.assert_array_equal(perturb(batch, shadow, "high")[0], alone)


def test_severities_are_ordered():
    darker = next(p for p in SUITE if p.name == "darker")
    means = [np.mean(perturb(frames(2, 1), darker, s)) for s in SEVERITIES]
    assert means[0] > means[1] > means[2]


def test_colour_temperature_only_for_colour_and_names_are_checked():
    assert "colour_temperature" not in {p.name for p in suite_for(1)}
    assert "colour_temperature" in {p.name for p in suite_for(3)}
    with pytest.raises(ConfigError, match="unknown \\['glare'\\]"):
        suite_for(1, ["darker", "glare"])
    with pytest.raises(ConfigError, match="stress --set: unknown config key 'epss'"):
        override_section(StressConfig(), ["epss=[1]"], "stress --set")
    assert override_section(StressConfig(), ["eps=[2, 8]"], "x").eps == [2.0, 8.0]


@pytest.fixture(scope="module")
def tiny(tiny_scoring_module):
    """A tiny AE scoring module, normalised and thresholded on random textures."""
    good = (np.random.default_rng(0).random((60, 32, 32, 1)) * 120 + 60).astype(np.uint8)
    _, module, _, _ = tiny_scoring_module(good)
    return module, good


def test_attacks_stay_in_budget_and_move_the_score_their_way(tiny):
    module, good = tiny
    x = to_tensor(good[:8])
    eps = 4 / 255
    base = smooth_score(module, x, 16).detach()
    up = pgd(module, x, RAISE, eps, 10, 16)
    down = pgd(module, x, LOWER, eps, 10, 16)
    one = fgsm(module, x, RAISE, eps, 16)
    for adv in (up, down, one):
        assert (adv - x).abs().max() <= eps + 1e-6
        assert adv.min() >= 0 and adv.max() <= 1
    with torch.no_grad():
        raised, lowered, stepped = (smooth_score(module, a, 16) for a in (up, down, one))
    assert (raised > base).all() and (lowered < base).all()
    assert raised.mean() >= stepped.mean()  # PGD at least as strong as FGSM


def _row(method: str, eps: float, steps: int, good: float, defect: float) -> AttackResult:
    return AttackResult(
        method=method,
        eps=eps,
        steps=steps,
        n_good=4,
        n_defect=4,
        false_alarm_success=0.0,
        hidden_defect_success=0.0,
        mean_shift_good=good,
        mean_shift_defect=defect,
        robust_auroc=0.5,
    )


def test_sanity_checks_catch_a_weaker_pgd():
    cfg = StressConfig(eps=[2.0], steps=10, check_steps=20)
    healthy = {
        ("fgsm", 2.0, 1): _row("fgsm", 2.0, 1, 0.1, -0.1),
        ("pgd", 2.0, 10): _row("pgd", 2.0, 10, 0.3, -0.2),
        ("pgd", 2.0, 20): _row("pgd", 2.0, 20, 0.35, -0.25),
    }
    assert all(c.passed for c in sanity_checks(healthy, cfg))
    masked = {**healthy, ("pgd", 2.0, 20): _row("pgd", 2.0, 20, 0.2, -0.25)}
    failed = [c.name for c in sanity_checks(masked, cfg) if not c.passed]
    assert failed == ["PGD-20 >= PGD-10, raise good, eps 2/255"]
    # within the tolerance (5 % of PGD-10's movement) a shortfall is noise, beyond it is not
    noisy = {**healthy, ("pgd", 2.0, 20): _row("pgd", 2.0, 20, 0.29, -0.25)}
    assert all(c.passed for c in sanity_checks(noisy, cfg))
    strict = StressConfig(eps=[2.0], steps=10, check_steps=20, sanity_tolerance=0.0)
    assert not all(c.passed for c in sanity_checks(noisy, strict))


def test_run_stress_covers_the_grid_and_writes_a_self_contained_report(tiny, tmp_path):
    module, good = tiny
    rng = np.random.default_rng(1)
    defects = [g.copy() for g in good[:6]]
    for d in defects:
        d[8:20, 8:20] = rng.integers(0, 255, (12, 12, 1))
    test = LabelledFrames(
        frames=list(good[40:52]) + defects,
        labels=np.r_[np.zeros(12, int), np.ones(6, int)],
        paths=[f"f{i}.png" for i in range(18)],
    )
    cfg = StressConfig(perturbations=["darker", "sensor_noise"], eps=[2.0, 8.0], attack_images=4)
    run = run_stress(
        module,
        test,
        cfg,
        model_name="m",
        model_version="1",
        dataset="d",
        reference=None,
        drift_cfg=load_config().drift,
    )
    report = run.report
    assert [(p.perturbation, p.severity) for p in report.perturbations] == [
        (n, s) for n in ("darker", "sensor_noise") for s in SEVERITIES
    ]
    assert all(p.drift_fired is None for p in report.perturbations)
    assert "no drift reference" in report.drift_note
    assert [(a.method, a.eps, a.steps) for a in report.attacks] == [
        ("fgsm", 2.0, 1),
        ("fgsm", 8.0, 1),
        ("pgd", 2.0, 10),
        ("pgd", 8.0, 10),
        ("pgd", 8.0, 20),
    ]
    assert len(report.sanity) == 6 and report.clean.n_good == 12
    html = write_stress_html(report, run.examples, tmp_path / "s.html").read_text()
    assert "<script" not in html and "http://" not in html and "https://" not in html
    sources = re.findall(r'src="([^"]*)"', html)
    assert len(sources) == 2 + 3 * len(run.examples)
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    attacked = [ex for ex in run.examples if ex.kind == "attack"]
    assert [ex.title.split(":")[0] for ex in attacked] == [
        "PGD-10 eps 8/255 raising a good part's score",
        "PGD-10 eps 8/255 hiding a defect",
    ]
    assert "Adversarial examples" in html and "clean / attacked / anomaly map" in html
    for ex in attacked:
        moved = np.abs(ex.perturbed.astype(int) - ex.clean.astype(int)).max()
        assert 0 < moved <= 8 + 1  # within eps (8/255), up to rounding to uint8


def test_adversarial_training_inputs_raise_the_loss_within_budget():
    torch.manual_seed(0)
    cfg = load_config(None, ["model.width=8", "model.depth=2", "model.latent_dim=4"])
    model = build_model(cfg.model, 32, 1)
    x = torch.rand(4, 1, 32, 32)
    eps = 4 / 255
    adv = adversarial_inputs(model.train(), x, x, None, eps, 3, 0.5)
    assert model.training  # the attack ran in eval mode and handed the model back in train mode
    assert (adv - x).abs().max() <= eps + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    with torch.no_grad():
        model.eval()
        clean_loss, _ = model.loss(x, model(x), 0.5)
        adv_loss, _ = model.loss(x, model(adv), 0.5)
    assert adv_loss > clean_loss


def test_training_with_the_adversarial_option_runs_and_learns(demo_data):
    from pipeline.data.mvtec import load_train_splits
    from pipeline.training import train_model

    cfg = load_config(
        None,
        [
            "data.image_size=32",
            "model.width=8",
            "model.depth=2",
            "model.latent_dim=4",
            "train.epochs=3",
            "train.batch_size=16",
            "train.adversarial.eps=4",
            f"data.path={demo_data}",
        ],
    )
    splits = load_train_splits(demo_data, cfg.data, 0)
    result = train_model(cfg, splits.fit, splits.val, splits.channels)
    losses = [row["train_loss"] for row in result.history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
