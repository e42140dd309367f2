"""End-to-end ingestion: activities sent through the signed partner batch API, verified, reduced
and credited, against gunicorn (2 workers) on PostgreSQL and Redis.

    .venv/bin/python benchmarks/ingest.py [--activities 100000 --residents 10000]

Mix: 35% bus, 10% metro, 20% bike, 15% walk, 10% recycling, 5% carpool, 5% household electricity;
batches of 1,000 from 4 concurrent senders. Target: ≥ 5,000 activities/s and ≥ 25% of the raw
COPY rate of the same rows. A fresh database is created and dropped. Timings on a shared 2-core
machine are noisy: quote medians over runs.
"""

from __future__ import annotations

import argparse
import io
import json
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

from harness import gunicorn  # noqa: E402
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
        items = activities(args.activities, rids)
        batches = [items[i:i + 1000] for i in range(0, len(items), 1000)]
        with gunicorn(env, "-w", "2", "--timeout", "300") as port:
            path = "/api/v1/partner/activities"

            def send(batch: list[dict]) -> list[str]:
                body = json.dumps({"activities": batch}).encode()
                request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST",
                                                 headers=signed_headers(key_id, secret, "POST", path, body))
                with urllib.request.urlopen(request, timeout=300) as response:  # noqa: S310 (http to ourselves)
                    return [r["status"] for r in json.load(response)["results"]]

            started = time.perf_counter()
            with ThreadPoolExecutor(args.senders) as pool:
                statuses = Counter(s for result in pool.map(send, batches) for s in result)
            seconds = time.perf_counter() - started
        rate = len(items) / seconds
        floor = copy_floor(url, items)
        print(f"ingest: {len(items)} activities in {seconds:.1f} s = {rate:,.0f} activities/s with {args.senders} "
              f"senders, gunicorn 2 workers   target ≥ {TARGET:,}/s -> {'MET' if rate >= TARGET else 'NOT MET'}")
        print(f"floor:  raw COPY of the same activity rows = {floor:,.0f} rows/s; ingestion runs at {rate / floor:.0%} "
              f"of it   target ≥ {TARGET_SHARE:.0%} -> {'MET' if rate / floor >= TARGET_SHARE else 'NOT MET'}")
        print(f"outcomes: {dict(sorted(statuses.items()))}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        drop_database(args.database_url, name)


def copy_floor(url: str, items: list[dict]) -> float:
    """Rows per second of a raw COPY of the same activities into a table like ``activities``."""
    import psycopg

    conninfo = make_url(url).set(drivername="postgresql").render_as_string(False)
    buffer = io.StringIO()
    for i, item in enumerate(items):
        data = json.dumps(item["data"]).replace("\\", "\\\\")
        buffer.write(f"{i + 1}\t1\t1\tpartner\t{item['external_id']}\t{item['type']}\t{item['occurred_at']}\t"
                     f"430602\t{data}\tcredited\t2026-11-21 00:00:00+00\n")
    with psycopg.connect(conninfo) as conn:
        conn.execute("CREATE TEMP TABLE floor_activities (LIKE activities INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
                     "INCLUDING INDEXES)")
        started = time.perf_counter()
        with conn.cursor().copy("COPY floor_activities (id, resident_id, partner_id, source, external_id, type, "
                                "occurred_at, region_code, data, status, created_at) FROM STDIN") as copy:
            copy.write(buffer.getvalue())
        conn.commit()
        return len(items) / (time.perf_counter() - started)


if __name__ == "__main__":
    main()
