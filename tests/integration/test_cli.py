"""The CLI as a user runs it: real subprocesses, one-line errors, nothing overwritten."""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def aeinspect(*args: str, env_home: Path, check: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "AEINSPECT_HOME": str(env_home)}
    env.pop("MLFLOW_TRACKING_URI", None)  # mlflow.set_tracking_uri in an earlier test sets it
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=600,
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


def one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert "Traceback" not in done.stderr
    return errors[0]


def test_validate_lists_problems_and_exits_1(tmp_path, demo_data):
    bad = tmp_path / "bad"
    subprocess.run(["cp", "-r", str(demo_data), str(bad)], check=True)
    victim = sorted((bad / "test" / "pit").iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:100])
    (bad / "ground_truth" / "stain" / "000_mask.png").unlink()
    done = aeinspect("validate", str(bad), env_home=tmp_path / "ws")
    assert done.returncode == 1
    assert str(victim) in done.stdout and "truncated" in done.stdout
    assert "test/stain/000.png: defect image without a mask" in done.stdout
    ok = aeinspect("validate", str(demo_data), env_home=tmp_path / "ws")
    assert ok.returncode == 0 and "no problems" in ok.stdout


def test_unknown_config_key_is_one_line(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  widht: 8\n")
    line = one_error_line(aeinspect("train", "--config", str(cfg), env_home=tmp_path / "ws"))
    assert str(cfg) in line and "unknown config key 'model.widht'" in line


def test_empty_folder_and_missing_dataset_are_one_line(tmp_path):
    (tmp_path / "empty" / "train" / "good").mkdir(parents=True)
    line = one_error_line(
        aeinspect("train", "--data", str(tmp_path / "empty"), env_home=tmp_path / "ws")
    )
    assert "train/good" in line and "no images" in line
    line = one_error_line(
        aeinspect("train", "--data", str(tmp_path / "nope"), env_home=tmp_path / "ws")
    )
    assert "nope" in line


def test_demo_data_refuses_a_non_empty_folder(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    line = one_error_line(
        aeinspect("datasets", "demo", "--out", str(out), env_home=tmp_path / "ws")
    )
    assert str(out) in line
    assert (out / "keep.txt").read_text() == "precious"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, demo_data, tiny_overrides) -> Path:
    """Train once through the CLI with its default config (DRAEM), tiny settings, and return
    the bundle folder."""
    home = tmp_path_factory.mktemp("cli-ws")
    tiny = [*tiny_overrides, "train.crop=16", "model.disc_width=8", "model.disc_depth=2"]
    sets = [arg for o in tiny for arg in ("--set", o)]
    done = aeinspect("train", "--data", str(demo_data), *sets, env_home=home, check=True)
    assert "version 1 (alias challenger)" in done.stdout
    (bundle_dir,) = (home / "runs").glob("*/bundle")
    return bundle_dir


def test_score_by_registry_alias(tmp_path, bundle, demo_data):
    """`name@alias` is downloaded from MLflow's registry and verified before scoring."""
    home = bundle.parents[2]
    image = sorted((demo_data / "test" / "pit").iterdir())[0]
    out = tmp_path / "s.jsonl"
    aeinspect(
        "score",
        str(image),
        "--model",
        "aeinspect-draem@challenger",
        "--out",
        str(out),
        env_home=home,
        check=True,
    )
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["frame_id"] == str(image) and record["model_version"] == "1"
    line = one_error_line(
        aeinspect("score", str(image), "--model", "aeinspect-draem@champion", env_home=home)
    )
    assert "aeinspect-draem@champion: not found" in line


def test_score_records_good_files_and_names_bad_ones(tmp_path, bundle, demo_data):
    folder = tmp_path / "frames"
    folder.mkdir()
    for src in sorted((demo_data / "test" / "good").iterdir())[:3]:
        (folder / src.name).write_bytes(src.read_bytes())
    (folder / "zz_corrupt.png").write_bytes(b"not a png at all")
    gray = np.full((64, 64), 128, np.uint8)
    cv2.imwrite(str(folder / "zz_gray.png"), gray)
    out = tmp_path / "scores.jsonl"
    out.write_text('{"earlier": "record"}\n')
    done = aeinspect(
        "score",
        str(folder),
        "--model",
        str(bundle),
        "--out",
        str(out),
        "--overlays",
        str(tmp_path / "ov"),
        env_home=tmp_path / "ws",
    )
    assert done.returncode == 1
    assert (
        "zz_corrupt.png" in done.stderr and "zz_gray.png: 1 channel(s), expected 3" in done.stderr
    )
    lines = out.read_text().splitlines()
    assert lines[0] == '{"earlier": "record"}'
    records = [json.loads(line) for line in lines[1:]]
    assert len(records) == 3
    assert {r["verdict"] for r in records} <= {"good", "defect"}
    assert all(r["model_version"] == "1" for r in records)


def test_tampered_bundle_is_refused(tmp_path, bundle, demo_data):
    copy = tmp_path / "bundle"
    subprocess.run(["cp", "-r", str(bundle), str(copy)], check=True)
    weights = copy / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    image = sorted((demo_data / "test" / "good").iterdir())[0]
    line = one_error_line(
        aeinspect("score", str(image), "--model", str(copy), env_home=tmp_path / "ws")
    )
    assert "weights.pt: sha256 does not match" in line


def test_evaluate_writes_both_reports(tmp_path, bundle, demo_data):
    out = tmp_path / "eval"
    done = aeinspect(
        "evaluate",
        "--model",
        str(bundle),
        "--data",
        str(demo_data),
        "--out",
        str(out),
        env_home=tmp_path / "ws",
        check=True,
    )
    assert "image_auroc" in done.stdout
    report = json.loads((out / "evaluation.json").read_text())
    assert report["model_version"] == "1"
    assert (out / "evaluation.html").read_text().startswith("<!DOCTYPE html>")


def test_resume_uses_the_run_config_and_checkpoint(bundle):
    """`--resume RUN` continues from the run's checkpoint with the run's saved config."""
    run_dir, home = bundle.parent, bundle.parents[2]
    first = json.loads((run_dir / "reports" / "evaluation.json").read_text())
    done = aeinspect("train", "--resume", str(run_dir), env_home=home, check=True)
    assert "version 2 (alias challenger)" in done.stdout
    again = json.loads((run_dir / "reports" / "evaluation.json").read_text())
    assert again["image_auroc"] == first["image_auroc"]
    assert again["calibration"]["threshold"] == first["calibration"]["threshold"]
