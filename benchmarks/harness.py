"""What the HTTP benchmarks share: the app under gunicorn on a free port, stopped however they end."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def gunicorn(env: dict[str, str], *options: str) -> Iterator[int]:
    """Serve ``backend.wsgi:app`` with ``env`` and gunicorn ``options``; yields the port once
    /healthz answers, and stops the server on leaving."""
    port = free_port()
    command = [str(ROOT / ".venv/bin/gunicorn"), *options, "-b", f"127.0.0.1:{port}", "backend.wsgi:app"]
    server = subprocess.Popen(command, cwd=ROOT, env={**env, "PATH": "/usr/bin"},  # noqa: S603 (our own gunicorn)
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        yield port
    finally:
        server.terminate()
        server.wait()
