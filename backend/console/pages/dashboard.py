"""The dashboard: the daily roll-up as charts (grams by scenario and by region, participants,
points issued / spent / expired) and the top communities, for a window of days and a region."""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import render_template, request

from backend.api.admin.operations import READERS
from backend.console import charts, formatting
from backend.console.blueprint import bp
from backend.console.i18n import current_language, label, translate
from backend.console.session import current_user, staff_page
from backend.errors import field_error
from backend.services import stats
from backend.services.regions import is_within, list_regions


def _date_arg(name: str) -> date | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise field_error(name, translate("dash.bad_date"), location="query") from None


def _region_arg() -> str | None:
    raw = request.args.get("region", "").strip()
    if not raw:
        return None
    if not (len(raw) == 6 and raw.isdigit()):
        raise field_error("region", "must be a six-digit GB/T 2260 region code", location="query")
    return raw


def _series_by_type(days: list[dict[str, Any]]) -> list[tuple[str, list[int]]]:
    kinds = sorted({row["activity_type"] for day in days for row in day["by_type"]})
    grams = {kind: [0] * len(days) for kind in kinds}
    for i, day in enumerate(days):
        for row in day["by_type"]:
            grams[row["activity_type"]][i] += row["grams"]
    return [(label("type", kind), grams[kind]) for kind in kinds]


def _series_by_region(by_region: dict[str, Any], lang: str) -> list[tuple[str, list[int]]]:
    root = by_region["region"]
    out = []
    for region in by_region["regions"]:
        name = region["name"] if lang == "zh" else region["name_en"]
        if region["code"] == root and len(by_region["regions"]) > 1:
            name = translate("series.itself", name=name)
        out.append((name, [day["grams"].get(region["code"], 0) for day in by_region["days"]]))
    return out


def build_charts(daily: dict[str, Any], by_region: dict[str, Any], top: dict[str, Any], lang: str) -> dict[str, Any]:
    days = [row["day"] for row in daily["days"]]
    day_label = translate("col.day")
    grams, count = formatting.grams, formatting.num
    return {
        "by_type": charts.stacked_bars(days, _series_by_type(daily["days"]), grams, day_label=day_label),
        "by_region": charts.stacked_bars([row["day"] for row in by_region["days"]],
                                         _series_by_region(by_region, lang), grams, day_label=day_label),
        "participants": charts.lines(days, [
            (translate("series.residents"), [row["residents"] for row in daily["days"]]),
            (translate("series.households"), [row["households"] for row in daily["days"]])], count,
            day_label=day_label),
        "points": charts.lines(days, [
            (translate(f"series.{figure}"), [row[f"points_{figure}"] for row in daily["days"]])
            for figure in ("issued", "redeemed", "donated", "rights", "expired")], count, day_label=day_label),
        "communities": charts.ranking(
            [(c["name"], c["grams"], f"{c['region']} · {c['contributors']}") for c in top["communities"]], grams,
            header=[translate("col.community"), translate("col.grams"),
                    f"{translate('col.region')} · {translate('col.contributors')}"]),
    }


@bp.get("/")
@staff_page(*READERS)
def dashboard() -> str:
    user = current_user()
    first, last, region = _date_arg("from"), _date_arg("to"), _region_arg()
    daily = stats.daily(user, region=region, first=first, last=last)
    by_region = stats.grams_by_region(user, region=region, first=first, last=last)
    top = stats.top_communities(user, region=region, first=first, last=last)
    regions = [r for r in list_regions() if is_within(r.code, user.scope_region_code)]
    return render_template("console/dashboard.html", daily=daily, charts=build_charts(daily, by_region, top,
                                                                                      current_language()),
                           regions=regions, region=region)
