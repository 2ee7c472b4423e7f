"""Self-supervised methods, one short file each, over ``ssl4rl.ssl.base.SSLMethod``."""

from __future__ import annotations

from typing import Any

from ssl4rl.encoders import Encoder
from ssl4rl.errors import UserError
from ssl4rl.ssl.base import SSLMethod
from ssl4rl.ssl.mae import MAE

METHODS: dict[str, type[SSLMethod]] = {m.name: m for m in (MAE,)}


def build_method(name: str, encoder: Encoder, **kwargs: Any) -> SSLMethod:
    """Wrap ``encoder`` in the named method, checking the architecture it needs."""
    if name not in METHODS:
        raise UserError(f"unknown method '{name}'; valid names: {', '.join(METHODS)}")
    cls = METHODS[name]
    if cls.needs_arch and encoder.arch != cls.needs_arch:
        raise UserError(f"method={name} needs a '{cls.needs_arch}' backbone, got '{encoder.arch}'")
    try:
        return cls(encoder, **kwargs)
    except TypeError as e:
        raise UserError(f"bad option for method={name}: {e}") from None


__all__ = ["MAE", "METHODS", "SSLMethod", "build_method"]
