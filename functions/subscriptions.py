"""The organizers' Workspace Events subscriptions (docs/rules.md "The daily run", §4.3, §7).

Timeline of one organizer's subscription (Google's rules: reference/google-events.md §1.7)::

    create ──────────── at most 7 days (ttl 0 = the maximum) ───────────▶ expire_time: deleted
      │         the daily run renews once fewer than 48 h remain    ▲ reminders 12 h and 1 h before
      └── suspended (endpoint or authorisation trouble): reactivate once the cause is fixed

The daily run (:func:`ensure_subscriptions`) is the sweep that never relies on lifecycle events
(Google may not deliver them when the endpoint is the trouble); :func:`on_lifecycle` acts on them
sooner. Both converge without locks: ``ALREADY_EXISTS`` is per user and target, so whoever creates
second finds the first one's subscription and reuses it.

Problems are recorded on the organizer's record, where ``subscriptions`` shows them; logs carry
codes and subscription names, never an email.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final

from functions import logs
from functions.config import Settings
from functions.errors import AppError, ConfigError, SubscriptionExists, WorkspaceError
from functions.meet_records import (
    CONFERENCE_ENDED,
    SUBSCRIBED_EVENT_TYPES,
    SUBSCRIPTION_EXPIRATION_REMINDER,
    SUBSCRIPTION_EXPIRED,
    SUBSCRIPTION_SUSPENDED,
    EventSubscription,
    Problem,
    SubscriptionRecord,
    user_target,
)
from functions.ports import Directory, WorkspaceEvents, WorkspaceState
from functions.timestamps import format_optional

__all__ = [
    "HANDLED_EVENT_TTL",
    "NOT_A_USER",
    "RENEW_WITHIN",
    "SUSPENDED",
    "EnsureReport",
    "ensure_subscriptions",
    "expand_organizers",
    "human_duration",
    "note_event",
    "on_lifecycle",
    "render_table",
    "subscription_rows",
    "topic_for_ensure",
]

#: The daily run renews a subscription that expires sooner than this (two runs may fail in a row).
RENEW_WITHIN: Final = timedelta(hours=48)
#: How long a handled CloudEvent id is remembered: Pub/Sub retains a message 7 days at most.
HANDLED_EVENT_TTL: Final = timedelta(days=7)
#: Problem codes of our own (the others are a WorkspaceError's kind, or ``already_exists``).
NOT_A_USER: Final = "not_a_user"
SUSPENDED: Final = "suspended"

Clock = Callable[[], datetime]


@dataclass(slots=True)
class EnsureReport:
    """What one daily run did. Actions are counted each (a reused subscription may also be
    renewed); ``unchanged`` counts organizers with no action and no problem; ``problems`` counts
    organizers (current or removed) whose record ends with a problem."""

    created: int = 0
    reused: int = 0
    renewed: int = 0
    reactivated: int = 0
    deleted: int = 0
    unchanged: int = 0
    problems: int = 0

    def counts(self) -> dict[str, int]:
        return asdict(self)

    def summary(self) -> str:
        """``created 1, reused 0, …`` (the CLI prints it)."""
        return ", ".join(f"{name} {count}" for name, count in self.counts().items())


@dataclass(frozen=True, slots=True)
class _Apis:
    events: WorkspaceEvents
    directory: Directory
    topic: str


class _Refused(AppError):
    """An organizer's pass ends with a problem of our own (not a Google error); never escapes
    this module."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, status=502, code=code)


_AppProblem = (WorkspaceError, SubscriptionExists, _Refused)


def _normalised(emails: Sequence[str]) -> list[str]:
    return [email.strip().lower() for email in emails if email.strip()]


def expand_organizers(
    organizers: Sequence[str], group: str | None, directory: Directory | None
) -> tuple[str, ...]:
    """``ORGANIZERS`` plus the members of ``ORGANIZER_GROUP``: lower-cased, deduplicated, sorted.

    A Directory failure raises (WorkspaceError): a partial list would make the daily run close
    the subscriptions of everyone it missed."""
    emails = _normalised(organizers)
    if group is not None:
        if directory is None:
            raise ConfigError(["ORGANIZER_GROUP needs the Directory API"])
        emails.extend(_normalised(directory.group_members(group)))
    return tuple(sorted(set(emails)))


def topic_for_ensure(settings: Settings) -> str:
    """The topic ``subscriptions --ensure`` subscribes to; ConfigError naming every setting it
    lacks (organizers, the topic)."""
    problems = []
    if not settings.organizers and settings.organizer_group is None:
        problems.append("subscriptions --ensure needs ORGANIZERS or ORGANIZER_GROUP")
    if settings.workspace_events_topic is None:
        problems.append("subscriptions --ensure needs WORKSPACE_EVENTS_TOPIC")
    if problems or settings.workspace_events_topic is None:
        raise ConfigError(problems)
    return settings.workspace_events_topic


# ------------------------------------------------------------------------------------------------
# The daily run


def ensure_subscriptions(
    *,
    organizers: Sequence[str],
    events: WorkspaceEvents,
    directory: Directory,
    state: WorkspaceState,
    topic: str,
    clock: Clock,
    renew_within: timedelta = RENEW_WITHIN,
) -> EnsureReport:
    """Make sure every organizer has a live subscription to its conferences, and close those of
    people no longer organizers. One organizer's failure is recorded on its record and never
    stops the others; a run that finds everything in order writes nothing."""
    apis = _Apis(events, directory, topic)
    report = EnsureReport()
    wanted = tuple(dict.fromkeys(_normalised(organizers)))
    for email in wanted:
        stored = state.subscription(email)
        now = clock()
        record, actions = _ensure_one(email, stored, apis, now=now, renew_within=renew_within)
        for action in actions:
            setattr(report, action, getattr(report, action) + 1)
        if record.problem is not None:
            report.problems += 1
            logs.warning(
                "organizer subscription problem",
                code=record.problem.code,
                subscription=record.subscription,
            )
        elif not actions:
            report.unchanged += 1
        if stored is None or _differs(stored, record):
            state.save_subscription(record)
    _close_removed(set(wanted), apis, state, clock, report)
    return report


def _ensure_one(
    email: str,
    stored: SubscriptionRecord | None,
    apis: _Apis,
    *,
    now: datetime,
    renew_within: timedelta,
) -> tuple[SubscriptionRecord, tuple[str, ...]]:
    """One organizer's pass: the record to store and the actions taken (EnsureReport fields)."""
    known = stored or SubscriptionRecord(organizer_email=email)
    actions: list[str] = []
    try:
        user = apis.directory.user(email)
        if user is None:
            raise _Refused(NOT_A_USER, "not a user of this Workspace")
        known = replace(known, user_id=user.id)
        target = user_target(user.id)
        current = _current(known, target, apis, now)
        if current is None:
            current, action = _create_or_find(email, target, apis, now)
            actions.append(action)
        known = _seen(known, current)
        if current.state == "SUSPENDED":
            try:
                current = apis.events.reactivate(current.name, as_user=email)
            except WorkspaceError as error:
                problem = _suspension(current, now, failed=error.message)
                return _with_problem(known, problem, now), tuple(actions)
            actions.append("reactivated")
            known = _seen(known, current)
        if _expires_within(current, now, renew_within):
            current = apis.events.renew(current.name, as_user=email)
            actions.append("renewed")
            known = _seen(known, current)
    except _AppProblem as error:
        problem = Problem(code=error.code, message=error.message, at=now)
        return _with_problem(known, problem, now), tuple(actions)
    return replace(known, problem=None, updated_at=now), tuple(actions)


def _close_removed(
    wanted: set[str], apis: _Apis, state: WorkspaceState, clock: Clock, report: EnsureReport
) -> None:
    """Delete the subscriptions (as their owner) and records of people no longer organizers. A
    failed delete keeps the record with its problem, so the next run tries again, unless the
    subscription has expired since (Google then deletes it itself)."""
    for record in state.subscriptions():
        if record.organizer_email in wanted:
            continue
        now = clock()
        try:
            if record.subscription is not None:
                apis.events.delete(record.subscription, as_user=record.organizer_email)
        except WorkspaceError as error:
            if not _expired(record.expire_time, now):
                problem = Problem(code=error.code, message=error.message, at=now)
                state.save_subscription(_with_problem(record, problem, now))
                report.problems += 1
                logs.warning(
                    "closing a subscription failed",
                    code=error.code,
                    subscription=record.subscription,
                )
                continue
        state.delete_subscription(record.organizer_email)
        report.deleted += 1


def _current(
    known: SubscriptionRecord, target: str, apis: _Apis, now: datetime
) -> EventSubscription | None:
    """The recorded subscription as the API holds it; None when it is gone, expired, or on
    another target (the email now names another Directory user)."""
    if known.subscription is None:
        return None
    current = apis.events.get(known.subscription, as_user=known.organizer_email)
    if current is None or not _live(current, now) or current.target_resource != target:
        return None
    return current


def _create_or_find(
    email: str, target: str, apis: _Apis, now: datetime
) -> tuple[EventSubscription, str]:
    """Create the organizer's subscription, or reuse the one ``ALREADY_EXISTS`` names (another
    runner, or a record lost). A leftover that can no longer serve (expired, deleted) is deleted
    and the create tried once more."""
    for _ in range(2):
        try:
            created = apis.events.create(
                as_user=email, target=target, event_types=SUBSCRIBED_EVENT_TYPES, topic=apis.topic
            )
        except SubscriptionExists:
            found = apis.events.find(as_user=email, target=target, event_type=CONFERENCE_ENDED)
        else:
            return created, "created"
        if found is not None and _live(found, now):
            return found, "reused"
        if found is not None:
            apis.events.delete(found.name, as_user=email)
    raise SubscriptionExists(target)


def _live(subscription: EventSubscription, now: datetime) -> bool:
    return subscription.state != "DELETED" and not _expired(subscription.expire_time, now)


def _expired(expire_time: datetime | None, now: datetime) -> bool:
    return expire_time is not None and expire_time <= now


def _expires_within(subscription: EventSubscription, now: datetime, within: timedelta) -> bool:
    expire_time = subscription.expire_time
    return expire_time is not None and expire_time - now < within


def _seen(record: SubscriptionRecord, subscription: EventSubscription) -> SubscriptionRecord:
    return replace(
        record,
        subscription=subscription.name,
        state=subscription.state,
        expire_time=subscription.expire_time,
    )


def _with_problem(
    record: SubscriptionRecord, problem: Problem, now: datetime
) -> SubscriptionRecord:
    return replace(record, problem=problem, updated_at=now)


def _differs(stored: SubscriptionRecord, record: SubscriptionRecord) -> bool:
    """Whether ``record`` says anything ``stored`` does not (``updated_at`` aside)."""
    return replace(stored, updated_at=None) != replace(record, updated_at=None)


def _suspension(
    subscription: EventSubscription, now: datetime, *, failed: str | None = None
) -> Problem:
    reason = subscription.suspension_reason or "no reason given"
    message = reason if failed is None else f"{reason}; reactivating failed: {failed}"
    return Problem(code=SUSPENDED, message=message, at=now)


# ------------------------------------------------------------------------------------------------
# Lifecycle events (docs/api.md "meet_events")


def on_lifecycle(
    *,
    event_type: str,
    subscription_name: str,
    events: WorkspaceEvents,
    state: WorkspaceState,
    directory: Directory,
    topic: str,
    clock: Clock,
) -> str:
    """Act on a subscription lifecycle event; answers a word for the log line.

    ``expirationReminder`` renews (re-created if it is gone already), ``expired`` creates it
    again, ``suspended`` records the reason (problem ``suspended``, shown by ``subscriptions``
    until the next daily run finds it healthy) and tries to reactivate it once. Transient and
    quota WorkspaceErrors propagate (the caller answers 5xx so Pub/Sub retries); permission ones
    are recorded on the record and swallowed."""
    record = state.subscription_named(subscription_name)
    if record is None:
        return "unknown subscription"
    apis = _Apis(events, directory, topic)
    now = clock()
    try:
        if event_type == SUBSCRIPTION_SUSPENDED:
            return _on_suspended(record, apis, state, now)
        if event_type == SUBSCRIPTION_EXPIRATION_REMINDER:
            record, word = _on_reminder(record, apis, now)
        elif event_type == SUBSCRIPTION_EXPIRED:
            record, word = _recreated(record, apis, now), "recreated"
        else:
            return "ignored"
    except _AppProblem as error:
        if isinstance(error, WorkspaceError) and error.kind != "permission":
            raise
        problem = Problem(code=error.code, message=error.message, at=now)
        state.save_subscription(_with_problem(record, problem, now))
        logs.warning(
            "subscription lifecycle problem", code=error.code, subscription=record.subscription
        )
        return "problem"
    state.save_subscription(replace(record, problem=None, updated_at=now))
    return word


def _on_reminder(
    record: SubscriptionRecord, apis: _Apis, now: datetime
) -> tuple[SubscriptionRecord, str]:
    email = record.organizer_email
    name = record.subscription or ""
    current = apis.events.get(name, as_user=email)
    if current is None or not _live(current, now):
        return _recreated(record, apis, now), "recreated"
    return _seen(record, apis.events.renew(name, as_user=email)), "renewed"


def _recreated(record: SubscriptionRecord, apis: _Apis, now: datetime) -> SubscriptionRecord:
    """The organizer's subscription created again (or the one ALREADY_EXISTS names)."""
    email = record.organizer_email
    user_id = record.user_id
    if user_id is None:
        user = apis.directory.user(email)
        if user is None:
            raise _Refused(NOT_A_USER, "not a user of this Workspace")
        user_id = user.id
    current, _ = _create_or_find(email, user_target(user_id), apis, now)
    return _seen(replace(record, user_id=user_id), current)


def _on_suspended(
    record: SubscriptionRecord, apis: _Apis, state: WorkspaceState, now: datetime
) -> str:
    """Record why it was suspended (re-read: the event's payload is not trusted), then try to
    reactivate it once; the reason stays on the record either way."""
    email = record.organizer_email
    current = apis.events.get(record.subscription or "", as_user=email)
    if current is None or not _live(current, now):
        state.save_subscription(
            replace(_recreated(record, apis, now), problem=None, updated_at=now)
        )
        return "recreated"
    if current.state != "SUSPENDED":
        state.save_subscription(replace(_seen(record, current), updated_at=now))
        return "not suspended"
    problem = _suspension(current, now)
    logs.error(
        "subscription suspended", subscription=current.name, reason=current.suspension_reason
    )
    suspended = replace(_seen(record, current), problem=problem, updated_at=now)
    state.save_subscription(suspended)
    try:
        reactivated = apis.events.reactivate(current.name, as_user=email)
    except WorkspaceError as error:
        if error.kind != "permission":
            raise
        failed = _suspension(current, now, failed=error.message)
        state.save_subscription(replace(suspended, problem=failed))
        return "suspended"
    state.save_subscription(replace(_seen(suspended, reactivated), updated_at=now))
    return "reactivated"


def note_event(state: WorkspaceState, subscription_name: str, at: datetime) -> bool:
    """Set ``last_event_at`` on the record naming ``subscription_name`` (any event arrived);
    False when no record names it. An older event never moves it back."""
    record = state.subscription_named(subscription_name)
    if record is None:
        return False
    if record.last_event_at is None or at > record.last_event_at:
        state.save_subscription(replace(record, last_event_at=at))
    return True


# ------------------------------------------------------------------------------------------------
# The `subscriptions` command's rows (docs/cli.md)

_COLUMNS: Final = (
    ("Organizer", "organizer"),
    ("Subscription", "subscription"),
    ("State", "state"),
    ("Expires in", "expires_in"),
    ("Last event", "last_event_at"),
    ("Problem", "problem"),
)


def subscription_rows(state: WorkspaceState, now: datetime) -> list[dict[str, Any]]:
    """One row per organizer record, by organizer: ``expires_in`` in whole seconds (negative once
    expired, None when unknown), ``last_event_at`` RFC 3339, ``problem`` its message."""
    rows: list[dict[str, Any]] = []
    for record in sorted(state.subscriptions(), key=lambda r: r.organizer_email):
        expires_in = (
            None
            if record.expire_time is None
            else math.floor((record.expire_time - now).total_seconds())
        )
        rows.append(
            {
                "organizer": record.organizer_email,
                "subscription": record.subscription,
                "state": record.state,
                "expires_in": expires_in,
                "last_event_at": format_optional(record.last_event_at),
                "problem": None if record.problem is None else record.problem.message,
            }
        )
    return rows


def human_duration(seconds: int | None) -> str:
    """``6d 23h``, ``5h 3m``, ``12m``, ``<1m``; ``expired`` at or below zero; ``-`` unknown."""
    if seconds is None:
        return "-"
    if seconds <= 0:
        return "expired"
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes = rest // 60
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m" if minutes else "<1m"


def _cell(name: str, value: Any) -> str:
    if name == "expires_in":
        return human_duration(value)
    return "-" if value is None else " ".join(str(value).split())


def render_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as a plain text table (one line per organizer, columns aligned)."""
    lines = [[title for title, _ in _COLUMNS]]
    lines.extend([_cell(name, row.get(name)) for _, name in _COLUMNS] for row in rows)
    widths = [max(len(line[column]) for line in lines) for column in range(len(_COLUMNS))]
    text = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    ]
    if not rows:
        text.append("(no organizer subscriptions recorded)")
    return "\n".join(text) + "\n"
