"""Which attributes are content (prompts, completions) and which may carry credentials.

Shared by the SDK (which drops them before shipping) and the receiver (which drops them
before storing, for clients that did not): one definition, two places of enforcement.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from aethermind.semconv import attributes as a

KEEP: Final = 0
CONTENT: Final = 1
CREDENTIAL: Final = 2
_MAX_REMEMBERED = 16_384


def _classify(key: str) -> int:
    if key in a.CREDENTIAL_KEYS:
        return CREDENTIAL
    lowered = key.lower()
    if any(fragment in lowered for fragment in a.CREDENTIAL_KEY_FRAGMENTS):
        return CREDENTIAL
    if key in a.CONTENT_KEYS or key.startswith(a.CONTENT_KEY_PREFIXES):
        return CONTENT
    return KEEP


class _KeyClasses(dict[str, int]):
    """key -> KEEP/CONTENT/CREDENTIAL, computed once per distinct key.

    A dict with ``__missing__`` rather than ``lru_cache``: the lookup stays a C-level
    ``dict.__getitem__`` on the hot path (one per attribute of every span). Bounded: cleared
    when full, since attribute keys from clients are unbounded (``gen_ai.prompt.N.content``).
    """

    def __missing__(self, key: str) -> int:
        if len(self) >= _MAX_REMEMBERED:
            self.clear()
        value = self[key] = _classify(key)
        return value


_classes = _KeyClasses()


def key_class(key: str) -> int:
    return _classes[key]


def is_content_key(key: str) -> bool:
    """Prompt, completion, message or tool-argument text, in any convention we know."""
    return _classes[key] == CONTENT


def is_credential_key(key: str) -> bool:
    """Attributes that can hold an API key or a password: never shipped, never stored."""
    return _classes[key] == CREDENTIAL


def shippable_attributes(attributes: Mapping[str, Any], *, capture_content: bool) -> dict[str, Any]:
    """The attributes minus credentials always, minus content unless the owner opted in."""
    classes = _classes
    limit = CONTENT if capture_content else KEEP
    return {key: value for key, value in attributes.items() if classes[key] <= limit}


def has_unshippable(attributes: Mapping[str, Any], *, capture_content: bool) -> bool:
    """Whether ``shippable_attributes`` would remove anything (cheaper than building it)."""
    classes = _classes
    limit = CONTENT if capture_content else KEEP
    for key in attributes:  # noqa: SIM110  (a plain loop: any() over a generator is slower)
        if classes[key] > limit:
            return True
    return False
