"""The data contracts: committed schemas match the models, and the models are strict."""

import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

import data_contracts
from data_contracts import CONTRACTS, FrameContract, LineManifestRow, ScoreRecord
from data_contracts.export import SCHEMA_DIR, export_schemas, main

REGENERATE = "run `python -m data_contracts.export` and commit data_contracts/schemas"
NOW = datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)

VALID = {
    "dataset_layout": {
        "root": "/data/bottle",
        "train_good": ["train/good/000.png"],
        "test_good": ["test/good/000.png"],
        "defects": [
            {
                "name": "crack",
                "images": ["test/crack/000.png", "test/crack/001.png"],
                "masks": ["ground_truth/crack/000_mask.png", None],
            }
        ],
    },
    "frame": {"channels": 3, "input_height": 128, "input_width": 128},
    "score_record": {
        "frame_id": "cam1/000123",
        "time": NOW,
        "score": 0.73,
        "threshold": 0.5,
        "verdict": "defect",
        "model_name": "conv_ae",
        "model_version": "3",
        "latency_ms": 4.2,
    },
    "evaluation_report": {
        "model_name": "conv_ae",
        "dataset": "bottle",
        "created": NOW,
        "n_good": 20,
        "n_defect": 63,
        "image_auroc": 0.97,
        "pixel_auroc": None,
        "pro": None,
        "calibration": {
            "alpha": 0.05,
            "n_calibration": 50,
            "threshold": 0.5,
            "thresholds": {"0.01": 0.6},
        },
        "at_threshold": {
            "threshold": 0.5,
            "precision": 0.9,
            "recall": 0.8,
            "f1": 0.85,
            "false_alarm_rate": 0.05,
        },
        "per_defect": [
            {
                "defect": "crack",
                "n_images": 21,
                "image_auroc": 0.99,
                "pixel_auroc": None,
                "pro": None,
                "recall": 0.9,
            }
        ],
    },
    "drift_reference": {
        "created": NOW,
        "image_size": 128,
        "channels": 1,
        "stat_names": ["brightness", "noise"],
        "stats": [[0.4, 0.01], [0.5, 0.02], [0.45, 0.015]],
        "feature_mean": [0.1, 0.2, 0.3],
        "feature_components": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
        "feature_scale": [1.5, 0.5],
        "features": [[0.1, -0.2], [0.3, 0.4], [-0.4, -0.2]],
        "scores": [0.2, 0.3],
        "threshold": 0.5,
        "flag_rate": 0.01,
    },
    "drift_report": {
        "model_name": "conv_ae",
        "model_version": "3",
        "batch": "line1/cam2/2024-05-01",
        "created": NOW,
        "alpha": 0.05,
        "drift": True,
        "reasons": ["brightness: p=1e-06 < 0.005, effect -1.20"],
        "n_reference": 250,
        "n_batch": 50,
        "unreadable": [{"path": "line1/cam2/x.png", "problem": "truncated"}],
        "flag_rate": 0.02,
        "tests": [
            {
                "name": "brightness",
                "kind": "ks",
                "statistic": 0.6,
                "p_value": 1e-6,
                "level": 0.005,
                "shifted": True,
                "effect_size": -1.2,
                "reference_mean": 0.45,
                "batch_mean": 0.35,
            }
        ],
        "domain_classifier": {"auc": 0.91, "folds": 5, "distinguishable": True},
        "shifted_frames": [{"path": "line1/cam2/y.png", "batch_probability": 0.97, "score": 0.4}],
    },
    "stress_report": {
        "model_name": "conv_ae",
        "model_version": "3",
        "dataset": "bottle",
        "created": NOW,
        "threshold": 0.5,
        "image_score": "max",
        "attack_score": "mean of the top 16 fused-map pixels",
        "clean": {
            "n_good": 20,
            "n_defect": 63,
            "false_alarm_rate": 0.05,
            "miss_rate": 0.2,
            "auroc": 0.97,
        },
        "drift_note": "drift monitor consulted",
        "perturbations": [
            {
                "perturbation": "darker",
                "severity": "medium",
                "level": -0.1,
                "description": "brightness shift, share of full scale",
                "lighting": True,
                "figures": {
                    "n_good": 20,
                    "n_defect": 63,
                    "false_alarm_rate": 0.1,
                    "miss_rate": 0.3,
                    "auroc": 0.9,
                },
                "mean_score_shift": 0.05,
                "drift_fired": True,
            }
        ],
        "attacks": [
            {
                "method": "pgd",
                "eps": 2.0,
                "steps": 10,
                "n_good": 20,
                "n_defect": 20,
                "false_alarm_success": 0.4,
                "hidden_defect_success": 0.6,
                "mean_shift_good": 0.3,
                "mean_shift_defect": -0.4,
                "robust_auroc": 0.5,
            }
        ],
        "sanity": [{"name": "PGD >= FGSM", "passed": True, "detail": "0.3 vs 0.2"}],
        "sanity_passed": True,
        "unreadable": [],
        "seconds": 12.5,
    },
    "edge_bundle": {
        "model_name": "conv_ae",
        "model_family": "ae",
        "model_version": "3",
        "created": NOW,
        "opset": 17,
        "max_batch": 8,
        "input": {
            "layout": "uint8_nhwc",
            "channel_order": "rgb",
            "contract": {"channels": 3, "input_height": 128, "input_width": 128},
        },
        "threshold": 1.2,
        "alpha": 0.01,
        "parity": {
            "runtime": "onnxruntime-cpu",
            "reference": "torch-cpu",
            "images": 64,
            "source": "test set",
            "max_score_diff": 2e-5,
            "max_map_diff": 4e-5,
            "decision_agreement": 1.0,
            "rank_correlation": 1.0,
            "score_tolerance": 1e-3,
            "map_tolerance": 1e-3,
            "min_agreement": 1.0,
            "passed": True,
        },
        "files": {"model.onnx": "ab" * 32},
    },
    "line_manifest_row": {
        "image": "000123.png",
        "part_id": "P-000123",
        "capture_time": NOW,
        "label": "defect",
        "mask": "masks/000123_mask.png",
    },
    "ingest_report": {
        "line": "line-a",
        "camera": "cam-0",
        "day": "2024-05-01",
        "manifest_rows": 4,
        "channels": 3,
        "accepted": {"good": 2, "defect": 0, "unknown": 0},
        "quarantined": [{"path": "000124.png", "reason": "unreadable or truncated image"}],
        "already_ingested": 0,
        "rejected_rows": [{"row": 4, "image": "000125.png", "reason": "image file not found"}],
        "when": NOW,
    },
}

ALL_MODELS = sorted(
    (m for m in vars(data_contracts).values() if isinstance(m, type) and issubclass(m, BaseModel)),
    key=lambda m: m.__name__,
)


def _schemas(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.schema.json"))}


def test_committed_schemas_are_current(tmp_path: Path) -> None:
    export_schemas(tmp_path)
    fresh, committed = _schemas(tmp_path), _schemas(SCHEMA_DIR)
    assert sorted(committed) == sorted(fresh), f"schema files differ in name: {REGENERATE}"
    stale = [name for name in fresh if committed[name] != fresh[name]]
    assert not stale, f"out of date: {', '.join(stale)}; {REGENERATE}"


def test_export_writes_one_schema_per_contract_and_drops_stale_ones(tmp_path: Path) -> None:
    (tmp_path / "retired.schema.json").write_text("{}\n")
    (tmp_path / "notes.txt").write_text("kept\n")
    written = export_schemas(tmp_path)
    assert [p.name for p in written] == [f"{name}.schema.json" for name in CONTRACTS]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [p.name for p in written] + ["notes.txt"]
    )
    assert all(p.read_text().endswith("}\n") for p in written)


def test_export_main_takes_an_output_folder(tmp_path: Path) -> None:
    main([str(tmp_path / "out")])
    assert _schemas(tmp_path / "out") == _schemas(SCHEMA_DIR)


def test_contracts_import_nothing_else_of_ours() -> None:
    """The edge runtime installs data_contracts alone, so it must stand alone."""
    probe = (
        "import sys, data_contracts.export; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pipeline', 'flows', 'deploy'}))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_examples_cover_every_contract() -> None:
    assert set(VALID) == set(CONTRACTS)


@pytest.mark.parametrize("name", sorted(CONTRACTS))
def test_contract_accepts_example_and_rejects_unknown_key(name: str) -> None:
    model = CONTRACTS[name]
    model.model_validate(VALID[name])
    with pytest.raises(ValidationError) as info:
        model.model_validate({**VALID[name], "colour": "red"})
    assert [e["type"] for e in info.value.errors()] == ["extra_forbidden"]


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda m: m.__name__)
def test_every_model_forbids_unknown_keys(model: type[BaseModel]) -> None:
    with pytest.raises(ValidationError) as info:
        model.model_validate({"surely_not_a_field": 1})
    assert "extra_forbidden" in {e["type"] for e in info.value.errors()}


def test_nested_unknown_key_is_rejected() -> None:
    report = {**VALID["evaluation_report"]}
    report["calibration"] = {**report["calibration"], "beta": 2}
    with pytest.raises(ValidationError, match="calibration.beta"):
        CONTRACTS["evaluation_report"].model_validate(report)


@pytest.fixture
def frame() -> FrameContract:
    return FrameContract(
        channels=3, min_height=16, max_height=2048, input_height=128, input_width=128
    )


def test_frame_that_fits_has_no_problems(frame: FrameContract) -> None:
    assert frame.problems(height=480, width=640, channels=3, dtype="uint8") == []


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((480, 640, 1, "uint8"), "1 channel(s), expected 3"),
        ((480, 640, 3, "uint16"), "dtype uint16, expected uint8"),
        ((8, 640, 3, "uint8"), "height 8 outside 16..2048"),
        ((4096, 640, 3, "uint8"), "height 4096 outside 16..2048"),
        ((480, 9000, 3, "uint8"), "width 9000 outside 16..8192"),
    ],
)
def test_frame_problem_is_named(
    frame: FrameContract, shape: tuple[int, int, int, str], expected: str
) -> None:
    height, width, channels, dtype = shape
    assert frame.problems(height, width, channels, dtype) == [expected]


def test_frame_lists_every_problem(frame: FrameContract) -> None:
    assert len(frame.problems(height=4, width=9000, channels=1, dtype="float32")) == 4


def test_frame_min_size_above_max_is_rejected() -> None:
    with pytest.raises(ValidationError, match="min size must not exceed max size"):
        FrameContract(channels=1, min_height=64, max_height=32, input_height=64, input_width=64)


def test_score_record_of_an_invalid_frame_names_its_problem() -> None:
    invalid = {**VALID["score_record"], "verdict": "invalid", "score": None}
    with pytest.raises(ValidationError, match="must name its problem"):
        ScoreRecord.model_validate(invalid)
    ScoreRecord.model_validate({**invalid, "problem": "1 channel(s), expected 3"})
    with pytest.raises(ValidationError, match="score is None exactly"):
        ScoreRecord.model_validate({**VALID["score_record"], "score": None})


def test_score_record_round_trips_through_json() -> None:
    record = ScoreRecord.model_validate(VALID["score_record"])
    back = ScoreRecord.model_validate_json(record.model_dump_json())
    assert back == record
    assert back.time.tzinfo is not None


def test_line_manifest_row_names_a_mask_only_for_defects() -> None:
    row = {**VALID["line_manifest_row"], "label": "good"}
    with pytest.raises(ValidationError, match="only a defect row may name a mask"):
        LineManifestRow.model_validate(row)
    LineManifestRow.model_validate({**row, "mask": None})


def test_line_manifest_row_needs_a_time_zone() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        LineManifestRow.model_validate(
            {**VALID["line_manifest_row"], "capture_time": "2024-05-01T12:30:00"}
        )
