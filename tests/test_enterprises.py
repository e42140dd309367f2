"""Small and micro enterprise accounts: USCC validation, review by an operator in scope."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.validators import USCC_CHARSET, uscc_problem, uscc_with_check
from tests.conftest import Api

# Published codes of real companies (their check characters are right).
REAL_CODES = ["91350100M000100Y43", "91110000600037341L", "91440300708461136T"]


@pytest.mark.parametrize("code", REAL_CODES)
def test_real_codes_validate(code: str) -> None:
    assert uscc_problem(code) is None


@pytest.mark.parametrize(
    ("code", "problem"),
    [
        ("91350100M000100Y4", "must be 18 characters"),
        ("91350100M000100Y44", "check character"),
        ("91350100M0001OOY43", "character"),
        ("91ABCDEFM000100Y43", "region"),
    ],
)
def test_bad_codes_say_why(code: str, problem: str) -> None:
    assert problem in (uscc_problem(code) or "")


body17 = st.tuples(
    st.text(alphabet=USCC_CHARSET, min_size=2, max_size=2),
    st.text(alphabet="0123456789", min_size=6, max_size=6),
    st.text(alphabet=USCC_CHARSET, min_size=9, max_size=9),
).map("".join)


@given(body17, st.integers(min_value=0, max_value=17), st.sampled_from(USCC_CHARSET))
def test_any_single_character_change_is_caught(first17: str, position: int, replacement: str) -> None:
    code = uscc_with_check(first17)
    assert uscc_problem(code) is None
    changed = code[:position] + replacement + code[position + 1:]
    if changed != code:
        assert uscc_problem(changed) is not None


def _apply(api: Api, code: str | None = None, region: str = "430681") -> object:
    return api.post("/api/v1/enterprises", {
        "name": "汨罗市绿源便利店", "region": region, "uscc": code or uscc_with_check("92430681MA4RT7QX0"),
    })


def test_apply_and_review(resident: Api, staff: dict[str, Api]) -> None:
    applied = _apply(resident)
    assert applied.status_code == 201
    enterprise = applied.get_json()
    assert enterprise["status"] == "pending"
    assert resident.get("/api/v1/enterprises").get_json()[0]["id"] == enterprise["id"]

    operator = staff["operator1"]
    pending = operator.get("/api/v1/admin/enterprises?status=pending").get_json()["items"]
    assert [e["id"] for e in pending] == [enterprise["id"]]
    no_reason = operator.post(f"/api/v1/admin/enterprises/{enterprise['id']}/reject", {})
    assert no_reason.status_code == 422 and "note" in no_reason.get_json()["errors"]["json"]
    approved = operator.post(f"/api/v1/admin/enterprises/{enterprise['id']}/approve", {})
    assert approved.get_json()["status"] == "active"
    twice = operator.post(f"/api/v1/admin/enterprises/{enterprise['id']}/reject", {"note": "late"})
    assert (twice.status_code, twice.get_json()["error"]) == (409, "invalid_transition")
    log = staff["auditor1"].get("/api/v1/admin/audit-log?action=enterprise.approve").get_json()["items"]
    assert log[0]["actor"] == "operator1" and log[0]["after"]["status"] == "active"


def test_bad_codes_and_duplicates(resident: Api) -> None:
    bad = _apply(resident, "91350100M000100Y44")
    assert (bad.status_code, bad.get_json()["error"]) == (422, "invalid_uscc")
    assert "uscc" in bad.get_json()["errors"]["json"]
    short = _apply(resident, "9135")
    assert short.status_code == 422 and "uscc" in short.get_json()["errors"]["json"]
    assert _apply(resident, REAL_CODES[0].lower()).status_code == 201
    dup = _apply(resident, REAL_CODES[0])
    assert (dup.status_code, dup.get_json()["error"]) == (409, "uscc_taken")


def test_operators_review_only_their_region(api: Api, resident: Api, staff: dict[str, Api], app) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import login, make_staff

    enterprise = _apply(resident, region="430204").get_json()  # Shifeng, Zhuzhou
    yueyang = staff["operator1"]
    assert yueyang.get("/api/v1/admin/enterprises").get_json()["items"] == []
    out = yueyang.post(f"/api/v1/admin/enterprises/{enterprise['id']}/approve", {})
    assert (out.status_code, out.get_json()["error"]) == (403, "out_of_scope")
    make_staff(app, "zz-operator", "operator", scope="430200")
    zhuzhou = login(api, "zz-operator")
    assert zhuzhou.post(f"/api/v1/admin/enterprises/{enterprise['id']}/approve", {}).status_code == 200


def test_only_the_manager_sees_it(api: Api, resident: Api) -> None:
    from tests.conftest import sign_up

    enterprise = _apply(resident).get_json()
    other = sign_up(api, "other")
    assert other.get(f"/api/v1/enterprises/{enterprise['id']}").get_json()["error"] == "not_manager"
    assert other.get("/api/v1/enterprises").get_json() == []
