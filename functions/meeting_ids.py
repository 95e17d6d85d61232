"""Meeting ids (docs/rules.md "Documents", §4 identity): deterministic and path-safe."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime

from functions.timestamps import format_timestamp

__all__ = ["is_meeting_id", "meeting_id_for"]


def meeting_id_for(
    *,
    external_id: str | None = None,
    meeting_code: str | None = None,
    ended_at: datetime | None = None,
    conference_id: str | None = None,
    calendar_event_id: str | None = None,
) -> str:
    """Deterministic, path-safe meeting ids (docs/api.md identity).

    ``x-`` + hash of the caller's ``external_id``; else ``e-`` + hash of a declared
    ``calendar_event_id``; else ``c-`` + hash of code and ``ended_at``; backfill meetings ``b-`` +
    hash of code and conference id. Hash-led ids spread writes evenly.
    """
    if external_id is not None:
        return "x-" + _short_hash("external", external_id)
    if calendar_event_id is not None:
        return "e-" + _short_hash("calendar_event", calendar_event_id)
    if meeting_code is None:
        raise ValueError("a meeting id needs an external id or a meeting code")
    if conference_id is not None:
        return "b-" + _short_hash("conference", meeting_code, conference_id)
    if ended_at is None:
        raise ValueError("a meeting id needs ended_at or a conference id with the code")
    return "c-" + _short_hash("code", meeting_code, format_timestamp(ended_at))


_MEETING_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
#: Firestore reserves document ids of this form (``__name__``, ``__x__``): reading one fails.
_RESERVED_ID = re.compile(r"__.*__")


def is_meeting_id(value: str) -> bool:
    """Path-safe meeting ids: letters, digits, ``_`` and ``-``, 1 to 128 of them (what
    :func:`meeting_id_for` makes, and what a caller may name), never one Firestore reserves."""
    return _MEETING_ID.fullmatch(value) is not None and _RESERVED_ID.fullmatch(value) is None


def _short_hash(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:24]
