"""Declared ranges and choices of typed config fields, and the one validator that reads them.

Each field of a typed config (entry points, methods, augmentations, backbones, agents, world models,
planners) says what values it takes, beside its default::

    batch_size: int = setting(128, ge=1)
    mask_ratio: float = setting(0.75, gt=0, lt=1)
    optimizer: str = setting("adamw", choices=("adamw", "sgd", "lars"))

A number without a declaration must be finite and at least 0. ``validate(cfg)`` walks a config
(a dataclass, nested dataclasses included), refuses the first value out of its range with one
``UserError`` line naming the key, the value and what it must be, then runs the config's own
cross-field ``check()`` if it has one. Every path validates the same way: the command line (any
override, ``-m`` sweeps included) and the Python API.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any

from ssl4rl.errors import UserError

MAX_RUN_STEPS = 10**10  # environment or optimizer steps of one run
SEED_MAX = 2**31 - 1  # seeds are offset per episode and per stream; keep every derived seed inside numpy's 32 bits


@dataclasses.dataclass(frozen=True)
class Rule:
    """What one field accepts. Bounds apply to numbers and to every number of a list or tuple;
    ``choices`` (a tuple, or a callable returning the valid names) to strings; ``check(value)`` returns a
    problem (``"must be ..."``) or None; ``none`` allows None."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[str, ...] | Callable[[], Iterable[str]] | None = None
    check: Callable[[Any], str | None] | None = None
    none: bool = False

    def problem(self, value: Any) -> str | None:
        """None when ``value`` is acceptable, else what it must be (``check`` sees the whole value)."""
        if value is None:
            return None if self.none else "must be set"
        items = value if isinstance(value, (list, tuple)) else [value]
        for item in items:
            p = self._item_problem(item)
            if p:
                return f"every item {p}" if items is value else p
        return self.check(value) if self.check else None

    def _item_problem(self, value: Any) -> str | None:
        """The bounds and choices of one number or string."""
        if isinstance(value, bool):
            return None
        if isinstance(value, (int, float)):
            if not math.isfinite(value):
                return "must be a finite number"
            if ((self.ge is not None and value < self.ge) or (self.gt is not None and value <= self.gt)
                    or (self.le is not None and value > self.le) or (self.lt is not None and value >= self.lt)):
                return f"must be {self.describe()}"
        if isinstance(value, str) and self.choices is not None:
            valid = tuple(self.choices() if callable(self.choices) else self.choices)
            if value not in valid:
                return f"must be one of: {', '.join(map(str, valid))}"
        return None

    def describe(self) -> str:
        """The bounds in words, e.g. '> 0 and < 1'."""
        parts = [f"{w} {_num(b)}" for b, w in ((self.ge, ">="), (self.gt, ">"), (self.le, "<="), (self.lt, "<"))
                 if b is not None]
        return " and ".join(parts) if parts else "a finite number"


DEFAULT_RULE = Rule(ge=0)  # an undeclared number: finite and >= 0


def _num(b: float) -> str:
    return str(int(b)) if float(b).is_integer() and abs(b) < 1e15 else f"{b:g}"


def setting(default: Any = dataclasses.MISSING, *, factory: Callable[[], Any] | None = None, ge: float | None = None,
            gt: float | None = None, le: float | None = None, lt: float | None = None,
            choices: tuple[str, ...] | Callable[[], Iterable[str]] | None = None,
            check: Callable[[Any], str | None] | None = None) -> Any:
    """A dataclass field with its declared range or choices (None is allowed when the default is None)."""
    rule = Rule(ge=ge, gt=gt, le=le, lt=lt, choices=choices, check=check, none=default is None)
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"rule": rule})
    return dataclasses.field(default=default, metadata={"rule": rule})


def seed_field(default: int = 0) -> Any:
    """A seed: an integer in 0 .. SEED_MAX."""
    return setting(default, ge=0, le=SEED_MAX)


def _device(value: str) -> str | None:
    import re

    return None if re.fullmatch(r"auto|cpu|cuda(:\d+)?", value) else "must be one of: auto, cpu, cuda, cuda:N"


def device_field() -> Any:
    """``device=auto|cpu|cuda|cuda:N``."""
    return setting("auto", check=_device)


def rule_of(f: dataclasses.Field) -> Rule:
    """The rule declared on field ``f`` (the default rule when none is)."""
    return f.metadata.get("rule", DEFAULT_RULE)


_SCALARS = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _allows_none(hint: Any) -> bool:
    origin = typing.get_origin(hint)
    return (origin is typing.Union or origin is types.UnionType) and type(None) in typing.get_args(hint)


def _type_problem(value: Any, hint: Any) -> str | None:
    """A wrong Python type for a plain scalar field (the API path; Hydra already types the command line)."""
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None and len(args) < len(typing.get_args(hint)):
            return None
        hint = args[0] if len(args) == 1 else Any
    if hint in _SCALARS and value is not None:
        ok = isinstance(value, bool) if hint is bool else (
            isinstance(value, (int, float)) and not isinstance(value, bool) if hint is float else
            isinstance(value, int) and not isinstance(value, bool) if hint is int else isinstance(value, str))
        if not ok:
            return f"must be {_SCALARS[hint]}"
    if typing.get_origin(hint) in (list, tuple) and value is not None and not isinstance(value, (list, tuple)):
        return "must be a list, e.g. [1,2]"
    return None


def validate(cfg: Any, prefix: str = "") -> None:
    """Refuse, with one UserError line, the first field of ``cfg`` (a dataclass) outside its declared range, in
    nested configs too; then run ``cfg.check()`` (cross-field rules) when the config defines one."""
    if not dataclasses.is_dataclass(cfg):
        return
    try:
        hints = typing.get_type_hints(type(cfg))
    except (NameError, TypeError):
        hints = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        key = prefix + f.name
        if dataclasses.is_dataclass(value):
            validate(value, key + ".")
            continue
        hint = hints.get(f.name, Any)
        if value is None and (hint is Any or _allows_none(hint) or rule_of(f).none):
            continue
        problem = _type_problem(value, hint)
        if problem:
            raise UserError(f"{key}={value!r}: {problem}"[:300])
        problem = rule_of(f).problem(value)
        if problem:
            raise UserError(f"{key}={_show(value)}: {problem}")
    check = getattr(cfg, "check", None)
    if callable(check):
        check()


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value if value else "''"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_show(v) for v in value) + "]"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def field_names(cls: type) -> list[str]:
    """The fields of a config class, in order."""
    return [f.name for f in dataclasses.fields(cls)]


def build(cls: type, values: dict[str, Any], where: str = "") -> Any:
    """``cls(**values)`` validated; an unknown key is one UserError line listing the valid ones."""
    names = field_names(cls)
    unknown = [k for k in values if k not in names]
    if unknown:
        raise UserError(f"unknown setting '{where}{unknown[0]}'; valid: {', '.join(names)}")
    cfg = cls(**values)
    validate(cfg, where)
    return cfg
