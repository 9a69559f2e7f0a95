"""Finding image files under folders: hidden entries and excluded names skipped, symlinks followed only while they
stay inside the folders given, each real folder walked once (so loops end), names that SQLite cannot store
told apart."""

from __future__ import annotations

import contextlib
import fnmatch
import os
from collections.abc import Sequence
from pathlib import Path

from pictext.images.decode import IMAGE_SUFFIXES

DEFAULT_EXCLUDE = ("@eaDir", "node_modules", "__pycache__", "$RECYCLE.BIN")


def scan(
    roots: Sequence[Path], exclude: Sequence[str] = DEFAULT_EXCLUDE, skip: Sequence[str | os.PathLike] = ()
) -> dict[str, os.stat_result]:
    """Image files under `roots` (folders, or files given by name) by absolute path.

    Symlinks are followed only where they resolve inside a root, and each real folder is walked once; the
    folders in `skip` (an index's own folder, with its thumbnails) are never entered.
    """
    real_roots = [os.path.realpath(r) for r in roots]
    found: dict[str, os.stat_result] = {}
    visited: set[str] = {os.path.realpath(p) for p in skip}
    for root in roots:
        if not root.is_dir():
            with contextlib.suppress(OSError):  # gone since it was given
                found[str(root)] = os.stat(root)
            continue
        for folder, dirs, files in os.walk(root, followlinks=True):
            real = os.path.realpath(folder)
            if real in visited or not inside(real, real_roots):
                dirs[:] = []
                continue
            visited.add(real)
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not _excluded(d, exclude))
            for name in sorted(files):
                if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                path = os.path.join(folder, name)
                try:
                    if inside(os.path.realpath(path), real_roots):
                        found[path] = os.stat(path)
                except OSError:  # a dangling symlink, or gone already
                    continue
    return found


def inside(real: str, real_roots: Sequence[str]) -> bool:
    """Whether the resolved path `real` is one of `real_roots` or lies under one."""
    return any(real == r or real.startswith(r.rstrip("/") + "/") for r in real_roots)


def _excluded(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(name, p) for p in patterns)


def storable(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes in the name, held by Python as surrogate escapes
        return False
    return True


def printable(path: str) -> str:
    """A path as text that any terminal and JSON can carry: undecodable bytes shown as \\xNN."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")
