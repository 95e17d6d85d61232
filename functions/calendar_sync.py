"""Use case: Google Calendar as a source (docs/rules.md "Calendar changes", "The daily run"; §4.1).

- :func:`sync_calendar` reads a calendar's changes with its stored sync token (a full listing of
  ``[now - BACKFILL_LOOKBACK_S, now + 29 days]`` without one, or after a 410) and declares,
  reschedules or cancels a meeting per changed event. Syncs of one calendar never run at once
  (a lease in ``calendar_syncs/{id}``; a second one answers Busy and is retried by its task), and
  the new token is stored only if nobody stored one since (``generation``), so it never goes back.
- :func:`ensure_channels` keeps one push channel open per organizer's primary calendar: opened
  (then a full sync), renewed a day before it expires (the new one opened before the old one is
  stopped), closed for people no longer organizers.
- :func:`accept_notification` is what ``ingest`` does with a push: only a channel this system
  opened, with its resource id and its token (constant time), is accepted; a change enqueues the
  calendar's sync for the backfill function (ingest holds no delegation).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final

from functions import logs
from functions.calendar_events import (
    CALENDAR_HORIZON,
    EventAction,
    calendar_external_id,
    read_event,
)
from functions.calendar_records import CalendarSyncState, ChannelRecord
from functions.chain import task_name
from functions.declarations import accept_meeting_end, write_estimates
from functions.errors import AppError, SyncTokenExpired, Unauthorized, WorkspaceError
from functions.meeting_codes import canonical_meeting_code
from functions.model import meeting_id_for
from functions.ports import CalendarApi, CalendarState, Deps
from functions.schedule import Status

__all__ = [
    "CHANNEL_TTL",
    "RENEW_CHANNEL_WITHIN",
    "ChannelReport",
    "SyncReport",
    "accept_notification",
    "apply_event",
    "cancel_meeting",
    "ensure_channels",
    "sync_calendar",
    "token_hash",
]

#: What a channel asks for (Google's default and, as far as is known, its maximum).
CHANNEL_TTL: Final = timedelta(days=7)
#: A channel expiring sooner is replaced by the daily run (so a day or more before it expires).
RENEW_CHANNEL_WITHIN: Final = timedelta(days=2)
#: How long one sync may hold its calendar.
SYNC_LEASE: Final = timedelta(minutes=5)
_PAGES_PER_SYNC: Final = 200

Clock = Callable[[], datetime]


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# ------------------------------------------------------------------------------------------------
# Events → meetings


def cancel_meeting(deps: Deps, meeting_id: str) -> bool:
    """Set ``cancelled_at`` and remove the estimates (a revision, reason ``declaration``); the
    meeting keeps its schedule. Whether anything changed."""
    meeting = deps.store.get(meeting_id)
    if meeting is None or meeting.status is Status.MERGED or meeting.cancelled_at is not None:
        return False
    write_estimates(deps, meeting, expected=())
    now = deps.clock()
    changed = deps.store.update(
        meeting_id,
        lambda current: (
            None
            if current.cancelled_at is not None
            else replace(current, cancelled_at=now, rsvps={}, updated_at=now)
        ),
    )
    with logs.bind(meeting_id=meeting_id):
        logs.info("calendar event cancelled; meeting keeps its schedule")
    return changed is not None


def apply_event(deps: Deps, action: EventAction, *, calendar_id: str) -> str:
    """Declare, reschedule or cancel the meeting(s) of one event; what was done, in a word."""
    declared = action.declared
    if declared is None:
        # Not a meeting (any more): one it declared is cancelled. An event beyond the horizon
        # not declared yet is declared by the daily run once it comes into range.
        cancelled = [
            m.meeting_id
            for m in deps.store.named(calendar_event_id=action.event_id)
            if (m.external_id or "").startswith(action.external_id) and m.cancelled_at is None
        ]
        for meeting_id in cancelled:
            cancel_meeting(deps, meeting_id)
        return "cancelled" if cancelled else "ignored"
    existing = deps.store.get(meeting_id_for(external_id=action.external_id))
    code = canonical_meeting_code(declared.meeting_code)
    if existing is not None and existing.meeting_code != code:
        # docs/rules.md: the old meeting is cancelled, the event declares another under its code.
        cancel_meeting(deps, existing.meeting_id)
        declared = replace(
            declared, external_id=calendar_external_id(calendar_id, action.event_id, code)
        )
    accept_meeting_end(deps, declared, source="calendar")
    return "declared"


@dataclass(slots=True)
class SyncReport:
    events: int = 0
    declared: int = 0
    cancelled: int = 0
    ignored: int = 0
    full: bool = False
    refused: int = 0

    def counts(self) -> dict[str, int | bool]:
        return {
            "events": self.events,
            "declared": self.declared,
            "cancelled": self.cancelled,
            "ignored": self.ignored,
            "full": self.full,
            "refused": self.refused,
        }


def sync_calendar(
    deps: Deps,
    *,
    calendar_id: str,
    organizer_email: str,
    lookback: timedelta,
    full: bool = False,
) -> SyncReport:
    """One sync of one calendar (see the module docstring); Busy while another one runs."""
    calendar, state = _calendar_ports(deps)
    owner = uuid.uuid4().hex
    now = deps.clock()
    held = state.take_sync(
        calendar_id, organizer_email=organizer_email, owner=owner, until=now + SYNC_LEASE, now=now
    )
    if held is None:
        raise AppError(
            f"calendar {_short(calendar_id)} is being synced by another delivery",
            status=409,
            retryable=True,
            code="busy",
        )
    report = SyncReport()
    token = None if full else held.sync_token
    try:
        try:
            new_token = _read_changes(deps, calendar, held, token, report, lookback=lookback)
        except SyncTokenExpired:
            logs.warning("calendar sync token expired; full sync")
            new_token = _read_changes(deps, calendar, held, None, report, lookback=lookback)
    except Exception as error:
        # Whatever failed, the lease is given back (with the problem) for the next sync.
        code = error.code if isinstance(error, AppError) else "internal"
        message = error.message if isinstance(error, AppError) else type(error).__name__
        state.finish_sync(
            calendar_id,
            owner=owner,
            sync_token=held.sync_token,
            generation=held.generation,
            now=deps.clock(),
            problem=f"{code}: {message}"[:300],
        )
        raise
    stored = state.finish_sync(
        calendar_id,
        owner=owner,
        sync_token=new_token,
        generation=held.generation,
        now=deps.clock(),
    )
    logs.info("calendar synced", stored_token=stored, **report.counts())
    return report


def _read_changes(
    deps: Deps,
    calendar: CalendarApi,
    held: CalendarSyncState,
    token: str | None,
    report: SyncReport,
    *,
    lookback: timedelta,
) -> str | None:
    """Every page of the changes since ``token`` (all events of the range without one), each
    event applied as it arrives; the next sync token."""
    now = deps.clock()
    report.full = token is None
    time_min = None if token else now - lookback
    time_max = None if token else now + CALENDAR_HORIZON
    page_token: str | None = None
    for _ in range(_PAGES_PER_SYNC):
        page = calendar.events_page(
            held.calendar_id,
            as_user=held.organizer_email,
            sync_token=token,
            time_min=time_min,
            time_max=time_max,
            page_token=page_token,
        )
        _apply_all(deps, page.events, held.calendar_id, report)
        if page.next_page_token is None:
            return page.next_sync_token
        page_token = page.next_page_token
    raise WorkspaceError("the Calendar API kept answering pages", kind="transient")


def _apply_all(
    deps: Deps, events: Iterable[Mapping[str, object]], calendar_id: str, report: SyncReport
) -> None:
    now = deps.clock()
    for event in events:
        action = read_event(event, calendar_id=calendar_id, now=now)
        if action is None:
            continue
        report.events += 1
        try:
            done = apply_event(deps, action, calendar_id=calendar_id)
        except AppError as error:
            if error.retryable:
                raise
            # One event that cannot be declared (too old, a conflicting code) never stops the
            # others; it is logged by code.
            logs.warning("calendar event not declared", code=error.code)
            report.refused += 1
            continue
        if done == "declared":
            report.declared += 1
        elif done == "cancelled":
            report.cancelled += 1
        else:
            report.ignored += 1


def list_upcoming(deps: Deps, *, calendar_id: str, organizer_email: str) -> SyncReport:
    """The daily run's listing of ``[now, now + 29 days]``: events that came into range are
    declared (their sync token is not stored: it would narrow the incremental sync)."""
    calendar, _ = _calendar_ports(deps)
    now = deps.clock()
    report = SyncReport(full=True)
    page_token: str | None = None
    for _ in range(_PAGES_PER_SYNC):
        page = calendar.events_page(
            calendar_id,
            as_user=organizer_email,
            time_min=now,
            time_max=now + CALENDAR_HORIZON,
            page_token=page_token,
        )
        _apply_all(deps, page.events, calendar_id, report)
        if page.next_page_token is None:
            return report
        page_token = page.next_page_token
    return report


# ------------------------------------------------------------------------------------------------
# Channels


@dataclass(slots=True)
class ChannelReport:
    opened: int = 0
    renewed: int = 0
    closed: int = 0
    unchanged: int = 0
    problems: int = 0

    def counts(self) -> dict[str, int]:
        return {
            "opened": self.opened,
            "renewed": self.renewed,
            "closed": self.closed,
            "unchanged": self.unchanged,
            "problems": self.problems,
        }


def ensure_channels(
    deps: Deps,
    *,
    organizers: Sequence[str],
    address: str,
    lookback: timedelta,
    renew_within: timedelta = RENEW_CHANNEL_WITHIN,
) -> ChannelReport:
    """One open channel per organizer's primary calendar (calendar id = the email), each
    calendar synced; channels of people no longer organizers stopped."""
    calendar, state = _calendar_ports(deps)
    report = ChannelReport()
    wanted = list(dict.fromkeys(o.strip().lower() for o in organizers if o.strip()))
    channels = state.channels()
    for organizer in wanted:
        mine = [c for c in channels if c.calendar_id == organizer and c.replaced_by is None]
        try:
            _ensure_one(deps, organizer, mine, address, lookback, renew_within, report)
        except AppError as error:
            # One organizer's problem (a refusal, a sync running, Google failing) never stops
            # the others; the next run tries again.
            report.problems += 1
            logs.warning("calendar channel problem", code=error.code)
    for channel in channels:
        if channel.calendar_id not in wanted:
            _close(calendar, state, channel)
            state.drop_sync(channel.calendar_id)
            report.closed += 1
    return report


def _ensure_one(
    deps: Deps,
    organizer: str,
    mine: list[ChannelRecord],
    address: str,
    lookback: timedelta,
    renew_within: timedelta,
    report: ChannelReport,
) -> None:
    calendar, state = _calendar_ports(deps)
    now = deps.clock()
    live = [
        c
        for c in mine
        if (c.expiration is None or c.expiration > now + renew_within) and c.address == address
    ]
    if live:
        report.unchanged += 1
    else:
        first = not mine and state.sync_state(organizer) is None
        _open(deps, organizer, address)
        for old in mine:  # opened before the old one is stopped: both push meanwhile
            state.save_channel(replace(old, replaced_by="renewed"))
            _close(calendar, state, old)
        if mine:
            report.renewed += 1
        else:
            report.opened += 1
        if first:
            sync_calendar(deps, calendar_id=organizer, organizer_email=organizer, lookback=lookback)
            return
    # The daily run: changes since the last sync, then the events that came into range.
    sync_calendar(deps, calendar_id=organizer, organizer_email=organizer, lookback=lookback)
    list_upcoming(deps, calendar_id=organizer, organizer_email=organizer)


def _open(deps: Deps, organizer: str, address: str) -> ChannelRecord:
    """Store the channel (with its token's hash) before opening it, so that its first
    notifications find it; then record Google's resource id."""
    calendar, state = _calendar_ports(deps)
    now = deps.clock()
    token = secrets.token_urlsafe(32)
    pending = ChannelRecord(
        channel_id=uuid.uuid4().hex,
        calendar_id=organizer,
        organizer_email=organizer,
        resource_id="",
        token_hash=token_hash(token),
        expiration=now + CHANNEL_TTL,
        created_at=now,
        address=address,
    )
    state.save_channel(pending)
    try:
        opened = calendar.watch(
            organizer,
            as_user=organizer,
            channel_id=pending.channel_id,
            token=token,
            address=address,
            ttl_s=int(CHANNEL_TTL.total_seconds()),
        )
    except AppError:
        state.delete_channel(pending.channel_id)
        raise
    record = replace(pending, resource_id=opened.resource_id, expiration=opened.expiration)
    state.save_channel(record)
    logs.info("calendar channel opened")
    return record


def _close(calendar: CalendarApi, state: CalendarState, channel: ChannelRecord) -> None:
    if channel.resource_id:
        try:
            calendar.stop(
                as_user=channel.organizer_email,
                channel_id=channel.channel_id,
                resource_id=channel.resource_id,
            )
        except WorkspaceError as error:
            # A channel that cannot be stopped expires by itself; its notifications are refused.
            logs.warning("calendar channel not stopped", code=error.code)
    state.delete_channel(channel.channel_id)


# ------------------------------------------------------------------------------------------------
# Notifications (ingest)


def accept_notification(deps: Deps, headers: Mapping[str, str]) -> str:
    """docs/api.md "ingest" ``POST /calendar/notifications``: Unauthorized unless the channel id and
    resource id name a channel this system opened and the token is that channel's; ``sync``
    does nothing else; a change enqueues the calendar's sync. What was done, in a word."""
    state = deps.calendars
    if state is None:
        raise Unauthorized("no calendar channels here")
    channel_id = headers.get("x-goog-channel-id", "")
    channel = state.channel(channel_id) if 0 < len(channel_id) <= 64 else None
    given = token_hash(headers.get("x-goog-channel-token", ""))
    resource = headers.get("x-goog-resource-id", "")
    known = channel is not None and bool(channel.resource_id) and channel.resource_id == resource
    expected = channel.token_hash if channel is not None else token_hash(secrets.token_hex(16))
    # Compared whatever the lookup found, so a wrong channel id and a wrong token cost the same.
    if not hmac.compare_digest(given, expected) or not known or channel is None:
        raise Unauthorized("not a notification of a channel this system opened")
    now = deps.clock()
    state.note_notification(channel.channel_id, now)
    kind = headers.get("x-goog-resource-state", "")
    if kind == "sync":
        return "sync"
    message = headers.get("x-goog-message-number", "")
    deps.queue.enqueue_calendar_sync(
        channel.calendar_id,
        task_id=task_name("calendar", channel.channel_id, message or now.isoformat()),
    )
    return "sync_enqueued"


def _calendar_ports(deps: Deps) -> tuple[CalendarApi, CalendarState]:
    if deps.calendar is None or deps.calendars is None:
        raise RuntimeError("the Calendar side needs its API and state ports")
    return deps.calendar, deps.calendars


def _short(calendar_id: str) -> str:
    """A calendar named in a message without its address (logs carry no email)."""
    return "#" + hashlib.sha256(calendar_id.encode()).hexdigest()[:8]
