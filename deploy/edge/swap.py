"""Hot swap of the model bundle without dropping a frame.

A deployer unpacks a new version next to the old one and repoints the `--bundle` symlink
atomically (or rewrites bundle.json in place). A watcher thread notices, and off the frame loop
loads the new bundle, verifies its hashes, builds the backend and runs one warm-up inference.
Only then does it replace the slot's reference, which the frame loop reads once per frame: the
frame in progress finishes on the old model, the next one runs on the new. A refused bundle is
logged and reported in /healthz while the old model keeps running.
"""

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from data_contracts.bundle import EdgeBundle, load_edge_bundle
from deploy.edge.backends import Backend, select_backend, warm_up
from deploy.edge.frames import Preprocessor
from deploy.edge.stats import Stats

log = logging.getLogger(__name__)

Fingerprint = tuple[str, tuple[tuple[str, int, int], ...]]


@dataclass(frozen=True)
class ActiveModel:
    """A verified, warmed-up bundle: everything the frame loop needs to score a frame."""

    folder: Path
    manifest: EdgeBundle
    backend: Backend
    preprocessor: Preprocessor


def load_model(bundle: Path, preference: str, threads: int | None) -> ActiveModel:
    """Resolve the symlink once, so verification and loading see the same version folder.
    Raises BundleRefused or EdgeError."""
    folder = Path(bundle).resolve()
    manifest = load_edge_bundle(folder)
    backend = select_backend(folder, manifest, preference, threads)
    warm_up(backend, manifest)
    return ActiveModel(folder, manifest, backend, Preprocessor(manifest.input))


def fingerprint(bundle: Path) -> Fingerprint:
    """Where the link points and the size and mtime of each file there: any deploy changes it."""
    folder = os.path.realpath(bundle)
    files = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_file():
                info = entry.stat()
                files.append((entry.name, info.st_size, info.st_mtime_ns))
    return folder, tuple(sorted(files))


class ModelSlot:
    """The one reference the frame loop reads; replaced whole, never mutated."""

    def __init__(self, model: ActiveModel) -> None:
        self.current = model


class BundleWatcher(threading.Thread):
    """Polls `bundle` every `interval_s` and swaps the slot's model when it changed."""

    def __init__(
        self,
        bundle: Path,
        seen: Fingerprint,
        slot: ModelSlot,
        load: Callable[[Path], ActiveModel],
        stats: Stats,
        interval_s: float,
    ) -> None:
        super().__init__(name="edge-bundle-watcher", daemon=True)
        self.bundle, self.seen, self.slot, self.load = Path(bundle), seen, slot, load
        self.stats, self.interval_s = stats, interval_s
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.interval_s):
            try:
                now = fingerprint(self.bundle)
            except OSError:  # link being repointed by a non-atomic tool, folder being renamed
                continue
            if now != self.seen:
                self.seen = now
                self._try_swap()

    def _try_swap(self) -> None:
        old = self.slot.current.manifest
        try:
            new = self.load(self.bundle)
        except Exception as exc:  # whatever the new bundle does wrong, the old one keeps running
            why = str(exc) or type(exc).__name__
            self.stats.swap_refused(why)
            log.error(
                "new bundle at %s refused, keeping %s version %s: %s",
                self.bundle,
                old.model_name,
                old.model_version,
                why,
            )
            return
        self.slot.current = new
        m = new.manifest
        self.stats.swapped(m.model_name, m.model_version, new.backend.name)
        log.info(
            "swapped %s version %s -> %s version %s (%s, %s)",
            old.model_name,
            old.model_version,
            m.model_name,
            m.model_version,
            new.backend.name,
            new.folder,
        )

    def stop(self) -> None:
        self._halt.set()
        self.join()
