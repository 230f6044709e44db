"""The promotion gate's decision, the config's strictness, and the registry moves (promote
with a re-read of the champion under a lock, rollback) on a real MLflow registry."""

import threading
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from pipeline.errors import ConfigError, TrackingError
from pipeline.retrain.config import GateConfig, load_retrain_config
from pipeline.retrain.gate import Figures, decide
from pipeline.retrain.registry import PREVIOUS, alias_version, model_lock, promote, rollback
from pipeline.tracking import CHAMPION

CHAMP = Figures("1", image_auroc=0.90, false_alarm_rate=0.02)


def judge(new: Figures, champion: Figures | None = CHAMP, **gate):
    return decide(new, champion, stress_sanity=True, export_parity=True, cfg=GateConfig(**gate))


def test_no_worse_challenger_is_promoted_with_every_reason_listed():
    decision = judge(Figures("2", 0.91, 0.02))
    assert decision.promote
    assert any("image AUROC 0.9100 vs champion v1 0.9000" in r for r in decision.reasons)
    assert any("false-alarm rate 0.0200 vs champion 0.0200" in r for r in decision.reasons)
    assert "stress smoke test passed" in decision.reasons


@pytest.mark.parametrize(
    ("new", "gate", "failed"),
    [
        (Figures("2", 0.89, 0.02), {}, "image AUROC"),
        (Figures("2", 0.95, 0.03), {}, "false-alarm rate"),
        (Figures("2", None, 0.0), {}, "not measurable"),
    ],
)
def test_a_worse_challenger_keeps_the_champion_and_says_why(new, gate, failed):
    decision = judge(new, **gate)
    assert not decision.promote and failed in decision.reasons[0]
    assert decision.summary().startswith("keep champion: ")


def test_margins_allow_a_small_loss():
    assert judge(Figures("2", 0.89, 0.03), max_auroc_drop=0.02, max_far_increase=0.01).promote


def test_failed_checks_block_even_the_first_model():
    first = decide(
        Figures("1", 0.9, 0.0), None, stress_sanity=False, export_parity=True, cfg=GateConfig()
    )
    assert not first.promote and first.reasons[0] == "stress smoke test failed"
    assert "no champion yet" in first.reasons
    lenient = GateConfig(require_stress_sanity=False)
    assert decide(
        Figures("1", 0.9, 0.0), None, stress_sanity=False, export_parity=True, cfg=lenient
    ).promote


def test_retrain_config_is_strict_and_resolves_paths(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("data_root: lines\ngate: {max_auroc_dorp: 0.1}\n")
    with pytest.raises(ConfigError, match="gate.max_auroc_dorp"):
        load_retrain_config(path)
    path.write_text("data_root: lines\nschedule: {cron: null, interval_seconds: 30}\n")
    cfg = load_retrain_config(path)
    assert cfg.data_root == str(tmp_path / "lines") and cfg.schedule.interval_seconds == 30
    path.write_text("data_root: lines\nschedule: {interval_seconds: 30}\n")
    with pytest.raises(ConfigError, match="exactly one of cron and interval_seconds"):
        load_retrain_config(path)


@pytest.fixture
def registry(tmp_path):
    """A real MLflow registry on SQLite with one model and versions 1..3."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    client.create_registered_model("m")
    for _ in range(3):
        client.create_model_version("m", source=str(tmp_path))
    return client


def test_promote_keeps_the_old_champion_for_rollback(registry, tmp_path):
    locks = tmp_path / "locks"
    assert promote(registry, "m", "1", None, locks) == (True, "v1 is champion")
    ok, what = promote(registry, "m", "2", "1", locks)
    assert ok and what == "v2 is champion, v1 kept for rollback"
    assert alias_version(registry, "m", CHAMPION) == "2"
    assert alias_version(registry, "m", PREVIOUS) == "1"
    assert rollback(registry, "m", locks) == ("2", "1")
    assert alias_version(registry, "m", CHAMPION) == "1"
    assert alias_version(registry, "m", PREVIOUS) is None
    with pytest.raises(TrackingError, match="no previous champion"):
        rollback(registry, "m", locks)


def test_a_champion_that_changed_meanwhile_blocks_the_promotion(registry, tmp_path):
    """Two challengers measured against v1: only the first promotion happens."""
    locks = tmp_path / "locks"
    promote(registry, "m", "1", None, locks)
    results = {}

    def attempt(version: str) -> None:
        results[version] = promote(registry, "m", version, "1", locks)

    threads = [threading.Thread(target=attempt, args=(v,)) for v in ("2", "3")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(ok for ok, _ in results.values()) == [False, True]
    loser = next(what for ok, what in results.values() if not ok)
    assert "champion changed during the retrain" in loser
    assert alias_version(registry, "m", CHAMPION) in {"2", "3"}


def test_model_lock_does_not_wait_when_asked(tmp_path: Path):
    with model_lock(tmp_path, "m") as first:
        assert first
        with model_lock(tmp_path, "m", wait=False) as second:
            assert second is False
    with model_lock(tmp_path, "m", wait=False) as again:
        assert again
