"""Ingesting line data: every bad file is quarantined with its reason, bad rows are rejected,
the source is never touched, unsafe paths are never followed, and a re-run adds nothing."""

import hashlib
import json
import os
import shutil
from datetime import date
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.errors import DataError
from pipeline.line import (
    FrozenSetConfig,
    LineFaults,
    StorePaths,
    freeze_evaluation_set,
    generate_line_data,
    ingest_day,
    ingest_new_days,
    materialise_frozen,
    materialise_pool,
    pending_days,
    select_training_pool,
)
from pipeline.line.ledger import latest, read_entries

LINE, CAMERA = "line-a", "cam-0"
DAY = date(2024, 5, 6)
ALL_FAULTS = LineFaults(
    truncated=1,
    garbage=1,
    wrong_channels=1,
    tiny=1,
    mask_mismatch=1,
    misdated=1,
    escaping_rows=True,
    missing_image=True,
    unlisted_image=True,
    duplicate_row=True,
    invalid_row=True,
)
QUARANTINE_REASONS = {
    "truncated_000.png": "truncated image",
    "garbage_000.png": "not a readable image",
    "wrong_channels_000.png": "has 1 channel(s), expected 3",
    "tiny_000.png": "image is 16x16 px, smaller than 32 px",
    "mask_mismatch_000.png": "mask mask_mismatch_000_mask.png is 32x32, the image 64x64",
    "misdated_000.png": "captured on 2024-05-07",
    "unlisted_000.png": "not in manifest",
    "invalid_000.png": "its manifest row 28 was rejected: only a defect row may name a mask",
}
REJECTED_ROWS = {
    25: "'..' is not allowed in a manifest path",
    26: "absolute path, must be relative to the day folder",
    27: "image file not found: missing_000.png",
    28: "only a defect row may name a mask",
    29: "duplicate row for good_000.png (first on row 1)",
}


def tree_state(root: Path) -> dict[str, str]:
    """Every entry under `root` with its bytes' hash or its link target: the source's identity."""
    state = {}
    for here, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            path = Path(here) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                state[rel] = f"link:{os.readlink(path)}"
            elif path.is_file():
                state[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                state[rel] = "dir"
    return state


@pytest.fixture
def faulty(tmp_path: Path) -> Path:
    """Two days of line data; the first with one of every fault, the second clean."""
    generate_line_data(tmp_path / "data", days=2, faults=[ALL_FAULTS])
    return tmp_path / "data"


def day_folder(root: Path, day: date = DAY) -> Path:
    return root / LINE / CAMERA / day.isoformat()


def append_row(root: Path, row: dict, day: date = DAY) -> None:
    with open(day_folder(root, day) / "manifest.jsonl", "a") as out:
        out.write(json.dumps(row) + "\n")


def test_every_bad_file_is_quarantined_with_its_reason_file(faulty: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    report = ingest_day(faulty, LINE, CAMERA, DAY, store)
    found = {q.path: q.reason for q in report.quarantined}
    assert set(found) == set(QUARANTINE_REASONS)
    quarantine = StorePaths.of(store, LINE, CAMERA).quarantine(DAY)
    for image, reason in QUARANTINE_REASONS.items():
        assert reason in found[image]
        link = quarantine / f"{DAY}__{image}"
        assert link.is_symlink() and link.resolve() == (day_folder(faulty) / image).resolve()
        text = (quarantine / f"{DAY}__{image}.reason.txt").read_text()
        assert text == f"{DAY}/{image}: {found[image]}\n"
    rejected = {r.row: r.reason for r in report.rejected_rows}
    assert set(rejected) == set(REJECTED_ROWS)
    assert all(REJECTED_ROWS[row] in rejected[row] for row in rejected)
    assert report.accepted.model_dump() == {"good": 12, "defect": 3, "unknown": 3}
    assert (report.manifest_rows, report.channels, report.already_ingested) == (29, 3, 0)


def test_nothing_changes_the_source(faulty: Path, tmp_path: Path) -> None:
    """Ingestion (twice), the frozen set and a pool folder only ever read the source."""
    store, before = tmp_path / "store", tree_state(faulty)
    ingest_new_days(faulty, LINE, CAMERA, store)
    ingest_new_days(faulty, LINE, CAMERA, store)
    config = FrozenSetConfig(good_fraction=0.3, min_good=1, min_defect=1)
    materialise_frozen(freeze_evaluation_set(store, LINE, CAMERA, config), faulty, store)
    pool = select_training_pool(faulty, store, LINE, CAMERA, frozen_config=config)
    materialise_pool(pool, tmp_path / "pool", data_root=faulty, store_root=store)
    assert tree_state(faulty) == before


def test_a_symlink_out_of_the_data_root_is_rejected_and_never_followed(
    faulty: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(day_folder(faulty) / "good_001.png", outside / "secret.png")  # readable image
    (day_folder(faulty) / "listed_link.png").symlink_to(outside / "secret.png")
    (day_folder(faulty) / "stray_link.png").symlink_to(outside / "secret.png")
    append_row(
        faulty,
        {
            "image": "listed_link.png",
            "part_id": "P-x",
            "capture_time": "2024-05-06T09:00:00+01:00",
            "label": "good",
        },
    )
    store = tmp_path / "store"
    report = ingest_day(faulty, LINE, CAMERA, DAY, store)
    row = next(r for r in report.rejected_rows if r.image == "listed_link.png")
    assert row.reason == "image listed_link.png: resolves outside the data root (symlink)"
    quarantined = {q.path: q.reason for q in report.quarantined}
    assert quarantined["stray_link.png"] == "symlink resolves outside the data root, not followed"
    assert quarantined["listed_link.png"] == quarantined["stray_link.png"]
    quarantine = StorePaths.of(store, LINE, CAMERA).quarantine(DAY)
    assert not (quarantine / f"{DAY}__stray_link.png").exists()  # a reason, but no link
    assert (quarantine / f"{DAY}__stray_link.png.reason.txt").is_file()
    entries = latest(read_entries(StorePaths.of(store, LINE, CAMERA).ledger))
    assert entries[(DAY, "stray_link.png")].sha256 is None  # never read


def test_a_day_folder_that_leaves_the_data_root_is_refused(tmp_path: Path) -> None:
    generate_line_data(tmp_path / "elsewhere", days=1, goods=2, defects=0, unknowns=0)
    (tmp_path / "data" / LINE / CAMERA).mkdir(parents=True)
    day_folder(tmp_path / "data").symlink_to(day_folder(tmp_path / "elsewhere"))
    with pytest.raises(DataError, match="day folder resolves outside the data root"):
        ingest_day(tmp_path / "data", LINE, CAMERA, DAY, tmp_path / "store")


def test_a_manifest_that_leaves_the_data_root_is_never_read(faulty: Path, tmp_path: Path) -> None:
    manifest = day_folder(faulty) / "manifest.jsonl"
    (tmp_path / "outside.jsonl").write_bytes(manifest.read_bytes())
    manifest.unlink()
    manifest.symlink_to(tmp_path / "outside.jsonl")
    assert DAY in pending_days(faulty, LINE, CAMERA, tmp_path / "store")
    with pytest.raises(DataError, match="manifest.jsonl: manifest resolves outside the data root"):
        ingest_new_days(faulty, LINE, CAMERA, tmp_path / "store")


def test_names_that_are_not_one_folder_are_refused(faulty: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="line name '../line-a'"):
        ingest_day(faulty, "../line-a", CAMERA, DAY, tmp_path / "store")


def test_a_day_without_manifest_is_not_ready(faulty: Path, tmp_path: Path) -> None:
    (day_folder(faulty) / "manifest.jsonl").unlink()
    with pytest.raises(DataError, match="no manifest; the day is not complete"):
        ingest_day(faulty, LINE, CAMERA, DAY, tmp_path / "store")
    assert pending_days(faulty, LINE, CAMERA, tmp_path / "store") == [date(2024, 5, 7)]


def test_rows_that_break_the_contract_are_rejected_with_the_field(
    faulty: Path, tmp_path: Path
) -> None:
    manifest = day_folder(faulty) / "manifest.jsonl"
    rows = manifest.read_text().splitlines()
    naive = {**json.loads(rows[0]), "capture_time": "2024-05-06T06:00:00"}
    manifest.write_text("\n".join([json.dumps(naive), "{not json", "[1, 2]", *rows[1:]]) + "\n")
    report = ingest_day(faulty, LINE, CAMERA, DAY, tmp_path / "store")
    rejected = {r.row: r.reason for r in report.rejected_rows}
    assert rejected[1].startswith("capture_time: Input should have timezone info")
    assert rejected[2].startswith("not valid JSON")
    assert rejected[3] == "not a JSON object"


def test_a_second_ingestion_adds_nothing(faulty: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    first = ingest_new_days(faulty, LINE, CAMERA, store)
    paths = StorePaths.of(store, LINE, CAMERA)
    ledger, days, files = paths.ledger.read_bytes(), paths.days.read_bytes(), tree_state(store)
    assert ingest_new_days(faulty, LINE, CAMERA, store) == []
    again = ingest_day(faulty, LINE, CAMERA, DAY, store)
    assert again.accepted.model_dump() == {"good": 0, "defect": 0, "unknown": 0}
    assert again.quarantined == []
    assert again.already_ingested == 18 + len(QUARANTINE_REASONS)
    assert again.rejected_rows == first[0].rejected_rows  # rows are judged again, not stored
    assert (paths.ledger.read_bytes(), paths.days.read_bytes()) == (ledger, days)
    assert tree_state(store) == files


def _decisions(store: Path) -> dict:
    """Verdict per file; a reason's note in brackets may differ (what the channels were
    compared with), the reason may not."""
    entries = latest(read_entries(StorePaths.of(store, LINE, CAMERA).ledger))
    return {
        key: (e.verdict, e.reason and e.reason.split(" (")[0], e.sha256, e.label)
        for key, e in entries.items()
    }


def test_a_crash_mid_day_is_completed_by_a_rerun(faulty: Path, tmp_path: Path) -> None:
    reference, crashed = tmp_path / "reference", tmp_path / "crashed"
    ingest_day(faulty, LINE, CAMERA, DAY, reference)
    ingest_day(faulty, LINE, CAMERA, DAY, crashed)
    paths = StorePaths.of(crashed, LINE, CAMERA)
    lines = paths.ledger.read_bytes().splitlines(keepends=True)
    kept, torn = lines[:20], lines[20][:25]  # a crash while writing the 21st decision
    paths.ledger.write_bytes(b"".join(kept) + torn)
    paths.days.unlink()  # the day was never finished
    for line in lines[21:]:  # decisions after the crash left no quarantine files yet
        name = json.loads(line)["name"]
        for path in paths.quarantine(DAY).glob(f"{name}*"):
            path.unlink()
    assert pending_days(faulty, LINE, CAMERA, crashed) == [DAY, date(2024, 5, 7)]
    assert len(read_entries(paths.ledger)) == 20  # the torn line is ignored, not an error

    report = ingest_day(faulty, LINE, CAMERA, DAY, crashed)
    assert report.already_ingested == 20
    assert _decisions(crashed) == _decisions(reference)
    assert paths.ledger.read_bytes().endswith(b"\n")
    assert len(paths.ledger.read_bytes().splitlines()) == len(lines)
    assert (
        tree_state(paths.quarantine(DAY)).keys()
        == tree_state(StorePaths.of(reference, LINE, CAMERA).quarantine(DAY)).keys()
    )
    assert pending_days(faulty, LINE, CAMERA, crashed) == [date(2024, 5, 7)]


def test_a_ledger_broken_in_the_middle_is_an_error(faulty: Path, tmp_path: Path) -> None:
    ingest_day(faulty, LINE, CAMERA, DAY, tmp_path / "store")
    ledger = StorePaths.of(tmp_path / "store", LINE, CAMERA).ledger
    lines = ledger.read_text().splitlines(keepends=True)
    ledger.write_text("".join([lines[0], "garbage\n", *lines[1:]]))
    with pytest.raises(DataError, match="ingested.jsonl: line 2 is not a valid ledger entry"):
        ingest_day(faulty, LINE, CAMERA, DAY, tmp_path / "store")


def test_a_changed_manifest_makes_the_day_pending_and_adds_only_the_new_row(
    faulty: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    ingest_new_days(faulty, LINE, CAMERA, store)
    shutil.copy(day_folder(faulty) / "good_003.png", day_folder(faulty) / "late.png")
    rotated = cv2.rotate(cv2.imread(str(day_folder(faulty) / "late.png")), cv2.ROTATE_180)
    cv2.imwrite(str(day_folder(faulty) / "late.png"), rotated)  # new bytes, same kind of frame
    append_row(
        faulty,
        {"image": "late.png", "part_id": "P-late", "capture_time": "2024-05-06T23:00:00+01:00"}
        | {"label": "good"},
    )
    assert pending_days(faulty, LINE, CAMERA, store) == [DAY]
    [report] = ingest_new_days(faulty, LINE, CAMERA, store)
    assert report.accepted.good == 1 and report.quarantined == []


def test_bytes_changed_after_acceptance_are_quarantined(faulty: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    ingest_day(faulty, LINE, CAMERA, DAY, store)
    shutil.copy(day_folder(faulty) / "good_001.png", day_folder(faulty) / "good_000.png")
    report = ingest_day(faulty, LINE, CAMERA, DAY, store)
    [changed] = report.quarantined
    assert changed.path == "good_000.png"
    assert changed.reason.startswith("bytes changed since it was accepted on")
    assert _decisions(store)[(DAY, "good_000.png")][0] == "quarantined"


def test_a_copy_of_an_accepted_frame_is_quarantined(faulty: Path, tmp_path: Path) -> None:
    shutil.copy(day_folder(faulty) / "good_000.png", day_folder(faulty) / "copy.png")
    append_row(
        faulty,
        {"image": "copy.png", "part_id": "P-c", "capture_time": "2024-05-06T22:00:00+01:00"}
        | {"label": "good"},
    )
    report = ingest_day(faulty, LINE, CAMERA, DAY, tmp_path / "store")
    reasons = {q.path: q.reason for q in report.quarantined}
    assert reasons["copy.png"] == f"same bytes as {DAY}/good_000.png, already accepted"


def test_channels_follow_the_contract_else_the_frames_accepted_first(tmp_path: Path) -> None:
    data = tmp_path / "data"
    generate_line_data(data, days=1, goods=3, defects=0, unknowns=0)
    generate_line_data(
        data, start=date(2024, 5, 7), days=1, goods=3, defects=0, unknowns=0, channels=1
    )
    by_contract = ingest_day(data, LINE, CAMERA, DAY, tmp_path / "a", contract_channels=1)
    assert by_contract.accepted.good == 0
    assert (
        by_contract.quarantined[0].reason == "has 3 channel(s), expected 1 (the model's contract)"
    )
    first, second = ingest_new_days(data, LINE, CAMERA, tmp_path / "b")
    assert (first.accepted.good, second.accepted.good, second.channels) == (3, 0, 3)
    assert second.quarantined[0].reason == (
        "has 1 channel(s), expected 3 (like the frames accepted before)"
    )


def test_a_lighting_shift_is_data_not_a_fault(tmp_path: Path) -> None:
    """Darker frames are fit to use; telling whether the line drifted is the drift check's."""
    data = tmp_path / "data"
    generate_line_data(data, days=2, goods=4, defects=0, unknowns=0, dark_day=1, dark_gain=0.5)
    reports = ingest_new_days(data, LINE, CAMERA, tmp_path / "store")
    assert [r.accepted.good for r in reports] == [4, 4]
    bright, dark = (
        np.mean([cv2.imread(str(p)).mean() for p in sorted(day_folder(data, d).glob("*.png"))])
        for d in (DAY, date(2024, 5, 7))
    )
    assert dark == pytest.approx(bright * 0.5, rel=0.02)
