"""User-facing errors: printed as one line by the entry points, never as a traceback."""

from __future__ import annotations


class UserError(ValueError):
    """Bad input from the user (unknown name, bad value, missing or corrupt file...).

    The one exception type ssl4rl's public API raises for bad input; it is a ``ValueError``. The
    message fits on one line and names the value and the fix; entry points print it as
    ``error: <message>`` and exit with status 2.
    """
