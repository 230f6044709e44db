"""Edge frame sources: image folders with broken files, video files, source strings."""

import socket
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest

from deploy.edge.errors import EdgeError
from deploy.edge.sources import FolderSource, open_source, paced, read_image_frame


def _png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def _frames(source) -> list:
    return list(source.frames(threading.Event()))


def test_folder_is_read_in_name_order_with_broken_files_named(tmp_path):
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 255, (20, 24, 3), np.uint8)
    jpeg = cv2.imencode(".jpg", colour)[1].tobytes()
    files = {
        "b_colour.png": _png(colour),
        "a_corrupt.png": b"\x89PNG\r\n\x1a\n not really",
        "c_truncated.png": _png(colour)[:-40],
        "d_truncated.jpg": jpeg[: len(jpeg) // 2],
        "e_empty.bmp": b"",
        "f_gray.png": _png(colour[..., 0]),
        "g_alpha.png": _png(np.dstack([colour, np.full((20, 24), 128, np.uint8)])),
        "notes.txt": b"not an image",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)

    frames = _frames(open_source(str(tmp_path)))

    assert [f.frame_id for f in frames] == sorted(n for n in files if n != "notes.txt")
    by_id = {f.frame_id: f for f in frames}
    for broken in ("a_corrupt.png", "c_truncated.png", "d_truncated.jpg", "e_empty.bmp"):
        frame = by_id[broken]
        assert frame.pixels is None and str(tmp_path / broken) in frame.problem
    assert "truncated JPEG" in by_id["d_truncated.jpg"].problem
    assert np.array_equal(by_id["b_colour.png"].pixels, colour)  # BGR, as OpenCV stores it
    assert by_id["f_gray.png"].pixels.shape == (20, 24, 1)
    assert np.array_equal(by_id["g_alpha.png"].pixels, colour)  # alpha dropped
    assert not any(f.stream for f in frames)


def test_unreadable_file_is_a_problem_not_a_crash(tmp_path):
    frame = read_image_frame(tmp_path / "gone.png")
    assert frame.pixels is None and "gone.png" in frame.problem


def test_video_file_frames_are_numbered_by_stem(tmp_path):
    path = tmp_path / "line3.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for i in range(5):
        writer.write(np.full((24, 32, 3), 40 * i, np.uint8))
    writer.release()

    source = open_source(str(path))
    frames = _frames(source)

    assert not source.live
    assert [f.frame_id for f in frames] == [f"line3:{i:06d}" for i in range(5)]
    assert all(f.stream and f.pixels.shape == (24, 32, 3) for f in frames)


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("{tmp}/missing", "source not found"),
        ("ftp://host/stream", "not a stream URL"),
        ("rtsp://", "not a stream URL"),
        ("{tmp}", "no images"),
    ],
)
def test_unusable_sources_are_one_clear_error(tmp_path, spec, needle):
    with pytest.raises(EdgeError, match=needle):
        open_source(spec.format(tmp=tmp_path))


def test_a_file_that_is_not_a_video_is_refused(tmp_path):
    (tmp_path / "clip.avi").write_bytes(b"nothing playable")
    with pytest.raises(EdgeError, match="cannot open this video"):
        open_source(str(tmp_path / "clip.avi"))


def test_live_sources_are_recognised_without_connecting():
    camera = open_source("0")
    assert camera.live and camera.label == "camera0"
    stream = open_source("rtsp://10.0.0.5:554/line3")
    assert stream.live and stream.api == cv2.CAP_FFMPEG


def test_folder_source_stops_when_asked(tmp_path):
    for i in range(3):
        (tmp_path / f"{i}.png").write_bytes(_png(np.zeros((16, 16, 3), np.uint8)))
    stop = threading.Event()
    frames = FolderSource(tmp_path).frames(stop)
    next(frames)
    stop.set()
    assert list(frames) == []


def test_paced_hands_out_frames_at_the_given_rate(tmp_path):
    start = time.monotonic()
    out = list(paced(iter(range(6)), 50.0, threading.Event()))
    assert out == list(range(6))
    assert time.monotonic() - start >= 5 / 50 - 0.01


def test_live_stream_reconnects_with_backoff_and_numbers_on(tmp_path):
    """An http:// stream that is down at first, then plays a 4-frame clip: the source waits,
    connects, and after the clip ends connects again, frame ids continuing."""
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 32))
    for i in range(4):
        writer.write(np.full((32, 32, 3), 50 * i, np.uint8))
    writer.release()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    handler = partial(_QuietFiles, directory=str(tmp_path))
    servers = []

    def serve() -> None:
        servers.append(ThreadingHTTPServer(("127.0.0.1", port), handler))
        servers[0].serve_forever()

    source = open_source(f"http://127.0.0.1:{port}/clip.avi")
    stop = threading.Event()
    frames = source.frames(stop)
    starter = threading.Timer(0.2, serve)
    starter.start()
    try:
        got = [next(frames) for _ in range(6)]
    finally:
        stop.set()
        frames.close()
        starter.cancel()
        if servers:
            servers[0].shutdown()
            servers[0].server_close()
        starter.join()
    assert [f.frame_id for f in got] == [f"stream:{i:06d}" for i in range(6)]
    assert all(f.stream and f.pixels.shape == (32, 32, 3) for f in got)


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass
