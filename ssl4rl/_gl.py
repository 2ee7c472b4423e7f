"""Headless OpenGL backend selection for MuJoCo (EGL first, OSMesa as fallback)."""

from __future__ import annotations

import ctypes.util
import os

_LIBS = {"egl": "EGL", "osmesa": "OSMesa"}


def select_gl_backend() -> str:
    """Set ``MUJOCO_GL``/``PYOPENGL_PLATFORM`` unless the user already chose.

    Must run before ``dm_control`` or ``mujoco`` rendering modules are imported.
    Returns the backend name ('egl', 'osmesa', or whatever the user set).
    """
    chosen = os.environ.get("MUJOCO_GL")
    if not chosen:
        chosen = "egl"
        if ctypes.util.find_library("EGL") is None and ctypes.util.find_library("OSMesa"):
            chosen = "osmesa"
        os.environ["MUJOCO_GL"] = chosen
    if chosen in _LIBS:
        os.environ.setdefault("PYOPENGL_PLATFORM", chosen)
    return chosen


def gl_error_message(exc: BaseException) -> str:
    """One line explaining a failed GL context, naming the fix."""
    backend = os.environ.get("MUJOCO_GL", "?")
    return (
        f"headless rendering failed with MUJOCO_GL={backend} ({type(exc).__name__}: {exc}). "
        "Fix: install Mesa EGL (apt-get install libegl1 libgl1) or OSMesa "
        "(apt-get install libosmesa6, then MUJOCO_GL=osmesa)."
    )
