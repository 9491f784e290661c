"""API keys: ``qe_<8-char id>_<secret>``. Only the SHA-256 of a key is stored; the id finds the
row, so a key can be revoked by its id without ever storing the key itself."""

from __future__ import annotations

import hashlib
import re
import secrets
import string

PREFIX = "qe"
ID_LENGTH = 8
SECRET_BYTES = 32
_ID_ALPHABET = string.ascii_lowercase + string.digits
_KEY_PATTERN = re.compile(rf"^{PREFIX}_([a-z0-9]{{{ID_LENGTH}}})_[A-Za-z0-9_-]{{32,}}$")


def new_api_key() -> tuple[str, str]:
    """A fresh ``(key_id, full_key)``."""
    key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(ID_LENGTH))
    return key_id, f"{PREFIX}_{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"


def hash_key(full_key: str) -> str:
    """What the database keeps: a key has 256 random bits, so a plain SHA-256 is enough."""
    return hashlib.sha256(full_key.encode()).hexdigest()


def key_id_of(full_key: str) -> str | None:
    """The id part of a well-formed key, ``None`` for anything else."""
    match = _KEY_PATTERN.fullmatch(full_key)
    return match.group(1) if match else None
