"""A Redis lock per job run, owned by a random token, kept alive while the run lasts.

``SET key token NX PX ttl`` takes it; only the owner can extend or release it (compare-and-expire
and compare-and-delete in Lua, atomic on the server); a watchdog thread extends it every third of
its TTL while the job runs. If the owner dies, nothing extends it and it expires after its TTL.

The lock keeps two runs of one job from overlapping; it does not decide whether a scheduled run
already happened (a replica can arrive after another finished and released it): the database does,
through the unique ``(job_id, scheduled_for)`` of ``job_runs``.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from redis.exceptions import RedisError

log = logging.getLogger(__name__)

KEY_PREFIX = "carbon:job-lock:"

_EXTEND = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


class JobLock:
    """One job's lock. ``acquire`` and ``release`` raise ``RedisError`` when Redis is unreachable."""

    def __init__(self, client: Any, job_id: str, ttl_seconds: float) -> None:
        self.client = client
        self.key = KEY_PREFIX + job_id
        self.ttl_ms = max(int(ttl_seconds * 1000), 1)
        self.token = secrets.token_hex(16)
        self.held = False
        self.lost = False

    def acquire(self) -> bool:
        self.held = bool(self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))
        return self.held

    def extend(self) -> bool:
        """Push the expiry out by one TTL; False if the lock is no longer ours (it expired)."""
        return bool(self.client.eval(_EXTEND, 1, self.key, self.token, self.ttl_ms))

    def release(self) -> bool:
        """Delete the lock if it is still ours; False if it expired and someone else may hold it."""
        if not self.held:
            return False
        self.held = False
        return bool(self.client.eval(_RELEASE, 1, self.key, self.token))

    @contextmanager
    def kept_alive(self) -> Iterator[JobLock]:
        """Extend the lock from a watchdog thread until the block ends; ``lost`` says if it could not."""
        stop = threading.Event()
        watchdog = threading.Thread(target=self._watch, args=(stop,), name=f"lock-watchdog:{self.key}", daemon=True)
        watchdog.start()
        try:
            yield self
        finally:
            stop.set()
            watchdog.join()

    def _watch(self, stop: threading.Event) -> None:
        interval = self.ttl_ms / 3000
        extended_at = time.monotonic()
        while not stop.wait(interval):
            try:
                if self.extend():
                    extended_at = time.monotonic()
                    continue
            except RedisError as exc:
                # The next tries may still land within the TTL; if none does, the lock is gone.
                log.warning("could not extend job lock %s: %s", self.key, exc)
                if time.monotonic() - extended_at < self.ttl_ms / 1000:
                    continue
            self.lost = True
            log.error("job lock %s expired while its run was still going; another runner may start the job "
                      "meanwhile", self.key)
            return
