"""User-facing errors: printed as one line by the entry points, never as a traceback."""

from __future__ import annotations


class UserError(ValueError):
    """Bad input from the user (unknown name, bad value, missing or corrupt file...).

    The one exception type ssl4rl's public API raises for bad input; it is a ``ValueError``. The
    message fits on one line and names the value and the fix; entry points print it as
    ``error: <message>`` and exit with status 2.
    """


def os_error_message(e: OSError) -> str | None:
    """One line naming the fix for an OS fault at a path the user chose (read-only, full or forbidden disk);
    None for other OS errors."""
    import errno

    where = e.filename or "the output folder"
    fixes = {
        errno.EROFS: "is on a read-only file system; choose an out= on a writable disk",
        errno.ENOSPC: "cannot be written: no space left on the device; free space or choose an out= on another disk "
                      "(a rerun with the same out= resumes where a checkpoint exists)",
        errno.EDQUOT: "cannot be written: disk quota exceeded; free space or choose an out= on another disk",
        errno.EACCES: "is not accessible: permission denied; fix its permissions or choose an out= you can write to",
        errno.EPERM: "is not accessible: operation not permitted; fix its permissions or choose an out= you can write to",
    }
    fix = fixes.get(e.errno)
    return None if fix is None else f"{where} {fix}"
