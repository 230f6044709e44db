import pytest
import pipeline.reports.drift_report as dr
from test_drift_browser import mlflow_server  # noqa: F401  (fixture)
from test_drift_browser import test_drift_report_renders_offline_in_the_mlflow_ui as real


@pytest.mark.parametrize("extra", ['<img src="https://example.com/x.png">', '<img src="thumb.png">'])
def test_neg(extra, monkeypatch, mlflow_server, tiny_config, demo_data, workspace_dir, tmp_path):
    orig = dr.render_page
    monkeypatch.setattr(dr, "render_page", lambda t, s: orig(t, s).replace("</body>", extra + "</body>"))
    with pytest.raises(AssertionError) as e:
        real(mlflow_server, monkeypatch, tiny_config, demo_data, workspace_dir, tmp_path)
    print("CAUGHT:", str(e.value)[:300])
