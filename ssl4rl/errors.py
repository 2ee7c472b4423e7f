"""User-facing errors: printed as one line by the entry points, never as a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user (unknown name, missing file, corrupt data...).

    The message must fit on one line and name the fix.
    """
