"""Reports per region and period (issue #8.2): a demo region's report reconciles with the ledger to the
point and with the registry to the gram; China-time period boundaries; bad input; CSV equals JSON;
the CLI; the public statistics and their suppression of small cells."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from backend.cli import main
from backend.db import db, utcnow
from backend.methodology import CHINA_STANDARD_TIME
from backend.models import (
    Activity,
    AuditLog,
    DailyActivityStats,
    Donation,
    Household,
    JournalEntry,
    LedgerAccount,
    Lot,
    Partner,
    PartnerBinding,
    Posting,
    Redemption,
    Reduction,
    Resident,
    RightGrant,
)
from backend.services import activities, ingest, ledger, reports, stats
from backend.services.ledger_verify import verify
from backend.services.scope import descendants
from tests.conftest import PASSWORD, Api, login, sign_up
from tests.partner_client import partner_call

YUEYANG, YUEYANGLOU, JUNSHAN, SHIFENG, HUNAN = "430600", "430602", "430611", "430204", "430000"
REPORTS = "/api/v1/admin/reports"


def _today() -> date:
    return utcnow().astimezone(CHINA_STANDARD_TIME).date()


def _year() -> str:
    return str(_today().year)


def _trip(ext: str, ref: str, at: datetime, km: str = "10", minutes: int = 30, kind: str = "bus_ride") -> dict:
    return {"external_id": ext, "user_ref": ref, "type": kind, "occurred_at": at.isoformat(),
            "data": {"distance_km": km, "duration_min": minutes}}


def _send(client: FlaskClient, partner: dict[str, Any], items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    response = partner_call(client, partner["key_id"], partner["secret"], "POST", "/api/v1/partner/activities",
                            {"activities": items})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["results"]


def _bind(app: Flask, person: Api, partner: dict[str, Any], ref: str, days_ago: int = 10) -> None:
    response = person.post("/api/v1/me/bindings", {"partner_id": partner["id"], "external_user_ref": ref})
    assert response.status_code == 201, response.get_json()
    with app.app_context():  # bound a while ago, so the trips of the last days count
        db.session.execute(update(PartnerBinding).where(PartnerBinding.id == response.get_json()["id"])
                           .values(created_at=utcnow() - timedelta(days=days_ago)))
        db.session.commit()


def _record(app: Flask, kind: str, data: dict[str, Any], region: str, resident_id: int,
            household_id: int | None = None, hours_ago: int = 30) -> int:
    """An activity through the activities service, then credited by the ledger."""
    with app.app_context():
        _, reduction = activities.record_one(activity_type=kind, occurred_at=utcnow() - timedelta(hours=hours_ago),
                                             data=data, region=region, source="demo", resident_id=resident_id,
                                             household_id=household_id)
        assert reduction is not None
        results = ledger.credit([reduction.id])
        assert results[0].status == "credited", results
        db.session.commit()
        return reduction.id


@dataclass
class World:
    people: dict[str, Api]
    ids: dict[str, int]
    staff: dict[str, Api]


@pytest.fixture
def world(app: Flask, client: FlaskClient, api: Api, staff: dict[str, Api]) -> World:
    """A month in Yueyang, seeded through the services: rides reported by a bus partner (one rejected,
    one repeated), a household's ride and a quiz; a redemption fulfilled, one cancelled and one still
    on hold; a donation; an opened right bought; a fraudulent credit reversed after part of it was
    spent; everything left expired; then fresh credits, one of them repaying the clawback. A Shifeng
    resident does the same things elsewhere and must stay out of Yueyang's report."""
    operator, auditor = staff["operator1"], staff["auditor1"]
    people, ids = {}, {}
    for name, region in (("lihua", YUEYANGLOU), ("wangfang", YUEYANGLOU), ("zhang", JUNSHAN),
                         ("outsider", SHIFENG)):
        people[name] = sign_up(api, name, region=region)
        ids[name] = people[name].get("/api/v1/me").get_json()["id"]
    household = people["lihua"].post("/api/v1/households", {"name": "李华家"})
    assert household.status_code == 201, household.get_json()
    ids["household"] = household.get_json()["id"]

    bus = operator.post("/api/v1/admin/partners", {"name": "岳阳公交", "kind": "transit",
                                                   "activity_types": ["bus_ride", "bike_ride"],
                                                   "region": YUEYANG}).get_json()
    for name in people:
        _bind(app, people[name], bus, f"card-{name}")
    soon = utcnow() - timedelta(days=3)
    sent = _send(client, bus, [
        _trip("l1", "card-lihua", soon), _trip("l2", "card-lihua", soon + timedelta(hours=3), km="12"),
        _trip("w1", "card-wangfang", soon, km="15"), _trip("w2", "card-wangfang", soon + timedelta(hours=3)),
        _trip("w3", "card-wangfang", soon + timedelta(hours=6), km="6", minutes=25, kind="bike_ride"),
        _trip("z1", "card-zhang", soon, km="20", minutes=45),
        _trip("z2", "card-zhang", soon + timedelta(hours=3), km="-3"),                       # rejected
        _trip("o1", "card-outsider", soon, km="30", minutes=50),
    ])
    assert [r["status"] for r in sent] == ["credited"] * 6 + ["rejected", "credited"], sent
    again = _send(client, bus, [_trip("l1b", "card-lihua", soon + timedelta(minutes=5))])   # the same ride again
    assert (again[0]["status"], again[0]["reason"]) == ("duplicate", "overlaps"), again
    ids["w1"] = next(r["reduction_id"] for r in _reductions_of(app, ids["wangfang"]) if r["grams"] == 780)
    _record(app, "bus_ride", {"distance_km": "8", "duration_min": 30}, YUEYANGLOU, ids["lihua"],
            household_id=ids["household"])
    _record(app, "quiz", {"quiz_id": "q1", "score": 90}, YUEYANGLOU, ids["wangfang"])

    # Spending: a fulfilled, a cancelled and an open redemption at a Yueyanglou shop; a donation to a
    # Junshan project; a parking right; the outsider redeems too.
    merchant = operator.post("/api/v1/admin/merchants", {"name": "岳阳楼区绿色超市", "region": YUEYANGLOU}).get_json()
    assert operator.post(f"/api/v1/admin/merchants/{merchant['id']}/staff",
                         {"username": "till", "password": PASSWORD}).status_code == 201
    shop = login(api, "till")
    offer = shop.post("/api/v1/merchant/offers", {
        "title": "购物袋", "description": "", "points_price": 30, "stock": 10, "per_user_limit": 3,
        "valid_until": (utcnow() + timedelta(days=30)).isoformat(), "regions": [HUNAN]}).get_json()
    assert "id" in offer, offer

    def reserve(name: str, key: str) -> dict[str, Any]:
        held = people[name].post("/api/v1/me/redemptions", {"offer_id": offer["id"]}, headers={"Idempotency-Key": key})
        assert held.status_code == 201, held.get_json()
        return held.get_json()

    assert shop.post("/api/v1/merchant/redemptions/confirm", {"code": reserve("lihua", "r1")["code"]}).status_code \
        == 200
    cancelled = reserve("lihua", "r2")
    assert people["lihua"].post(f"/api/v1/me/redemptions/{cancelled['id']}/cancel").status_code == 200
    reserve("zhang", "r3")                                                                   # left on hold
    outsider = reserve("outsider", "r4")
    assert shop.post("/api/v1/merchant/redemptions/confirm", {"code": outsider["code"]}).status_code == 200

    project = operator.post("/api/v1/admin/projects", {"title": "君山植树", "description": "trees", "region": JUNSHAN,
                                                       "target_points": 1000}).get_json()
    assert people["wangfang"].post("/api/v1/me/donations", {"project_id": project["id"], "points": 25},
                                   headers={"Idempotency-Key": "d1"}).status_code == 201
    assert people["outsider"].post("/api/v1/me/donations", {"project_id": project["id"], "points": 10},
                                   headers={"Idempotency-Key": "d2"}).status_code == 201
    parking = operator.post("/api/v1/admin/partners", {"name": "岳阳停车", "kind": "other",
                                                       "activity_types": ["bus_ride"], "region": YUEYANG}).get_json()
    right = operator.post("/api/v1/admin/rights", {
        "title": "停车 2 小时", "description": "", "kind": "parking", "region": YUEYANG, "partner_id": parking["id"],
        "points_price": 40, "per_user_limit": 1, "valid_until": (utcnow() + timedelta(days=60)).isoformat(),
        "code_valid_days": 30}).get_json()
    claimed = people["wangfang"].post(f"/api/v1/me/rights/{right['id']}/claim", headers={"Idempotency-Key": "c1"})
    assert claimed.status_code == 201, claimed.get_json()

    # Wangfang's first ride was fraudulent: what is left of it is taken back, the spent rest is owed.
    reversed_ = auditor.post(f"/api/v1/admin/reductions/{ids['w1']}/reverse", {"reason": "card cloned"})
    assert reversed_.status_code == 200, reversed_.get_json()
    assert reversed_.get_json()["clawback_outstanding"] > 0, reversed_.get_json()

    with app.app_context():
        assert ledger.expire(date(2200, 1, 1))["points"] > 0                                # every lot left expires
        db.session.commit()
    # Fresh credits after the expiry: wangfang's first repays her clawback.
    fresh = _send(client, bus, [_trip("w4", "card-wangfang", soon + timedelta(hours=9), km="18", minutes=40),
                                _trip("l3", "card-lihua", soon + timedelta(hours=9))])
    assert [r["status"] for r in fresh] == ["credited", "credited"], fresh
    return World(people, ids, staff)


def _reductions_of(app: Flask, resident_id: int) -> list[dict[str, Any]]:
    with app.app_context():
        return [{"reduction_id": r.id, "grams": r.grams} for r in db.session.scalars(
            select(Reduction).where(Reduction.resident_id == resident_id).order_by(Reduction.id))]


# --- the recount: the same figures from the raw tables, row by row -------------------------------------


def _recount(app: Flask, region: str) -> dict[str, Any]:
    """Independent sums from the registry (activities, reductions) and the ledger (postings, lots)
    and the spending tables, looping over rows in Python."""
    with app.app_context():
        s = db.session
        codes = descendants(region)
        residents = {r.id: r.region_code for r in s.scalars(select(Resident))}
        households = {h.id: h.region_code for h in s.scalars(select(Household))}
        acts = [a for a in s.scalars(select(Activity)) if a.region_code in codes]
        reds = [r for r in s.scalars(select(Reduction)) if r.region_code in codes]
        out: dict[str, Any] = {
            "activities": {(a.type, a.status): sum(1 for b in acts if (b.type, b.status) == (a.type, a.status))
                           for a in acts},
            "grams": {kind: sum(r.grams for r in reds if r.activity_type == kind) for kind in {r.activity_type
                                                                                                for r in reds}},
            "reversed_grams": sum(r.grams for r in reds if r.status == "reversed"),
            "net_grams": sum(r.grams for r in reds if r.status == "certified"),
            "by_methodology": {ref: sum(r.grams for r in reds if r.methodology_ref == ref)
                               for ref in {r.methodology_ref for r in reds}},
            "residents": len({r.resident_id for r in reds if r.status == "certified" and r.resident_id}),
            "households": len({r.household_id for r in reds if r.status == "certified" and r.household_id}),
        }

        def owner_of_reduction(reduction: Reduction) -> str:
            return households[reduction.household_id] if reduction.household_id else residents[reduction.resident_id]

        accounts = {a.id: a for a in s.scalars(select(LedgerAccount))}

        def owner_of_account(account: LedgerAccount) -> str | None:
            if account.resident_id:
                return residents[account.resident_id]
            if account.household_id:
                return households[account.household_id]
            return None

        entries = {e.id: e for e in s.scalars(select(JournalEntry))}
        all_reductions = {r.id: r for r in s.scalars(select(Reduction))}
        issued = reversed_ = expired = 0
        for p in s.scalars(select(Posting)):
            entry, account = entries[p.entry_id], accounts[p.account_id]
            mine = entry.reduction_id is not None and owner_of_reduction(all_reductions[entry.reduction_id]) in codes
            if account.kind == "issuance" and entry.kind in ("credit", "release") and mine:
                issued -= p.amount
            if account.kind == "reversed" and mine:
                reversed_ += p.amount
            if entry.kind == "expire" and owner_of_account(account) in codes:
                expired -= p.amount
        wallets = [a for a in accounts.values() if a.kind.endswith("_wallet") and owner_of_account(a) in codes]
        redemptions = [r for r in s.scalars(select(Redemption)) if residents[r.resident_id] in codes]
        out["points"] = {
            "issued": issued, "reversed": reversed_, "expired": expired,
            "redeemed": sum(r.points for r in redemptions if r.status == "fulfilled"),
            "donated": sum(d.points for d in s.scalars(select(Donation)) if residents[d.resident_id] in codes),
            "rights": sum(g.points for g in s.scalars(select(RightGrant)) if residents[g.resident_id] in codes),
            "wallets": sum(a.balance for a in wallets),
            "lots": sum(lot.remaining for lot in s.scalars(select(Lot)) if lot.account_id in {a.id for a in wallets}),
            "on_hold": sum(r.points for r in redemptions if r.status == "reserved"),
        }
        return out


def _report(api: Api, region: str, **query: str) -> dict[str, Any]:
    response = api.get(REPORTS, query_string={"region": region, **query})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_the_report_reconciles_with_the_ledger_to_the_point_and_the_registry_to_the_gram(
        app: Flask, world: World) -> None:
    report = _report(world.staff["auditor1"], YUEYANG, period=_year())
    expected = _recount(app, YUEYANG)
    assert (report["region"], report["period"], report["complete"]) == (YUEYANG, _year(), False)
    assert set(report["regions"]) == descendants_of(app, YUEYANG) and SHIFENG not in report["regions"]

    # The registry, to the gram.
    got_activities = {(row["type"], status): row[status] for row in report["activities"]["by_type"]
                      for status in ("credited", "pending_review", "rejected", "duplicate") if row[status]}
    assert got_activities == expected["activities"]
    assert report["activities"]["total"] == sum(expected["activities"].values()) == 12
    assert report["activities"]["by_status"]["rejected"] == 1 and report["activities"]["by_status"]["duplicate"] == 1
    reductions = report["reductions"]
    assert {row["scenario"]: row["certified_grams"] for row in reductions["by_scenario"]} == expected["grams"]
    assert {row["methodology"]: row["certified_grams"] for row in reductions["by_methodology"]} == \
        expected["by_methodology"]
    assert reductions["total"]["reversed_grams"] == expected["reversed_grams"] == 780
    assert reductions["total"]["net_grams"] == expected["net_grams"] == \
        reductions["total"]["certified_grams"] - 780
    quiz = next(row for row in reductions["by_scenario"] if row["scenario"] == "quiz")
    assert quiz["engagement_only"] is True and quiz["certified_grams"] == 0 and quiz["reductions"] == 1
    assert report["participants"] == {"residents": expected["residents"], "households": expected["households"]}
    assert report["participants"] == {"residents": 3, "households": 1}

    # The ledger, to the point.
    points, want = report["points"], expected["points"]
    for figure in ("issued", "redeemed", "donated", "rights", "expired", "reversed"):
        assert points[figure] == want[figure], figure
    assert (points["redeemed"], points["donated"], points["rights"]) == (30, 25, 40)
    assert points["expired"] > 0 and points["reversed"] > 0
    assert points["outstanding_at_start"] == {"wallets": 0, "on_hold": 0, "total": 0}
    assert points["outstanding_at_end"] == {"wallets": want["wallets"], "on_hold": want["on_hold"],
                                            "total": want["wallets"] + want["on_hold"]}
    assert want["wallets"] == want["lots"] > 0 and want["on_hold"] == 30
    assert points["balanced"] is True
    assert points["issued"] - points["redeemed"] - points["donated"] - points["rights"] - points["expired"] \
        - points["reversed"] == points["outstanding_at_end"]["total"]
    # The donations received by Yueyang's projects include the outsider's; the settlements are none yet.
    assert report["donations"]["points"] == 35 and report["donations"]["donors"] == 2
    assert [p["points"] for p in report["donations"]["by_project"]] == [35]
    assert report["settlements"]["statements"] == 0 and report["settlements"]["by_merchant"] == []

    # The whole platform (Hunan) against `ledger verify`: the rights' points went back to issuance.
    whole = _report(world.staff["admin1"], HUNAN, period=_year())["points"]
    with app.app_context():
        checked = verify()
    assert checked.ok, checked.breaches
    totals = checked.totals
    assert whole["issued"] - whole["rights"] == totals["issued"]
    assert whole["outstanding_at_end"]["total"] == totals["held"]
    assert whole["redeemed"] + whole["donated"] == totals["spent"]
    assert (whole["expired"], whole["reversed"]) == (totals["expired"], totals["reversed"])
    # Regions partition: Yueyang and Shifeng make up Hunan.
    shifeng = _report(world.staff["admin1"], SHIFENG, period=_year())["points"]
    for figure in ("issued", "redeemed", "donated", "rights", "expired", "reversed"):
        assert points[figure] + shifeng[figure] == whole[figure], figure


def descendants_of(app: Flask, code: str) -> set[str]:
    with app.app_context():
        return descendants(code)


def test_the_report_agrees_with_the_daily_roll_up(app: Flask, world: World) -> None:
    """Activities received and grams certified per type are the daily statistics' summed over the days."""
    with app.app_context():
        first = stats.first_data_day()
        day = first
        while day <= _today():
            stats.rollup_day(day)
            db.session.commit()
            day += timedelta(days=1)
        codes = descendants(YUEYANG)
        rolled = {kind: (int(n), int(grams)) for kind, n, grams in db.session.execute(
            select(DailyActivityStats.activity_type, func.sum(DailyActivityStats.activities),
                   func.sum(DailyActivityStats.grams))
            .where(DailyActivityStats.region_code.in_(codes)).group_by(DailyActivityStats.activity_type))}
    report = _report(world.staff["operator1"], YUEYANG, period=_year())
    scenarios = {row["scenario"]: row["certified_grams"] for row in report["reductions"]["by_scenario"]}
    assert {row["type"]: (row["total"], scenarios.get(row["type"], 0)) for row in report["activities"]["by_type"]} \
        == rolled


def test_months_quarters_ranges_and_scope(app: Flask, world: World) -> None:
    today = _today()
    month, quarter = f"{today.year}-{today.month:02d}", f"{today.year}-Q{(today.month - 1) // 3 + 1}"
    year = _report(world.staff["operator1"], YUEYANG, period=_year())
    for query in ({"period": month}, {"period": quarter}, {"from": month, "to": month},
                  {"from": f"{today.year}-01", "to": month}):
        same = _report(world.staff["operator1"], YUEYANG, **query)
        for section in ("activities", "participants", "reductions", "points", "donations"):
            assert same[section] == year[section], (query, section)
    assert _report(world.staff["operator1"], YUEYANG, period=month)["from"] == f"{month}-01"
    ranged = _report(world.staff["operator1"], YUEYANG, **{"from": f"{today.year}-01", "to": month})
    assert (ranged["period"], ranged["from"]) == (f"{today.year}-01..{month}", f"{today.year}-01-01")
    # Last year: nothing recorded; the points opening and closing are zero.
    last = _report(world.staff["operator1"], YUEYANG, period=str(today.year - 1))
    assert last["complete"] is True and last["activities"]["total"] == 0
    assert last["points"]["outstanding_at_end"]["total"] == 0 and last["points"]["balanced"] is True
    # A district only, and the default of the operator's scope is refused outside it.
    junshan = _report(world.staff["auditor1"], JUNSHAN, period=_year())
    assert junshan["regions"] == [JUNSHAN] and junshan["participants"]["residents"] == 1
    assert junshan["points"]["outstanding_at_end"]["on_hold"] == 30
    out = world.staff["operator1"].get(REPORTS, query_string={"region": SHIFENG, "period": _year()})
    assert out.status_code == 403 and out.get_json()["error"] == "out_of_scope"
    assert world.people["lihua"].get(REPORTS, query_string={"region": YUEYANG, "period": _year()}).status_code == 403


def test_the_csv_holds_every_figure_of_the_json(app: Flask, world: World) -> None:
    query = {"region": YUEYANG, "period": _year()}
    report = _report(world.staff["auditor1"], YUEYANG, period=_year())
    for response in (world.staff["auditor1"].get(f"{REPORTS}.csv", query_string=query),
                     world.staff["auditor1"].get(REPORTS, query_string={**query, "format": "csv"})):
        assert response.status_code == 200 and response.mimetype == "text/csv"
        assert f'filename="report-{YUEYANG}-{_year()}.csv"' in response.headers["Content-Disposition"]
        table = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
        assert tuple(table[0]) == reports.CSV_HEADER
        assert {(r["region"], r["period"]) for r in table} == {(YUEYANG, _year())}
        cells = {(r["section"], r["item"], r["figure"]): r["value"] for r in table}
        assert len(cells) == len(table)
        # Every number of the JSON is a row of the CSV, and nothing else is.
        expected: dict[tuple[str, str, str], str] = {}
        for section in ("activities", "participants", "reductions", "points", "settlements", "donations", "market"):
            for key, value in report[section].items():
                if isinstance(value, list):
                    name = {"by_type": "type", "by_scenario": "scenario", "by_methodology": "methodology",
                            "by_merchant": "merchant_id", "by_project": "project_id"}[key]
                    label = {"by_merchant": "name", "by_project": "title"}.get(key)
                    for row in value:
                        expected |= {(section, f"{key}:{row[name]}", f): _csv_text(v) for f, v in row.items()
                                     if f not in (name, label)}
                elif isinstance(value, dict):
                    expected |= {(section, key, f): _csv_text(v) for f, v in value.items()}
                else:
                    expected[(section, "total", key)] = _csv_text(value)
        assert cells == expected
        # The totals in the CSV are the sums of its breakdown rows.
        by_type = sum(int(v) for (s, item, f), v in cells.items() if s == "activities" and
                      item.startswith("by_type:") and f == "total")
        assert by_type == int(cells[("activities", "total", "total")]) == report["activities"]["total"]
        grams = sum(int(v) for (s, item, f), v in cells.items() if s == "reductions" and
                    item.startswith("by_scenario:") and f == "net_grams")
        assert grams == int(cells[("reductions", "total", "net_grams")]) == report["reductions"]["total"]["net_grams"]
        assert int(cells[("points", "outstanding_at_end", "total")]) == report["points"]["outstanding_at_end"]["total"]
        project = next(r for r in table if r["item"].startswith("by_project:"))
        assert project["label"] == "君山植树"


def _csv_text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def test_settlement_statements_and_market_batches_of_the_period(app: Flask, api: Api, staff: dict[str, Api],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.services import redemptions
    from tests.test_market import _issued, _reductions

    operator = staff["operator1"]
    person = sign_up(api, "shopper", region=YUEYANGLOU)
    resident_id = person.get("/api/v1/me").get_json()["id"]
    for hours in (30, 34, 38):
        _record(app, "bus_ride", {"distance_km": "10", "duration_min": 30}, YUEYANGLOU, resident_id, hours_ago=hours)
    merchant = operator.post("/api/v1/admin/merchants", {"name": "南湖书店", "region": YUEYANGLOU}).get_json()
    operator.post(f"/api/v1/admin/merchants/{merchant['id']}/staff", {"username": "till", "password": PASSWORD})
    shop = login(api, "till")
    offer = shop.post("/api/v1/merchant/offers", {
        "title": "书签", "points_price": 70, "stock": 5, "per_user_limit": 2,
        "valid_until": (utcnow() + timedelta(days=30)).isoformat()}).get_json()
    held = person.post("/api/v1/me/redemptions", {"offer_id": offer["id"]},
                       headers={"Idempotency-Key": "s1"}).get_json()
    # The till confirmed it on the last evening of last month (China time).
    first_of_month = datetime.combine(_today().replace(day=1), datetime.min.time(), tzinfo=CHINA_STANDARD_TIME)
    last_month = (first_of_month - timedelta(days=1)).strftime("%Y-%m")
    monkeypatch.setattr(redemptions, "utcnow", lambda: first_of_month - timedelta(hours=2))
    assert shop.post("/api/v1/merchant/redemptions/confirm", {"code": held["code"]}).status_code == 200
    monkeypatch.undo()
    issued = operator.post("/api/v1/admin/settlements", {"period": last_month})
    assert issued.status_code == 201, issued.get_json()

    settled = _report(staff["auditor1"], YUEYANG, period=last_month)["settlements"]
    assert (settled["statements"], settled["redemptions"], settled["points"]) == (1, 1, 70)
    assert (settled["amount_fen"], settled["amount_yuan"], settled["unpaid_fen"]) == (70, "0.70", 70)
    assert settled["by_merchant"][0]["name"] == "南湖书店"
    statement = issued.get_json()["statements"][0]["id"]
    assert operator.post(f"/api/v1/admin/settlements/{statement}/paid", {"reference": "BANK-1"}).status_code == 200
    paid = _report(staff["auditor1"], YUEYANG, period=last_month)["settlements"]
    assert (paid["paid_fen"], paid["unpaid_fen"], paid["unpaid_yuan"]) == (70, 0, "0.00")
    assert _report(staff["auditor1"], JUNSHAN, period=last_month)["settlements"]["statements"] == 0

    _reductions(app, [700_000, 800_000, 900_000, 600_000])                                  # 3.0 t, last year's
    batch = _issued(staff)
    assert batch["tonnes"] == 3
    batches = f"/api/v1/admin/market/batches/{batch['id']}"
    assert operator.post(f"{batches}/sales", {"tonnes": 1, "buyer": "华菱钢铁", "price_yuan_per_tonne": "58.50"}) \
        .status_code == 201
    assert operator.post(f"{batches}/retirements", {"tonnes": 2, "beneficiary": "岳阳马拉松", "purpose": "offset"}) \
        .status_code == 201
    market = _report(staff["auditor1"], YUEYANG, period=_year())["market"]
    assert market == {"pooled": {"batches": 1, "tonnes": 3, "grams": 3_000_000}, "issued": {"batches": 1, "tonnes": 3},
                      "sold": {"transactions": 1, "tonnes": 1, "amount_fen": 5850, "amount_yuan": "58.50"},
                      "retired": {"transactions": 1, "tonnes": 2}}
    assert _report(staff["admin1"], SHIFENG, period=_year())["market"]["pooled"]["batches"] == 0


# --- China-time boundaries ---------------------------------------------------------------------------------


def test_periods_are_china_calendar_periods(app: Flask, api: Api, staff: dict[str, Api],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """23:30 on 31 December in Shanghai (15:30 UTC) is in that year; 00:30 on 1 January (16:30 UTC on
    31 December) is in the next, by quarter and month as well."""
    year = _today().year - 1
    person = sign_up(api, "night-owl", region=YUEYANGLOU)
    bus = staff["operator1"].post("/api/v1/admin/partners", {
        "name": "夜班公交", "kind": "transit", "activity_types": ["bus_ride"], "region": YUEYANG}).get_json()
    _bind(app, person, bus, "owl", days_ago=800)
    late = datetime(year, 12, 31, 23, 30, tzinfo=CHINA_STANDARD_TIME)
    early = datetime(year + 1, 1, 1, 0, 30, tzinfo=CHINA_STANDARD_TIME)
    assert late.astimezone(CHINA_STANDARD_TIME).year != early.astimezone(CHINA_STANDARD_TIME).year
    for ext, at, km in (("late", late, "10"), ("early", early, "20")):
        recorded = at + timedelta(minutes=10)
        monkeypatch.setattr(ledger, "utcnow", lambda recorded=recorded: recorded)   # the ledger posts then
        with app.app_context():
            partner = db.session.get(Partner, bus["id"])
            answers = ingest.ingest(ingest.Reporter("partner", partner=partner),
                                    [_trip(ext, "owl", at - timedelta(minutes=30), km=km)], now=recorded)
            assert answers[0]["status"] == "credited", answers
            db.session.commit()
    monkeypatch.undo()
    operator = staff["operator1"]
    grams = {ext: g for ext, g in (("late", 520), ("early", 1040))}

    def certified(**query: str) -> tuple[int, int, int]:
        report = _report(operator, YUEYANG, **query)
        return (report["activities"]["total"], report["reductions"]["total"]["certified_grams"],
                report["participants"]["residents"])

    assert certified(period=str(year)) == (1, grams["late"], 1)
    assert certified(period=f"{year}-Q4") == (1, grams["late"], 1)
    assert certified(period=f"{year}-12") == (1, grams["late"], 1)
    assert certified(period=str(year + 1)) == (1, grams["early"], 1)
    assert certified(period=f"{year + 1}-Q1") == (1, grams["early"], 1)
    assert certified(period=f"{year + 1}-01") == (1, grams["early"], 1)
    assert certified(**{"from": f"{year}-12", "to": f"{year + 1}-01"}) == (2, grams["late"] + grams["early"], 1)
    # Points too: issued on the night they were recorded, and still outstanding at the new year.
    old, new = _report(operator, YUEYANG, period=str(year))["points"], \
        _report(operator, YUEYANG, period=f"{year + 1}-01")["points"]
    assert old["issued"] > 0 and old["outstanding_at_end"]["total"] == old["issued"]
    assert new["outstanding_at_start"]["total"] == old["issued"]
    assert new["outstanding_at_end"]["total"] == old["issued"] + new["issued"] and new["balanced"] is True


# --- bad input ---------------------------------------------------------------------------------------------


def test_bad_input_is_refused_naming_the_field_and_changes_nothing(app: Flask, staff: dict[str, Api]) -> None:
    admin = staff["admin1"]
    with app.app_context():
        audit_rows = db.session.scalar(select(func.count()).select_from(AuditLog))
    today = _today()
    following = today.replace(day=1) + timedelta(days=32)
    unknown = admin.get(REPORTS, query_string={"region": "999999", "period": _year()})
    assert unknown.status_code == 404 and unknown.get_json()["error"] == "unknown_region"
    assert "region" in unknown.get_json()["errors"]["query"]
    for path in (REPORTS, f"{REPORTS}.csv", "/api/v1/public/stats"):
        assert admin.get(path, query_string={"region": "999999", "period": _year()}).status_code == 404
    cases = [
        ({"region": "4306", "period": _year()}, "region"),
        ({"period": _year()}, "region"),
        ({"region": YUEYANG}, "period"),
        ({"region": YUEYANG, "period": "2026-13"}, "period"),
        ({"region": YUEYANG, "period": "2026-Q5"}, "period"),
        ({"region": YUEYANG, "period": "2026-Q0"}, "period"),
        ({"region": YUEYANG, "period": "26"}, "period"),
        ({"region": YUEYANG, "period": "1999"}, "period"),
        ({"region": YUEYANG, "period": "2026-1"}, "period"),
        ({"region": YUEYANG, "period": "２０２６"}, "period"),
        ({"region": YUEYANG, "period": str(today.year + 1)}, "period"),                   # not begun
        ({"region": YUEYANG, "period": f"{following.year}-{following.month:02d}"}, "period"),
        ({"region": YUEYANG, "period": _year(), "from": "2026-01"}, "period"),
        ({"region": YUEYANG, "from": "2026-01"}, "to"),
        ({"region": YUEYANG, "to": "2026-01"}, "from"),
        ({"region": YUEYANG, "from": "2026-06", "to": "2026-01"}, "from"),                 # inverted
        ({"region": YUEYANG, "from": "2026-1", "to": "2026-06"}, "from"),
        ({"region": YUEYANG, "from": "2026-01\n", "to": "2026-06"}, "from"),
        ({"region": YUEYANG, "from": "2010-01", "to": "2026-01"}, "to"),                   # over ten years
        ({"region": YUEYANG, "from": f"{today.year}-01", "to": f"{following.year}-{following.month:02d}"}, "to"),
        ({"region": YUEYANG, "period": _year(), "format": "xml"}, "format"),
        ({"region": YUEYANG, "period": _year(), "granularity": "week"}, "granularity"),
    ]
    for query, field in cases:
        for path in (REPORTS, f"{REPORTS}.csv", "/api/v1/public/stats"):
            if field == "format" and path != REPORTS:
                continue
            response = admin.get(path, query_string=query)
            assert response.status_code == 422, (path, query, response.get_json())
            assert field in response.get_json()["errors"]["query"], (path, query, response.get_json())
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(AuditLog)) == audit_rows


# --- the command line --------------------------------------------------------------------------------------


def test_the_cli_prints_the_report(app: Flask, world: World) -> None:
    def run(*args: str) -> Any:
        return CliRunner().invoke(main, ["reports", "show", *args], obj={"app": app})

    shown = run("--region", YUEYANG, "--period", _year())
    assert shown.exit_code == 0, shown.output
    report = json.loads(shown.output)
    api_report = _report(world.staff["admin1"], YUEYANG, period=_year())
    assert {k: v for k, v in report.items() if k != "as_of"} == {k: v for k, v in api_report.items() if k != "as_of"}
    as_csv = run("--region", YUEYANG, "--period", _year(), "--format", "csv")
    assert as_csv.exit_code == 0 and as_csv.output.startswith(",".join(reports.CSV_HEADER))
    assert run("--region", "999999", "--period", _year()).exit_code == 1
    bad = run("--region", YUEYANG, "--period", "2026-Q9")
    assert bad.exit_code == 1 and "period" in bad.output
    assert run("--region", YUEYANG, "--period", _year(), "--format", "xml").exit_code == 2


# --- public statistics -------------------------------------------------------------------------------------

PUBLIC = "/api/v1/public/stats"


def _crowd(app: Flask, api: Api, region: str, count: int, prefix: str) -> list[int]:
    """``count`` residents of ``region`` (signed up through the service), each with one bus ride credited."""
    from backend.services import residents

    ids = []
    for i in range(count):
        with app.app_context():
            ids.append(residents.sign_up(f"{prefix}{i}", PASSWORD, f"{prefix} {i}", region).id)
            db.session.commit()
        _record(app, "bus_ride", {"distance_km": "10", "duration_min": 30}, region, ids[-1])
    return ids


def _public(api: Api, region: str, **query: str) -> dict[str, Any]:
    response = api.as_token(None).get(PUBLIC, query_string={"region": region, "period": _year(), **query})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _values(found: Any) -> list[Any]:
    """Every cell's value in a public answer."""
    if isinstance(found, dict):
        return [found["value"]] if "suppressed" in found else [v for item in found.values() for v in _values(item)]
    return [v for item in found for v in _values(item)] if isinstance(found, list) else []


def _hidden(cell: dict[str, Any]) -> bool:
    return cell["value"] is None and cell["suppressed"] is True


def test_a_cell_of_nine_people_is_suppressed_and_one_of_ten_is_published(app: Flask, api: Api,
                                                                           staff: dict[str, Api]) -> None:
    _crowd(app, api, JUNSHAN, 10, "js")
    _crowd(app, api, YUEYANGLOU, 9, "yyl")

    ten = _public(api, JUNSHAN)
    report = _report(staff["admin1"], JUNSHAN, period=_year())
    assert ten["min_people"] == 10 and (ten["region"], ten["period"]) == (JUNSHAN, _year())
    assert ten["participants"]["residents"] == {"value": 10, "suppressed": False}
    assert _hidden(ten["participants"]["households"])                       # none: 0 people stand behind it
    assert ten["activities"]["total"] == {"value": 10, "suppressed": False}
    assert ten["activities"]["by_scenario"] == [{"scenario": "bus_ride", "value": 10, "suppressed": False}]
    grams = report["reductions"]["total"]["net_grams"]
    assert grams == 5200 and ten["certified_grams"]["total"] == {"value": grams, "suppressed": False}
    assert ten["points"]["issued"] == {"value": report["points"]["issued"], "suppressed": False}
    assert _hidden(ten["points"]["redeemed"])

    nine = _public(api, YUEYANGLOU)
    for cell in (nine["participants"]["residents"], nine["activities"]["total"], nine["certified_grams"]["total"],
                 nine["points"]["issued"], *nine["activities"]["by_scenario"], *nine["certified_grams"]["by_scenario"]):
        assert cell["suppressed"] is True and cell["value"] is None, nine
    assert [c["scenario"] for c in nine["activities"]["by_scenario"]] == ["bus_ride"]
    assert _values(nine) == [None] * 8                                      # no figure of Yueyanglou is shown

    city = _public(api, YUEYANG)                                             # 19 people: published
    assert city["participants"]["residents"] == {"value": 19, "suppressed": False}


def test_a_total_never_gives_a_suppressed_cell_away(app: Flask, api: Api, staff: dict[str, Api]) -> None:
    ids = _crowd(app, api, JUNSHAN, 10, "js")
    for resident_id in ids[:3]:
        _record(app, "bike_ride", {"distance_km": "6", "duration_min": 25}, JUNSHAN, resident_id, hours_ago=40)
    stats_ = _public(api, JUNSHAN)
    cells = {c["scenario"]: c for c in stats_["activities"]["by_scenario"]}
    # bike_ride (3 people) is suppressed; bus_ride (10 people) too, or the total minus it would show it.
    assert _hidden(cells["bike_ride"]) and _hidden(cells["bus_ride"])
    assert stats_["activities"]["total"] == {"value": 13, "suppressed": False}
    grams = {c["scenario"]: c for c in stats_["certified_grams"]["by_scenario"]}
    assert _hidden(grams["bike_ride"]) and _hidden(grams["bus_ride"])
    report = _report(staff["admin1"], JUNSHAN, period=_year())
    assert stats_["certified_grams"]["total"] == {"value": report["reductions"]["total"]["net_grams"],
                                                  "suppressed": False}


@pytest.mark.parametrize("junk", ["not json", "[1, 2]", '{"region": "430611"}', b"\xff\xfe", "",
                                  '{"region": "430000", "period": "x"}'],
                         ids=["text", "list", "partial", "bytes", "empty", "other-region"])
def test_a_malformed_cached_value_is_discarded_and_the_figures_computed(app: Flask, api: Api, junk: Any) -> None:
    """Never trusted (issue #7, bad input): whatever the cache holds, the answer is the database's."""
    from backend.extensions import store
    from backend.services import public_stats

    _crowd(app, api, JUNSHAN, 10, "js")
    fresh = _public(api, JUNSHAN)
    key = f"{public_stats.CACHE_PREFIX}{JUNSHAN}:{_year()}"
    with app.app_context():
        store.set(key, junk)
    def figures(body: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in body.items() if k != "as_of"}  # the moment it was computed

    assert figures(_public(api, JUNSHAN)) == figures(fresh)
    with app.app_context():
        assert figures(json.loads(store.get(key))) == figures(fresh)             # replaced by the real figures


def test_the_public_figures_are_cached_briefly_and_redis_is_never_needed(app: Flask, api: Api,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    from backend.extensions import store
    from backend.services import public_stats

    ids = _crowd(app, api, JUNSHAN, 10, "js")
    first = _public(api, JUNSHAN)
    _record(app, "bike_ride", {"distance_km": "6", "duration_min": 25}, JUNSHAN, ids[0], hours_ago=40)
    assert _public(api, JUNSHAN) == first                                    # from the cache
    with app.app_context():
        key = f"{public_stats.CACHE_PREFIX}{JUNSHAN}:{_year()}"
        assert 0 < store.ttl(key) <= public_stats.TTL_OPEN
        store.delete(key)
    assert _public(api, JUNSHAN)["activities"]["total"]["value"] == 11      # recomputed

    def down(*_args: Any, **_kwargs: Any) -> Any:
        raise RedisConnectionError("Redis is down")

    with app.app_context():
        monkeypatch.setattr(store.client, "get", down)
        monkeypatch.setattr(store.client, "set", down)
    assert _public(api, JUNSHAN)["activities"]["total"]["value"] == 11
