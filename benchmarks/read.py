"""Reads under load: balance, ledger and leaderboards, 32 concurrent clients against gunicorn on
PostgreSQL and Redis.

    .venv/bin/python benchmarks/read.py [--residents 10000 --postings 20 --clients 32 --duration 30
                                         --workers 2 --threads 4 --worker-class gthread]

Seeds 10,000 residents in four districts (Yueyang's 岳阳楼区, 云溪区, 君山区 and Zhuzhou's 石峰区),
each in one of 40 online communities (a fifth of them in a second), with ``--postings`` certified
trips or recycling drop-offs each over the last four weeks, credited by the ledger itself
(``ledger.credit``: caps, lots, budgets as in production). Then ``--clients`` threads, each with
its own keep-alive connection, send a mixed read load as random residents (each with their own
token) for ``--duration`` seconds after a ``--warmup``:

    GET /api/v1/me/balance                    (the target: p99 ≤ 20 ms)
    GET /api/v1/me/ledger?limit=20
    GET /api/v1/communities/{id}/leaderboard  (one of the resident's communities, week or month)
    GET /api/v1/regions/{code}/leaderboard    (the resident's district or city, week or month)

Clients are closed-loop by default: each sends its next request as soon as the last one answered,
so the server is saturated and latency is mostly queueing (mean latency = clients / throughput,
Little's law). ``--rate N`` paces the clients instead (open loop, N requests/s in all), each
latency measured from when the request was due, so a slow answer cannot hide the ones it delayed.
Prints, per endpoint: requests/s, p50, p99, errors, beside the target. A fresh database is created
and dropped; Redis db ``--redis-url`` (default 9) is flushed first. Timings on a shared 2-core
machine are noisy: quote medians over runs.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis
from sqlalchemy import insert, select
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from harness import Snapshot, cpu_line, cpu_snapshot, cpu_used, gunicorn  # noqa: E402
from ledger import drop_database, make_database  # noqa: E402

from backend.app import create_app  # noqa: E402
from backend.bootstrap import install_reference_data  # noqa: E402
from backend.config import load_settings  # noqa: E402
from backend.db import db  # noqa: E402
from backend.migrate import upgrade  # noqa: E402
from backend.models import Activity, Community, CommunityMember, PolicyVersion, Reduction, Resident, User  # noqa: E402
from backend.security import tokens  # noqa: E402
from backend.services import ledger  # noqa: E402

TARGETS_P99_MS = {"balance": 20.0}
ENDPOINTS = ("balance", "ledger", "community", "region", "healthz")  # healthz: the floor, no app work
DISTRICTS = {"430602": "430600", "430603": "430600", "430611": "430600", "430204": "430200"}
SECRET = "b" * 40
# (activity type, methodology, grams low, grams high): a mix of trips and drop-offs.
KINDS = [("bus_ride", "travel", 300, 1500), ("metro_ride", "travel", 400, 1800), ("bike_ride", "travel", 150, 900),
         ("walk", "travel", 40, 250), ("recycling", "recycling", 500, 3000)]


# --- seeding --------------------------------------------------------------------------------------------


def seed(residents: int, postings: int, communities: int) -> list[tuple[str, list[int], str, str]]:
    """Residents with credited reductions and communities; per resident (token, communities,
    district, city)."""
    rng = random.Random(7)
    now = datetime.now(UTC)
    conn = db.session.connection()
    districts = list(DISTRICTS)
    conn.execute(insert(User.__table__), [{"username": f"reader{i}", "password_hash": None, "kind": "resident",
                                           "is_active": True, "token_version": 0, "created_at": now}
                                          for i in range(residents)])
    user_ids = list(db.session.scalars(select(User.id).where(User.kind == "resident").order_by(User.id)))
    home = {u: districts[i % len(districts)] for i, u in enumerate(user_ids)}
    conn.execute(insert(Resident.__table__), [{"user_id": u, "user_kind": "resident", "display_name": f"居民{i}",
                                               "region_code": home[u], "created_at": now}
                                              for i, u in enumerate(user_ids)])
    people = list(db.session.execute(select(Resident.id, Resident.user_id, Resident.region_code)
                                     .order_by(Resident.id)))
    community_rows = [{"name": f"绿色出行圈{c}", "region_code": districts[c % len(districts)], "description": "",
                       "created_at": now} for c in range(communities)]
    community_ids = list(conn.execute(insert(Community.__table__).returning(
        Community.__table__.c.id, sort_by_parameter_order=True), community_rows).scalars())
    by_district = defaultdict(list)
    for c, row in zip(community_ids, community_rows, strict=True):
        by_district[row["region_code"]].append(c)
    joined: dict[int, list[int]] = {}
    for resident_id, _, district in people:
        choices = by_district[district]
        mine = [rng.choice(choices)]
        if rng.random() < 0.2 and len(choices) > 1:
            mine.append(rng.choice([c for c in choices if c != mine[0]]))
        joined[resident_id] = mine
    conn.execute(insert(CommunityMember.__table__), [{"community_id": c, "resident_id": r, "joined_at": now}
                                                     for r, cs in joined.items() for c in cs])
    versions = {v.subject: v for v in db.session.scalars(select(PolicyVersion).where(
        PolicyVersion.kind == "methodology", PolicyVersion.subject.in_(["travel", "recycling"])))}
    chunk = 20_000
    rows = []
    for resident_id, _, district in people:
        for _ in range(postings):
            activity_type, methodology, low, high = rng.choice(KINDS)
            at = now - timedelta(days=rng.uniform(0.05, 27.5))
            rows.append((resident_id, district, activity_type, methodology, rng.randint(low, high), at))
    rows.sort(key=lambda row: row[5])  # credited in the order they happened, as ingestion would
    for offset in range(0, len(rows), chunk):
        part = rows[offset:offset + chunk]
        activity_ids = conn.execute(insert(Activity.__table__).returning(
            Activity.__table__.c.id, sort_by_parameter_order=True), [
            {"resident_id": r, "source": "demo", "type": t, "occurred_at": at, "region_code": d,
             "data": {}, "status": "credited", "created_at": now} for r, d, t, _, _, at in part]).scalars().all()
        reduction_ids = conn.execute(insert(Reduction.__table__).returning(
            Reduction.__table__.c.id, sort_by_parameter_order=True), [
            {"activity_id": a, "resident_id": r, "region_code": d, "activity_type": t, "occurred_at": at,
             "methodology_id": m, "methodology_version": 1, "version_id": versions[m].id, "formula_version": 1,
             "factors_sha256": versions[m].payload_sha256, "grams": g, "trace": {"grams": str(g)}, "facts": {},
             "status": "certified", "created_at": now}
            for a, (r, d, t, m, g, at) in zip(activity_ids, part, strict=True)]).scalars().all()
        for start in range(0, len(reduction_ids), 1000):
            ledger.credit(reduction_ids[start:start + 1000])
    db.session.commit()
    return residents_with_tokens()


def residents_with_tokens() -> list[tuple[str, list[int], str, str]]:
    """Every seeded resident as (token, communities, district, city), each with a fresh token."""
    now = datetime.now(UTC)
    joined: dict[int, list[int]] = defaultdict(list)
    for community_id, resident_id in db.session.execute(
            select(CommunityMember.community_id, CommunityMember.resident_id).order_by(CommunityMember.community_id)):
        joined[resident_id].append(community_id)
    return [(tokens.issue_access_token(SECRET, user_id=user_id, token_version=0, roles=frozenset({"resident"}),
                                       now=now, ttl=7200), joined[resident_id], district, DISTRICTS[district])
            for resident_id, user_id, district in db.session.execute(
                select(Resident.id, Resident.user_id, Resident.region_code).order_by(Resident.id))
            if district in DISTRICTS and joined[resident_id]]


# --- load -----------------------------------------------------------------------------------------------


def parse_mix(text: str) -> list[tuple[str, int]]:
    mix = []
    for part in text.split(","):
        name, _, weight = part.partition("=")
        if name not in ENDPOINTS or not weight.isdigit():
            raise argparse.ArgumentTypeError(f"--mix: {part!r} is not ENDPOINT=WEIGHT with ENDPOINT in {ENDPOINTS}")
        mix.append((name, int(weight)))
    return mix


def request_for(endpoint: str, person: tuple[str, list[int], str, str], rng: random.Random) -> str:
    period = rng.choice(("week", "month"))
    if endpoint == "balance":
        return "/api/v1/me/balance"
    if endpoint == "healthz":
        return "/healthz"
    if endpoint == "ledger":
        return "/api/v1/me/ledger?limit=20"
    if endpoint == "community":
        return f"/api/v1/communities/{rng.choice(person[1])}/leaderboard?period={period}"
    return f"/api/v1/regions/{rng.choice((person[2], person[3]))}/leaderboard?period={period}"


def client_process(port: int, people: list, mix: list[tuple[str, int]], clients: int, seed_: int,
                   warmup: float, duration: float, rate: float, start_at: float, out: object) -> None:
    """``clients`` threads with a keep-alive connection each; sends [(endpoint, seconds, ok)] to ``out``."""
    names = [name for name, _ in mix]
    weights = [weight for _, weight in mix]
    results: list[tuple[str, float, bool]] = []
    lock = threading.Lock()
    interval = clients / rate if rate else 0.0  # seconds between one client's requests

    def run(index: int) -> None:
        rng = random.Random(seed_ * 1000 + index)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine: list[tuple[str, float, bool]] = []
        record_from = start_at + warmup
        stop = record_from + duration
        due = start_at + rng.uniform(0, interval)
        while True:
            if rate:
                pause = due - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
            begun = time.perf_counter()
            if begun >= stop:
                break
            endpoint = rng.choices(names, weights)[0]
            person = people[rng.randrange(len(people))]
            path = request_for(endpoint, person, rng)
            try:
                connection.request("GET", path, headers={"Authorization": f"Bearer {person[0]}"})
                response = connection.getresponse()
                body = response.read()
                ok = response.status == 200 and body[:1] == b"{"
            except (OSError, http.client.HTTPException):
                ok = False
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            ended = time.perf_counter()
            # Paced: from when the request was due, so a late answer also counts the wait it caused.
            seconds = ended - (due if rate else begun)
            if begun >= record_from:
                mine.append((endpoint, seconds, ok))
            due += interval
        connection.close()
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.send(results)  # type: ignore[attr-defined]
    out.close()  # type: ignore[attr-defined]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000 if ordered else 0.0


def load(port: int, people: list,
         args: argparse.Namespace) -> tuple[dict[str, list[tuple[float, bool]]], dict[str, float]]:
    """Run the clients in ``--client-processes`` processes (one process's GIL would queue 32 threads'
    answers and count that as server latency); gather every recorded request, and the CPU seconds
    used while they were recorded, by role (``cpu_used``)."""
    context = multiprocessing.get_context("fork")
    share = [args.clients // args.client_processes + (i < args.clients % args.client_processes)
             for i in range(args.client_processes)]
    start_at = time.perf_counter() + 0.5
    pipes, processes = [], []
    for i, clients in enumerate(c for c in share if c):
        receive, send = context.Pipe(duplex=False)
        process = context.Process(target=client_process, args=(
            port, people, args.mix, clients, i + 1, args.warmup, args.duration,
            args.rate * clients / args.clients if args.rate else 0.0, start_at, send))
        process.start()
        send.close()
        pipes.append(receive)
        processes.append(process)
    cpu: list[Snapshot | None] = []
    pids = {process.pid for process in processes if process.pid is not None}

    def sample() -> None:
        for moment in (start_at + args.warmup, start_at + args.warmup + args.duration):
            time.sleep(max(0.0, moment - time.perf_counter()))
            cpu.append(cpu_snapshot(port, pids, args.database_name))

    sampler = threading.Thread(target=sample)
    sampler.start()
    by_endpoint: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    for receive in pipes:
        for endpoint, seconds, ok in receive.recv():
            by_endpoint[endpoint].append((seconds, ok))
    for process in processes:
        process.join()
    sampler.join()
    return by_endpoint, cpu_used(cpu[0], cpu[1])


def report(by_endpoint: dict[str, list[tuple[float, bool]]], seconds: float) -> bool:
    met = True
    print(f"{'endpoint':<10} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}   target")
    everything: list[float] = []
    for endpoint in ENDPOINTS:
        rows = by_endpoint.get(endpoint, [])
        if not rows:
            continue
        times = [s for s, _ in rows]
        errors = sum(1 for _, ok in rows if not ok)
        everything += times
        p99 = percentile(times, 0.99)
        target = TARGETS_P99_MS.get(endpoint)
        verdict = ""
        if target is not None:
            ok = p99 <= target and errors == 0
            met = met and ok
            verdict = f"p99 ≤ {target:.0f} ms for {endpoint} -> {'MET' if ok else 'NOT MET'}"
        print(f"{endpoint:<10} {len(rows):>9} {len(rows) / seconds:>8.0f} {percentile(times, 0.5):>8.1f} "
              f"{p99:>8.1f} {errors:>7}   {verdict}")
    mean = statistics.mean(everything) * 1000 if everything else 0.0
    print(f"{'all':<10} {len(everything):>9} {len(everything) / seconds:>8.0f} {percentile(everything, 0.5):>8.1f} "
          f"{percentile(everything, 0.99):>8.1f}   mean {mean:.1f} ms")
    return met


def server_side(port: int) -> str:
    """From the app's own latency histogram: the share of balance reads done within 5, 10, 25 ms,
    timed inside the app (from Flask's request_started to request_finished), warm-up included."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    connection.close()
    buckets: dict[str, float] = defaultdict(float)
    for line in text.splitlines():
        if line.startswith("carbon_http_request_duration_seconds_bucket{") and 'endpoint="residents.Balance"' in line:
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[le] += float(line.rsplit(" ", 1)[1])
    total = buckets.get("+Inf", 0.0)
    if not total:
        return "no balance reads recorded"
    return ", ".join(f"{buckets[le] / total:.1%} ≤ {float(le) * 1000:.0f} ms" for le in ("0.005", "0.01", "0.025"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9", help="a Redis db of its own: flushed")
    parser.add_argument("--residents", type=int, default=10_000)
    parser.add_argument("--postings", type=int, default=20, help="credited reductions per resident")
    parser.add_argument("--communities", type=int, default=40)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--client-processes", type=int, default=4, help="processes the client threads run in")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of load before measuring")
    parser.add_argument("--rate", type=float, default=0.0, help="requests/s in all (open loop); 0: closed loop")
    parser.add_argument("--mix", type=parse_mix, default=parse_mix("balance=4,ledger=2,community=1,region=1"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker (gthread)")
    parser.add_argument("--worker-class", default="gthread", choices=("gthread", "sync"))
    parser.add_argument("--worker-connections", type=int, default=0,
                        help="gthread: keep-alive connections one worker holds at most (0: gunicorn's 1000)")
    parser.add_argument("--runs", type=int, default=1, help="measure this many times against one seeded server")
    parser.add_argument("--keep", action="store_true", help="keep the seeded database (its name is printed)")
    parser.add_argument("--reuse", metavar="NAME", help="measure against a database kept by --keep (no seeding)")
    args = parser.parse_args()
    args.client_processes = max(1, min(args.client_processes, args.clients))

    redis.Redis.from_url(args.redis_url).flushdb()
    if args.reuse:
        name = args.reuse
        url = make_url(args.database_url).set(drivername="postgresql+psycopg", database=name).render_as_string(False)
    else:
        name, url = make_database(args.database_url)
    args.database_name = name
    scratch = Path(tempfile.mkdtemp(prefix="carbon-read-"))
    (scratch / "metrics").mkdir()
    env = {"CARBON_ENV": "production", "DATABASE_URL": url, "REDIS_URL": args.redis_url, "SECRET_KEY": SECRET,
           "CARBON_INSTANCE_PATH": str(scratch), "PROMETHEUS_MULTIPROC_DIR": str(scratch / "metrics")}
    try:
        app = create_app(load_settings({**env, "CARBON_ENV": "testing"}))
        if args.reuse:
            with app.app_context():
                people = residents_with_tokens()
            print(f"reusing database {name}: {len(people):,} residents")
        else:
            upgrade(url)
            install_reference_data(app)
            with app.app_context():
                t0 = time.perf_counter()
                people = seed(args.residents, args.postings, args.communities)
                print(f"seeded {args.residents:,} residents, {args.residents * args.postings:,} credited reductions, "
                      f"{args.communities} communities in {time.perf_counter() - t0:.1f} s")
        app.extensions["database"].engine.dispose()  # the benchmark's own connections, before gunicorn starts

        options = ["-c", "python:backend.gunicorn_conf", "-w", str(args.workers), "-k", args.worker_class,
                   "--timeout", "120"]
        if args.worker_class == "gthread":
            options += ["--threads", str(args.threads)]
            if args.worker_connections:
                options += ["--worker-connections", str(args.worker_connections)]
        shape = f"gunicorn {args.workers} {args.worker_class} workers" + \
            (f" × {args.threads} threads" if args.worker_class == "gthread" else "")
        load_kind = f"paced at {args.rate:.0f} req/s" if args.rate else "closed loop"
        with gunicorn(env, *options) as port:
            for run in range(1, args.runs + 1):
                started = time.perf_counter()
                by_endpoint, cpu = load(port, people, args)
                wall = time.perf_counter() - started
                print(f"\nrun {run}: {args.clients} clients ({load_kind}, {args.client_processes} client processes), "
                      f"{shape}, {args.duration:.0f} s measured after {args.warmup:.0f} s warm-up "
                      f"({wall:.0f} s in all)")
                report(by_endpoint, args.duration)
                total = sum(len(rows) for rows in by_endpoint.values())
                print("server side (/metrics, since start):", server_side(port))
                if cpu and total:
                    print(cpu_line(cpu, total, args.duration, "request"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if args.keep or args.reuse:
            print(f"database kept: --reuse {name}")
        else:
            drop_database(args.database_url, name)


if __name__ == "__main__":
    main()
