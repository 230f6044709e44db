from pathlib import Path

import pytest

from pipeline.config import RunConfig, load_config
from pipeline.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_defaults_validate():
    cfg = load_config()
    assert cfg == RunConfig()


@pytest.mark.parametrize("name", ["demo.yaml", "ae.yaml", "vae.yaml"])
def test_shipped_configs_load(name):
    cfg = load_config(REPO / "configs" / name)
    assert cfg.model.name in {"ae", "vae"}


def test_unknown_key_is_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'train.epoch'"):
        load_config(path)


def test_override_sets_nested_values_with_yaml_types():
    cfg = load_config(None, ["train.epochs=3", "score.maps={l2: 1.0}", "data.path=/x"])
    assert cfg.train.epochs == 3
    assert cfg.score.maps == {"l2": 1.0}
    assert cfg.data.path == "/x"


def test_override_unknown_key_and_bad_value():
    with pytest.raises(ConfigError, match="unknown config key 'train.epochz'"):
        load_config(None, ["train.epochz=3"])
    with pytest.raises(ConfigError, match="train.epochs"):
        load_config(None, ["train.epochs=-1"])
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(None, ["train.epochs"])


def test_error_names_the_file_and_the_overrides_once(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, ["train.lr=0.01", "train.batch_size=8", "train.amp=maybe"])
    message = str(info.value)
    assert message.startswith(f"{path} + --set:")
    assert message.count("--set") == 1
    assert "train.amp" in message


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_flat_params_cover_every_leaf():
    flat = RunConfig().flat()
    assert flat["train.epochs"] == RunConfig().train.epochs
    assert "score.maps.l2" in flat
