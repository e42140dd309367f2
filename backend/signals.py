"""Documented signals: how later features hook into core events without core knowing them.

``resident_export``   sent with the resident; each receiver returns ``(section, data)`` to add
                      to the resident's personal-data export (PIPL right of access).
``resident_anonymise`` sent with the resident inside the anonymising transaction; receivers
                      erase or detach what they hold about the person (bindings, references),
                      never ledger or registry rows.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

resident_export = _signals.signal("resident-export")
resident_anonymise = _signals.signal("resident-anonymise")
