"""Two versions' contents side by side, row by row.

The service's ``governance.diff`` says which entries changed (what the API returns); this lays
both payloads out as rows of ``entry``, ``field``, left value, right value, so a reviewer reads the
whole of both with the changes marked, nested rules (caps, campaigns) included.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Row:
    entry: str  # the top-level key: a parameter, or a section of the rules
    field: str  # the path below it ("" for a plain value)
    left: str | None  # None: absent on that side
    right: str | None

    @property
    def changed(self) -> bool:
        return self.left != self.right


@dataclass(frozen=True)
class Entry:
    name: str
    rows: list[Row]

    @property
    def changed(self) -> bool:
        return any(row.changed for row in self.rows)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)


def flatten(value: Any, path: str = "") -> dict[str, str]:
    """Leaf paths to their values as text: ``a.b``, ``caps[2].grams``; a list of plain values is one leaf."""
    if isinstance(value, dict):
        if not value:
            return {path: "{}"}
        out: dict[str, str] = {}
        for key in sorted(value, key=str):
            out.update(flatten(value[key], f"{path}.{key}" if path else str(key)))
        return out
    if isinstance(value, list) and any(isinstance(item, dict | list) for item in value):
        out = {}
        for index, item in enumerate(value):
            out.update(flatten(item, f"{path}[{index}]"))
        return out
    return {path: _text(value)}


def _split(path: str) -> tuple[str, str]:
    cut = min((i for i in (path.find("."), path.find("[")) if i > 0), default=len(path))
    return path[:cut], path[cut:].lstrip(".")


def _natural(path: str) -> list[Any]:
    """``caps[2]`` before ``caps[10]``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path)]


def side_by_side(left: dict[str, Any] | None, right: dict[str, Any]) -> list[Entry]:
    """Every leaf of either payload, grouped by entry in order; ``left`` None: the right side alone."""
    a, b = flatten(left) if left is not None else {}, flatten(right)
    entries: dict[str, list[Row]] = {}
    for path in sorted(set(a) | set(b), key=_natural):
        entry, rest = _split(path)
        entries.setdefault(entry, []).append(Row(entry, rest, a.get(path), b.get(path)))
    return [Entry(name, rows) for name, rows in entries.items()]
