"""End-to-end ingestion: activities sent through the signed partner batch API, verified, reduced
and credited, against gunicorn (2 workers) on PostgreSQL and Redis.

    .venv/bin/python benchmarks/ingest.py [--activities 100000 --residents 10000]

Mix: 35% bus, 10% metro, 20% bike, 15% walk, 10% recycling, 5% carpool, 5% household electricity;
batches of 1,000 from 4 concurrent senders. Target: ≥ 5,000 activities/s and ≥ 25% of the raw
COPY rate of the same rows: every row the run wrote (activity, reduction, evaluation, journal entry,
postings, lot) copied again in binary into empty tables like the real ones, without triggers. A
fresh database is created and dropped. Timings on a shared 2-core machine are noisy: quote medians
over runs.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, select
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from harness import cpu_line, cpu_snapshot, cpu_used, gunicorn, settle  # noqa: E402
from ledger import drop_database, make_database  # noqa: E402

from backend.app import create_app  # noqa: E402
from backend.bootstrap import install_reference_data  # noqa: E402
from backend.config import load_settings  # noqa: E402
from backend.db import db  # noqa: E402
from backend.migrate import upgrade  # noqa: E402
from backend.models import Household, HouseholdMember, PartnerBinding, Resident, User  # noqa: E402
from backend.services import partners, users  # noqa: E402
from tests.partner_client import signed_headers  # noqa: E402

TARGET, TARGET_SHARE = 5_000, 0.25
MIX = [("bus_ride", 35), ("metro_ride", 10), ("bike_ride", 20), ("walk", 15), ("recycling", 10), ("carpool", 5),
       ("household_electricity", 5)]
MATERIALS = ["pet", "cardboard", "aluminium", "glass", "mixed_paper"]


def seed(residents: int) -> tuple[str, str]:
    now = datetime.now(UTC)
    admin = users.create_staff_user("bench-admin", "bench-password-2026", ["admin"], scope_region=None, actor=None)
    issued = partners.create("基准伙伴", "maas", [t for t, _ in MIX], "430600", actor=admin)
    conn = db.session.connection()
    conn.execute(insert(User.__table__), [{"username": f"r{i}", "password_hash": None, "kind": "resident",
                                           "is_active": True, "token_version": 0, "created_at": now}
                                          for i in range(residents)])
    ids = list(db.session.scalars(select(User.id).where(User.kind == "resident").order_by(User.id)))
    conn.execute(insert(Resident.__table__), [{"user_id": u, "user_kind": "resident", "display_name": "居民",
                                               "region_code": "430602", "created_at": now} for u in ids])
    rids = list(db.session.scalars(select(Resident.id).order_by(Resident.id)))
    conn.execute(insert(Household.__table__), [{"name": f"家{r}", "region_code": "430602", "status": "active",
                                                "owner_resident_id": r, "invite_code": f"B{r:07d}",
                                                "created_at": now} for r in rids])
    hids = list(db.session.scalars(select(Household.id).order_by(Household.id)))
    conn.execute(insert(HouseholdMember.__table__), [{"household_id": h, "resident_id": r, "joined_at": now}
                                                     for h, r in zip(hids, rids, strict=True)])
    conn.execute(insert(PartnerBinding.__table__), [{"resident_id": r, "partner_id": issued.partner.id,
                                                     "external_user_ref": f"u{r}",
                                                     "created_at": now - timedelta(days=20)}
                                                    for r in rids])
    db.session.commit()
    return issued.partner.key_id, issued.secret


def activities(n: int, residents: list[int]) -> list[dict]:
    rng = random.Random(7)
    start = datetime.now(UTC) - timedelta(days=10)
    kinds = [t for t, w in MIX for _ in range(w)]
    out, clock = [], {}
    for i in range(n):
        r = residents[i % len(residents)]
        kind = kinds[(i * 37 + i // len(residents) * 13) % 100]  # a mix per resident, the MIX shares overall
        at = clock.get(r, start + timedelta(minutes=rng.randrange(600))) + timedelta(hours=1)
        clock[r] = at
        if kind in ("bus_ride", "metro_ride", "bike_ride", "walk", "carpool"):
            km = {"walk": 2, "bike_ride": 4}.get(kind, 8)
            data = {"distance_km": str(km), "duration_min": 20}
            if kind == "carpool":
                data["passengers"] = 2
        elif kind == "recycling":
            data = {"material": rng.choice(MATERIALS), "weight_kg": "3"}
        else:
            last = (start - timedelta(days=31 * (i // len(residents)))).date()  # one bill a month, back in time
            data = {"period_start": (last - timedelta(days=29)).isoformat(), "period_end": last.isoformat(),
                    "kwh": "150", "household_size": 3}
        out.append({"external_id": f"e{i}", "user_ref": f"u{r}", "type": kind, "occurred_at": at.isoformat(),
                    "data": data})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--activities", type=int, default=100_000)
    parser.add_argument("--residents", type=int, default=10_000)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="gthread threads per gunicorn worker (1: sync workers)")
    args = parser.parse_args()

    name, url = make_database(args.database_url)
    scratch = Path(tempfile.mkdtemp(prefix="carbon-ingest-"))
    env = {"CARBON_ENV": "production", "DATABASE_URL": url, "REDIS_URL": args.redis_url, "SECRET_KEY": "i" * 40,
           "CARBON_INSTANCE_PATH": str(scratch)}
    try:
        upgrade(url)
        app = create_app(load_settings({**env, "CARBON_ENV": "testing"}))
        install_reference_data(app)
        with app.app_context():
            key_id, secret = seed(args.residents)
            rids = list(db.session.scalars(select(Resident.id).order_by(Resident.id)))
        app.extensions["database"].engine.dispose()
        settle(url)
        items = activities(args.activities, rids)
        batches = [items[i:i + 1000] for i in range(0, len(items), 1000)]
        with gunicorn(env, "-w", "2", *(("-k", "gthread", "--threads", str(args.threads)) if args.threads > 1 else ()),
                      "--timeout", "300") as port:
            path = "/api/v1/partner/activities"

            def send(batch: list[dict]) -> list[str]:
                body = json.dumps({"activities": batch}).encode()
                request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST",
                                                 headers=signed_headers(key_id, secret, "POST", path, body))
                with urllib.request.urlopen(request, timeout=300) as response:  # noqa: S310 (http to ourselves)
                    return [r["status"] for r in json.load(response)["results"]]

            before = cpu_snapshot(port, {os.getpid()}, name)
            started = time.perf_counter()
            with ThreadPoolExecutor(args.senders) as pool:
                statuses = Counter(s for result in pool.map(send, batches) for s in result)
            seconds = time.perf_counter() - started
            cpu = cpu_used(before, cpu_snapshot(port, {os.getpid()}, name))
        rate = len(items) / seconds
        floor, rows = copy_floor(url, len(items))
        print(f"ingest: {len(items)} activities in {seconds:.1f} s = {rate:,.0f} activities/s with {args.senders} "
              f"senders, gunicorn 2 workers   target ≥ {TARGET:,}/s -> {'MET' if rate >= TARGET else 'NOT MET'}")
        print(f"floor:  raw COPY of the same {rows:,} rows ({', '.join(WRITTEN)}) = {floor:,.0f} activities/s; "
              f"ingestion runs at {rate / floor:.0%} of it   target ≥ {TARGET_SHARE:.0%} -> "
              f"{'MET' if rate / floor >= TARGET_SHARE else 'NOT MET'}")
        print(f"outcomes: {dict(sorted(statuses.items()))}")
        if cpu:
            print(cpu_line(cpu, len(items) // 1000, seconds, "1,000 activities"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        drop_database(args.database_url, name)


# What the pipeline writes for each activity: the report, its reduction and evaluation, the journal
# entry with its postings, and the lot of points.
WRITTEN = ("activities", "reductions", "reduction_evaluations", "journal_entries", "postings", "lots")


def copy_floor(url: str, activities: int) -> tuple[float, int]:
    """Activities per second when every row the run wrote (``WRITTEN``) goes in again by raw binary
    COPY into empty tables with the same columns, defaults, constraints and indexes (no triggers);
    and the number of rows."""
    import psycopg

    conninfo = make_url(url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(conninfo) as conn:
        dumps = {}
        for table in WRITTEN:
            buffer = io.BytesIO()
            with conn.cursor().copy(f"COPY {table} TO STDOUT (FORMAT BINARY)") as copy:
                for chunk in copy:
                    buffer.write(chunk)
            dumps[table] = buffer.getvalue()
            conn.execute(f"CREATE TEMP TABLE floor_{table} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
                         "INCLUDING INDEXES)")
        rows = sum(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in WRITTEN)  # noqa: S608
        conn.commit()
        started = time.perf_counter()
        for table in WRITTEN:
            with conn.cursor().copy(f"COPY floor_{table} FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(dumps[table])
        conn.commit()
        return activities / (time.perf_counter() - started), rows


if __name__ == "__main__":
    main()
