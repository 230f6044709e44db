"""Generated line data is deterministic, day by day, and says where its faults are."""

import json
from datetime import date
from pathlib import Path

import pytest

from pipeline.line import LineFaults, generate_line_data


def tree_state(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


SMALL = {"goods": 3, "defects": 1, "unknowns": 3, "faults": [LineFaults(day=1, garbage=1)]}


def test_the_same_settings_write_the_same_bytes(tmp_path: Path) -> None:
    first = generate_line_data(tmp_path / "a", days=2, seed=4, **SMALL)
    generate_line_data(tmp_path / "b", days=2, seed=4, **SMALL)
    assert tree_state(tmp_path / "a") == tree_state(tmp_path / "b")
    generate_line_data(tmp_path / "c", days=2, seed=5, **SMALL)
    assert tree_state(tmp_path / "a") != tree_state(tmp_path / "c")
    assert first.faults == {"garbage": ["2024-05-07/garbage_000.png"]}
    assert first.hidden_defects == ["2024-05-06/unknown_002.png", "2024-05-07/unknown_002.png"]


def test_a_day_added_later_is_the_day_written_at_once(tmp_path: Path) -> None:
    clean = {**SMALL, "faults": []}
    generate_line_data(tmp_path / "at_once", days=2, **clean)
    generate_line_data(tmp_path / "later", days=1, **clean)
    generate_line_data(tmp_path / "later", start=date(2024, 5, 7), days=1, **clean)
    assert tree_state(tmp_path / "at_once") == tree_state(tmp_path / "later")
    with pytest.raises(FileExistsError, match="2024-05-07: day folder already exists"):
        generate_line_data(tmp_path / "later", start=date(2024, 5, 7), days=1, **clean)


def test_manifest_rows_are_in_the_line_layout(tmp_path: Path) -> None:
    out = generate_line_data(tmp_path, days=1, goods=1, defects=1, unknowns=0)
    manifest = tmp_path / "line-a" / "cam-0" / "2024-05-06" / "manifest.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert rows[1] == {
        "image": "defect_000.png",
        "part_id": "P20240506-0001",
        "capture_time": "2024-05-06T06:00:37+01:00",
        "label": "defect",
        "mask": "masks/defect_000_mask.png",
    }
    assert out.labels == {"2024-05-06/good_000.png": "good", "2024-05-06/defect_000.png": "defect"}


def test_bad_settings_are_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="size must be 32..512 px"):
        generate_line_data(tmp_path / "x", size=16)
    with pytest.raises(ValueError, match="dark_gain"):
        generate_line_data(tmp_path / "x", dark_gain=0)
    assert not (tmp_path / "x").exists()
