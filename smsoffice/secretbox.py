"""Symmetric encryption of secrets at rest (provider credentials, runtime
tokens in the cache), with the ``cryptography`` package's Fernet.

Keys come from ``settings.CREDENTIALS_KEYS`` (the environment variable of
the same name, comma-separated Fernet keys). The first key encrypts; every
key decrypts (``MultiFernet``), so a key is rotated by putting a new one
first, running ``manage.py credentials_rotate`` (which re-encrypts every
stored value with it) and then removing the old one. Make a key with
``python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"``.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

__all__ = ["InvalidToken", "decrypt_text", "encrypt_text", "looks_encrypted", "rotate_text"]

#: Every Fernet token starts with these characters (version byte 0x80).
TOKEN_PREFIX = "gAAAAA"


@lru_cache(maxsize=4)
def _box(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in keys])


def box() -> MultiFernet:
    """The MultiFernet of the configured keys (rebuilt when they change)."""
    return _box(tuple(settings.CREDENTIALS_KEYS))


def encrypt_text(text: str) -> str:
    """``text`` encrypted (and authenticated) with the first key."""
    return box().encrypt(text.encode("utf-8")).decode("ascii")


def decrypt_text(token: str) -> str:
    """The text of ``token``; raises ``InvalidToken`` when no configured key
    opens it (a wrong or removed key) or it was tampered with."""
    return box().decrypt(token.encode("ascii")).decode("utf-8")


def rotate_text(token: str) -> str:
    """``token`` re-encrypted with the first key (any configured key opens it)."""
    return box().rotate(token.encode("ascii")).decode("ascii")


def looks_encrypted(value: str) -> bool:
    return value.startswith(TOKEN_PREFIX)
