"""Encryption of stored secrets (channel credentials): Fernet keyed by HKDF from the process secret key.

Fernet gives authenticated encryption, so a tampered or foreign ciphertext fails loudly instead of
decrypting to garbage. The key is derived per purpose, so one leaked derived key opens nothing else.
"""

from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from siyu.kit.errors import Invalid

DEFAULT_PURPOSE = "siyu.credentials.v1"


@lru_cache(maxsize=32)
def _fernet(secret_key: str, purpose: str) -> Fernet:
    if not secret_key:
        raise ValueError("secret_key must not be empty")
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(
        secret_key.encode()
    )
    return Fernet(base64.urlsafe_b64encode(raw))


def encrypt_secret(plaintext: str, secret_key: str, purpose: str = DEFAULT_PURPOSE) -> str:
    """Encrypt ``plaintext`` with a key derived from ``secret_key`` for ``purpose``; returns ASCII text."""
    return _fernet(secret_key, purpose).encrypt(plaintext.encode()).decode("ascii")


def decrypt_secret(token: str, secret_key: str, purpose: str = DEFAULT_PURPOSE) -> str:
    """Decrypt what :func:`encrypt_secret` produced; Invalid if the key changed or the text was altered."""
    try:
        return _fernet(secret_key, purpose).decrypt(token.encode("ascii")).decode()
    except (InvalidToken, UnicodeError) as exc:
        raise Invalid(
            "stored secret cannot be decrypted: was SIYU_SECRET_KEY changed?", field="secret"
        ) from exc
