"""Which attributes are content (prompts, completions) and which may carry credentials.

Shared by the SDK (which drops them before shipping) and the receiver (which drops them
before storing, for clients that did not): one definition, two places of enforcement.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from aethermind.semconv import attributes as a


@functools.lru_cache(maxsize=8192)
def is_content_key(key: str) -> bool:
    """Prompt, completion, message or tool-argument text, in any convention we know."""
    return key in a.CONTENT_KEYS or key.startswith(a.CONTENT_KEY_PREFIXES)


@functools.lru_cache(maxsize=8192)
def is_credential_key(key: str) -> bool:
    """Attributes that can hold an API key or a password: never shipped, never stored."""
    if key in a.CREDENTIAL_KEYS:
        return True
    lowered = key.lower()
    return any(fragment in lowered for fragment in a.CREDENTIAL_KEY_FRAGMENTS)


def shippable_attributes(attributes: Mapping[str, Any], *, capture_content: bool) -> dict[str, Any]:
    """The attributes minus credentials always, minus content unless the owner opted in."""
    return {
        key: value
        for key, value in attributes.items()
        if not is_credential_key(key) and (capture_content or not is_content_key(key))
    }
