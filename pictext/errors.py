"""The errors a user can cause and fix: every one is a `PictextError`.

The CLI prints these as one line and exits 2; anything else is a bug in pictext and surfaces with its traceback.
Each also derives from the built-in error it refines (`ValueError`, `FileNotFoundError`), so code written against
those keeps working.
"""

from __future__ import annotations


class PictextError(Exception):
    """Bad input, a missing file or model, a wrong setting: the message says what and how to fix it."""


class UsageError(PictextError, ValueError):
    """An argument or setting out of its range, or options that do not go together."""


class MissingFileError(PictextError, FileNotFoundError):
    """A file or folder the user named does not exist."""


class DatasetError(PictextError, ValueError):
    """A dataset (folder, table, shards) that cannot be trained or evaluated on as given."""


class Cancelled(Exception):
    """A long job was asked to stop (its caller went away): raised by the check a loop calls between its steps."""
