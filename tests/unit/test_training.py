import numpy as np
import pytest
import torch

from pipeline.config import load_config
from pipeline.errors import ConfigError
from pipeline.training import evaluate_loss, train_model

TINY = [
    "data.image_size=32",
    "model.width=8",
    "model.depth=2",
    "model.latent_dim=4",
    "train.batch_size=8",
    "train.epochs=3",
]


def _images(n: int = 24) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = np.linspace(60, 200, 32, dtype=np.float32)[None, :, None] * np.ones((32, 1, 1))
    return np.clip(base + rng.normal(0, 8, (n, 32, 32, 1)), 0, 255).astype(np.uint8)


def test_training_lowers_the_loss_and_keeps_the_best_epoch():
    imgs = _images()
    cfg = load_config(None, [*TINY, "train.epochs=6"])
    result = train_model(cfg, imgs[:18], imgs[18:], channels=1)
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < losses[0]
    best = min(row["val_loss"] for row in result.history)
    assert result.best_val == pytest.approx(best)


def test_same_seed_same_weights():
    imgs = _images()
    cfg = load_config(None, TINY)
    a = train_model(cfg, imgs[:18], imgs[18:], channels=1)
    b = train_model(cfg, imgs[:18], imgs[18:], channels=1)
    for (ka, va), (_, vb) in zip(
        a.model.state_dict().items(), b.model.state_dict().items(), strict=False
    ):
        assert torch.equal(va, vb), ka


NATIVE_BF16_CPU = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def test_amp_off_trains_in_float32_everywhere():
    imgs = _images()
    result = train_model(load_config(None, [*TINY, "train.amp=false"]), imgs[:18], imgs[18:], 1)
    assert result.bf16_autocast is False


@pytest.mark.skipif(not NATIVE_BF16_CPU, reason="this CPU has no native bfloat16")
def test_bf16_autocast_on_a_capable_cpu_is_used_and_still_learns():
    """On a CPU with native bfloat16 `train.amp` switches autocast on: the weights differ from a
    float32 run of the same seed, and the loss still falls."""
    imgs = _images()
    on = train_model(load_config(None, [*TINY, "train.epochs=6"]), imgs[:18], imgs[18:], 1)
    off = train_model(
        load_config(None, [*TINY, "train.epochs=6", "train.amp=false"]), imgs[:18], imgs[18:], 1
    )
    assert on.bf16_autocast and not off.bf16_autocast
    losses = [row["train_loss"] for row in on.history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    differs = [
        not torch.equal(a, b)
        for a, b in zip(on.model.parameters(), off.model.parameters(), strict=True)
    ]
    assert any(differs)


class _Killed(Exception):
    pass


@pytest.mark.parametrize("ema", ["0.0", "0.9"])
def test_resume_after_a_kill_matches_an_unbroken_run(tmp_path, ema):
    imgs = _images()
    cfg = load_config(None, [*TINY, "train.patience=100", f"train.ema_decay={ema}"])
    full = train_model(cfg, imgs[:18], imgs[18:], channels=1)
    ckpt = tmp_path / "checkpoint.pt"

    def kill_after_two(row):
        if row["epoch"] == 2:
            raise _Killed

    with pytest.raises(_Killed):
        train_model(cfg, imgs[:18], imgs[18:], 1, ckpt, on_epoch=kill_after_two)
    resumed = train_model(cfg, imgs[:18], imgs[18:], 1, ckpt)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    timing = {"images_per_s", "data_wait_share"}  # wall-clock figures differ run to run

    def learned(history):
        return [{k: v for k, v in row.items() if k not in timing} for row in history]

    assert learned(resumed.history) == learned(full.history)
    for (name, a), (_, b) in zip(
        full.model.state_dict().items(), resumed.model.state_dict().items(), strict=False
    ):
        assert torch.equal(a, b), name


def test_augmentations_from_config_and_bad_names():
    imgs = _images()
    cfg = load_config(
        None, [*TINY, "train.epochs=1", "train.augment=[{name: HorizontalFlip, params: {p: 0.5}}]"]
    )
    assert train_model(cfg, imgs[:18], imgs[18:], channels=1).history
    bad = load_config(None, [*TINY, "train.augment=[{name: Flipz}]"])
    with pytest.raises(ConfigError, match="Flipz"):
        train_model(bad, imgs[:18], imgs[18:], channels=1)


def test_batches_of_crops_with_synthetic_anomalies_are_deterministic():
    from pipeline.data.synthetic import build_synthesizer
    from pipeline.training import BatchMaker

    imgs = _images()
    cfg = load_config(None, [*TINY, "train.crop=16"])
    synth = build_synthesizer(cfg.train.anomalies, seed=0)
    idx = np.arange(8)
    order = np.arange(len(imgs))
    a = BatchMaker(imgs, order, cfg, 3, synth, channels_last=True)(idx)
    b = BatchMaker(imgs, order, cfg, 3, synth, channels_last=True)(idx)
    assert a.inputs.shape == a.target.shape == (8, 1, 16, 16)
    assert a.mask.shape == (8, 1, 16, 16) and a.inputs.is_contiguous(
        memory_format=torch.channels_last
    )
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.mask, b.mask)
    c = BatchMaker(imgs, order, cfg, 4, synth, channels_last=True)(idx)
    assert not torch.equal(a.inputs, c.inputs)  # a new epoch: new crops and anomalies
    # outside the anomaly mask the input is the clean target
    outside = a.mask == 0
    assert torch.equal(a.inputs[outside], a.target[outside])


def test_a_small_split_is_repeated_reshuffled_up_to_epoch_images():
    from pipeline.training import epoch_order

    order = epoch_order(np.random.default_rng(0), 5, 12)
    assert len(order) == 12 and sorted(order[:5]) == list(range(5))
    assert sorted(order[5:10]) == list(range(5))
    assert len(epoch_order(np.random.default_rng(0), 5, None)) == 5
    assert len(epoch_order(np.random.default_rng(0), 20, 12)) == 20  # never fewer than one pass


def test_with_ema_the_averaged_weights_are_judged_and_kept():
    imgs = _images()
    plain = train_model(load_config(None, TINY), imgs[:18], imgs[18:], channels=1)
    cfg = load_config(None, [*TINY, "train.ema_decay=0.9"])
    averaged = train_model(cfg, imgs[:18], imgs[18:], channels=1)
    # same seed and batches, so the raw weights are those of the plain run; what differs is
    # which weights are validated and kept
    assert [r["train_loss"] for r in averaged.history] == [r["train_loss"] for r in plain.history]
    assert [r["val_loss"] for r in averaged.history] != [r["val_loss"] for r in plain.history]
    kept = evaluate_loss(averaged.model, imgs[18:], cfg, torch.device("cpu"))
    assert kept == pytest.approx(averaged.best_val, rel=1e-5)
