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
from pathlib import Path
from typing import Any

from backend.db import db
from backend.errors import NotFound
from backend.models import Partner
from backend.services import ingest


def read_items(path: Path) -> Iterator[Any]:
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as exc:
                        yield {"_error": f"line {number}: not JSON ({exc.msg})"}
        return
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for row in csv.DictReader(handle):
            item: dict[str, Any] = {k: v for k, v in row.items() if k and not k.startswith("data.") and k != "data"}
            try:
                data = json.loads(row["data"]) if row.get("data") else {}
            except json.JSONDecodeError as exc:  # one bad cell is that row's rejection, not the import's end
                yield {"_error": f"the data column is not JSON ({exc.msg})"}
                continue
            data.update({k[5:]: v for k, v in row.items() if k and k.startswith("data.") and v != ""})
            item["data"] = data
            yield item


def count_items(path: Path) -> int:
    with path.open(encoding="utf-8-sig") as handle:
        lines = sum(1 for line in handle if line.strip())
    return lines if path.suffix.lower() in (".jsonl", ".ndjson", ".json") else max(0, lines - 1)


def import_file(path: Path, partner_id: int, *, chunk: int = ingest.MAX_ITEMS,
                progress: Callable[[int], None] = lambda n: None) -> Counter[str]:
    partner = db.session.get(Partner, partner_id)
    if partner is None:
        raise NotFound(f"No partner {partner_id}.")
    summary: Counter[str] = Counter()
    batch: list[Any] = []

    def flush() -> None:
        results = ingest.ingest(ingest.Reporter("import", partner=partner), batch)
        db.session.commit()
        summary.update(r["status"] for r in results)
        progress(len(batch))
        batch.clear()

    for item in read_items(path):
        batch.append(item)
        if len(batch) >= chunk:
            flush()
    if batch:
        flush()
    return summary
