"""A believable Yueyang demo: staff, residents, a household, communities, partners, a merchant.

Idempotent: everything is looked up by its natural key first, so ``make run`` can seed every
time. Refused in production, where demo logins with a published password must never exist.
"""

from __future__ import annotations

from sqlalchemy import select

from backend.config import current_settings
from backend.db import db
from backend.errors import Conflict
from backend.models import Community, Enterprise, Household, Merchant, Partner, Resident, User
from backend.services import communities, enterprises, households, merchants, partners, residents, users
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
