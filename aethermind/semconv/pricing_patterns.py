"""Model-name patterns of price overrides and service-tier rules: the grammar and the
matcher, linear in the name whatever the pattern. Pure."""

from __future__ import annotations

MAX_PATTERN_STARS = 2
"""Wildcards a model pattern may hold: exact names, ``prefix*``, ``*suffix``, ``*part*``."""
MAX_PATTERN_LENGTH = 200


def check_model_pattern(pattern: str) -> str:
    """``pattern`` if it is one the matcher takes, else a ``ValueError`` saying why.

    The grammar is what price overrides need (exact names, prefixes, suffixes, a part in the
    middle) and nothing that costs more than a scan of the name: ``*`` only, at most
    ``MAX_PATTERN_STARS`` of them; no ``?`` or ``[...]``."""
    if not pattern or len(pattern) > MAX_PATTERN_LENGTH:
        raise ValueError(f"must be 1 to {MAX_PATTERN_LENGTH} characters")
    if "?" in pattern or "[" in pattern or "]" in pattern:
        raise ValueError("may use only * as a wildcard (no ? or [...])")
    if pattern.count("*") > MAX_PATTERN_STARS:
        raise ValueError(f"may hold at most {MAX_PATTERN_STARS} * wildcards")
    return pattern


def pattern_matches(pattern: str, name: str) -> bool:
    """Whether ``name`` matches ``pattern`` (``*`` = any run of characters), case-blind, in
    time linear in the name: each piece between wildcards is found once, left to right."""
    return pieces_match(tuple(pattern.lower().split("*")), name.lower())


def pieces_match(pieces: tuple[str, ...], name: str) -> bool:
    """``pattern_matches`` for a pattern already split at its ``*`` and a name already in
    lower case, both lowered once rather than per comparison."""
    if len(pieces) == 1:
        return name == pieces[0]
    first, *middle, last = pieces
    if len(name) < len(first) + len(last) or not name.startswith(first) or not name.endswith(last):
        return False
    position, end = len(first), len(name) - len(last)
    for piece in middle:
        found = name.find(piece, position, end)
        if found < 0:
            return False
        position = found + len(piece)
    return True
