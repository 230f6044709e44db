"""Posting spooled records to the collector from a background thread, standard library only.

Batches go out oldest first as a JSON array with an Idempotency-Key; spool files are deleted
only after a 2xx. A failure is retried forever with capped backoff (a collector that is down
for an hour must get that hour's records, in order, once it is back).
"""

import http.client
import logging
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from deploy.edge.errors import EdgeError
from deploy.edge.spool import Batch, Spool
from deploy.edge.stats import Stats

log = logging.getLogger(__name__)

BATCH_RECORDS = 100
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.2, 5.0
POST_TIMEOUT_S = 10.0


def check_collector_url(url: str) -> str:
    """The URL if it can be posted to; EdgeError naming the problem otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EdgeError(f"--collector {url}: not an http:// or https:// URL with a host")
    try:
        _ = parts.port  # raises on a port that is not a number
    except ValueError as exc:
        raise EdgeError(f"--collector {url}: {exc}") from exc
    return url


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """urllib would follow a redirect of a POST as a GET without the body and report success;
    a redirect is a failure here (the records were not delivered)."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


class Sender(threading.Thread):
    """Drains the spool into the collector until stopped."""

    def __init__(
        self, spool: Spool, url: str, stats: Stats, batch_records: int = BATCH_RECORDS
    ) -> None:
        super().__init__(name="edge-sender", daemon=True)
        self.spool, self.url, self.stats = spool, url, stats
        self.batch_records = batch_records
        self._halt = threading.Event()

    def run(self) -> None:
        wait, failing = BACKOFF_FIRST_S, False
        while not self._halt.is_set():
            self.spool.arrived.clear()
            batch = self.spool.next_batch(self.batch_records)
            if batch is None:
                self.spool.arrived.wait(0.5)
                continue
            problem = self._post(batch)
            if problem is None:
                self.spool.delivered(batch)
                self.stats.posted(len(batch.seqs))
                if failing:
                    log.info("collector %s reachable again", self.url)
                wait, failing = BACKOFF_FIRST_S, False
                continue
            self.stats.post_failed(problem)
            if not failing:
                log.warning(
                    "collector %s: %s; records stay in the spool, retrying", self.url, problem
                )
            failing = True
            self._halt.wait(wait)
            wait = min(wait * 2, BACKOFF_MAX_S)

    def _post(self, batch: Batch) -> str | None:
        """None when the collector took the batch, else what went wrong."""
        request = urllib.request.Request(
            self.url,
            data=batch.body,
            method="POST",
            headers={"Content-Type": "application/json", "Idempotency-Key": batch.key},
        )
        try:
            with _OPENER.open(request, timeout=POST_TIMEOUT_S) as response:
                response.read()
                status = response.status
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code} {exc.reason}"
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            return f"unreachable ({getattr(exc, 'reason', exc)})"
        return None if 200 <= status < 300 else f"HTTP {status}"

    def drain(self, timeout_s: float, stop: threading.Event) -> int:
        """Wait up to `timeout_s` (or until `stop`) for the spool to empty; what is left."""
        deadline = time.monotonic() + timeout_s
        while self.spool.depth() and time.monotonic() < deadline and not stop.wait(0.05):
            pass
        return self.spool.depth()

    def stop(self) -> None:
        self._halt.set()
        self.spool.arrived.set()
        self.join(timeout=POST_TIMEOUT_S + 1)
