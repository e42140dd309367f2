"""What the benchmarks share: a settled database before the clock starts, and the app under gunicorn
on a free port, stopped however they end."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent


def machine_busy_seconds() -> float | None:
    """CPU seconds the whole machine has been busy (Linux /proc/stat; None elsewhere): everything
    but idle and iowait, steal included."""
    stat_path = Path("/proc/stat")
    if not stat_path.exists():
        return None
    busy = stat_path.read_text().split("\n", 1)[0].split()[1:9]  # user nice system idle iowait irq softirq steal
    return sum(int(v) for i, v in enumerate(busy) if i not in (3, 4)) / os.sysconf("SC_CLK_TCK")


def process_stat(pid: int) -> tuple[str, float] | None:
    """A process's name and the CPU seconds it has used (Linux /proc; None if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return stat[stat.index("(") + 1:stat.rindex(")")], (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


ROLES = ("gunicorn", "clients", "postgres", "redis", "other")
LABELS = {"postgres": "postgres (this database)", "other": "other (the rest of the machine)"}


Snapshot = tuple[float, dict[int, tuple[str, float]]]


def cpu_snapshot(port: int, clients: set[int], database: str) -> Snapshot | None:
    """CPU seconds used so far: the machine's, and each process's with its role (Linux /proc;
    None elsewhere): the gunicorn serving ``port`` (workers are forks of the master: the same
    command line), the client processes, the PostgreSQL backends serving ``database`` (their
    process title names it) and Redis."""
    total = machine_busy_seconds()
    if total is None:
        return None
    processes: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        stat = process_stat(int(entry.name))
        if stat is None:
            continue
        name, seconds = stat
        if f"127.0.0.1:{port}".encode() in command:
            processes[int(entry.name)] = ("gunicorn", seconds)
        elif int(entry.name) in clients:
            processes[int(entry.name)] = ("clients", seconds)
        elif name.startswith("postgres") and f" {database} ".encode() in command:
            processes[int(entry.name)] = ("postgres", seconds)
        elif name.startswith("redis-server"):
            processes[int(entry.name)] = ("redis", seconds)
    return total, processes


def cpu_used(first: Snapshot | None, second: Snapshot | None) -> dict[str, float]:
    """CPU seconds by role between two snapshots; "other" is the rest of the machine (other work on
    a shared machine, PostgreSQL's own background processes, processes that ended meanwhile)."""
    if first is None or second is None:
        return {}
    used = {role: 0.0 for role in ROLES}
    for pid, (role, seconds) in second[1].items():
        used[role] += seconds - first[1].get(pid, (role, 0.0))[1]
    used["other"] = second[0] - first[0] - sum(used.values())
    return used


def cpu_line(used: dict[str, float], count: int, seconds: float, unit: str) -> str:
    """CPU per ``unit`` by role, and the cores each kept busy: what bounds the rate on this machine."""
    return f"CPU while measured, ms per {unit} (cores busy of {os.cpu_count()}): " + ", ".join(
        f"{LABELS.get(role, role)} {used[role] * 1000 / count:.2f} ({used[role] / seconds:.2f})" for role in ROLES)


def settle(url: str) -> None:
    """Vacuum and analyze the freshly seeded database and checkpoint the server, so the measured
    phase does not also pay for writing out the seed (or an earlier run's pages) and for
    autovacuum's first pass over tables that went from empty to large. The measured phase's own
    writes, checkpoints and autovacuum still count. CHECKPOINT needs a superuser; without one it
    is skipped."""
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
        with suppress(psycopg.errors.InsufficientPrivilege):
            conn.execute("CHECKPOINT")


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
