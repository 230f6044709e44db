"""The training pool and the frozen evaluation set: goods in, defects and evaluation frames
never, unknowns only below the champion; the frozen set is made once and stays; both become
MVTec-layout folders that the project's own readers accept."""

from datetime import date
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from pipeline.config import DataConfig
from pipeline.data.mvtec import load_test_set, load_train_splits
from pipeline.data.validate import scan_layout, validate_dataset
from pipeline.errors import DataError
from pipeline.line import (
    FrozenSetConfig,
    LineConfig,
    LineFaults,
    PoolPolicy,
    StorePaths,
    freeze_evaluation_set,
    generate_line_data,
    ingest_new_days,
    load_frozen_set,
    materialise_frozen,
    materialise_pool,
    select_training_pool,
)
from pipeline.line.frozen import held_out
from pipeline.line.ledger import latest, read_entries

LINE, CAMERA = "line-a", "cam-0"
FROZEN = FrozenSetConfig(good_fraction=0.25, min_good=2, min_defect=4, seed=3)
FAULTS = LineFaults(truncated=1, unlisted_image=True)


@pytest.fixture
def line(tmp_path: Path) -> tuple[Path, Path]:
    """Two ingested days (20 goods, 2 outlined and 1 unoutlined defect, 6 unknowns a day)."""
    data, store = tmp_path / "data", tmp_path / "store"
    generate_line_data(
        data, days=2, goods=20, defects=2, unmasked_defects=1, unknowns=6, faults=[FAULTS]
    )
    ingest_new_days(data, LINE, CAMERA, store)
    return data, store


def scores_by_name(table: dict[str, float]) -> object:
    """A champion stand-in: the score of each file, looked up by its name."""

    def scorer(paths: list[Path]) -> np.ndarray:
        return np.array([table.get(p.name, 0.0) for p in paths])

    return scorer


def pool_keys(pool) -> set[tuple[date, str]]:
    return {(f.day, f.image) for f in pool.frames}


def test_goods_join_the_pool_defects_and_quarantined_frames_never(line) -> None:
    data, store = line
    pool = select_training_pool(data, store, LINE, CAMERA, frozen_config=FROZEN)
    labels = {f.label for f in pool.frames}
    assert labels == {"good"}
    assert {f.image for f in pool.frames} <= {f"good_{i:03d}.png" for i in range(20)}
    assert pool.excluded["defect"] == 6
    assert pool.excluded["quarantined"] == 2  # the truncated and the unlisted frame
    assert pool.excluded["unknown_policy_never"] == 12


def test_unknowns_join_only_when_the_champion_scores_them_below_the_fraction(line) -> None:
    data, store = line
    table = {f"unknown_{i:03d}.png": score for i, score in enumerate([0.2, 1.0, 1.01, 5.0])}
    table["unknown_004.png"] = float("nan")
    policy = PoolPolicy(unknown="below_champion", unknown_max_score=0.5)
    pool = select_training_pool(
        data,
        store,
        LINE,
        CAMERA,
        policy=policy,
        frozen_config=FROZEN,
        scorer=scores_by_name(table),
        threshold=2.0,  # limit 0.5 x 2.0 = 1.0; unknown_005 scores 0.0
    )
    unknown = {(f.image, f.score) for f in pool.frames if f.label == "unknown"}
    admitted = {"unknown_000.png": 0.2, "unknown_001.png": 1.0, "unknown_005.png": 0.0}
    assert unknown == {item for item in admitted.items()}
    assert pool.excluded["unknown_above_limit"] == 6  # 3 a day, NaN included


def test_unknowns_stay_out_without_a_champion(line) -> None:
    data, store = line
    policy = PoolPolicy(unknown="below_champion")
    pool = select_training_pool(data, store, LINE, CAMERA, policy=policy, frozen_config=FROZEN)
    assert pool.excluded["unknown_no_champion"] == 12


def test_a_scorer_that_loses_frames_is_an_error(line) -> None:
    data, store = line
    with pytest.raises(ValueError, match="returned 1 scores for 12 frames"):
        select_training_pool(
            data,
            store,
            LINE,
            CAMERA,
            policy=PoolPolicy(unknown="below_champion"),
            scorer=lambda paths: np.zeros(1),
            threshold=1.0,
        )


def test_goods_held_out_for_evaluation_never_train_before_or_after_freezing(line) -> None:
    data, store = line
    entries = latest(read_entries(StorePaths.of(store, LINE, CAMERA).ledger)).values()
    held = {e.key for e in entries if e.label == "good" and held_out(e.sha256, FROZEN)}
    assert 0 < len(held) < 40
    before = select_training_pool(data, store, LINE, CAMERA, frozen_config=FROZEN)
    assert not pool_keys(before) & held
    frozen = freeze_evaluation_set(store, LINE, CAMERA, FROZEN)
    assert frozen is not None
    frozen_keys = {(f.day, f.image) for f in frozen.frames}
    assert {k for k in frozen_keys if k[1].startswith("good")} == held
    after = select_training_pool(data, store, LINE, CAMERA, frozen_config=FROZEN)
    assert not pool_keys(after) & frozen_keys
    assert pool_keys(after) == pool_keys(before)
    assert after.excluded["frozen_set"] == frozen.count("good")


def test_the_frozen_set_waits_for_enough_frames_then_never_changes(tmp_path: Path) -> None:
    data, store = tmp_path / "data", tmp_path / "store"
    config = FrozenSetConfig(good_fraction=0.5, min_good=3, min_defect=3)
    day = date(2024, 5, 6)
    for i in range(3):
        generate_line_data(data, start=day.replace(day=6 + i), days=1, goods=10, defects=2)
        ingest_new_days(data, LINE, CAMERA, store)
        frozen = freeze_evaluation_set(store, LINE, CAMERA, config)
        if i == 0:
            assert frozen is None  # 2 defects are not enough
            assert load_frozen_set(store, LINE, CAMERA) is None
        elif i == 1:
            first, manifest = frozen, StorePaths.of(store, LINE, CAMERA).frozen_manifest
            written = manifest.read_bytes()
            assert first.count("defect") == 4 and first.count("good") >= 3
        else:
            assert frozen == first  # a new day, even another config, changes nothing
            assert freeze_evaluation_set(store, LINE, CAMERA, FrozenSetConfig()) == first
            assert manifest.read_bytes() == written
            assert {f.day for f in frozen.frames} <= {day, day.replace(day=7)}


def test_the_pool_folder_is_a_dataset_the_readers_accept(line, tmp_path: Path) -> None:
    data, store = line
    frozen = freeze_evaluation_set(store, LINE, CAMERA, FROZEN)
    pool = select_training_pool(data, store, LINE, CAMERA, frozen_config=FROZEN)
    out = materialise_pool(
        pool, StorePaths.of(store, LINE, CAMERA).pool("run-1"), data_root=data, store_root=store
    )
    layout = scan_layout(out)
    assert len(layout.train_good) == len(pool.frames)
    assert len(layout.test_good) == frozen.count("good")
    defects = {d.name: d for d in layout.defects}
    assert sorted(defects) == ["defect", "defect_unlocated"]
    assert len(defects["defect"].images) == 4 and None not in defects["defect"].masks
    assert len(defects["defect_unlocated"].images) == 2
    assert all(name.startswith("train/good/2024-05-0") for name in layout.train_good)
    problems = validate_dataset(out)
    assert {p.problem for p in problems} == {"mask is empty (no defect pixels)"}
    assert all("defect_unlocated" in str(p.path) for p in problems)
    splits = load_train_splits(out, DataConfig(image_size=32), seed=0)
    assert (splits.channels, len(splits.skipped)) == (3, 0)
    assert sum(map(len, (splits.fit, splits.val, splits.calib))) == len(pool.frames)
    test = load_test_set(out, 32, 3)
    assert (len(test.paths), test.skipped) == (len(frozen.frames), [])
    assert test.masks[[c == "defect" for c in test.categories]].any(axis=(1, 2)).all()
    assert (out / "pool.json").is_file()


def test_the_frozen_folder_holds_the_set_and_refuses_changed_files(line) -> None:
    data, store = line
    frozen = freeze_evaluation_set(store, LINE, CAMERA, FROZEN)
    out = materialise_frozen(frozen, data, store)
    linked = [p for p in (out / "test").rglob("*") if p.is_symlink()]
    assert len(linked) == len(frozen.frames)
    assert len(list((out / "ground_truth").rglob("*_mask.png"))) == frozen.count("defect")
    good = next(f for f in frozen.frames if f.label == "good")
    source = data / LINE / CAMERA / good.day.isoformat() / good.image
    source.write_bytes(source.read_bytes() + b"\0")
    with pytest.raises(DataError, match="changed since the evaluation set was frozen"):
        materialise_frozen(frozen, data, store)


def test_a_pool_folder_is_written_only_into_an_empty_folder(line, tmp_path: Path) -> None:
    data, store = line
    pool = select_training_pool(data, store, LINE, CAMERA, frozen_config=FROZEN)
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine\n")
    with pytest.raises(FileExistsError, match="not empty"):
        materialise_pool(pool, tmp_path / "used", data_root=data, store_root=store)
    empty = pool.model_copy(update={"frames": []})
    with pytest.raises(DataError, match="the training pool is empty"):
        materialise_pool(empty, tmp_path / "new", data_root=data, store_root=store)


def test_line_settings_are_strict() -> None:
    with pytest.raises(ValidationError, match="unknwon"):
        LineConfig.model_validate({"pool": {"unknwon": "never"}})
    with pytest.raises(ValidationError, match="unknown_max_score"):
        LineConfig.model_validate({"pool": {"unknown_max_score": 1.5}})
