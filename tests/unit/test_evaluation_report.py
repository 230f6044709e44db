"""build_report on synthetic predictions, the HTML helpers, and the self-contained report page."""

import base64
from datetime import timezone
from html.parser import HTMLParser
from pathlib import Path

import cv2
import matplotlib.pyplot as plt
import numpy as np
import pytest

from data_contracts.evaluation import CalibrationSummary, EvaluationReport
from pipeline.evaluation import Predictions, build_report
from pipeline.reports.evaluation_report import write_evaluation_html
from pipeline.reports.html import (
    figure_to_data_uri,
    image_to_data_uri,
    metrics_table,
    overlay,
    render_page,
    thumbnail,
)

SIZE = 32
DEFECTS = ("scratch", "stain & dent")  # "&" checks that names are escaped in the page


def _predictions(n_good: int = 10, per_defect: int = 5) -> Predictions:
    """Good images with noise maps; defect images with a square whose map values are raised."""
    rng = np.random.default_rng(0)
    categories = ["good"] * n_good + [d for d in DEFECTS for _ in range(per_defect)]
    n = len(categories)
    images = rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)
    masks = np.zeros((n, SIZE, SIZE), dtype=bool)
    maps = rng.random((n, SIZE, SIZE), dtype=np.float32) * 0.5
    for i in range(n_good, n):
        y, x = rng.integers(0, SIZE - 8, 2)
        masks[i, y : y + 6, x : x + 6] = True
        maps[i][masks[i]] += 0.6 if categories[i] == "scratch" else 0.3
    scores = maps.reshape(n, -1).max(axis=1)
    paths = [f"test/{c}/{i:03d}.png" for i, c in enumerate(categories)]
    return Predictions(paths, categories, images, masks, maps, scores)


def _calibration(threshold: float = 0.55) -> CalibrationSummary:
    return CalibrationSummary(
        alpha=0.05, n_calibration=40, threshold=threshold, thresholds={"0.1": 0.5, "0.05": 0.55}
    )


@pytest.fixture(scope="module")
def pred() -> Predictions:
    return _predictions()


@pytest.fixture(scope="module")
def report(pred: Predictions) -> EvaluationReport:
    return build_report(pred, _calibration(), model_name="conv-ae", dataset="demo/bottle")


# Predictions and build_report


def test_predictions_labels_and_defect_types(pred: Predictions) -> None:
    assert pred.labels.tolist() == [0] * 10 + [1] * 10
    assert pred.defect_types == sorted(DEFECTS)


def test_predictions_reject_misaligned_fields(pred: Predictions) -> None:
    with pytest.raises(ValueError, match="aligned"):
        Predictions(
            pred.paths[:-1], pred.categories, pred.images, pred.masks, pred.maps, pred.scores
        )
    with pytest.raises(ValueError, match="share"):
        Predictions(
            pred.paths, pred.categories, pred.images, pred.masks[:, :16], pred.maps, pred.scores
        )


def test_build_report_overall_figures(report: EvaluationReport) -> None:
    assert (report.n_good, report.n_defect) == (10, 10)
    assert report.model_name == "conv-ae" and report.model_version is None
    assert report.created.tzinfo is not None
    assert report.created.utcoffset() == timezone.utc.utcoffset(None)
    assert report.image_auroc == 1.0  # every defect map peaks above 0.8, no good map above 0.5
    assert report.pixel_auroc is not None and report.pixel_auroc > 0.9
    assert report.pro is not None and report.pro > 0.8
    assert report.at_threshold.threshold == 0.55
    assert report.at_threshold.recall == 1.0 and report.at_threshold.false_alarm_rate == 0.0


def test_build_report_per_defect_against_all_good(report: EvaluationReport) -> None:
    assert [d.defect for d in report.per_defect] == sorted(DEFECTS)
    by_name = {d.defect: d for d in report.per_defect}
    assert all(d.n_images == 5 for d in report.per_defect)
    assert by_name["scratch"].pro == pytest.approx(1.0)  # its squares are above every normal px
    assert by_name["stain & dent"].pro < by_name["scratch"].pro
    assert by_name["scratch"].recall == 1.0


def test_build_report_round_trips_as_json(report: EvaluationReport) -> None:
    assert EvaluationReport.model_validate_json(report.model_dump_json()) == report


def test_build_report_on_good_images_only() -> None:
    pred = _predictions(per_defect=0)
    report = build_report(pred, _calibration(), model_name="m", dataset="d")
    assert report.image_auroc is None and report.pixel_auroc is None and report.pro is None
    assert report.per_defect == [] and report.at_threshold.recall is None


# HTML helpers


def test_image_to_data_uri_keeps_rgb_order() -> None:
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 200  # red
    uri = image_to_data_uri(rgb)
    assert uri.startswith("data:image/png;base64,")
    png = np.frombuffer(base64.b64decode(uri.split(",", 1)[1]), np.uint8)
    decoded = cv2.cvtColor(cv2.imdecode(png, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(decoded, rgb)
    assert image_to_data_uri(np.zeros((4, 5), np.uint8)).startswith("data:image/png;base64,")


def test_overlay_is_rgb_hot_where_the_map_is_high() -> None:
    image = np.full((8, 8, 1), 128, np.uint8)
    amap = np.zeros((8, 8), np.float32)
    amap[:4] = 2.0
    out = overlay(image, amap, vmax=1.0)
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    hot, cold = out[0, 0], out[7, 7]
    assert hot[0] > hot[2] and cold[2] > cold[0]  # red on top, blue below: channels are RGB
    shifted = overlay(image, amap, vmax=1.0, vmin=-1.0)  # 0 is now mid-scale: green, not blue
    assert shifted[7, 7, 1] > cold[1] + 50


def test_figure_to_data_uri_closes_the_figure() -> None:
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    assert figure_to_data_uri(fig).startswith("data:image/png;base64,")
    assert not plt.fignum_exists(fig.number)


def test_metrics_table_formats_and_escapes() -> None:
    table = metrics_table([{"name": "<b>", "auroc": 0.123456, "pro": None, "n": 5}])
    assert "&lt;b&gt;" in table and "<b>" not in table
    assert "0.1235" in table and "n/a" in table and ">5<" in table
    assert metrics_table([]) == "<p>No data.</p>"


def test_render_page_escapes_titles() -> None:
    page = render_page("a < b", [("x & y", "<p>body</p>")])
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>a &lt; b</title>" in page and "x &amp; y" in page and "<p>body</p>" in page


# the report page


class _PageCheck(HTMLParser):
    """Collects every URL-bearing attribute and checks that tags are balanced."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.open: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v or "" for k, v in attrs if k in ("src", "href", "srcset", "action")]
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open.pop() != tag:
            self.errors.append(f"unbalanced </{tag}>")


@pytest.fixture(scope="module")
def page(report: EvaluationReport, pred: Predictions, tmp_path_factory) -> str:
    path = write_evaluation_html(report, pred, tmp_path_factory.mktemp("r") / "sub" / "e.html")
    assert path.is_file()
    return Path(path).read_text(encoding="utf-8")


def test_page_is_self_contained(page: str) -> None:
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "<link" not in page and "@import" not in page
    checker = _PageCheck()
    checker.feed(page)
    checker.close()
    assert checker.urls and all(u.startswith("data:image/png;base64,") for u in checker.urls)


def test_page_parses_with_balanced_tags(page: str) -> None:
    checker = _PageCheck()
    checker.feed(page)
    checker.close()
    assert checker.errors == [] and checker.open == []


def test_page_names_every_defect_type_escaped(page: str) -> None:
    assert "scratch" in page and "stain &amp; dent" in page and "stain & dent" not in page
    for title in ("Worst false alarms", "Worst misses", "Best detections", "Calibration"):
        assert title in page
    assert "to 0.55 (red), the calibrated threshold" in page  # one colour scale, stated


def test_page_has_two_figures_and_three_full_grids(page: str) -> None:
    checker = _PageCheck()
    checker.feed(page)
    # ROC and histogram, then 3 grids x 6 cases x 3 panels (10 good and 10 defect images).
    assert len(checker.urls) == 2 + 3 * 6 * 3
    assert len(page) < 1_000_000


def test_thumbnail_caps_the_longer_side() -> None:
    assert thumbnail(np.zeros((512, 384, 3), np.uint8)).shape == (256, 192, 3)
    assert thumbnail(np.zeros((100, 50), np.uint8)).shape == (100, 50)


def test_page_without_defect_images(tmp_path: Path) -> None:
    pred = _predictions(per_defect=0)
    report = build_report(pred, _calibration(), model_name="m", dataset="d")
    text = write_evaluation_html(report, pred, tmp_path / "e.html").read_text(encoding="utf-8")
    assert "a ROC curve needs both good and defect images" in text and "No defect images." in text
