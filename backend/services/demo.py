"""A believable Yueyang demo: staff, residents, a household, communities, partners, a merchant.

Idempotent: everything is looked up by its natural key first, so ``make run`` can seed every
time. Refused in production, where demo logins with a published password must never exist.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from backend.config import current_settings
from backend.db import db
from backend.errors import Conflict
from backend.methodology import CHINA_STANDARD_TIME
from backend.models import Community, Enterprise, Household, Merchant, Partner, Resident, User
from backend.services import communities, enterprises, households, ledger, merchants, partners, residents, users
from backend.validators import uscc_with_check

DEMO_PASSWORD = "carbon-demo-2026"  # noqa: S105 (published on purpose: demo only, refused in production)

STAFF = [
    ("admin", ["admin"], None),
    ("yy-operator", ["operator"], "430600"),
    ("yy-auditor", ["auditor"], "430600"),
    ("yy-auditor2", ["auditor"], "430600"),
]
RESIDENTS = [
    ("lihua", "李华", "430602"),
    ("wangfang", "王芳", "430602"),
    ("zhangwei", "张伟", "430611"),
    ("chenjing", "陈静", "430611"),
    ("liuyang", "刘洋", "430681"),
]
COMMUNITIES = [
    ("南湖绿色骑行团", "430602", "每周末骑行环南湖，一起低碳出行。", "lihua", ["wangfang", "liuyang"]),
    ("君山植树志愿者", "430611", "君山区植树护林志愿者社群。", "zhangwei", ["chenjing", "lihua"]),
]
PARTNERS = [
    ("岳阳市公共交通集团", "transit", ["bus_ride"], "430600"),
    ("岳阳共享单车运营中心", "bike_share", ["bike_ride"], "430600"),
    ("岳阳绿色回收智能柜", "recycling", ["recycling"], "430600"),
    ("国网岳阳供电公司", "grid", ["household_electricity", "rooftop_pv"], "430600"),
]
MERCHANT = ("岳阳楼区绿色生活超市", "430602", "yy-shop")


def seed() -> list[str]:
    if current_settings().env == "production":
        raise Conflict("The demo is not seeded in production.", error="demo_in_production")
    report: list[str] = []
    staff = {name: _staff(name, roles, scope, report) for name, roles, scope in STAFF}
    people = {name: _resident(name, display, region, report) for name, display, region in RESIDENTS}
    _household(people, report)
    for name, region, description, creator, members in COMMUNITIES:
        _community(name, region, description, people[creator], [people[m] for m in members], report)
    operator = staff["yy-operator"]
    for name, kind, types, region in PARTNERS:
        _partner(name, kind, types, region, operator, report)
    _merchant(operator, report)
    _enterprise(people["liuyang"], report)
    _history(people, report)
    _proposed_travel_version(operator, report)
    report.append(f"demo ready: every demo login uses the password {DEMO_PASSWORD!r}")
    return report


def _staff(username: str, roles: list[str], scope: str | None, report: list[str]) -> User:
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None:
        user = users.create_staff_user(username, DEMO_PASSWORD, roles, scope_region=scope, actor=None)
        report.append(f"staff {username}: {', '.join(roles)}" + (f" of {scope}" if scope else ""))
    return user


def _resident(username: str, display_name: str, region: str, report: list[str]) -> Resident:
    resident = db.session.scalar(
        select(Resident).join(User, User.id == Resident.user_id).where(User.username == username)
    )
    if resident is None:
        resident = residents.sign_up(username, DEMO_PASSWORD, display_name, region)
        report.append(f"resident {username} ({display_name}) in {region}")
    return resident


def _household(people: dict[str, Resident], report: list[str]) -> None:
    owner, member = people["lihua"], people["wangfang"]
    household = residents.household_of(owner.id)
    if household is None:
        household = households.create(owner, "李华家")
        report.append(f"household {household.name} (invite code {household.invite_code})")
    if residents.household_of(member.id) is None:
        households.join(member, db.session.get(Household, household.id).invite_code or "")


def _community(
    name: str, region: str, description: str, creator: Resident, members: list[Resident], report: list[str]
) -> None:
    community = db.session.scalar(select(Community).where(Community.region_code == region, Community.name == name))
    if community is None:
        community = communities.create(creator, name, region, description)
        report.append(f"community {name} in {region}")
    for member in members:
        if not communities.is_member(member.id, community.id):
            communities.join(member, community.id)


def _partner(name: str, kind: str, types: list[str], region: str, operator: User, report: list[str]) -> None:
    if db.session.scalar(select(Partner.id).where(Partner.name == name)) is None:
        issued = partners.create(name, kind, types, region, actor=operator)
        report.append(
            f"partner {name}: key id {issued.partner.key_id}, secret {issued.secret} (shown once; rotate to replace)"
        )


def _merchant(operator: User, report: list[str]) -> None:
    name, region, staff_login = MERCHANT
    merchant = db.session.scalar(select(Merchant).where(Merchant.name == name))
    if merchant is None:
        merchant = merchants.create(name, region, actor=operator)
        report.append(f"merchant {name} in {region}")
    if db.session.scalar(select(User.id).where(User.username == staff_login)) is None:
        merchants.add_staff(merchant.id, staff_login, DEMO_PASSWORD, actor=operator)
        report.append(f"merchant staff {staff_login}")


def _enterprise(manager: Resident, report: list[str]) -> None:
    code = uscc_with_check("92430681MA4RT7QX0")
    if db.session.scalar(select(Enterprise.id).where(Enterprise.uscc == code)) is None:
        enterprise = enterprises.apply(manager, "汨罗市绿源便利店", "430681", code)
        report.append(f"enterprise {enterprise.name} ({code}) awaiting review")


# Typical door-to-door speeds in km/h and the distance range of a morning trip, by mode.
COMMUTES = {"bus_ride": (20, 3, 15), "bike_ride": (14, 1, 8), "walk": (4.5, 0.5, 3), "metro_ride": (35, 5, 20)}


def _history(people: dict[str, Resident], report: list[str]) -> None:
    """A month of green trips, recycling and one electricity bill, quantified as they would be."""
    from backend.models import Activity
    from backend.services import activities
    from backend.services.quantification import Quantifier

    if db.session.scalar(select(Activity.id).where(Activity.source == "demo").limit(1)) is not None:
        return
    rng = random.Random(2026)  # the same believable month every time
    quantifier = Quantifier()
    today = datetime.now(CHINA_STANDARD_TIME).replace(hour=0, minute=0, second=0, microsecond=0)
    count = 0

    reductions: list[int] = []

    def add(person: Resident, kind: str, at: datetime, data: dict[str, object], household_id: int | None = None,
            ) -> None:
        nonlocal count
        _, reduction = activities.record_one(activity_type=kind, occurred_at=at.astimezone(UTC), data=data,
                                             region=person.region_code, source="demo", resident_id=person.id,
                                             household_id=household_id, quantifier=quantifier)
        if reduction is not None:
            reductions.append(reduction.id)
        count += 1

    for person in sorted(people.values(), key=lambda p: p.id):
        for day in range(30, 0, -1):
            morning = today - timedelta(days=day) + timedelta(hours=7, minutes=rng.randint(30, 90))
            kind = rng.choice(sorted(COMMUTES))
            speed, shortest, longest = COMMUTES[kind]
            km = rng.uniform(shortest, longest)
            add(person, kind, morning, {"distance_km": f"{km:.2f}", "duration_min": max(5, round(km / speed * 60))})
            if day % 7 == 3:
                add(person, "recycling", morning + timedelta(hours=11),
                    {"material": rng.choice(["cardboard", "pet", "glass", "mixed_paper"]),
                     "weight_kg": f"{rng.uniform(0.5, 6):.2f}"})
        household = residents.household_of(person.id)
        if household is not None and household.owner_resident_id == person.id:
            first = (today - timedelta(days=31)).date().replace(day=1)
            last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
            add(person, "household_electricity", datetime.combine(first, datetime.min.time(), CHINA_STANDARD_TIME),
                {"period_start": first.isoformat(), "period_end": last.isoformat(), "kwh": "98.6",
                 "household_size": 2}, household_id=household.id)
    db.session.flush()
    results = ledger.credit(reductions)
    points = sum(r.points for r in results if r.status == "credited")
    report.append(f"history: {count} activities over the last 30 days, quantified with the versions in force; "
                  f"{points} points credited under the exchange rules")


def _proposed_travel_version(operator: User, report: list[str]) -> None:
    """Yueyang's operator proposes a higher bus factor; it waits for an auditor (simulate, approve)."""
    import copy

    from backend.methodology.registry import registry
    from backend.models import PolicyVersion
    from backend.services import governance

    exists = db.session.scalar(select(PolicyVersion.id).where(
        PolicyVersion.kind == "methodology", PolicyVersion.subject == "travel", PolicyVersion.version > 1).limit(1))
    if exists is not None:
        return
    parameters = copy.deepcopy(registry().get("travel").defaults)
    parameters["bus_g_per_pkm"].update(value="60", vintage="2025",
                                       source="岳阳市公共交通集团 2025 fleet fuel records (demo figure)")
    version = governance.create_draft("methodology", "travel", region="430600", payload=parameters,
                                      effective_from=None, note="Yueyang's buses burn more diesel per "
                                      "passenger-km than Beijing's; proposal from the 2025 fleet records.",
                                      actor=operator)
    governance.submit("methodology", "travel", version.version, actor=operator)
    report.append(f"methodology version {version.ref} for 430600 submitted, waiting for an auditor")
