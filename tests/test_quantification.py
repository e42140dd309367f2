"""The quantification service: facts looked up from history, versions, the reduction record."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Flask

from backend.db import db
from backend.services import activities
from backend.services.quantification import Quantifier, replay
from tests.conftest import Api


def _household(api: Api, resident: Api) -> tuple[int, int]:
    household = resident.post("/api/v1/households", {"name": "李华家"}).get_json()
    return resident.get("/api/v1/me").get_json()["id"], household["id"]


def _bill(app: Flask, resident_id: int, household_id: int, start: str, end: str, kwh: str, size: int = 1):  # type: ignore[no-untyped-def]
    with app.app_context():
        activity, reduction = activities.record_one(
            activity_type="household_electricity", occurred_at=datetime.fromisoformat(start).replace(tzinfo=UTC),
            data={"period_start": start, "period_end": end, "kwh": kwh, "household_size": size},
            region="430602", source="demo", resident_id=resident_id, household_id=household_id,
            quantifier=Quantifier())
        db.session.commit()
        return activity.status, reduction.grams if reduction else None, dict(reduction.facts) if reduction else {}


def test_a_heavy_user_is_compared_with_last_years_bill(app: Flask, api: Api, resident: Api) -> None:
    resident_id, household_id = _household(api, resident)
    _bill(app, resident_id, household_id, "2025-06-01", "2025-06-30", "120")
    # 1 person × 2.0 × 30 = 60 kWh baseline; 90 is above it but 30 below last June's 120.
    status, grams, facts = _bill(app, resident_id, household_id, "2026-06-01", "2026-06-30", "90")
    assert (status, grams, facts) == ("credited", 16185, {"same_period_last_year_kwh": "120"})


def test_last_years_bill_is_scaled_when_billing_dates_drift(app: Flask, api: Api, resident: Api) -> None:
    resident_id, household_id = _household(api, resident)
    _bill(app, resident_id, household_id, "2025-06-03", "2025-07-02", "120")    # 4 kWh a day, 28 days overlap
    _, grams, facts = _bill(app, resident_id, household_id, "2026-06-01", "2026-06-30", "100")
    assert facts == {"same_period_last_year_kwh": "120"}                        # 4 × 30 days
    assert grams == 10790                                                       # (120 − 100) × 539.5


def test_without_history_a_heavy_user_saves_nothing(app: Flask, api: Api, resident: Api) -> None:
    resident_id, household_id = _household(api, resident)
    _bill(app, resident_id, household_id, "2025-01-01", "2025-01-31", "300")    # another season: no match
    status, grams, facts = _bill(app, resident_id, household_id, "2026-06-01", "2026-06-30", "90")
    assert (status, grams, facts) == ("credited", 0, {})


def test_the_recorded_reduction_replays(app: Flask, api: Api, resident: Api) -> None:
    resident_id, household_id = _household(api, resident)
    _bill(app, resident_id, household_id, "2025-06-01", "2025-06-30", "120")
    _bill(app, resident_id, household_id, "2026-06-01", "2026-06-30", "90")
    with app.app_context():
        from sqlalchemy import select

        from backend.models import Reduction

        reduction = db.session.scalars(select(Reduction).order_by(Reduction.id.desc())).first()
        assert (reduction.methodology_ref, reduction.grams) == ("household_electricity@1", 16185)
        assert len(reduction.factors_sha256) == 64 and reduction.trace["saved_kwh"] == "30"
        assert replay(reduction).ok


def test_outliers_go_to_review_and_implausible_trips_are_rejected(app: Flask, api: Api, resident: Api) -> None:
    resident_id = resident.get("/api/v1/me").get_json()["id"]
    with app.app_context():
        at = datetime(2026, 11, 1, 8, tzinfo=UTC)
        heavy, none_ = activities.record_one(activity_type="recycling", occurred_at=at, region="430602", source="demo",
                                             data={"material": "steel", "weight_kg": 80}, resident_id=resident_id)
        fast, nothing = activities.record_one(activity_type="walk", occurred_at=at, region="430602", source="demo",
                                              data={"distance_km": 10, "duration_min": 20}, resident_id=resident_id)
        assert (heavy.status, heavy.reason, none_) == ("pending_review", "heavy_drop_off", None)
        assert (fast.status, fast.reason, nothing) == ("rejected", "implausible_speed", None)
        assert fast.findings[0]["field"] == "duration_min"


def test_a_batch_looks_up_every_households_last_year_in_one_query(app: Flask, api: Api) -> None:
    from sqlalchemy import event

    from backend.methodology.registry import registry
    from tests.conftest import sign_up

    households = []
    for name, kwh, last_june in (("a", "90", "120"), ("b", "95", "150"), ("c", "90", None)):
        resident_id, household_id = _household(api, sign_up(api, f"bill-{name}"))
        if last_june is not None:
            _bill(app, resident_id, household_id, "2025-06-01", "2025-06-30", last_june)
        households.append((resident_id, household_id, kwh))
    _bill(app, households[0][0], households[0][1], "2025-01-01", "2025-01-31", "300")  # another season
    at = datetime(2026, 6, 1, tzinfo=UTC)
    with app.app_context():
        entry = registry().for_type("household_electricity")
        evidence = [registry().evidence_schema("household_electricity").load(
            {"period_start": "2026-06-01", "period_end": "2026-06-30", "kwh": kwh, "household_size": 1})
            for _, _, kwh in households]
        statements: list[str] = []
        event.listen(db.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
        quantifier = Quantifier()
        quantifier.prefetch([(entry, "household_electricity", at, data, household_id, resident_id)
                             for (resident_id, household_id, _), data in zip(households, evidence, strict=True)])
        assert sum("FROM activities" in s for s in statements) == 1
        facts = [quantifier.quantify(entry, "household_electricity", at, data, "430602", household_id=household_id,
                                     resident_id=resident_id).facts
                 for (resident_id, household_id, _), data in zip(households, evidence, strict=True)]
        assert sum("FROM activities" in s for s in statements) == 1  # quantifying asked nothing more
    assert facts == [{"same_period_last_year_kwh": "120"}, {"same_period_last_year_kwh": "150"}, {}]
