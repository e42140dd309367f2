"""Partner request signatures (DESIGN §9).

``X-Signature = hex HMAC-SHA256(secret, timestamp + "\\n" + METHOD + "\\n" + path + "\\n" + sha256hex(body))``
"""

from __future__ import annotations

import hashlib
import hmac


def string_to_sign(timestamp: str, method: str, path: str, body: bytes) -> bytes:
    return "\n".join([timestamp, method.upper(), path, hashlib.sha256(body).hexdigest()]).encode()


def sign(secret: str, timestamp: str, method: str, path: str, body: bytes) -> str:
    return hmac.new(secret.encode(), string_to_sign(timestamp, method, path, body), hashlib.sha256).hexdigest()


def signature_matches(secret: str, signature: str, timestamp: str, method: str, path: str, body: bytes) -> bool:
    expected = sign(secret, timestamp, method, path, body)
    return hmac.compare_digest(expected, signature.lower())
