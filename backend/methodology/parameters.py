"""Parameter sets: the factors file a methodology ships, and the schema governed versions obey.

A parameter set maps each parameter name to ``{value, unit, source, vintage, region}``. The unit
must be exactly the one the methodology declares (a value in kg where grams are expected is an
error, not a conversion), the value a finite decimal within the declared bounds.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import marshmallow as ma

from backend.methodology.contract import FiniteDecimal, Methodology, Param, dec


def _entry_schema(name: str, param: Param) -> type[ma.Schema]:
    class Entry(ma.Schema):
        class Meta:
            unknown = ma.RAISE

        value = FiniteDecimal(minimum=param.minimum, maximum=param.maximum, as_string=True)
        unit = ma.fields.String(required=True, validate=ma.validate.Equal(
            param.unit, error=f"must be {param.unit!r} (the unit this parameter is defined in)"))
        source = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=500))
        vintage = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=32))
        region = ma.fields.String(load_default="", validate=ma.validate.Length(max=100))

        @ma.validates("value")
        def _integral(self, value: Any, **_: Any) -> None:
            if param.integer and Decimal(value) != Decimal(value).to_integral_value():
                raise ma.ValidationError("must be a whole number")

    Entry.__name__ = f"Parameter_{name}"
    return Entry


def parameters_schema(methodology: type[Methodology] | Methodology) -> ma.Schema:
    """The marshmallow schema of a full parameter set: every key required, no others."""
    fields = {name: ma.fields.Nested(_entry_schema(name, param), required=True)
              for name, param in methodology.parameters.items()}
    return ma.Schema.from_dict(fields, name=f"{methodology.id}_parameters")(unknown=ma.RAISE)


def validate_parameters(methodology: type[Methodology] | Methodology, payload: Any) -> dict[str, dict[str, str]]:
    """A clean, canonical parameter set, or ``ma.ValidationError`` naming each bad key and field."""
    if not isinstance(payload, Mapping):
        raise ma.ValidationError({"_schema": ["must be an object of parameters"]})
    loaded = parameters_schema(methodology).load(dict(payload))
    return {
        name: {
            "value": canonical_decimal(entry["value"]),
            "unit": entry["unit"],
            "source": entry["source"],
            "vintage": entry["vintage"],
            "region": entry.get("region", ""),
        }
        for name, entry in sorted(loaded.items())
    }


def canonical_decimal(value: Any) -> str:
    return dec(Decimal(value))


def values(parameter_set: Mapping[str, Mapping[str, str]]) -> dict[str, Decimal]:
    """The numbers a methodology computes with."""
    return {name: Decimal(entry["value"]) for name, entry in parameter_set.items()}


def digest(payload: Any) -> str:
    """sha256 of a canonical JSON form: the 'factor set hash' every reduction records."""
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def load_factors_file(methodology: type[Methodology]) -> dict[str, dict[str, str]]:
    """Read and validate the package's factors file; raise ValueError naming the problem."""
    path = methodology.package_dir() / methodology.factors_file
    if not path.is_file():
        raise ValueError(f"factors file {path} is missing")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"factors file {path}: {exc}") from None
    header = data.get("methodology", {})
    if header.get("id") != methodology.id:
        raise ValueError(f"factors file {path} is for {header.get('id')!r}, not {methodology.id!r}")
    if header.get("formula_version") != methodology.version:
        raise ValueError(f"factors file {path} is for formula version {header.get('formula_version')!r}, "
                         f"the code is version {methodology.version}")
    try:
        return validate_parameters(methodology, data.get("factors", {}))
    except ma.ValidationError as exc:
        raise ValueError(f"factors file {path}: {exc.messages}") from None
