"""The conformance suite every methodology passes, built-in or third-party.

A methodology author runs it from their own package's tests::

    from backend.methodology.conformance import check_methodology

    def test_conformance():
        check_methodology(MyMethodology, examples=[("tree_planting", {"trees": 10, "months": 6}, 10800)])

It raises ``AssertionError`` listing every breach: nondeterminism, impurity (a database, network,
file or clock used inside ``check``/``quantify``), negative or fractional grams, grams not rounded
down from the trace's exact value, bad evidence accepted or refused without naming its field,
replay from stored evidence differing, a crash on hypothesis-generated evidence, and worked
examples that do not match to the gram. Needs ``hypothesis`` (a test dependency).
"""

from __future__ import annotations

import builtins
import contextlib
import datetime as dt
import socket
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from decimal import ROUND_FLOOR, Decimal
from typing import Any

import marshmallow as ma

from backend.methodology.contract import ActivityInput, FiniteDecimal, Methodology
from backend.methodology.parameters import load_factors_file, values

WHEN = dt.datetime(2026, 6, 15, 8, 30, tzinfo=dt.UTC)


class ImpureCall(AssertionError):
    """Raised when a methodology reaches outside its arguments."""


def _refuse(what: str) -> Any:
    def guard(*_args: Any, **_kwargs: Any) -> Any:
        raise ImpureCall(f"a methodology must be pure but it used {what}")

    return guard


class _GuardedDatetime(dt.datetime):
    now = classmethod(_refuse("the clock (datetime.now)"))  # type: ignore[assignment]
    utcnow = classmethod(_refuse("the clock (datetime.utcnow)"))  # type: ignore[assignment]
    today = classmethod(_refuse("the clock (datetime.today)"))  # type: ignore[assignment]


class _GuardedDate(dt.date):
    today = classmethod(_refuse("the clock (date.today)"))  # type: ignore[assignment]


@contextlib.contextmanager
def purity_guard(methodology: type[Methodology]) -> Iterator[None]:
    """Make the database, the network, files and the clock raise while the methodology runs."""
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import Session

    patches: list[tuple[Any, str, Any]] = [
        (socket.socket, "connect", _refuse("the network")),
        (socket, "create_connection", _refuse("the network")),
        (Session, "execute", _refuse("the database")),
        (Connection, "execute", _refuse("the database")),
        (builtins, "open", _refuse("a file")),
        (time, "time", _refuse("the clock (time.time)")),
        (time, "time_ns", _refuse("the clock (time.time_ns)")),
    ]
    home = methodology.__module__  # the methodology's module and any submodules of it
    for name, module in list(sys.modules.items()):
        if module is None or not (name == home or name.startswith(home + ".")):
            continue
        for attribute, value in list(vars(module).items()):
            if value is dt.datetime:
                patches.append((module, attribute, _GuardedDatetime))
            elif value is dt.date:
                patches.append((module, attribute, _GuardedDate))
    saved = [(target, attribute, getattr(target, attribute)) for target, attribute, _ in patches]
    try:
        for target, attribute, replacement in patches:
            setattr(target, attribute, replacement)
        yield
    finally:
        for target, attribute, original in reversed(saved):
            setattr(target, attribute, original)


def _stored(data: Mapping[str, Any]) -> dict[str, Any]:
    from backend.services.quantification import to_stored

    return to_stored(data)


def _run(m: Methodology, activity: ActivityInput, parameters: Mapping[str, Decimal]) -> tuple[Any, Any]:
    with purity_guard(type(m)):
        return m.check(activity, parameters), m.quantify(activity, parameters)


def _facts_for(m: Methodology, activity: ActivityInput) -> dict[str, Any]:
    # Facts come from the platform; offer a plausible value for each so both branches are exercised.
    return {request.name: "0" for request in m.required_facts(activity)}


def _check_one(m: Methodology, activity_type: str, data: dict[str, Any], parameters: Mapping[str, Decimal],
               problems: list[str], label: str) -> int | None:
    evidence = m.evidence_schema(activity_type).load(data)
    activity = ActivityInput(activity_type, WHEN, evidence)
    activity = ActivityInput(activity_type, WHEN, evidence, _facts_for(m, activity))
    try:
        findings, first = _run(m, activity, parameters)
        again_findings, again = _run(m, activity, parameters)
    except ImpureCall as exc:
        problems.append(f"{label}: {exc}")
        return None
    if (first.grams, first.trace, findings) != (again.grams, again.trace, again_findings):
        problems.append(f"{label}: not deterministic ({first.grams} g then {again.grams} g)")
    grams = first.grams
    if not isinstance(grams, int) or isinstance(grams, bool):
        problems.append(f"{label}: grams must be an int, got {grams!r}")
        return None
    if grams < 0:
        problems.append(f"{label}: negative grams {grams}")
    if m.engagement_only and grams != 0:
        problems.append(f"{label}: engagement-only methodology returned {grams} g")
    exact = first.trace.get("exact_g") if isinstance(first.trace, dict) else None
    if exact is not None:
        floor = max(0, int(Decimal(exact).to_integral_value(rounding=ROUND_FLOOR)))
        if grams != floor:
            problems.append(f"{label}: {grams} g is not the exact {exact} g rounded down")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in first.trace.items()):
        problems.append(f"{label}: the trace must map strings to strings")
    replayed_evidence = m.evidence_schema(activity_type).load(_stored(evidence))
    replayed = m.quantify(ActivityInput(activity_type, WHEN, replayed_evidence, activity.facts), parameters)
    if (replayed.grams, replayed.trace) != (first.grams, first.trace):
        problems.append(f"{label}: replay from stored evidence gives {replayed.grams} g, not {grams} g")
    return grams


def _refusal_problem(schema: ma.Schema, data: dict[str, Any], name: str, label: str) -> str | None:
    """None when ``data`` is refused with an error naming ``name``; else what went wrong."""
    try:
        schema.load(data)
    except ma.ValidationError as exc:
        return None if name in exc.messages else f"{label} refused without naming {name!r}: {exc.messages}"
    return f"{label} was accepted"


def _bad_evidence_problems(m: Methodology, activity_type: str, good: dict[str, Any]) -> list[str]:
    schema = m.evidence_schema(activity_type)
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("surprise_field", {**good, "surprise_field": 1}, f"{activity_type}: an unknown field")]
    for name, field in schema.fields.items():
        if field.dump_only:
            continue
        bad_values: list[Any] = [{"not": "a value"}, [1, 2]]
        if isinstance(field, FiniteDecimal):
            bad_values += ["NaN", "Infinity", float("nan"), float("inf"), "abc", True]
            if field.minimum is None or field.minimum >= 0:
                bad_values.append(-1)
        cases += [(name, {**good, name: bad}, f"{activity_type}: {name!r} = {bad!r}") for bad in bad_values]
        if field.required:
            missing = {k: v for k, v in good.items() if k != name}
            cases.append((name, missing, f"{activity_type}: missing required {name!r}"))
    return [problem for name, data, label in cases if (problem := _refusal_problem(schema, data, name, label))]


def _strategy(field: ma.fields.Field) -> Any:
    """A hypothesis strategy of plausible values for one evidence field."""
    from hypothesis import strategies as st

    validators = field.validators
    one_of = next((v for v in validators if isinstance(v, ma.validate.OneOf)), None)
    if one_of is not None:
        return st.sampled_from(list(one_of.choices))
    if isinstance(field, FiniteDecimal):
        low = field.minimum if field.minimum is not None else Decimal(-1000)
        high = min(field.maximum if field.maximum is not None else Decimal(10**6), Decimal(10**6))
        return st.decimals(min_value=low, max_value=high, places=3, allow_nan=False, allow_infinity=False) \
            .filter(lambda d: not (field.exclusive_minimum and d <= low)).map(str)
    if isinstance(field, ma.fields.Integer):
        bounds = next((v for v in validators if isinstance(v, ma.validate.Range)), None)
        return st.integers(min_value=bounds.min if bounds else -10, max_value=bounds.max if bounds else 10**6)
    if isinstance(field, ma.fields.Boolean):
        return st.booleans()
    if isinstance(field, ma.fields.Date):
        return st.dates(min_value=dt.date(2020, 1, 1), max_value=dt.date(2030, 12, 31)).map(dt.date.isoformat)
    if isinstance(field, ma.fields.String):
        return st.text(min_size=1, max_size=20)
    return st.none()


def _fuzz(m: Methodology, activity_type: str, parameters: Mapping[str, Decimal], max_examples: int,
          problems: list[str]) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    schema = m.evidence_schema(activity_type)
    plausible = st.fixed_dictionaries(
        {name: _strategy(f) for name, f in schema.fields.items() if f.required},
        optional={name: _strategy(f) for name, f in schema.fields.items() if not f.required},
    )
    anything = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                         max_size=3), max_leaves=5)
    arbitrary = st.dictionaries(st.sampled_from([*sorted(schema.fields), "other"]), anything, max_size=6)

    @settings(max_examples=max_examples, deadline=None, database=None,
              suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
    @given(st.one_of(plausible, arbitrary))
    def never_crashes(data: dict[str, Any]) -> None:
        try:
            evidence = schema.load(data)
        except ma.ValidationError:
            return
        activity = ActivityInput(activity_type, WHEN, evidence)
        activity = ActivityInput(activity_type, WHEN, evidence, _facts_for(m, activity))
        m.check(activity, parameters)
        result = m.quantify(activity, parameters)
        assert isinstance(result.grams, int) and result.grams >= 0, f"{data} gave {result.grams!r} g"
        stored = schema.load(_stored(evidence))
        replayed = m.quantify(ActivityInput(activity_type, WHEN, stored, activity.facts), parameters)
        assert (replayed.grams, replayed.trace) == (result.grams, result.trace), \
            f"{data}: replay from stored evidence differs: {replayed.trace} != {result.trace}"

    try:
        never_crashes()
    except Exception as exc:  # report, with hypothesis's minimal example in the message
        problems.append(f"{activity_type}: generated evidence broke it: {type(exc).__name__}: {exc}")


def check_methodology(
    methodology: type[Methodology] | Methodology,
    *,
    examples: Sequence[tuple[str, dict[str, Any], int]] = (),
    parameters: Mapping[str, Decimal] | None = None,
    max_examples: int = 150,
) -> None:
    """Run the whole suite; ``examples`` are worked examples (type, evidence, expected grams)."""
    m = methodology() if isinstance(methodology, type) else methodology
    cls = type(m)
    problems: list[str] = []
    from backend.methodology.registry import contract_problems

    problems += [f"contract: {p}" for p in contract_problems(cls, cls.id)]
    if problems:
        raise AssertionError("\n".join(problems))
    values_ = dict(parameters) if parameters is not None else values(load_factors_file(cls))
    covered = {t for t, _, _ in examples}
    missing = sorted(cls.types - covered)
    if missing:
        problems.append(f"give at least one worked example for: {', '.join(missing)}")
    for activity_type, data, expected in examples:
        label = f"{activity_type} {data}"
        try:
            grams = _check_one(m, activity_type, data, values_, problems, label)
        except ma.ValidationError as exc:
            problems.append(f"{label}: the example's evidence is invalid: {exc.messages}")
            continue
        if grams is not None and grams != expected:
            problems.append(f"{label}: {grams} g, the worked example says {expected} g")
        problems += _bad_evidence_problems(m, activity_type, data)
    for activity_type in sorted(cls.types):
        _fuzz(m, activity_type, values_, max_examples, problems)
    if problems:
        raise AssertionError(f"{cls.id} fails conformance:\n- " + "\n- ".join(dict.fromkeys(problems)))
