"""ssl4rl: self-supervised visual representations for reinforcement learning.

Importing the package prepares headless rendering: it picks a MuJoCo GL backend
(EGL, else OSMesa) before dm_control or mujoco are imported, and imports triton
early, because importing triton *after* a Mesa GL context exists crashes the
process (triton's LLVM clashes with llvmpipe's).
"""

from __future__ import annotations

import importlib.util

from ssl4rl._gl import select_gl_backend

select_gl_backend()

if importlib.util.find_spec("triton") is not None:  # CPU-only torch builds have no triton
    import triton  # noqa: F401  (before any GL context exists; see module docstring)

__version__ = "0.1.0"

from ssl4rl.errors import UserError  # noqa: E402

__all__ = ["UserError", "__version__"]
