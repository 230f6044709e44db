"""Registry moves of the production loop: promote a challenger, roll back to the previous
champion. Aliases: `champion` (what the line runs), `previous-champion` (for rollback).

MLflow has no compare-and-set on aliases, so a promotion takes a lock file for the model
and re-reads the champion under it: when the champion is no longer the one the challenger
was measured against, nothing is promoted. Two retrains of one line then promote at most one
model; on several machines sharing one MLflow, keep the lock folder on shared storage.
"""

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from pipeline.errors import TrackingError
from pipeline.tracking import CHAMPION

PREVIOUS = "previous-champion"


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    """Version behind `name@alias`, None when the model or the alias does not exist."""
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


@contextmanager
def model_lock(lock_dir: Path, name: str, *, wait: bool = True) -> Iterator[bool]:
    """Hold `<lock_dir>/<name>.lock`; yields False at once when `wait` is off and it is held."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{name}.lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def promote(
    client: MlflowClient, name: str, version: str, expected_champion: str | None, lock_dir: Path
) -> tuple[bool, str]:
    """Make `version` the champion if the champion is still `expected_champion`; the old one
    becomes `previous-champion`. Returns (promoted, what happened)."""
    with model_lock(lock_dir, name):
        current = alias_version(client, name, CHAMPION)
        if current != expected_champion:
            return False, (
                f"champion changed during the retrain (measured against "
                f"v{expected_champion or '-'}, now v{current}); not promoted"
            )
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        if current is not None:
            client.set_registered_model_alias(name, PREVIOUS, current)
            client.set_model_version_tag(name, current, "retired_at", stamp)
        client.set_registered_model_alias(name, CHAMPION, version)
        client.set_model_version_tag(name, version, "promoted_at", stamp)
        kept = f", v{current} kept for rollback" if current else ""
        return True, f"v{version} is champion{kept}"


def rollback(client: MlflowClient, name: str, lock_dir: Path) -> tuple[str, str]:
    """Champion back to `previous-champion`; returns (from version, to version)."""
    with model_lock(lock_dir, name):
        previous = alias_version(client, name, PREVIOUS)
        current = alias_version(client, name, CHAMPION)
        if previous is None:
            raise TrackingError(f"{name}: no previous champion to roll back to")
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        client.set_registered_model_alias(name, CHAMPION, previous)
        client.delete_registered_model_alias(name, PREVIOUS)
        client.set_model_version_tag(name, previous, "promoted_at", stamp)
        if current is not None:
            client.set_model_version_tag(name, current, "rolled_back_at", stamp)
        return current or "-", previous
