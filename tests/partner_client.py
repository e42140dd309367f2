"""Signing partner requests in tests, exactly as a partner's own code would (DESIGN §9)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from flask.testing import FlaskClient


def signed_headers(key_id: str, secret: str, method: str, path: str, body: bytes,
                   timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    message = f"{ts}\n{method.upper()}\n{path}\n{hashlib.sha256(body).hexdigest()}".encode()
    return {
        "X-Key-Id": key_id,
        "X-Timestamp": ts,
        "X-Signature": hmac.new(secret.encode(), message, hashlib.sha256).hexdigest(),
        "Content-Type": "application/json",
    }


def partner_call(client: FlaskClient, key_id: str, secret: str, method: str, path: str,
                 payload: Any = None, **overrides: Any) -> Any:
    body = b"" if payload is None else json.dumps(payload).encode()
    headers = signed_headers(key_id, secret, method, path, body, overrides.pop("timestamp", None))
    headers.update(overrides.pop("headers", {}))
    return client.open(path, method=method, data=body, headers=headers)
