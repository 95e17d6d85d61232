"""The daily safety net (docs/rules.md "Backfill meetings"): find what nobody announced, what
changed after a meeting was final, and chains that broke. What it finds goes down the one collect
path.

A scan covers ``[since, until]`` in time slices fetched in parallel, each paging its own token
chain. Memory stays bounded by compact per-conference summaries — a few integers per session —
never the raw events of the range.

Running it twice, or two at once, changes nothing more than once: backfill meetings have
deterministic ids (created with insert-if-absent), re-polls are named after the data they are for,
and a broken chain is restarted in a transaction that only one run wins.
"""

from __future__ import annotations

import hashlib
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from functions import logs
from functions.attendance import Session
from functions.chain import ensure_link, restart_overdue_chains, task_name
from functions.declarations import Accepted, accept_meeting_end
from functions.duplicates import dedupe_key, preferred
from functions.errors import ConfigError, InvalidInput
from functions.intervals import Bounds
from functions.known_meetings import KnownMeetings
from functions.limits import REPORTS_RETENTION
from functions.meeting_codes import canonical_meeting_code, reports_meeting_code
from functions.model import Declared, MeetingRecord, meeting_id_for
from functions.participant_keys import erasure_name, participant_key
from functions.ports import BackfillSlice, CollectTask, Deps
from functions.reports_events import parse_activity
from functions.retention import check_retained, retention_cutoff
from functions.schedule import Status
from functions.selection import Partition
from functions.stored_state import committed
from functions.timestamps import EPOCH, format_timestamp, from_ms, to_ms

DEFAULT_SLICE = timedelta(hours=6)
#: Codes whose meetings discovery reads at once (``MeetingStore.with_codes``): a read per code
#: was a fifth of a large backfill; more at once would only hold more meetings in memory.
CODES_PER_READ = 30
#: Meetings whose stored sessions may differ from the scan are re-polled only once final: a live
#: chain collects late data by itself, and a meeting before its first poll must stay untouched.
REPOLL_STATUSES = frozenset({Status.COMPLETE, Status.NO_DATA, Status.FAILED})


class SessionFact(NamedTuple):
    """A session as the backfill keeps it: what duplicates are told apart by, and its times in
    milliseconds (a few small objects per session, never the event)."""

    conference_id: str
    endpoint_id: str | None
    event_id: str
    join_ms: int
    leave_ms: int
    duration_seconds: int


def session_fact(session: Session) -> SessionFact:
    return SessionFact(
        # One string for all the sessions of a conference: a scan holds a few hundred thousand.
        conference_id=sys.intern(session.conference_id),
        endpoint_id=session.endpoint_id,
        event_id=session.event_id,
        join_ms=to_ms(session.join_time),
        leave_ms=to_ms(session.leave_time),
        duration_seconds=session.duration_seconds,
    )


def stored_fact(document: Mapping[str, Any]) -> SessionFact | None:
    """The same fact from a stored session (participant document), to compare with the scan."""
    try:
        return SessionFact(
            conference_id=str(document["conference_id"]),
            endpoint_id=document.get("endpoint_id") or None,
            event_id=str(document["event_id"]),
            join_ms=to_ms(document["join_time"]),
            leave_ms=to_ms(document["leave_time"]),
            duration_seconds=int(document["duration_seconds"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


#: What decides whether the store holds a scanned session: one session (its duplicate key) with
#: the same times; which copy of a duplicate was kept does not matter.
Comparable = tuple[tuple[str, str], int, int, int]


def _comparable(fact: SessionFact) -> Comparable:
    return (dedupe_key(fact), fact.join_ms, fact.leave_ms, fact.duration_seconds)


@dataclass(kw_only=True)
class ConferenceSummary:
    meeting_code: str
    conference_id: str
    sessions: dict[tuple[str, str], SessionFact] = field(default_factory=dict)

    @property
    def first_join_ms(self) -> int:
        return min(s.join_ms for s in self.sessions.values())

    @property
    def last_leave_ms(self) -> int:
        return max(s.leave_ms for s in self.sessions.values())

    def add(self, fact: SessionFact) -> None:
        key = dedupe_key(fact)
        known = self.sessions.get(key)
        self.sessions[key] = fact if known is None else preferred(known, fact)


@dataclass
class BackfillReport:
    since: datetime
    until: datetime
    slices: int = 0
    requests: int = 0
    events_read: int = 0
    conferences_seen: int = 0
    meetings_created: list[str] = field(default_factory=list)
    repolled: list[str] = field(default_factory=list)
    reenqueued: list[str] = field(default_factory=list)
    #: Meetings deleted by retention (the daily run only).
    expired: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "since": format_timestamp(self.since),
            "until": format_timestamp(self.until),
            "slices": self.slices,
            "requests": self.requests,
            "events_read": self.events_read,
            "conferences_seen": self.conferences_seen,
            "meetings_created": len(self.meetings_created),
            "repolled": len(self.repolled),
            "reenqueued": len(self.reenqueued),
            "expired": len(self.expired),
        }


class Scan:
    """Thread-safe per-conference summaries, fed page by page. ``erased``: which sessions are
    of erased participants: they are left out, as polls leave them out (docs/rules.md), so the
    scan never finds them missing from a meeting nor makes a meeting of them alone."""

    def __init__(self, erased: Callable[[Session], bool] | None = None) -> None:
        self._erased = erased
        self.conferences: dict[tuple[str, str], ConferenceSummary] = {}
        self.events_read = 0
        self.requests = 0
        self._lock = threading.Lock()

    def add_page(self, activities: Iterable[Mapping[str, Any]], requests: int) -> None:
        facts: list[tuple[str, str, Session]] = []
        events = 0
        for item in activities:
            sessions, _, seen = parse_activity(item)
            events += seen
            for session in sessions:
                if self._erased is not None and self._erased(session):
                    continue
                if session.meeting_code:
                    code = canonical_meeting_code(session.meeting_code)
                    facts.append((code, session.conference_id, session))
        with self._lock:
            self.events_read += events
            self.requests += requests
            for code, conference_id, session in facts:
                summary = self.conferences.get((code, conference_id))
                if summary is None:
                    summary = ConferenceSummary(meeting_code=code, conference_id=conference_id)
                    self.conferences[(code, conference_id)] = summary
                summary.add(session_fact(session))


def _scan_for(deps: Deps) -> Scan:
    """A scan that leaves out the sessions of erased participants (each key hashed once)."""
    erasures = deps.store.erased()
    if not erasures:
        return Scan()
    if deps.erasure_key is None:
        raise ConfigError(["ERASURE_KEY is required: erasures are recorded and must be honoured"])
    secret = deps.erasure_key
    known: dict[str, bool] = {}

    def erased(session: Session) -> bool:
        key = participant_key(session)
        if key not in known:
            known[key] = erasure_name(key, secret) in erasures
        return known[key]

    return Scan(erased)


def slices(since: datetime, until: datetime, length: timedelta) -> list[tuple[datetime, datetime]]:
    """Inclusive Reports ranges that cover ``[since, until]`` without overlapping."""
    bounds: list[tuple[datetime, datetime]] = []
    start = since
    while start <= until:
        end = min(start + length, until + timedelta(milliseconds=1))
        bounds.append((start, end - timedelta(milliseconds=1)))
        start = end
    return bounds


def check_range(
    since: datetime, until: datetime, now: datetime, *, retention_days: int | None = None
) -> None:
    if since.tzinfo is None or until.tzinfo is None:
        raise InvalidInput("since and until must carry a UTC offset", field="since")
    if since >= until:
        raise InvalidInput("since must be before until", field="since")
    if until > now + timedelta(minutes=5):
        raise InvalidInput("until must not be in the future", field="until")
    if since < now - REPORTS_RETENTION:
        raise InvalidInput(
            "since is more than 180 days ago: the Reports API keeps 180 days of Meet activity",
            field="since",
        )
    # Meetings found before the cutoff would be deleted at once, then found again every run.
    check_retained(since, now=now, retention_days=retention_days, field="since")


def apply_retention(deps: Deps, *, now: datetime) -> list[str]:
    """Delete the meetings that ended more than ``RETENTION_DAYS`` ago, with everything under
    them: what Firestore's TTL has not deleted yet, and documents written before the setting
    (which carry no ``expire_at``). The meetings deleted."""
    cutoff = retention_cutoff(now, deps.retention_days)
    if cutoff is None:
        return []
    expired = sorted(m.meeting_id for m in deps.store.ended_between(EPOCH, cutoff))
    for meeting_id in expired:
        deps.store.delete_meeting(meeting_id)
    if expired:
        logs.info("retention applied", meetings_deleted=len(expired))
    return expired


def run_backfill(
    deps: Deps,
    *,
    since: datetime,
    until: datetime,
    slice_length: timedelta = DEFAULT_SLICE,
    workers: int = 4,
    on_slice_done: Callable[[int, int], None] | None = None,
) -> BackfillReport:
    """The whole run in this process: slices scanned by threads (the CLI, local runs)."""
    now = deps.clock()
    check_range(since, until, now, retention_days=deps.retention_days)
    until = min(until, now)
    ranges = slices(since, until, slice_length)
    report = BackfillReport(since=since, until=until, slices=len(ranges))
    scan = _scan_for(deps)
    done = 0
    done_lock = threading.Lock()

    def fetch(bounds: tuple[datetime, datetime]) -> None:
        nonlocal done
        _scan_range(deps, scan, bounds)
        with done_lock:
            done += 1
            if on_slice_done is not None:
                on_slice_done(done, len(ranges))

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        # list() re-raises the first slice failure (a ReportsError): the run fails as a whole.
        list(pool.map(fetch, ranges))
    # Every slice of the range was scanned: each conference's summary is complete.
    _reconcile(deps, scan, report, whole_range=None)
    report.reenqueued = restart_overdue_chains(deps, now=now)
    report.expired = apply_retention(deps, now=now)
    logs.info("backfill finished", **report.to_json())
    return report


def fan_out(
    deps: Deps, *, since: datetime, until: datetime, slice_length: timedelta = DEFAULT_SLICE
) -> BackfillReport:
    """The run as tasks (production): one task per slice, each scanning and reconciling its part.

    Slice tasks are named after the range and their index, so two runs of the same range (two
    scheduler deliveries, a manual retry) create each slice once.
    """
    now = deps.clock()
    check_range(since, until, now, retention_days=deps.retention_days)
    until = min(until, now)
    ranges = slices(since, until, slice_length)
    report = BackfillReport(since=since, until=until, slices=len(ranges))
    for index, (start, end) in enumerate(ranges):
        part = BackfillSlice(since=start, until=end, range_since=since, range_until=until)
        name = task_name("backfill", format_timestamp(since), format_timestamp(until), index)
        deps.queue.enqueue_backfill_slice(part, task_id=name)
    report.reenqueued = restart_overdue_chains(deps, now=now)
    report.expired = apply_retention(deps, now=now)
    logs.info("backfill slices enqueued", **report.to_json())
    return report


def run_backfill_slice(deps: Deps, part: BackfillSlice) -> BackfillReport:
    """One slice of a fanned-out run. A conference can reach past the slice, so one that would
    get a meeting of its own is first read whole over the run's range."""
    report = BackfillReport(since=part.since, until=part.until, slices=1)
    bounds = _scannable(deps, part.since, part.until)
    if bounds is None:
        # Its range was checked when the run fanned out; what has since passed Reports' or our
        # retention (or was never a valid slice) has nothing to scan: done, not retried.
        logs.warning("backfill slice outside what may be scanned; nothing to do")
        return report
    scan = _scan_for(deps)
    _scan_range(deps, scan, bounds)
    whole_range = _scannable(deps, part.range_since, part.range_until) or bounds
    _reconcile(deps, scan, report, whole_range=whole_range)
    # A retried slice may not see again what it created before it died (Reports answers
    # differently): the first task of any chain never started is asked for here.
    report.reenqueued = restart_overdue_chains(deps, now=deps.clock())
    logs.info("backfill slice finished", **report.to_json())
    return report


def _scannable(deps: Deps, since: datetime, until: datetime) -> tuple[datetime, datetime] | None:
    """``[since, until]`` cut to what Reports keeps, our retention allows and has happened."""
    now = deps.clock()
    floors = [since, now - REPORTS_RETENTION + timedelta(minutes=1)]
    cutoff = retention_cutoff(now, deps.retention_days)
    if cutoff is not None:
        floors.append(cutoff)
    start, end = max(floors), min(until, now)
    return (start, end) if start < end else None


def _scan_range(deps: Deps, scan: Scan, bounds: tuple[datetime, datetime]) -> None:
    for page in deps.reports.call_ended_pages(meeting_code=None, start=bounds[0], end=bounds[1]):
        scan.add_page(page.activities, page.requests)


def _reconcile(
    deps: Deps,
    scan: Scan,
    report: BackfillReport,
    *,
    whole_range: tuple[datetime, datetime] | None,
) -> None:
    by_code: dict[str, list[ConferenceSummary]] = {}
    for summary in scan.conferences.values():
        by_code.setdefault(summary.meeting_code, []).append(summary)
    codes = sorted(by_code)
    groups = [
        {code: _around(deps, by_code[code]) for code in codes[index : index + CODES_PER_READ]}
        for index in range(0, len(codes), CODES_PER_READ)
    ]
    # The next group is read while this one is reconciled: what is written here concerns only
    # this group's codes (a declaration merges, tells and reads again within its own code).
    for arounds, stored in zip(groups, deps.store.with_codes_ahead(groups), strict=True):
        for code, around in arounds.items():
            meetings = {m.meeting_id: m for m in stored[code]}
            _reconcile_code(
                deps, code, by_code[code], report, meetings, around, whole_range=whole_range
            )
    report.requests = scan.requests
    report.events_read = scan.events_read
    report.conferences_seen = len(scan.conferences)


def _around(deps: Deps, conferences: list[ConferenceSummary]) -> Bounds:
    """The ``ended_at`` range of the code's meetings its conferences can matter to."""
    return deps.around(
        from_ms(min(c.first_join_ms for c in conferences)),
        from_ms(max(c.last_leave_ms for c in conferences)),
    )


def _whole_conference(
    deps: Deps, partial: ConferenceSummary, whole_range: tuple[datetime, datetime]
) -> ConferenceSummary:
    """Every session of a conference in the run's range (one code-filtered query)."""
    scan = _scan_for(deps)
    for page in deps.reports.call_ended_pages(
        meeting_code=reports_meeting_code(partial.meeting_code),
        start=whole_range[0],
        end=whole_range[1],
    ):
        scan.add_page(page.activities, page.requests)
    whole = scan.conferences.get((partial.meeting_code, partial.conference_id), partial)
    for key, fact in partial.sessions.items():
        whole.sessions.setdefault(key, fact)
    return whole


def _unclaimed(partition: Partition, code: str, conference: ConferenceSummary) -> list[SessionFact]:
    """The conference's sessions that no meeting of the code takes."""
    return [
        fact
        for fact in conference.sessions.values()
        if not partition.takers(code, from_ms(fact.join_ms), from_ms(fact.leave_ms))
    ]


def _reconcile_code(
    deps: Deps,
    code: str,
    conferences: list[ConferenceSummary],
    report: BackfillReport,
    meetings: dict[str, MeetingRecord],
    around: Bounds,
    *,
    whole_range: tuple[datetime, datetime] | None,
) -> None:
    """Give every unclaimed session of the code's conferences a found meeting (a new one, or its
    conference's, grown), then re-poll final meetings whose sessions changed. ``meetings``: the
    code's, with ``ended_at`` in ``around`` (:func:`_around`)."""
    for meeting in list(meetings.values()):
        if meeting.is_found and not meeting.chain_started:
            # A run that crashed between creating a found meeting and enqueueing its first poll
            # is retried; that retry finds the meeting and must not leave it unpolled.
            meetings[meeting.meeting_id] = ensure_link(deps, meeting, mark=False)
    for conference in sorted(conferences, key=lambda c: (c.first_join_ms, c.conference_id)):
        partition = Partition(deps.spec(m) for m in meetings.values())
        rest = _unclaimed(partition, code, conference)
        if rest and whole_range is not None:
            # Decide on the whole conference: its other sessions may lie in another slice.
            conference = _whole_conference(deps, conference, whole_range)
            rest = _unclaimed(partition, code, conference)
        if not rest:
            continue
        accepted = give_found_meeting(
            deps,
            meetings,
            code=code,
            conference_id=conference.conference_id,
            first_join=from_ms(min(f.join_ms for f in rest)),
            last_leave=from_ms(max(f.leave_ms for f in rest)),
            around=around,
        )
        if accepted.created:
            report.meetings_created.append(accepted.meeting.meeting_id)
            with logs.bind(meeting_id=accepted.meeting.meeting_id):
                logs.info(
                    "backfill meeting created",
                    conference_id=conference.conference_id,
                    status=str(accepted.meeting.status),
                )
    _repoll_changed(deps, meetings.values(), conferences, report)


def give_found_meeting(
    deps: Deps,
    meetings: dict[str, MeetingRecord],
    *,
    code: str,
    conference_id: str,
    first_join: datetime,
    last_leave: datetime,
    around: Bounds,
) -> Accepted:
    """Sessions of a conference that no meeting takes go to its found meeting, created or grown
    to cover them ("never to none", docs/rules.md).

    ``meetings``: the code's, with ``ended_at`` in ``around``, kept up to date here. They stand
    in for the declaration's own read of its neighbours (``KnownMeetings``), and are read again
    when it wrote any meeting but its own.

    Once the conference's found meeting is merged away, what is left of the conference gets a
    found meeting of its own, named after its first session."""
    own = meetings.get(meeting_id_for(meeting_code=code, conference_id=conference_id))
    identity = conference_id
    if own is not None and own.status is Status.MERGED:
        identity = f"{conference_id}#{to_ms(first_join)}"
    accepted = accept_meeting_end(
        deps,
        Declared(meeting_code=code, started_at=first_join, ended_at=last_leave),
        source="backfill",
        conference_id=identity,
        known=KnownMeetings(code, around, list(meetings.values())),
    )
    if accepted.others_untouched:
        meetings[accepted.meeting.meeting_id] = accepted.meeting
    else:
        meetings.clear()
        meetings.update((m.meeting_id, m) for m in deps.store.with_code(code, ended=around))
        # The declaration's meeting, should it end outside ``around``.
        meetings.setdefault(accepted.meeting.meeting_id, accepted.meeting)
    return accepted


def give_found_meetings(deps: Deps, code: str, sessions: Iterable[Session]) -> None:
    """:func:`give_found_meeting` for the sessions a poll let go that no meeting takes."""
    by_conference: dict[str, list[Session]] = {}
    for session in sessions:
        by_conference.setdefault(session.conference_id, []).append(session)
    if not by_conference:
        return
    around = deps.around(
        min(s.join_time for g in by_conference.values() for s in g),
        max(s.leave_time for g in by_conference.values() for s in g),
    )
    meetings = {m.meeting_id: m for m in deps.store.with_code(code, ended=around)}
    for conference_id, group in sorted(by_conference.items()):
        accepted = give_found_meeting(
            deps,
            meetings,
            code=code,
            conference_id=conference_id,
            first_join=min(s.join_time for s in group),
            last_leave=max(s.leave_time for s in group),
            around=around,
        )
        with logs.bind(meeting_id=accepted.meeting.meeting_id):
            logs.info("found meeting given sessions nobody takes", sessions=len(group))


def _repoll_changed(
    deps: Deps,
    meetings: Iterable[MeetingRecord],
    conferences: list[ConferenceSummary],
    report: BackfillReport,
) -> None:
    """Re-poll final meetings that take scanned sessions the store lacks."""
    candidates = list(meetings)
    partition = Partition(deps.spec(m) for m in candidates)
    for meeting in candidates:
        if meeting.status not in REPOLL_STATUSES:
            continue
        spec = deps.spec(meeting)
        scanned = {
            _comparable(fact)
            for conference in conferences
            for fact in conference.sessions.values()
            if partition.takes(spec, from_ms(fact.join_ms), from_ms(fact.leave_ms))
        }
        if not scanned:
            continue
        stored = _stored_facts(deps, meeting)
        if scanned <= stored:
            continue
        digest = hashlib.sha256(repr(sorted(scanned)).encode()).hexdigest()[:16]
        enqueued = deps.queue.enqueue(
            CollectTask(meeting.meeting_id, meeting.chain_seq, "backfill"),
            task_id=task_name(meeting.meeting_id, "backfill", digest),
            at=deps.clock(),
        )
        if enqueued:
            report.repolled.append(meeting.meeting_id)
            with logs.bind(meeting_id=meeting.meeting_id, status=str(meeting.status)):
                logs.info("backfill re-poll requested", new_sessions=len(scanned - stored))


def _stored_facts(deps: Deps, meeting: MeetingRecord) -> set[Comparable]:
    facts: set[Comparable] = set()
    for document in committed(deps.store.participants(meeting.meeting_id), meeting):
        for session in document.get("sessions") or []:
            fact = stored_fact(session)
            if fact is not None:
                facts.add(_comparable(fact))
    return facts


def default_range(
    since: datetime | None, until: datetime | None, *, now: datetime, lookback_s: int
) -> tuple[datetime, datetime]:
    """The range asked for; by default the last ``BACKFILL_LOOKBACK_S`` up to now."""
    end = until or now
    return since or end - timedelta(seconds=lookback_s), end
