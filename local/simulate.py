"""Realistic Reports ``call_ended`` activities for the demo, the tests and the benchmarks.

Shaped like the Admin SDK's own output (see shared/examples): ``id.time`` with milliseconds,
``uniqueQualifier`` as an int64 string, ``intValue`` as strings, external/anonymous actors as
``{"callerType": "KEY", "key": "HANGOUTS_EXTERNAL_OR_ANONYMOUS"}``, the meeting code upper-case
without dashes.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def api_code(code: str) -> str:
    return code.replace("-", "").replace(" ", "").upper()


def _qualifier(*parts: object) -> str:
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return str(int.from_bytes(digest[:8], "big", signed=True))


def call_ended(
    *,
    meeting_code: str,
    conference_id: str,
    leave: datetime,
    duration_s: int,
    identifier: str | None = None,
    identifier_type: str | None = "email_address",
    display_name: str | None = None,
    endpoint_id: str | None = None,
    device_type: str = "web",
    is_external: bool = False,
    ip_address: str | None = "203.0.113.7",
    location_country: str | None = "GB",
    location_region: str | None = "London",
    calendar_event_id: str | None = None,
    organizer_email: str | None = None,
) -> dict[str, Any]:
    """One ``call_ended`` activity (one endpoint leaving one conference)."""
    endpoint = endpoint_id or "spaces/x/devices/" + _qualifier(conference_id, identifier, leave)[1:]
    parameters: list[dict[str, Any]] = [
        {"name": "meeting_code", "value": api_code(meeting_code)},
        {"name": "conference_id", "value": conference_id},
        {"name": "endpoint_id", "value": endpoint},
        {"name": "device_type", "value": device_type},
        {"name": "duration_seconds", "intValue": str(duration_s)},
        {"name": "is_external", "boolValue": is_external},
        {"name": "product_type", "value": "meet"},
        {"name": "audio_recv_seconds", "intValue": str(max(0, duration_s - 3))},
    ]
    optional = {
        "identifier": identifier,
        "identifier_type": identifier_type if identifier else None,
        "display_name": display_name,
        "ip_address": ip_address,
        "location_country": location_country,
        "location_region": location_region,
        "calendar_event_id": calendar_event_id,
        "organizer_email": organizer_email,
    }
    parameters += [{"name": k, "value": v} for k, v in optional.items() if v is not None]
    if identifier and identifier_type == "email_address" and not is_external:
        actor: dict[str, Any] = {
            "callerType": "USER",
            "email": identifier,
            "profileId": "1" + _qualifier(identifier)[-17:],
        }
    else:
        actor = {"callerType": "KEY", "key": "HANGOUTS_EXTERNAL_OR_ANONYMOUS"}
    return {
        "kind": "admin#reports#activity",
        "id": {
            "time": rfc3339(leave),
            "uniqueQualifier": _qualifier(conference_id, endpoint, leave),
            "applicationName": "meet",
            "customerId": "C03az79cb",
        },
        "actor": actor,
        "events": [{"type": "call", "name": "call_ended", "parameters": parameters}],
    }


@dataclass(frozen=True, slots=True)
class Stay:
    """Someone in a conference from ``join`` to ``leave`` on one device."""

    who: str
    join: datetime
    leave: datetime
    identifier_type: str | None = "email_address"
    display_name: str | None = None
    device_type: str = "web"
    is_external: bool = False


def activities_for(
    stays: list[Stay], *, meeting_code: str, conference_id: str, organizer_email: str | None = None
) -> list[dict[str, Any]]:
    return [
        call_ended(
            meeting_code=meeting_code,
            conference_id=conference_id,
            leave=stay.leave,
            duration_s=round((stay.leave - stay.join).total_seconds()),
            identifier=stay.who or None,
            identifier_type=stay.identifier_type,
            display_name=stay.display_name,
            endpoint_id=f"spaces/{conference_id[:8]}/devices/{index}",
            device_type=stay.device_type,
            is_external=stay.is_external,
            organizer_email=organizer_email,
        )
        for index, stay in enumerate(stays)
    ]


def large_class(
    *,
    participants: int,
    meeting_code: str,
    conference_id: str,
    start: datetime,
    minutes: int = 60,
    sessions_per_participant: float = 2.5,
    seed: int = 7,
) -> list[dict[str, Any]]:
    """A class of ``participants`` emails with about ``sessions_per_participant`` sessions each."""
    rng = random.Random(seed)
    end = start + timedelta(minutes=minutes)
    stays: list[Stay] = []
    for index in range(participants):
        who = f"student{index:05d}@school.example"
        count = max(1, round(rng.gauss(sessions_per_participant, 0.7)))
        cursor = start + timedelta(seconds=rng.randint(0, 300))
        slice_s = max(60, int((end - cursor).total_seconds() // count))
        for _ in range(count):
            join = cursor
            leave = min(end, join + timedelta(seconds=rng.randint(slice_s // 2, slice_s)))
            stays.append(Stay(who, join, leave))
            cursor = leave + timedelta(seconds=rng.randint(5, 60))
            if cursor >= end:
                break
    return activities_for(stays, meeting_code=meeting_code, conference_id=conference_id)
