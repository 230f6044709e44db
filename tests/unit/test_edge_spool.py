"""The disk spool and the sender: durable records, sequence across restarts, the same key for a
retried batch, delivery to a real HTTP server that fails first."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from deploy.edge.delivery import Sender, check_collector_url
from deploy.edge.errors import EdgeError
from deploy.edge.spool import Spool
from deploy.edge.stats import Stats


def _record(i: int) -> str:
    return json.dumps({"frame_id": f"f{i}"})


def test_records_survive_a_restart_and_numbers_never_repeat(tmp_path):
    spool = Spool(tmp_path)
    for i in range(3):
        spool.put(_record(i))
    (tmp_path / "000000000099.record.tmp").write_text('{"half')  # a write cut short

    again = Spool(tmp_path)
    assert again.depth() == 3 and not list(tmp_path.glob("*.tmp"))
    batch = again.next_batch(100)
    assert json.loads(batch.body) == [{"frame_id": f"f{i}"} for i in range(3)]
    again.delivered(batch)
    assert again.depth() == 0

    third = Spool(tmp_path)  # empty now, but numbering goes on
    third.put(_record(9))
    assert third.next_batch(100).seqs == (4,)
    assert third.spool_id == spool.spool_id


def test_a_batch_in_flight_at_a_crash_goes_out_again_with_the_same_key(tmp_path):
    spool = Spool(tmp_path)
    for i in range(5):
        spool.put(_record(i))
    first = spool.next_batch(3)  # posted, then the process died before the 2xx arrived

    restarted = Spool(tmp_path)
    restarted.put(_record(5))
    again = restarted.next_batch(100)
    assert (again.seqs, again.key, again.body) == (first.seqs, first.key, first.body)
    restarted.delivered(again)
    rest = restarted.next_batch(100)
    assert rest.seqs == (4, 5, 6) and rest.key != first.key


class _Collector(BaseHTTPRequestHandler):
    fail_first = 0
    batches: list = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        cls = type(self)
        if cls.fail_first:
            cls.fail_first -= 1
            self.send_response(503)
        else:
            cls.batches.append((self.headers["Idempotency-Key"], body))
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def collector():
    _Collector.fail_first, _Collector.batches = 2, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/records", _Collector
    server.shutdown()
    server.server_close()


def test_sender_retries_until_the_collector_takes_every_record(tmp_path, collector):
    url, handler = collector
    spool, stats = Spool(tmp_path), Stats("m", "1", "onnxruntime-cpu")
    for i in range(10):
        spool.put(_record(i))
    sender = Sender(spool, url, stats, batch_records=4)
    sender.start()
    try:
        assert sender.drain(20, threading.Event()) == 0
    finally:
        sender.stop()

    got = [r["frame_id"] for _, body in handler.batches for r in body]
    assert got == [f"f{i}" for i in range(10)]
    assert len({key for key, _ in handler.batches}) == len(handler.batches) == 3
    snap = stats.snapshot()
    assert (snap.posts_failed, snap.posts_ok, snap.delivered) == (2, 3, 10)
    assert snap.last_post_error is None
    assert not list(tmp_path.glob("*.record"))


def test_sender_reports_an_unreachable_collector_and_keeps_the_records(tmp_path):
    spool, stats = Spool(tmp_path), Stats("m", "1", "onnxruntime-cpu")
    spool.put(_record(0))
    sender = Sender(spool, "http://127.0.0.1:9/records", stats)  # discard port: refused
    sender.start()
    try:
        assert sender.drain(0.5, threading.Event()) == 1
    finally:
        sender.stop()
    snap = stats.snapshot()
    assert snap.posts_failed >= 1 and "unreachable" in snap.last_post_error
    assert spool.depth() == 1


@pytest.mark.parametrize("url", ["ftp://x/y", "http://", "collector:8080", "http://h:port/"])
def test_bad_collector_urls_are_refused(url):
    with pytest.raises(EdgeError, match="--collector"):
        check_collector_url(url)
