"""Encryption at rest for secrets the platform must read back (partner HMAC secrets).

Keys come from ``ENCRYPTION_KEYS`` (comma-separated Fernet keys, the first encrypts, all decrypt,
so keys rotate without downtime) or, when that is unset, one key derived from ``SECRET_KEY``.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class SecretBox:
    def __init__(self, secret_key: str, keys: tuple[str, ...] = ()) -> None:
        if keys:
            fernets = [Fernet(k.encode()) for k in keys]
        else:
            derived = HKDF(
                algorithm=hashes.SHA256(), length=32, salt=b"carbon-points", info=b"secret-box"
            ).derive(secret_key.encode())
            fernets = [Fernet(base64.urlsafe_b64encode(derived))]
        self._fernet = MultiFernet(fernets)

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise ValueError("ciphertext cannot be decrypted with the configured keys") from None


def validate_fernet_keys(keys: tuple[str, ...]) -> str | None:
    """Return an error message for the first malformed key, or None."""
    for index, key in enumerate(keys, start=1):
        try:
            Fernet(key.encode())
        except (ValueError, TypeError):
            return f"ENCRYPTION_KEYS entry {index} is not a valid Fernet key"
    return None
