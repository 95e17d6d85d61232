"""Change fingerprints: what lets a poll skip unchanged documents and the settle rule see "the same
sessions". Stable across processes and versions of Python (sha256 of canonical JSON, never
``hash()``).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from functions.attendance import Meeting, Participant, meeting_fields_to_json, participant_to_json
from functions.timestamps import format_timestamp

__all__ = [
    "absence_fingerprint",
    "estimate_fingerprint",
    "meeting_fingerprint",
    "participant_fingerprint",
    "stored_participant_fingerprint",
]


def _digest(value: object) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def participant_fingerprint(participant: Participant) -> str:
    """Changes exactly when a §1 participant field or one of its sessions changes."""
    return _digest(participant_to_json(participant))


def meeting_fingerprint(meeting: Meeting) -> str:
    """Changes when a meeting aggregate or any participant's fingerprint changes."""
    return _digest(
        {
            "meeting": meeting_fields_to_json(meeting),
            "participants": [participant_fingerprint(p) for p in meeting.participants],
        }
    )


def _short(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:16]


def stored_participant_fingerprint(
    participant: Participant, ip_mode: str, location_mode: str = "full"
) -> str:
    """Of a participant document with real sessions, stored under the privacy modes: the
    ``participant`` as stored (``functions.model.in_stored_form``, never the fetched values), and
    the modes, so a document is rewritten when they change. ``LOCATION_MODE=full`` adds nothing:
    documents stored before that mode existed keep their fingerprints."""
    modes = (ip_mode,) if location_mode == "full" else (ip_mode, "location:" + location_mode)
    return _short(participant_fingerprint(participant), *modes, "real")


def estimate_fingerprint(key: str, start: datetime, end: datetime) -> str:
    """Of an expected participant's estimate over the declared ``[start, end]``."""
    return _short(key, format_timestamp(start), format_timestamp(end), "estimated")


def absence_fingerprint(key: str) -> str:
    return _short(key, "absent")
