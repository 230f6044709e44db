"""Synthetic anomalies: mask contract, determinism, clean share, locality of the change."""

import cv2
import numpy as np
import pytest

from pipeline.data.perlin import perlin_mask, perlin_noise
from pipeline.data.synthetic import (
    AnomalySynthesizer,
    SyntheticConfig,
    _band_mask,
    _banded,
    _crack_mask,
    _cracked,
    _shaded,
    _soft_edged,
    synthesize_batch,
)

SIZE = 64


def _image(channels: int, seed: int = 0) -> np.ndarray:
    """A smooth gradient with mild noise: a stand-in for a good part."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(60, 190, SIZE, dtype=np.float32)
    base = ramp[None, :, None] + rng.normal(0, 4, (SIZE, SIZE, channels))
    return np.clip(base, 0, 255).astype(np.uint8)


def _textures(channels: int) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    shape = (48, 80) if channels == 1 else (48, 80, 3)  # other size and layout than the image
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(3)]


@pytest.fixture(
    params=[
        (1, False, False, False, False),
        (3, False, False, False, False),
        (1, True, False, False, False),
        (3, True, True, False, False),
        (1, False, True, True, False),
        (3, True, False, True, False),
        (1, False, True, True, True),
        (3, True, False, False, True),
    ],
    ids=lambda p: "channels={}, textures={}, shading={}, cracks={}, bands={}".format(*p),
)
def case(request: pytest.FixtureRequest) -> tuple[AnomalySynthesizer, np.ndarray]:
    channels, external, shading, cracks, bands = request.param
    textures = _textures(channels) if external else None
    recipe = SyntheticConfig(shading=shading, cracks=cracks, bands=bands)
    synth = AnomalySynthesizer(recipe, textures=textures, seed=3)
    return synth, _image(channels)


def test_outputs_have_the_contracted_types_and_values(case) -> None:
    synth, image = case
    for index in range(40):
        out, mask, has_anomaly = synth(image, index)
        assert out.shape == image.shape and out.dtype == np.uint8
        assert mask.shape == image.shape[:2] and mask.dtype == np.float32
        assert set(np.unique(mask)) <= {0.0, 1.0}
        assert isinstance(has_anomaly, bool)
        assert mask.any() == has_anomaly


def test_change_is_inside_the_mask_only(case) -> None:
    synth, image = case
    seen = 0
    for index in range(60):
        out, mask, has_anomaly = synth(image, index)
        changed = (out != image).any(axis=2)
        if not has_anomaly:
            assert np.array_equal(out, image) and not mask.any()
            continue
        seen += 1
        assert changed[mask > 0].any(), "an anomalous sample must differ inside its mask"
        assert not changed[mask == 0].any(), "pixels outside the mask must be untouched"
    assert seen > 10


def test_same_key_gives_identical_bytes_in_any_order() -> None:
    image = _image(3)
    first = AnomalySynthesizer(SyntheticConfig(), seed=5)
    second = AnomalySynthesizer(SyntheticConfig(), seed=5)
    forward = [first(image, i, epoch=2) for i in range(12)]
    backward = [second(image, i, epoch=2) for i in reversed(range(12))][::-1]
    for (out_a, mask_a, flag_a), (out_b, mask_b, flag_b) in zip(forward, backward, strict=True):
        assert out_a.tobytes() == out_b.tobytes() and mask_a.tobytes() == mask_b.tobytes()
        assert flag_a == flag_b


def test_index_epoch_and_seed_change_the_anomaly() -> None:
    image = _image(3)
    synth = AnomalySynthesizer(SyntheticConfig(clean_fraction=0.0), seed=5)
    reference = synth(image, 0, epoch=0)[1]
    assert not np.array_equal(reference, synth(image, 1, epoch=0)[1])
    assert not np.array_equal(reference, synth(image, 0, epoch=1)[1])
    other_seed = AnomalySynthesizer(SyntheticConfig(clean_fraction=0.0), seed=6)
    assert not np.array_equal(reference, other_seed(image, 0, epoch=0)[1])


def test_about_half_the_samples_are_clean() -> None:
    image = _image(1)
    synth = AnomalySynthesizer(SyntheticConfig(n_augment=0), seed=11)
    flags = [synth(image, i)[2] for i in range(400)]
    assert 0.42 <= 1.0 - np.mean(flags) <= 0.58


@pytest.mark.parametrize("fraction, expected", [(0.0, True), (1.0, False)])
def test_clean_fraction_extremes(fraction: float, expected: bool) -> None:
    synth = AnomalySynthesizer(SyntheticConfig(clean_fraction=fraction))
    assert all(synth(_image(3), i)[2] == expected for i in range(20))


def test_batch_stacks_per_sample_results() -> None:
    images = np.stack([_image(3, seed) for seed in range(5)])
    indices = np.arange(10, 15)
    synth = AnomalySynthesizer(SyntheticConfig(), seed=2)
    out, masks, flags = synthesize_batch(synth, images, indices, epoch=4)
    assert out.shape == images.shape and out.dtype == np.uint8
    assert masks.shape == (5, SIZE, SIZE) and masks.dtype == np.float32
    assert flags.shape == (5,) and flags.dtype == bool
    for k, index in enumerate(indices):
        single = synth(images[k], int(index), epoch=4)
        assert np.array_equal(out[k], single[0]) and np.array_equal(masks[k], single[1])


def test_perlin_noise_range_and_non_divisible_shapes() -> None:
    rng = np.random.default_rng(0)
    for shape, scale in [((64, 64), (4, 4)), ((50, 37), (3, 8)), ((20, 90), (64, 1))]:
        noise = perlin_noise(shape, scale, rng)
        assert noise.shape == shape and noise.dtype == np.float32
        assert np.abs(noise).max() <= 1.0 + 1e-5 and noise.std() > 0.05


def test_perlin_mask_is_never_empty_even_at_a_high_threshold() -> None:
    rng = np.random.default_rng(1)
    for _ in range(100):
        assert perlin_mask((SIZE, SIZE), rng).any()
    for _ in range(10):  # above the noise range: only the fallback blob can satisfy this
        assert perlin_mask((SIZE, SIZE), rng, threshold=2.0).any()


def test_perlin_mask_blobs_shrink_and_multiply_with_scale() -> None:
    rng = np.random.default_rng(2)

    def coverage(exp: int) -> np.ndarray:
        masks = [perlin_mask((128, 128), rng, min_exp=exp, max_exp=exp) for _ in range(40)]
        return np.array([m.mean() for m in masks])

    coarse, fine = coverage(1), coverage(5)
    assert coarse.std() > 2 * fine.std()  # one or two big blobs, or none, vs. many small ones
    assert 0.01 < fine.mean() < 0.2


def test_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError):
        SyntheticConfig(clean_fraction=1.5)
    with pytest.raises(ValueError):
        SyntheticConfig(opacity=(0.8, 0.2))
    with pytest.raises(ValueError):
        AnomalySynthesizer(SyntheticConfig())(np.zeros((8, 8, 3), np.float32), 0)
    with pytest.raises(ValueError):
        AnomalySynthesizer(SyntheticConfig())(np.zeros((8, 8, 2), np.uint8), 0)


def test_shaded_texture_is_the_part_under_a_gain_away_from_one() -> None:
    image = np.full((SIZE, SIZE, 1), 100, np.uint8)
    for seed in range(40):
        gain = _shaded(np.random.default_rng(seed), image).astype(float) / 100.0
        assert gain.min() >= 0.5 * 0.9 - 0.01 and gain.max() <= 1.6 * 1.1 + 0.01
        assert abs(np.median(gain) - 1.0) > 0.1  # darker or brighter, never nearly the same


def test_soft_edge_is_zero_outside_and_rises_inside() -> None:
    blob = np.zeros((SIZE, SIZE), np.float32)
    blob[16:48, 16:48] = 1
    mask, weight = _soft_edged(blob, sigma=2.0)
    assert weight.shape == (SIZE, SIZE, 1) and weight.min() >= 0 and weight.max() <= 1
    assert set(np.unique(mask)) == {0.0, 1.0} and not mask[blob == 0].any()
    assert not weight[..., 0][mask == 0].any() and (weight[..., 0][mask > 0] > 0).all()
    assert weight[32, 32, 0] == pytest.approx(1.0) and weight[32, 18, 0] < weight[32, 24, 0]
    sliver = np.zeros((SIZE, SIZE), np.float32)
    sliver[30:32, 10:50] = 1  # too thin for the blur to reach 3/4 anywhere: kept hard
    mask, weight = _soft_edged(sliver, sigma=2.0)
    assert np.array_equal(mask, sliver) and np.array_equal(weight[..., 0], sliver)


def _level_changes(shading: bool) -> int:
    """How many of 300 anomalies on noise images look like a gain change of the part in place:
    the ratio output / input is smooth inside the mask (a texture of its own makes it as noisy
    as the image) and away from 1."""
    synth = AnomalySynthesizer(SyntheticConfig(shading=shading, clean_fraction=0.0), seed=9)
    rng = np.random.default_rng(4)
    count = 0
    for index in range(300):
        image = np.clip(rng.normal(80, 15, (SIZE, SIZE, 1)), 40, 120).astype(np.uint8)
        out, mask, _ = synth(image, index)
        ratio = out[..., 0].astype(np.float32) / image[..., 0]
        rough = np.abs(ratio - cv2.blur(ratio, (3, 3)))[mask > 0]
        if rough.size >= 30 and np.median(rough) < 0.1:
            count += abs(np.median(ratio[mask > 0]) - 1) > 0.15
    return count


def test_shading_adds_level_changes_only_when_asked_for() -> None:
    # other sources make a few by chance (a brightened copy of the part itself, faint blends)
    assert _level_changes(shading=True) >= _level_changes(shading=False) + 30


def test_cracked_texture_is_the_part_mostly_darker_never_nearly_the_same() -> None:
    image = np.full((SIZE, SIZE, 1), 100, np.uint8)
    gains = [
        float(_cracked(np.random.default_rng(seed), image)[0, 0, 0]) / 100 for seed in range(200)
    ]
    assert all(0.2 - 0.01 <= g <= 0.6 + 0.01 or 1.4 - 0.01 <= g <= 1.8 + 0.01 for g in gains)
    darker = sum(g < 1 for g in gains) / len(gains)
    assert 0.7 <= darker <= 0.9


def _is_thin_line(mask: np.ndarray) -> bool:
    """One or two strokes a few pixels wide: a 5x5 erosion leaves almost nothing (a sharp turn
    can leave a pixel at the joint)."""
    pixels = int(mask.sum())
    eroded = int(cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).sum())
    parts = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)[0] - 1
    return pixels >= 1 and eroded <= 0.05 * pixels and parts <= 2


def test_crack_mask_is_a_thin_line_inside_the_image() -> None:
    for seed in range(100):
        mask = _crack_mask(np.random.default_rng(seed), (128, 96))
        assert mask.shape == (128, 96) and set(np.unique(mask)) <= {0.0, 1.0}
        assert _is_thin_line(mask), f"seed {seed}: not a thin line"
        assert mask.mean() < 0.1


def _thin_lines(cracks: bool) -> int:
    synth = AnomalySynthesizer(SyntheticConfig(cracks=cracks, clean_fraction=0.0), seed=5)
    image = _image(1)
    return sum(_is_thin_line(synth(image, index)[1]) for index in range(300))


def test_cracks_add_thin_lines_only_when_asked_for() -> None:
    assert _thin_lines(cracks=True) >= _thin_lines(cracks=False) + 30


def _edge_band_side(mask: np.ndarray) -> int | None:
    """The side (0 top, 1 bottom, 2 left, 3 right) that a band mask fills end to end while the
    opposite side stays clear, or None when the mask is not such a band."""
    sides = (mask[0], mask[-1], mask[:, 0], mask[:, -1])
    for side, edge in enumerate(sides):
        if edge.all() and not sides[side ^ 1].any():
            return side
    return None


def test_band_mask_runs_in_from_one_edge_as_one_region() -> None:
    sides = set()
    for seed in range(100):
        mask = _band_mask(np.random.default_rng(seed), (96, 128))
        assert mask.shape == (96, 128) and set(np.unique(mask)) <= {0.0, 1.0}
        side = _edge_band_side(mask)
        assert side is not None, f"seed {seed}: not a band from one edge"
        sides.add(side)
        assert 0.02 < mask.mean() < 0.7
        assert cv2.connectedComponents(mask.astype(np.uint8), connectivity=4)[0] - 1 == 1
    assert sides == {0, 1, 2, 3}


def test_banded_texture_is_the_part_under_a_gain_away_from_one() -> None:
    image = np.full((SIZE, SIZE, 1), 100, np.uint8)
    for seed in range(40):
        gain = _banded(np.random.default_rng(seed), image).astype(float) / 100.0
        assert gain.min() >= 0.6 * 0.9 - 0.01 and gain.max() <= 1.5 * 1.1 + 0.01
        assert abs(np.median(gain) - 1.0) > 0.1


def _edge_bands(bands: bool) -> int:
    synth = AnomalySynthesizer(SyntheticConfig(bands=bands, clean_fraction=0.0), seed=5)
    image = _image(1)
    return sum(_edge_band_side(synth(image, index)[1]) is not None for index in range(300))


def test_bands_add_edge_bands_only_when_asked_for() -> None:
    assert _edge_bands(bands=True) >= _edge_bands(bands=False) + 30
