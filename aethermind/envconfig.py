"""Settings from the environment, one way for every component: an argument wins over the
environment, the environment over the default, and a bad value is a ``SettingError`` that
names the variable (the SDK catches it, logs it and keeps the default: it never raises into
the host application over a setting).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TypeVar

T = TypeVar("T")

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class SettingError(ValueError):
    """A setting has a bad value; the message names the setting and what it takes."""


def env_setting(env: Mapping[str, str], name: str, parse: Callable[[str], T]) -> T | None:
    """The value of ``name`` in ``env`` parsed by ``parse``; None when unset or blank."""
    raw = env.get(name)
    if raw is None or not raw.strip():
        return None
    try:
        return parse(raw.strip())
    except ValueError as exc:
        raise SettingError(f"{name}={raw.strip()!r}: {exc}") from None


def parse_bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("expected true or false (1/0, yes/no, on/off)")


def parse_int(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError("expected a whole number") from None


def parse_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("expected a number") from None
    if not math.isfinite(value):
        raise ValueError("expected a finite number")
    return value


def parse_text(raw: str) -> str:
    return raw


def parse_list(raw: str) -> tuple[str, ...]:
    """A comma-separated list, blanks dropped."""
    return tuple(item.strip() for item in raw.split(",") if item.strip())
