"""Hand-written SQL that lives beside the revision using it: ``versions/<name>.<dialect>.sql``.

Statements are separated by a line holding only ``-- statement``, because SQLite's driver runs
one statement per call and PostgreSQL function bodies contain semicolons.
"""

from __future__ import annotations

from importlib import resources

from sqlalchemy import text
from sqlalchemy.engine import Connection

SEPARATOR = "-- statement"


def statements(name: str, dialect: str) -> list[str]:
    text = (resources.files("migrations") / "versions" / f"{name}.{dialect}.sql").read_text()
    return [chunk.strip() for chunk in text.split(SEPARATOR) if chunk.strip() and not _only_comments(chunk)]


def _only_comments(chunk: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in chunk.splitlines())


def run_sql_file(bind: Connection, name: str) -> None:
    for statement in statements(name, bind.dialect.name):
        # text() escapes '%' for the driver; keep ':word' out of the SQL (it would be a bind).
        bind.execute(text(statement))
