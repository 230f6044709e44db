"""Writing into the store so that a crash never leaves a half-written file or link behind:
everything is made under a temporary name and renamed into place (atomic on POSIX)."""

import os
import shutil
import tempfile
from pathlib import Path


def _temporary_beside(dest: Path) -> Path:
    """A free name in the destination's folder, so the final rename stays on one filesystem."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    os.unlink(name)
    return Path(name)


def write_atomic(dest: Path, data: bytes) -> None:
    """Replace `dest` with `data` in one step, flushed to disk first."""
    tmp = _temporary_beside(dest)
    try:
        with open(tmp, "xb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def place_link(target: Path, dest: Path) -> None:
    """Make `dest` a symlink to `target` (absolute), replacing an older one; where the
    filesystem has no symlinks, a copy. The target is only ever read."""
    tmp = _temporary_beside(dest)
    try:
        try:
            os.symlink(os.path.abspath(target), tmp)
        except OSError:
            shutil.copyfile(target, tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
