"""Frame sources behind one `--source` string.

A folder of images (sorted by name; frame id = file name), a video file (frame id
`<stem>:<index>`), a camera index, an RTSP/HTTP URL (FFmpeg) or a GStreamer pipeline (any
string with "!"). A file that cannot be decoded becomes a frame with a problem, so it gets an
`invalid` record instead of ending the run. Files end the run at end of stream; live sources
reconnect with capped backoff until the runtime stops, because a camera that drops out for a
minute must not need a service restart.
"""

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np

from deploy.edge.errors import EdgeError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https")
RECONNECT_FIRST_S, RECONNECT_MAX_S = 0.5, 10.0


@dataclass
class Frame:
    """One frame as delivered: pixels H x W x C in OpenCV's order (BGR for colour), or a problem.

    `stream` marks frames decoded by a video stream, which OpenCV always hands out as BGR: those
    may be converted to grey for a grey model. A still image keeps the channels it has on disk.
    """

    frame_id: str
    pixels: np.ndarray | None
    problem: str | None = None
    stream: bool = False


def read_image_frame(path: Path) -> Frame:
    """Decode one image file as stored (IMREAD_UNCHANGED); 2-D becomes one channel and BGRA
    loses its alpha. Unreadable, corrupt or truncated files come back with the problem named."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return Frame(path.name, None, f"{path}: cannot read the file ({exc.strerror})")
    pixels = None
    if not data:
        problem = "empty file"
    elif data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-1024:]:
        # OpenCV 4 decodes a cut-off JPEG with grey rows and only a warning
        problem = "truncated JPEG (no end-of-image marker)"
    else:
        try:
            pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        except cv2.error:
            pixels = None
        problem = "not a readable image (corrupt, truncated or unknown format)"
    if pixels is None:
        return Frame(path.name, None, f"{path}: {problem}")
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    elif pixels.shape[2] == 4:
        pixels = pixels[..., :3]
    return Frame(path.name, pixels)


class FolderSource:
    """The images directly in a folder, listed once at start, in name order."""

    live = False

    def __init__(self, folder: Path) -> None:
        self.paths = sorted(
            p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not self.paths:
            raise EdgeError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        self.description = f"folder {folder} ({len(self.paths)} images)"

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        for path in self.paths:
            if stop.is_set():
                return
            yield read_image_frame(path)


class CaptureSource:
    """An OpenCV VideoCapture: a video file (ends at end of stream) or a live stream (reopened
    with backoff whenever opening or reading fails)."""

    def __init__(self, target: str | int, api: int, label: str, live: bool) -> None:
        self.target, self.api, self.label, self.live = target, api, label, live
        self.description = f"{'live ' if live else ''}{label} {target}"
        if not live:
            capture = self._open()
            if capture is None:
                raise EdgeError(f"{target}: OpenCV cannot open this video (format or codec)")
            capture.release()

    def _open(self) -> cv2.VideoCapture | None:
        try:
            capture = cv2.VideoCapture(self.target, self.api)
        except cv2.error:
            return None
        if capture.isOpened():
            return capture
        capture.release()
        return None

    def _read(self, capture: cv2.VideoCapture) -> np.ndarray | None:
        try:
            ok, pixels = capture.read()
        except cv2.error:  # some backends raise instead of returning False on a broken stream
            return None
        return pixels if ok else None

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        index, wait = 0, RECONNECT_FIRST_S
        while not stop.is_set():
            capture = self._open()
            if capture is not None:
                try:
                    while not stop.is_set():
                        pixels = self._read(capture)
                        if pixels is None:
                            break
                        wait = RECONNECT_FIRST_S
                        yield Frame(f"{self.label}:{index:06d}", _hwc(pixels), stream=True)
                        index += 1
                finally:
                    capture.release()
            if not self.live:
                return
            log.warning("%s: no frames (stream lost or not open); retrying in %.1f s", self, wait)
            if stop.wait(wait):
                return
            wait = min(wait * 2, RECONNECT_MAX_S)

    def __str__(self) -> str:
        return self.description


def _hwc(pixels: np.ndarray) -> np.ndarray:
    return pixels[..., None] if pixels.ndim == 2 else pixels


def _require_backend(api: int, what: str) -> None:
    if not cv2.videoio_registry.hasBackend(api):
        raise EdgeError(f"this OpenCV build has no {what} support (see cv2.getBuildInformation())")


def open_source(spec: str) -> FolderSource | CaptureSource:
    """The source a `--source` string names; EdgeError when it names nothing usable."""
    if "!" in spec:
        _require_backend(cv2.CAP_GSTREAMER, "GStreamer")
        return CaptureSource(spec, cv2.CAP_GSTREAMER, "gstreamer", live=True)
    if spec.isdigit():
        return CaptureSource(int(spec), cv2.CAP_ANY, f"camera{spec}", live=True)
    if "://" in spec:
        parts = urlsplit(spec)
        if parts.scheme.lower() not in STREAM_SCHEMES or not parts.hostname:
            raise EdgeError(
                f"{spec}: not a stream URL (expected {', '.join(STREAM_SCHEMES)}:// with a host)"
            )
        _require_backend(cv2.CAP_FFMPEG, "FFmpeg")
        return CaptureSource(spec, cv2.CAP_FFMPEG, "stream", live=True)
    path = Path(spec)
    if path.is_dir():
        return FolderSource(path)
    if path.is_file():
        return CaptureSource(str(path), cv2.CAP_ANY, path.stem, live=False)
    raise EdgeError(
        f"{spec}: source not found (give an image folder, a video file, a camera index, "
        "an rtsp:// or http:// URL, or a GStreamer pipeline)"
    )


def paced(frames: Iterator[Frame], fps: float, stop: threading.Event) -> Iterator[Frame]:
    """Hand out frames no faster than `fps`, like a camera: replaying a recording at line speed
    (soak tests, hot-swap rehearsals) instead of as fast as the disk allows."""
    start = time.monotonic()
    for index, frame in enumerate(frames):
        if stop.wait(max(0.0, start + index / fps - time.monotonic())):
            return
        yield frame
