"""Headless OpenGL backend selection for MuJoCo (EGL first, OSMesa as fallback), and GL faults as one line.

``MUJOCO_GL`` values: ``egl`` and ``osmesa`` render headless (they need libEGL / libOSMesa); ``glfw``
(or its alias ``glx``) opens an X display (needs ``DISPLAY``); ``disabled`` switches rendering off (state
observations still work). Anything else, a missing library or a missing display is refused with one
line when an env is made, before dm_control is imported (``gl_guard``).
"""

from __future__ import annotations

import ctypes.util
import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager

from ssl4rl.errors import UserError

_LIBS = {"egl": ("EGL", "apt-get install libegl1"), "osmesa": ("OSMesa", "apt-get install libosmesa6")}
_X11 = ("glfw", "on", "enable", "enabled", "true", "1")  # dm_control's names for the windowed backend
_OFF = ("off", "disable", "disabled", "false", "0")
_asked = ""  # MUJOCO_GL as the user spelled it ('' when ssl4rl chose)


@functools.cache
def _has_lib(name: str) -> bool:
    return ctypes.util.find_library(name) is not None


def select_gl_backend() -> str:
    """Set ``MUJOCO_GL``/``PYOPENGL_PLATFORM`` unless the user already chose.

    Must run before ``dm_control`` or ``mujoco`` rendering modules are imported.
    ``glx`` becomes ``glfw`` (dm_control's name for it). Returns the backend name.
    """
    global _asked
    _asked = os.environ.get("MUJOCO_GL", "").strip()
    chosen = {"glx": "glfw"}.get(_asked.lower(), _asked.lower())
    if not chosen:
        chosen = "osmesa" if not _has_lib("EGL") and _has_lib("OSMesa") else "egl"
    if chosen in (*_LIBS, *_X11, *_OFF):
        os.environ["MUJOCO_GL"] = chosen
    if chosen in _LIBS:
        os.environ.setdefault("PYOPENGL_PLATFORM", chosen)
    return chosen


def _installed() -> str | None:
    """The first headless backend whose library is installed here, or None."""
    return next((backend for backend, (lib, _) in _LIBS.items() if _has_lib(lib)), None)


def _use_instead() -> str:
    """What to set on this machine instead."""
    backend = _installed()
    if backend is None:
        return f"install a headless OpenGL library ({_LIBS['egl'][1]}, or {_LIBS['osmesa'][1]})"
    return f"use MUJOCO_GL={backend}" + (" (or unset MUJOCO_GL)" if backend == "egl" else "")


def gl_problem(render: bool) -> str | None:
    """Why ``MUJOCO_GL`` cannot work here (one line naming the fix), or None.

    ``render``: frames will be drawn (``disabled`` and a missing X display only matter then).
    """
    value = os.environ.get("MUJOCO_GL", "")
    shown = f"MUJOCO_GL={_asked or value}"
    if value in _LIBS:
        lib, install = _LIBS[value]
        if _has_lib(lib):
            return None
        if not _asked:
            return f"no headless OpenGL library found (libEGL, libOSMesa); {_use_instead()}"
        alt = f", or {_use_instead()}" if _installed() else ""
        return f"{shown} needs lib{lib}, which is not installed: {install}{alt}"
    if value in _X11:
        if render and not os.environ.get("DISPLAY"):
            return f"{shown} opens an X display, but DISPLAY is unset (no X server); headless, {_use_instead()}"
        return None
    if value in _OFF:
        if render:
            return f"{shown} switches rendering off, but frames are needed; {_use_instead()}"
        return None
    return (f"{shown} is not a rendering backend; valid: egl, osmesa (headless), glfw or glx (with an X display), "
            f"disabled (no frames); here {_use_instead()}")


def gl_error_message(exc: BaseException) -> str:
    """One line explaining a failed GL context, naming the fix."""
    backend = os.environ.get("MUJOCO_GL", "?")
    reason = (str(exc).strip().splitlines() or [""])[0]
    return (
        f"headless rendering failed with MUJOCO_GL={backend} ({type(exc).__name__}: {reason}). "
        f"Fix: install Mesa EGL ({_LIBS['egl'][1]} libgl1) or OSMesa ({_LIBS['osmesa'][1]}, then MUJOCO_GL=osmesa)."
    )


@contextmanager
def gl_guard(render: bool) -> Iterator[None]:
    """Refuse an unusable ``MUJOCO_GL`` in one line (``gl_problem``), then run the block (importing
    dm_control, creating a GL context) turning any failure in it into one line too."""
    problem = gl_problem(render)
    if problem:
        raise UserError(problem)
    try:
        yield
    except UserError:
        raise
    except Exception as e:
        raise UserError(gl_error_message(e)) from None
