"""Helpers for self-contained HTML reports.

MLflow shows an HTML artifact in a sandboxed iframe, and plants may view reports offline, so a
page must carry everything itself: images as PNG data URIs, styles inline, no scripts, fonts or
links to anywhere.
"""

import base64
import io
from html import escape

import cv2
import matplotlib
import numpy as np
from matplotlib.figure import Figure

matplotlib.use("Agg")  # headless: reports are rendered in flows and CI, without a display

import matplotlib.pyplot as plt  # noqa: E402

THUMBNAIL_PX = 256

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; max-width: 1200px; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; }
.grid { display: flex; flex-wrap: wrap; gap: 0.75rem; }
figure { margin: 0; } figcaption { font-size: 0.8rem; color: #555; max-width: 780px; }
"""


def _png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure_to_data_uri(fig: Figure, dpi: int = 100) -> str:
    """Render a matplotlib figure as a PNG data URI and close it, so loops do not leak figures."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return _png_data_uri(buffer.getvalue())


def as_rgb(image: np.ndarray) -> np.ndarray:
    """HxW, HxWx1 or HxWx3 uint8 as HxWx3 RGB (grayscale repeated), so all panels blend alike."""
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return np.repeat(image.reshape(image.shape[:2])[..., None], 3, axis=2)
    raise ValueError(f"expected HxW, HxWx1 or HxWx3, got shape {image.shape}")


def thumbnail(image: np.ndarray, max_px: int = THUMBNAIL_PX) -> np.ndarray:
    """Shrink so the longer side is at most `max_px`; reports stay small enough to open fast."""
    h, w = image.shape[:2]
    if max(h, w) <= max_px:
        return image
    scale = max_px / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def image_to_data_uri(arr: np.ndarray) -> str:
    """Encode a uint8 HxW (grey) or HxWxC RGB image as a PNG data URI (lossless, compact)."""
    rgb = as_rgb(arr)
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"cannot encode an image of shape {arr.shape} as PNG")
    return _png_data_uri(png.tobytes())


def overlay(
    image: np.ndarray,
    amap: np.ndarray,
    vmax: float | None = None,
    *,
    vmin: float = 0.0,
    alpha: float = 0.5,
) -> np.ndarray:
    """Blend a JET heat map of `amap` over `image`, as RGB uint8.

    Colours run from `vmin` (blue) to `vmax` (red; the map's own maximum when None). Pass one
    vmax for a whole set of overlays so that equal colours mean equal anomaly values.
    """
    rgb = as_rgb(image)
    amap = np.asarray(amap, dtype=np.float32)
    if amap.shape != rgb.shape[:2]:
        amap = cv2.resize(amap, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_AREA)
    top = float(amap.max()) if vmax is None else float(vmax)
    span = top - vmin
    scaled = np.clip((amap - vmin) / span, 0.0, 1.0) if span > 0 else np.zeros_like(amap)
    heat_bgr = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_JET)
    heat = cv2.cvtColor(heat_bgr, cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(rgb, 1.0 - alpha, heat, alpha, 0.0)


def _cell(value: object) -> str:
    if value is None:
        return '<td class="num">n/a</td>'
    if isinstance(value, (float, np.floating)):
        return f'<td class="num">{float(value):.4f}</td>'
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f'<td class="num">{int(value)}</td>'
    return f"<td>{escape(str(value))}</td>"


def metrics_table(rows: list[dict]) -> str:
    """An HTML table of the rows; columns are the keys in order of first appearance.

    Every value is escaped; floats show 4 decimals and None (a metric that is undefined on
    this data) shows as "n/a", as does a key a row lacks.
    """
    if not rows:
        return "<p>No data.</p>"
    columns = list(dict.fromkeys(key for row in rows for key in row))
    head = "".join(f"<th>{escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(row.get(c)) for c in columns) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_page(title: str, sections: list[tuple[str, str]]) -> str:
    """A complete HTML document: escaped title and section headings, bodies inserted as HTML."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>",
        f"<body><h1>{escape(title)}</h1>",
    ]
    parts += [f"<section><h2>{escape(head)}</h2>{body}</section>" for head, body in sections]
    parts.append("</body></html>")
    return "\n".join(parts)
