"""Change fingerprints: what lets a poll skip unchanged documents and the settle rule see "the same
sessions". Stable across processes and versions of Python (sha256 of canonical JSON, never
``hash()``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime

from functions.attendance import Meeting, Participant, meeting_fields_to_json, participant_to_json
from functions.timestamps import format_timestamp

__all__ = [
    "absence_fingerprint",
    "estimate_fingerprint",
    "meeting_fingerprint",
    "participant_fingerprint",
    "participant_fingerprints",
    "stored_participant_fingerprint",
]


#: The canonical JSON: ``json.dumps(value, sort_keys=True, separators=(",", ":"),
#: ensure_ascii=True)``, its encoder made once (``dumps`` builds one per call, and a poll
#: fingerprints every participant).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _digest(value: object) -> str:
    return hashlib.sha256(_CANONICAL.encode(value).encode("ascii")).hexdigest()


def participant_fingerprint(participant: Participant) -> str:
    """Changes exactly when a §1 participant field or one of its sessions changes."""
    return _digest(participant_to_json(participant))


def participant_fingerprints(meeting: Meeting) -> dict[str, str]:
    """Each participant's :func:`participant_fingerprint`, by participant key: computed once per
    poll, for the meeting's fingerprint and the documents' (the costliest part of planning)."""
    return {p.participant_key: participant_fingerprint(p) for p in meeting.participants}


def meeting_fingerprint(meeting: Meeting, known: Mapping[str, str] | None = None) -> str:
    """Changes when a meeting aggregate or any participant's fingerprint changes. ``known``:
    :func:`participant_fingerprints` of this very meeting, when the caller has them."""
    fingerprints = participant_fingerprints(meeting) if known is None else known
    return _digest(
        {
            "meeting": meeting_fields_to_json(meeting),
            "participants": [fingerprints[p.participant_key] for p in meeting.participants],
        }
    )


def _short(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:16]


def stored_participant_fingerprint(
    participant: Participant, ip_mode: str, location_mode: str = "full", *, known: str | None = None
) -> str:
    """Of a participant document with real sessions, stored under the privacy modes: the
    ``participant`` as stored (``functions.model.in_stored_form``, never the fetched values), and
    the modes, so a document is rewritten when they change. ``LOCATION_MODE=full`` adds nothing:
    documents stored before that mode existed keep their fingerprints. ``known``: the
    :func:`participant_fingerprint` of this very ``participant``, when the caller has it."""
    modes = (ip_mode,) if location_mode == "full" else (ip_mode, "location:" + location_mode)
    inner = participant_fingerprint(participant) if known is None else known
    return _short(inner, *modes, "real")


def estimate_fingerprint(key: str, start: datetime, end: datetime) -> str:
    """Of an expected participant's estimate over the declared ``[start, end]``."""
    return _short(key, format_timestamp(start), format_timestamp(end), "estimated")


def absence_fingerprint(key: str) -> str:
    return _short(key, "absent")
