"""Documented signals: how later features hook into core events without core knowing them.

``resident_export``   sent with the resident; each receiver returns ``(section, data)`` to add
                      to the resident's personal-data export (PIPL right of access).
``resident_anonymise`` sent with the resident inside the anonymising transaction; receivers
                      erase or detach what they hold about the person (bindings, references),
                      never ledger or registry rows.
``reductions_changed`` sent inside the writing transaction when certified reductions are recorded
                      or reversed, with ``subjects``: ``(resident_id, region_code, occurred_at)``
                      of each (resident_id may be None). Receivers may read the database but not
                      write it, and must hold anything they do outside it (Redis) until the commit:
                      the transaction may still roll back.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

resident_export = _signals.signal("resident-export")
resident_anonymise = _signals.signal("resident-anonymise")
reductions_changed = _signals.signal("reductions-changed")
