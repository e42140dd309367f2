"""Ed25519 signatures on what the platform states to third parties: a resident's green statement
for a bank, a retirement certificate's URL and content.

A third party must be able to check these without asking us, so they are signed with a key pair
whose public half is published (``GET /api/v1/public/keys``, a JWK set). Statements are compact JWS
(RFC 7515) with ``alg: EdDSA`` (RFC 8037): any JOSE library verifies them; so does a few lines of
plain Ed25519 over ``header.payload``. The key is ``STATEMENT_SIGNING_KEY`` (``backend/config.py``).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from flask import current_app

ALGORITHM = "EdDSA"
ISSUER = "carbon-points"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class InvalidStatement(ValueError):
    """A statement that does not verify; ``reason`` says why in one word."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class StatementSigner:
    def __init__(self, seed: str) -> None:
        self._private = Ed25519PrivateKey.from_private_bytes(unb64url(seed))
        self.public_key: Ed25519PublicKey = self._private.public_key()
        raw = self.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        self._public_raw = raw
        # The key's fingerprint: a rotated key gets a new id, so verifiers pick the right one.
        self.key_id = "ed25519-" + hashlib.sha256(raw).hexdigest()[:16]

    def jwk(self) -> dict[str, str]:
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url(self._public_raw), "kid": self.key_id, "use": "sig",
                "alg": ALGORITHM}

    def sign(self, data: bytes) -> bytes:
        return self._private.sign(data)

    def verify(self, data: bytes, signature: bytes) -> bool:
        try:
            self.public_key.verify(signature, data)
        except InvalidSignature:
            return False
        return True

    def sign_jws(self, claims: dict[str, Any], *, typ: str) -> str:
        return jwt.encode({"iss": ISSUER, **claims}, self._private, algorithm=ALGORITHM,
                          headers={"kid": self.key_id, "typ": typ})

    def verify_jws(self, token: str, *, audience: str | None = None, expires: bool = True) -> dict[str, Any]:
        """The claims of a statement this key signed; ``InvalidStatement`` otherwise. The signature is
        checked before anything else, so ``expired`` and ``wrong_audience`` mean a genuine statement.
        ``expires``: the statement must carry an expiry (a certificate does not)."""
        required = ["iss", "iat", "exp"] if expires else ["iss", "iat"]
        try:
            return jwt.decode(token, self.public_key, algorithms=[ALGORITHM], issuer=ISSUER, audience=audience,
                              options={"require": required, "verify_aud": audience is not None})
        except jwt.ExpiredSignatureError:
            raise InvalidStatement("expired", "the statement has expired") from None
        except jwt.InvalidAudienceError:
            raise InvalidStatement("wrong_audience", "the statement was issued to someone else") from None
        except jwt.InvalidTokenError:
            raise InvalidStatement("bad_signature", "is not a statement signed by this platform (altered, "
                                                    "truncated or signed with another key)") from None


def signer() -> StatementSigner:
    """The app's signer, built on first use from its settings."""
    found = current_app.extensions.get("statement_signer")
    if found is None:
        found = StatementSigner(current_app.extensions["settings"].statement_signing_key)
        current_app.extensions["statement_signer"] = found
    return found
