"""What the Calendar adapter answers, and what this system remembers of each push channel, as
plain records (no Google type crosses the ports). Events stay Google's own JSON (``Event``
resources as dicts): ``functions.calendar_events`` reads them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

#: The scope channels and syncs are opened with, impersonating the organizer.
CALENDAR_EVENTS_SCOPE: Final = "https://www.googleapis.com/auth/calendar.events.readonly"


@dataclass(frozen=True, slots=True, kw_only=True)
class CalendarPage:
    """One page of ``events.list``: ``next_sync_token`` only on the last page."""

    events: Sequence[Mapping[str, Any]]
    next_page_token: str | None = None
    next_sync_token: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenedChannel:
    """What ``events.watch`` answered: the channel id we chose, Google's opaque resource id, and
    when the channel expires."""

    id: str
    resource_id: str
    expiration: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelRecord:
    """``calendar_channels/{channel id}``: one open push channel on an organizer's primary
    calendar. ``token_hash`` is a SHA-256 of the channel's random token (the token itself is only
    ever sent to Google; notifications are compared against the hash in constant time)."""

    channel_id: str
    calendar_id: str
    organizer_email: str
    resource_id: str
    token_hash: str
    expiration: datetime | None
    created_at: datetime
    #: Where it pushes: a channel to another address (the ingest URL changed) is replaced.
    address: str = ""
    last_notification_at: datetime | None = None
    #: Set once the channel is superseded by a newer one (it is stopped right after).
    replaced_by: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CalendarSyncState:
    """``calendar_syncs/{calendar id}``: the calendar's sync token and the fence of its syncs.

    ``generation`` grows with every stored token; a sync writes its new token only if the
    generation is still the one it started from, so the token never goes back."""

    calendar_id: str
    organizer_email: str
    sync_token: str | None = None
    generation: int = 0
    last_sync_at: datetime | None = None
    #: A sync in progress holds the calendar until then (syncs never run concurrently).
    lease_owner: str | None = None
    lease_until: datetime | None = None
    problem: str | None = None
