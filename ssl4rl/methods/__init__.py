"""Self-supervised methods, one short file each over ``ssl4rl.methods.base.Method``.

Every module in this package that defines a ``Method`` subclass with a ``name`` is registered
automatically: adding a method is adding a file.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil

from ssl4rl.encoders import Encoder
from ssl4rl.errors import UserError
from ssl4rl.methods.base import Batch, Method, MethodConfig, MethodContext

METHODS: dict[str, type[Method]] = {}

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name == "base":
        continue
    _module = importlib.import_module(f"{__name__}.{_info.name}")
    for _obj in vars(_module).values():
        if inspect.isclass(_obj) and issubclass(_obj, Method) and _obj.__module__ == _module.__name__ and hasattr(_obj, "name"):
            METHODS[_obj.name] = _obj


def method_class(name: str) -> type[Method]:
    """The registered method called ``name`` (one-line UserError listing valid names otherwise)."""
    if name not in METHODS:
        raise UserError(f"unknown method '{name}'; valid names: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def build_method(cfg: MethodConfig, encoder: Encoder, ctx: MethodContext | None = None) -> Method:
    """Wrap ``encoder`` in the method named by ``cfg.name``, checking the architecture it needs."""
    cls = method_class(cfg.name)
    if cls.needs_arch and encoder.arch not in cls.needs_arch:
        raise UserError(
            f"method={cfg.name} needs a {' or '.join(cls.needs_arch)} backbone, got '{encoder.arch}'; "
            f"choose e.g. backbone=vit_tiny"
        )
    if not isinstance(cfg, cls.Config):
        raise UserError(f"method={cfg.name} got a {type(cfg).__name__}; expected {cls.Config.__name__}")
    return cls(encoder, cfg, ctx or MethodContext())


def default_config(name: str, **overrides: object) -> MethodConfig:
    """The named method's recipe, with keyword overrides (for use without Hydra)."""
    cls = method_class(name)
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise UserError(f"unknown option(s) {', '.join(unknown)} for method={name}; valid: {', '.join(sorted(fields))}")
    return cls.Config(name=name, **overrides)  # type: ignore[arg-type]


__all__ = ["METHODS", "Batch", "Method", "MethodConfig", "MethodContext", "build_method", "default_config", "method_class"]
