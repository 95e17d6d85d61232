"""When to poll a meeting, and what a poll's outcome means for its status (docs/rules.md). Pure.

Timeline of one meeting with the default settings (F = FIRST_POLL_DELAY_S = 15 min,
MAX = MAX_POLL_INTERVAL_S = 4 h, deadline = ended_at + 24 h)::

    ended_at ─F─▶ poll 1 ─2F─▶ poll 2 ─4F─▶ poll 3 ─8F─▶ poll 4 ─MAX─▶ … ─▶ deadline (last)

Each gap is counted from the poll that actually happened (a late poll never causes a burst of
catch-up polls), and a gap that would pass the deadline is cut to end on it. The poll at or after
the deadline is the last one; a meeting created after its deadline is polled once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from functions.limits import (
    ABSENT_GRACE_S,
    COLLECT_DEADLINE_S,
    FIRST_POLL_DELAY_S,
    MAX_POLL_INTERVAL_S,
    SETTLE_S,
)


class Status(StrEnum):
    SCHEDULED = "scheduled"
    COLLECTING = "collecting"
    COMPLETE = "complete"
    NO_DATA = "no_data"
    FAILED = "failed"
    MERGED = "merged"


FINAL_STATUSES = frozenset({Status.COMPLETE, Status.NO_DATA, Status.FAILED, Status.MERGED})
#: The statuses of a live chain: the only ones that can be overdue.
LIVE_STATUSES = frozenset({Status.SCHEDULED, Status.COLLECTING})


@dataclass(frozen=True, slots=True, kw_only=True)
class Timing:
    first_poll_delay_s: int = FIRST_POLL_DELAY_S
    max_poll_interval_s: int = MAX_POLL_INTERVAL_S
    collect_deadline_s: int = COLLECT_DEADLINE_S
    settle_s: int = SETTLE_S
    absent_grace_s: int = ABSENT_GRACE_S


def deadline(ended_at: datetime, timing: Timing) -> datetime:
    return ended_at + timedelta(seconds=timing.collect_deadline_s)


def first_poll_at(*, ended_at: datetime, now: datetime, timing: Timing) -> datetime:
    return max(now, ended_at + timedelta(seconds=timing.first_poll_delay_s))


def is_last_poll(*, polled_at: datetime, ended_at: datetime, timing: Timing) -> bool:
    return polled_at >= deadline(ended_at, timing)


def next_poll_at(
    *, polled_at: datetime, polls_done: int, ended_at: datetime, timing: Timing
) -> datetime | None:
    """The time of the poll after poll number ``polls_done`` (≥ 1), or None after the last one."""
    if polls_done < 1:
        raise ValueError("polls_done counts from 1")
    if is_last_poll(polled_at=polled_at, ended_at=ended_at, timing=timing):
        return None
    # Capping the exponent keeps 2**k small; past it the gap is MAX anyway.
    exponent = min(polls_done, 40)
    gap = min(timing.first_poll_delay_s * 2**exponent, timing.max_poll_interval_s)
    return min(polled_at + timedelta(seconds=gap), deadline(ended_at, timing))


@dataclass(frozen=True, slots=True)
class PollHistory:
    """What the meeting document remembers of earlier polls, as the rules need it."""

    status: Status
    sessions_fingerprint: str | None = None
    fingerprint_seen_since: datetime | None = None
    successful_polls: int = 0
    ever_found_sessions: bool = False


@dataclass(frozen=True, slots=True)
class PollResult:
    """One poll as the rules see it: failed, or the fingerprint of the sessions it selected."""

    succeeded: bool
    sessions_fingerprint: str | None = None
    session_count: int = 0
    missing_expected: int = 0


@dataclass(frozen=True, slots=True)
class Decision:
    status: Status
    sessions_fingerprint: str | None
    fingerprint_seen_since: datetime | None
    final: bool


def decide(
    *,
    history: PollHistory,
    result: PollResult,
    polled_at: datetime,
    ended_at: datetime,
    timing: Timing,
) -> Decision:
    """The status after a poll.

    ``complete`` comes at the first of: (a) the same sessions seen by polls at least SETTLE_S
    apart with every expected participant present; (b) the same, with some still missing, at
    least ABSENT_GRACE_S after ``ended_at``; (c) the last poll, with data.
    """
    last = is_last_poll(polled_at=polled_at, ended_at=ended_at, timing=timing)
    if history.status is Status.MERGED:
        return Decision(
            Status.MERGED, history.sessions_fingerprint, history.fingerprint_seen_since, True
        )

    if not result.succeeded:
        # A failed poll keeps what earlier polls established; only the last one decides.
        fingerprint, since = history.sessions_fingerprint, history.fingerprint_seen_since
        if history.status in FINAL_STATUSES:
            return Decision(history.status, fingerprint, since, True)
        if not last:
            return Decision(history.status, fingerprint, since, False)
        if history.ever_found_sessions:
            return Decision(Status.COMPLETE, fingerprint, since, True)
        status = Status.NO_DATA if history.successful_polls else Status.FAILED
        return Decision(status, fingerprint, since, True)

    fingerprint = result.sessions_fingerprint
    unchanged = fingerprint == history.sessions_fingerprint and history.successful_polls > 0
    since = history.fingerprint_seen_since if unchanged else polled_at
    if since is None:
        since = polled_at

    if result.session_count == 0:
        if history.status in FINAL_STATUSES or last:
            return Decision(Status.NO_DATA, fingerprint, since, True)
        return Decision(Status.SCHEDULED, fingerprint, since, False)

    if history.status in FINAL_STATUSES or last:
        # Late data for a final meeting (backfill, manual sync) is final at once.
        return Decision(Status.COMPLETE, fingerprint, since, True)
    settled = unchanged and (polled_at - since).total_seconds() >= timing.settle_s
    grace_over = (polled_at - ended_at).total_seconds() >= timing.absent_grace_s
    if settled and (result.missing_expected == 0 or grace_over):
        return Decision(Status.COMPLETE, fingerprint, since, True)
    return Decision(Status.COLLECTING, fingerprint, since, False)
