"""Pure validators for identifiers the platform accepts."""

from __future__ import annotations

import secrets
from datetime import date

from marshmallow import ValidationError

# GB 32100-2015: the 31 characters a unified social credit code may use (no I, O, S, V, Z).
USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)

# Short codes people read aloud or type: no 0/O, 1/I/L, 5/S, 2/Z, 8/B, U.
CODE_ALPHABET = "34679ACDEFGHJKMNPQRTVWXY"


# The years a date or moment may name: far from the calendar's ends, where converting to UTC or
# adding a day overflows (a year-9999 date with a negative offset used to be a 500).
FIRST_YEAR, LAST_YEAR = 2000, 2199


YEARS_MESSAGE = f"must be in the years {FIRST_YEAR}-{LAST_YEAR}"


def platform_year(year: int) -> bool:
    return FIRST_YEAR <= year <= LAST_YEAR


def in_platform_years(value: date) -> None:
    """A marshmallow validator for dates and datetimes (a datetime is a date)."""
    if not platform_year(value.year):
        raise ValidationError(YEARS_MESSAGE)


def uscc_problem(code: str) -> str | None:
    """Why ``code`` is not a valid unified social credit code (统一社会信用代码), or None."""
    if len(code) != 18:
        return "must be 18 characters"
    bad = [c for c in code if c not in USCC_CHARSET]
    if bad:
        return f"contains a character a credit code cannot have: {bad[0]!r}"
    if not code[2:8].isdigit():
        return "characters 3-8 must be the registering region's six-digit code"
    total = sum(USCC_CHARSET.index(c) * w for c, w in zip(code[:17], USCC_WEIGHTS, strict=True))
    expected = USCC_CHARSET[(31 - total % 31) % 31]
    if code[17] != expected:
        return "the check character does not match (a typo?)"
    return None


def uscc_with_check(first17: str) -> str:
    """Append the check character; used to build valid demo and test codes."""
    total = sum(USCC_CHARSET.index(c) * w for c, w in zip(first17, USCC_WEIGHTS, strict=True))
    return first17 + USCC_CHARSET[(31 - total % 31) % 31]


def short_code(length: int = 8) -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(length))



# Crockford base32 for single-use codes read aloud at a till or desk: 5 bits a character, with the
# letters people confuse for digits (O, I, L) read as those digits and U left out.
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_AS_DIGITS = str.maketrans("OIL", "011")


def crockford_code(length: int) -> str:
    return "".join(secrets.choice(CROCKFORD) for _ in range(length))


def read_crockford(raw: str, length: int) -> str | None:
    """A code as someone typed or read it back (any case, dashes and spaces ignored, O/I/L as
    0/1/1), or None when it cannot be one."""
    text = raw.strip().upper().replace("-", "").replace(" ", "").translate(_AS_DIGITS)
    return text if len(text) == length and all(c in CROCKFORD for c in text) else None
