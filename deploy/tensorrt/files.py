"""Atomic file writes: a crash leaves the old file or the new one, never half of either."""

import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, data: bytes | memoryview) -> None:
    """Write to a temporary file beside `path`, flush it to disk, then rename it over `path`.
    The file keeps the permissions it had (mkstemp's 0600 would hide it from the edge service's
    user); a new file gets 0644."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
