"""Where pictext keeps its files, and how it writes them: atomically, so a reader never sees half a file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pictext.errors import PictextError


class WriteError(PictextError, OSError):
    """A file could not be written (a full disk, a read-only folder); nothing was replaced."""


def home() -> Path:
    """The cache folder: $PICTEXT_HOME, default ~/.cache/pictext."""
    return Path(os.environ.get("PICTEXT_HOME") or Path.home() / ".cache" / "pictext").expanduser()


def atomic_write(path: str | os.PathLike, write: Callable[[str], Any]) -> Path:
    """Call write(tmp_path), fsync, then rename onto `path`: a reader never sees a half-written file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise WriteError(f"cannot write {path}: {e.strerror or e} (a read-only or missing folder?)") from e
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a saved file gets the usual permissions
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise WriteError(
                f"cannot write {path}: {e.strerror or e} (disk full? read-only?); nothing was replaced"
            ) from e
        raise
    return path
