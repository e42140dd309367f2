"""Bulk import of a partner's history (``carbon-points import activities FILE --partner ID``).

CSV (columns external_id, user_ref, type, occurred_at, and the evidence as data.<field> or a JSON
``data`` column) or JSON Lines (one batch item per line). Chunks of 1,000 go through the same
pipeline as the partner API, each committed on its own: an interrupted import re-run answers
``duplicate`` for what is already in and carries on.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.db import db
from backend.errors import NotFound
from backend.models import Partner
from backend.services import ingest


def read_items(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, batch item) per record; a record that cannot be read is ``{"_error": why}``."""
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if line.strip():
                    try:
                        yield number, json.loads(line)
                    except json.JSONDecodeError as exc:
                        yield number, {"_error": f"not JSON ({exc.msg})"}
        return
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            item: dict[str, Any] = {k: v for k, v in row.items() if k and not k.startswith("data.") and k != "data"}
            try:
                data = json.loads(row["data"]) if row.get("data") else {}
            except json.JSONDecodeError as exc:  # one bad cell is that row's rejection, not the import's end
                yield reader.line_num, {"_error": f"the data column is not JSON ({exc.msg})"}
                continue
            data.update({k[5:]: v for k, v in row.items() if k and k.startswith("data.") and v != ""})
            item["data"] = data
            yield reader.line_num, item


def count_items(path: Path) -> int:
    with path.open(encoding="utf-8-sig") as handle:
        lines = sum(1 for line in handle if line.strip())
    return lines if path.suffix.lower() in (".jsonl", ".ndjson", ".json") else max(0, lines - 1)


@dataclass
class ImportReport:
    """What an import did: a count per status, and each record that is not in, with its line and
    reason, so that the operator can mend those lines and import the file again.

    A record the platform recorded as rejected keeps that outcome under its external_id (the
    partner contract: the same external_id again is a duplicate, with the original outcome), so a
    re-run lists it among ``rejected_before``: its mended record needs a new external_id."""

    summary: Counter[str] = field(default_factory=Counter)
    rejected: list[dict[str, Any]] = field(default_factory=list)  # "line" and REJECT_FIELDS
    rejected_before: list[dict[str, Any]] = field(default_factory=list)  # the same

    def add(self, line: int, answer: dict[str, Any]) -> None:
        """One record's answer (as the pipeline gives it), from line ``line`` of the file."""
        self.summary[answer["status"]] += 1
        if answer["status"] == "rejected":
            self.rejected.append({"line": line, **{name: answer.get(name) for name in REJECT_FIELDS}})
        original = answer.get("original") or {}
        if answer["status"] == "duplicate" and original.get("status") == "rejected":
            self.rejected_before.append({"line": line, "external_id": answer.get("external_id"),
                                         "reason": original.get("reason"), "field": None,
                                         "message": REJECTED_BEFORE})


REJECT_FIELDS = ("external_id", "reason", "field", "message")
REJECTED_BEFORE = "rejected when first imported, and kept so; import the mended record under a new external_id"


def import_file(path: Path, partner_id: int, *, chunk: int = ingest.MAX_ITEMS,
                progress: Callable[[int], None] = lambda n: None) -> ImportReport:
    partner = db.session.get(Partner, partner_id)
    if partner is None:
        raise NotFound(f"No partner {partner_id}.")
    report = ImportReport()
    batch: list[tuple[int, Any]] = []

    def flush() -> None:
        results = ingest.ingest(ingest.Reporter("import", partner=partner), [item for _, item in batch])
        db.session.commit()
        for (line, _), result in zip(batch, results, strict=True):
            report.add(line, result)
        progress(len(batch))
        batch.clear()

    for line, item in read_items(path):
        if isinstance(item, dict) and "_error" in item:  # nothing to send: rejected here, named by its line
            report.add(line, {"status": "rejected", "reason": "unreadable", "message": item["_error"]})
            progress(1)
            continue
        batch.append((line, item))
        if len(batch) >= chunk:
            flush()
    if batch:
        flush()
    return report
