"""Ledger throughput: credit 200,000 reductions across 20,000 accounts in batches of 1,000, then
expire them all; against the floor of writing the same rows with a raw PostgreSQL COPY.

    .venv/bin/python benchmarks/ledger.py --database-url postgresql://postgres@127.0.0.1/postgres

A fresh database is created (and dropped afterwards unless --keep). Target: crediting ≥ 10,000
entries/s. Timings on a shared 2-core machine are noisy: run it a few times and quote the median.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import machine_busy_seconds, process_stat, settle

from backend.app import create_app
from backend.bootstrap import install_reference_data
from backend.config import load_settings
from backend.db import db
from backend.migrate import upgrade
from backend.models import Activity, JournalEntry, PolicyVersion, Reduction, Resident, User
from backend.services import ledger

TARGET_CREDIT = 10_000


def make_database(base_url: str) -> tuple[str, str]:
    name = f"carbon_bench_ledger_{uuid.uuid4().hex[:8]}"
    admin = create_engine(make_url(base_url).set(drivername="postgresql+psycopg", database="postgres"),
                          isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return name, make_url(base_url).set(drivername="postgresql+psycopg", database=name).render_as_string(False)


def drop_database(base_url: str, name: str) -> None:
    admin = create_engine(make_url(base_url).set(drivername="postgresql+psycopg", database="postgres"),
                          isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def seed(accounts: int, reductions: int) -> tuple[list[int], list[int]]:
    """Residents and certified reductions written directly (the benchmark measures crediting)."""
    now = datetime.now(UTC)
    version = db.session.scalar(select(PolicyVersion).where(PolicyVersion.kind == "methodology",
                                                            PolicyVersion.subject == "travel"))
    conn = db.session.connection()
    conn.execute(insert(User.__table__), [
        {"username": f"bench{i}", "password_hash": None, "kind": "resident", "is_active": True, "token_version": 0,
         "created_at": now} for i in range(accounts)])
    user_ids = list(db.session.scalars(select(User.id).order_by(User.id)))
    conn.execute(insert(Resident.__table__), [
        {"user_id": uid, "user_kind": "resident", "display_name": "居民", "region_code": "430400", "created_at": now}
        for uid in user_ids])
    resident_ids = list(db.session.scalars(select(Resident.id).order_by(Resident.id)))
    per_account = reductions // accounts
    start = now - timedelta(days=per_account + 1)
    chunk = 20_000
    for offset in range(0, reductions, chunk):
        rows = range(offset, min(offset + chunk, reductions))
        activity_ids = conn.execute(insert(Activity.__table__).returning(Activity.__table__.c.id,
                                                                           sort_by_parameter_order=True), [
            {"resident_id": resident_ids[i % accounts], "source": "demo", "type": "bus_ride",
             "occurred_at": start + timedelta(days=i // accounts, minutes=i % 600), "region_code": "430400",
             "data": {"distance_km": "10", "duration_min": 30}, "status": "credited", "created_at": now}
            for i in rows]).scalars().all()
        conn.execute(insert(Reduction.__table__), [
            {"activity_id": aid, "resident_id": resident_ids[i % accounts], "region_code": "430400",
             "activity_type": "bus_ride", "occurred_at": start + timedelta(days=i // accounts, minutes=i % 600),
             "methodology_id": "travel", "methodology_version": 1, "version_id": version.id, "formula_version": 1,
             "factors_sha256": version.payload_sha256, "grams": 520, "trace": {"grams": "520"}, "facts": {},
             "status": "certified", "created_at": now}
            for aid, i in zip(activity_ids, rows, strict=True)])
    db.session.commit()
    rows = db.session.execute(select(Reduction.id, Reduction.resident_id).order_by(Reduction.occurred_at, Reduction.id))
    pairs = rows.all()
    return [r[0] for r in pairs], [r[1] for r in pairs]


def copy_floor(url: str, entries: int) -> float:
    """Entries per second when the same rows (entry with its trace, two postings, a lot) go in by
    raw COPY into tables with the ledger's columns, defaults, constraints and indexes (no triggers)."""
    import psycopg

    conninfo = make_url(url).set(drivername="postgresql").render_as_string(False)
    like = "INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES"
    trace = '{"rules": "exchange@1", "rate_per_kg": "100", "creditable_g": "520", "points": "52"}'
    with psycopg.connect(conninfo, autocommit=False) as conn:
        for table in ("journal_entries", "postings", "lots"):
            conn.execute(f"CREATE TEMP TABLE floor_{table} (LIKE {table} {like})")
        e, p, lots = io.StringIO(), io.StringIO(), io.StringIO()
        for i in range(1, entries + 1):
            e.write(f"{i}\tcredit:{i}\tcredit\t2026-11-21 00:00:00+00\t1\t{'a' * 64}\t{i}\tbus_ride\t{trace}\n")
            p.write(f"{i}\t1\t-52\n{i}\t{i % 20000 + 2}\t52\n")
            lots.write(f"{i % 20000 + 2}\t{i}\t52\t52\t2027-12-31\t2026-11-21 00:00:00+00\n")
        columns = {"journal_entries": "id, idempotency_key, kind, posted_at, rule_version_id, rule_sha256, "
                                      "reduction_id, memo, trace",
                   "postings": "entry_id, account_id, amount",
                   "lots": "account_id, entry_id, amount, remaining, expires_on, created_at"}
        started = time.perf_counter()
        for table, buffer in (("journal_entries", e), ("postings", p), ("lots", lots)):
            with conn.cursor().copy(f"COPY floor_{table} ({columns[table]}) FROM STDIN") as copy:
                copy.write(buffer.getvalue())
        conn.commit()
        return entries / (time.perf_counter() - started)


def credit_worker(url: str, instance: str, ids: list[int], batch: int, queue: multiprocessing.Queue[float],
                  ready: multiprocessing.Queue[int], go: Any, cpu: multiprocessing.Queue[tuple[float, float]]) -> None:
    """One ingestion worker: its own process, engine and transactions. It starts crediting when every
    worker is ready, so the clock measures crediting, not starting Python and the app. It reports
    the CPU seconds it and its PostgreSQL backend used while crediting."""
    app = create_app(load_settings({"CARBON_ENV": "testing", "DATABASE_URL": url, "SECRET_KEY": "b" * 40,
                                    "CARBON_INSTANCE_PATH": instance}))
    rates = []
    with app.app_context():
        backend = db.session.scalar(text("SELECT pg_backend_pid()"))  # connected
        db.session.rollback()
        ready.put(1)
        go.wait()
        started = (time.process_time(), (process_stat(backend) or ("", 0.0))[1])
        for offset in range(0, len(ids), batch):
            t = time.perf_counter()
            results = ledger.credit(ids[offset:offset + batch])
            db.session.commit()
            rates.append(len(results) / (time.perf_counter() - t))
        cpu.put((time.process_time() - started[0], (process_stat(backend) or ("", 0.0))[1] - started[1]))
    for rate in rates:
        queue.put(rate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1/postgres")
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--reductions", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--workers", type=int, default=2,
                        help="concurrent crediting processes, each with its own accounts (default 2: the cores here)")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args()

    name, url = make_database(args.database_url)
    scratch = Path(tempfile.mkdtemp(prefix="carbon-bench-"))
    try:
        upgrade(url)
        settings = load_settings({"CARBON_ENV": "testing", "DATABASE_URL": url, "SECRET_KEY": "b" * 40,
                                  "CARBON_INSTANCE_PATH": str(scratch / "main")})
        app = create_app(settings)
        install_reference_data(app)
        with app.app_context():
            t0 = time.perf_counter()
            ids, owners = seed(args.accounts, args.reductions)
            print(f"seeded {len(ids)} reductions for {args.accounts} accounts in {time.perf_counter() - t0:.1f} s")
        app.extensions["database"].engine.dispose()
        settle(url)

        # Each worker credits the reductions of its own accounts, in time order, in batches.
        shares = [[rid for rid, owner in zip(ids, owners, strict=True) if owner % args.workers == w]
                  for w in range(args.workers)]
        queue: multiprocessing.Queue[float] = multiprocessing.Queue()
        ready: multiprocessing.Queue[int] = multiprocessing.Queue()
        go = multiprocessing.Event()
        cpu: multiprocessing.Queue[tuple[float, float]] = multiprocessing.Queue()
        workers = [multiprocessing.Process(target=credit_worker,
                                           args=(url, str(scratch / f"worker-{w}"), shares[w], args.batch, queue,
                                                 ready, go, cpu))
                   for w in range(args.workers)]
        for worker in workers:
            worker.start()
        for _ in workers:
            ready.get()
        started, busy = time.perf_counter(), machine_busy_seconds()
        go.set()
        batch_rates = [queue.get() for _ in range(sum(-(-len(s) // args.batch) for s in shares))]
        used = [cpu.get() for _ in workers]
        for worker in workers:
            worker.join()
        credit_seconds = time.perf_counter() - started
        busy = (machine_busy_seconds() or 0.0) - (busy or 0.0)
        with app.app_context():
            entries = db.session.scalar(select(func.count()).select_from(JournalEntry))
            credit_rate = entries / credit_seconds

            started = time.perf_counter()
            expired = ledger.expire(date.today() + timedelta(days=800))
            expire_seconds = time.perf_counter() - started
            report = __import__("backend.services.ledger_verify", fromlist=["verify"]).verify()
        floor = copy_floor(url, entries)

        print(f"credit: {entries} entries in {credit_seconds:.1f} s = {credit_rate:,.0f} entries/s "
              f"with {args.workers} workers (median batch {statistics.median(batch_rates):,.0f}/s per worker)   "
              f"target ≥ {TARGET_CREDIT:,} entries/s "
              f"-> {'MET' if credit_rate >= TARGET_CREDIT else 'NOT MET'}")
        per_thousand = 1000 * 1000 / entries  # seconds per entry -> ms per 1,000 entries
        client, server = sum(c for c, _ in used), sum(s for _, s in used)
        print(f"CPU per 1,000 entries credited: {client * per_thousand:.0f} ms in the workers, "
              f"{server * per_thousand:.0f} ms in their PostgreSQL backends, "
              f"{max(0.0, busy - client - server) * per_thousand:.0f} ms elsewhere on the machine "
              f"(PostgreSQL's background writers, other load); the machine was busy "
              f"{busy / credit_seconds:.2f} of {multiprocessing.cpu_count()} cores")
        print(f"expire: {expired['entries']} entries ({expired['lots']} lots, {expired['points']} points) in "
              f"{expire_seconds:.1f} s = {expired['entries'] / expire_seconds:,.0f} entries/s, "
              f"{expired['lots'] / expire_seconds:,.0f} lots/s")
        print(f"floor:  raw COPY of the same rows = {floor:,.0f} entries/s; crediting runs at "
              f"{credit_rate / floor:.0%} of it")
        print(f"ledger verify: {'ok' if report.ok else report.breaches}; totals {report.totals}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if not args.keep:
            drop_database(args.database_url, name)


if __name__ == "__main__":
    main()
