"""API key format and hashing, no I/O: ``aether_<public id>_<secret>``, stored only as a
bcrypt hash (cost 12) of the whole string, found by its public id.
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass

import bcrypt

KEY_PREFIX = "aether_"
SCOPES = frozenset({"ingest", "read", "admin"})
BCRYPT_ROUNDS = 12
"""bcrypt cost factor: 2**12 rounds, ~0.2 s per check on a server core. Never lower."""

PUBLIC_ID_LENGTH = 12  # 62 bits of [a-z0-9]: unique without a global unique index
SECRET_BYTES = 32  # 256 bits of entropy, 43 urlsafe characters
_ALPHABET = string.ascii_lowercase + string.digits
_KEY = re.compile(r"^aether_([a-z0-9]{8,32})_([A-Za-z0-9_-]{20,64})$")


@dataclass(frozen=True, slots=True)
class ParsedKey:
    public_id: str
    secret: str


def new_public_id() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(PUBLIC_ID_LENGTH))


def format_key(public_id: str, secret: str) -> str:
    return f"{KEY_PREFIX}{public_id}_{secret}"


def new_key() -> tuple[str, str]:
    """A fresh ``(public_id, full key)``. The full key is 63 bytes, under bcrypt's 72."""
    public_id = new_public_id()
    key = format_key(public_id, secrets.token_urlsafe(SECRET_BYTES))
    assert len(key.encode()) <= 72, "bcrypt only reads 72 bytes"
    return public_id, key


def parse_key(key: str) -> ParsedKey | None:
    """The parts of a well-formed key, or None (so malformed input costs no bcrypt)."""
    match = _KEY.match(key)
    if match is None:
        return None
    return ParsedKey(public_id=match.group(1), secret=match.group(2))


def hash_key(key: str, *, rounds: int = BCRYPT_ROUNDS) -> str:
    """bcrypt hash of the whole key. Blocking and slow by design: call it in a thread."""
    if rounds < BCRYPT_ROUNDS:
        raise ValueError(f"bcrypt cost must be at least {BCRYPT_ROUNDS}, got {rounds}")
    return bcrypt.hashpw(key.encode(), bcrypt.gensalt(rounds=rounds)).decode("ascii")


def check_key(key: str, key_hash: str) -> bool:
    """bcrypt's own comparison (constant time in the hash). Blocking: call it in a thread."""
    try:
        return bcrypt.checkpw(key.encode(), key_hash.encode("ascii"))
    except ValueError:  # a corrupt stored hash must read as "no match", not crash auth
        return False


def normalize_scopes(scopes: object) -> tuple[str, ...]:
    """Validated, de-duplicated scopes in a stable order."""
    if isinstance(scopes, str):
        scopes = [scopes]
    if not isinstance(scopes, (list, tuple, set, frozenset)):
        raise TypeError("scopes must be a collection of strings")
    wanted = {str(s) for s in scopes}
    unknown = wanted - SCOPES
    if unknown:
        raise ValueError(f"unknown scopes {sorted(unknown)}; allowed: {sorted(SCOPES)}")
    if not wanted:
        raise ValueError("a key needs at least one scope")
    return tuple(s for s in ("ingest", "read", "admin") if s in wanted)
