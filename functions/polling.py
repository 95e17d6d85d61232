"""Use case: poll one meeting (docs/rules.md) — the one collection path.

The chain's links, neighbour re-polls, manual syncs and the backfill all end in
:func:`poll_meeting`: gather (the meeting, its neighbours, the participant documents that may
matter, the Reports answer), plan (``functions.poll_plan``, pure), commit (one fenced write).

Fencing: the commit happens only if the meeting document is as this poll read it after taking
its lease. Whatever else changes a meeting — another poll or sync, a merge, a reschedule, a
neighbour's declaration moving its credited span (which bumps ``span_version``) — writes that
document, so a poll that planned on old data stores nothing; it re-plans on fresh data, or gives
way when the meeting is no longer its to poll (merged, rescheduled to a new chain link, final).

The lease (``LEASE``) keeps two deliveries from polling one meeting at once; the loser answers 409
(:class:`~functions.errors.Busy`) and the queue retries it later, when it finds the work done. A
poll that outlives its lease stores nothing. A delivery whose ``attempt`` is not the stored
``chain_seq`` is stale: it only makes sure the current link exists.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final

from functions import logs
from functions.attendance import Meeting, Session
from functions.backfill import give_found_meetings
from functions.chain import ensure_link, task_name
from functions.declarations import erased_names, tell_neighbours
from functions.errors import (
    Busy,
    Conflict,
    NotFound,
    ReportsError,
    StoreContention,
)
from functions.meet_signals import reselect_preliminary
from functions.meeting_codes import reports_meeting_code
from functions.model import (
    LastError,
    MeetingRecord,
    RevisionReason,
    in_stored_form,
)
from functions.participant_keys import (
    erasure_name,
    participant_key,
)
from functions.poll_plan import PollInputs, PollPlan, plan_poll, plan_without_documents
from functions.ports import CollectReason, CollectTask, Deps, FetchStats, MeetingCommit, Versioned
from functions.reports_events import SessionCollector
from functions.schedule import Status
from functions.selection import reports_query_end, reports_query_start, selection_spans
from functions.stored_state import (
    carrying_landed_token,
    lagging_mirrors,
)
from functions.timestamps import format_optional

__all__ = [
    "LEASE",
    "PollOutcome",
    "Skipped",
    "handle_collect_task",
    "poll_meeting",
]

#: How long one poll may hold a meeting: longer than the slowest poll (the Reports adapter waits
#: at most two minutes in backoff, on top of its requests), short enough that a crashed worker's
#: retry gets through within minutes.
LEASE: Final = timedelta(minutes=5)
#: Plans of one delivery before it answers "retry later": each failed commit means another writer
#: changed the meeting meanwhile.
MAX_PLANS: Final = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class PollOutcome:
    """A poll that ran: the meeting as committed, and what changed."""

    meeting: MeetingRecord
    created: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    participant_writes: int = 0
    stats: FetchStats | None = None
    selected: Meeting | None = None
    error: str | None = None

    @property
    def polled(self) -> bool:
        return True

    @property
    def skipped_reason(self) -> None:
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Skipped:
    """A delivery that did not poll: ``skipped_reason`` is ``unknown`` (no such meeting, and
    ``meeting`` is None), ``merged``, ``stale`` (not the chain's current link) or ``final``."""

    meeting_id: str
    skipped_reason: str
    meeting: MeetingRecord | None = None

    @property
    def polled(self) -> bool:
        return False


def handle_collect_task(deps: Deps, task: CollectTask) -> PollOutcome | Skipped:
    """A delivery from Cloud Tasks: the chain's link, or a one-off re-poll."""
    return poll_meeting(deps, task.meeting_id, reason=task.reason, seq=task.attempt)


def poll_meeting(
    deps: Deps,
    meeting_id: str,
    *,
    reason: CollectReason,
    seq: int | None = None,
) -> PollOutcome | Skipped:
    with logs.bind(meeting_id=meeting_id, attempt=seq, reason=reason):
        meeting = deps.store.get(meeting_id)
        if meeting is None:
            if reason == "manual":
                raise NotFound.meeting(meeting_id)
            logs.warning("task for an unknown meeting ignored")
            return Skipped(meeting_id=meeting_id, skipped_reason="unknown")
        in_chain = reason == "poll"
        skip = _skip_reason(meeting, in_chain=in_chain, seq=seq)
        if skip == "merged" and reason == "manual":
            raise Conflict(
                f"meeting {meeting_id} is merged into {meeting.merged_into}; sync that one"
            )
        if skip is not None:
            return _skipped(deps, meeting, skip)
        owner = uuid.uuid4().hex
        leased = _acquire(deps, meeting_id, owner=owner, in_chain=in_chain, seq=seq)
        try:
            return _poll_leased(deps, leased, owner=owner, reason=reason, seq=seq)
        except BaseException:
            _release(deps, meeting_id, owner=owner)
            raise


def _skipped(deps: Deps, meeting: MeetingRecord, skip: str) -> Skipped:
    if skip == "stale":
        ensure_link(deps, meeting, trust_started=False)
    meeting = tell_neighbours(deps, _ask_for_repolls(deps, meeting))
    if skip == "merged":
        _preliminary_after_merge(deps, meeting)  # again: the merging delivery may have died
    _bring_mirrors_up(deps, meeting)
    logs.info("delivery skipped", skipped=skip, status=str(meeting.status))
    return Skipped(meeting_id=meeting.meeting_id, skipped_reason=skip, meeting=meeting)


def _preliminary_after_merge(deps: Deps, merged: MeetingRecord) -> None:
    """A merged meeting leaves the partition, so the credited spans beside it move: Meet's
    preliminary attendance of the meetings there follows, as after a declaration
    (``functions.neighbours``). Reads nothing more when none of them has any."""
    reselect_preliminary(deps, merged.meeting_code, deps.neighbours_of(merged))


def _bring_mirrors_up(deps: Deps, meeting: MeetingRecord) -> None:
    """A change written in stages whose status mirrors died after it landed leaves documents
    behind the meeting's status, and billing counts ``complete`` ones. The retry of that delivery
    finds the meeting final (or its link stale) and does not poll: it mirrors them here, in a
    fenced commit that changes nothing else (another writer meanwhile mirrors them itself)."""
    for _ in range(MAX_PLANS):
        current = deps.store.read(meeting.meeting_id)
        if current is None:
            return
        record = current.record
        if not deps.store.any_participant_not_mirroring(record.meeting_id, str(record.status)):
            return
        documents = deps.store.participants(record.meeting_id)
        lagging = lagging_mirrors(documents, record)
        if not lagging:
            return  # only documents the meeting does not count: the next change removes them
        mirrored = MeetingCommit(
            # Changing the meeting fences out a writer that read the documents before.
            meeting=replace(record, mirror_requests=record.mirror_requests + 1),
            expected=current.version,
            status_updates=lagging,
            # Written in stages itself when large: the documents of the change landed before
            # lose its name first, or the meeting would stop counting them.
            settle=carrying_landed_token(documents, record),
        )
        if deps.store.commit(mirrored) is not None:
            logs.info("status mirrors brought up to date", documents=len(lagging))
            return


def _ask_for_repolls(deps: Deps, meeting: MeetingRecord) -> MeetingRecord:
    """Enqueue the re-polls of neighbours the meeting's last commit named, then clear them.

    The names come from the meeting's revision, so a delivery that died in between (and whose
    retry finds the meeting final, or polls it again) asks once more for the same tasks."""
    due = meeting.repolls_due
    if not due:
        return meeting
    now = deps.clock()
    for neighbour_id in due:
        neighbour = deps.store.get(neighbour_id)
        if neighbour is None or neighbour.status is Status.MERGED:
            continue
        deps.queue.enqueue(
            CollectTask(neighbour_id, neighbour.chain_seq, "neighbour"),
            task_id=task_name(neighbour_id, "release", meeting.meeting_id, meeting.revision),
            at=now,
        )

    def asked(current: MeetingRecord) -> MeetingRecord | None:
        return replace(current, repolls_due=()) if current.repolls_due == due else None

    return deps.store.update(meeting.meeting_id, asked) or meeting


def _skip_reason(meeting: MeetingRecord, *, in_chain: bool, seq: int | None) -> str | None:
    if meeting.status is Status.MERGED:
        return "merged"
    if in_chain:
        if seq != meeting.chain_seq:
            return "stale"
        if meeting.is_final:
            return "final"
    return None


def _acquire(
    deps: Deps, meeting_id: str, *, owner: str, in_chain: bool, seq: int | None
) -> Versioned:
    now = deps.clock()
    acquired = False

    def take(current: MeetingRecord) -> MeetingRecord | None:
        nonlocal acquired
        acquired = False
        held = current.lease_owner is not None and (
            current.lease_until is not None and current.lease_until > now
        )
        if held or _skip_reason(current, in_chain=in_chain, seq=seq) is not None:
            return None
        acquired = True
        return replace(current, lease_owner=owner, lease_until=now + LEASE)

    stored = deps.store.update_versioned(meeting_id, take)
    if stored is None:
        raise NotFound.meeting(meeting_id)
    if not acquired:
        raise Busy(meeting_id)
    return stored


def _release(deps: Deps, meeting_id: str, *, owner: str) -> None:
    def free(current: MeetingRecord) -> MeetingRecord | None:
        if current.lease_owner != owner:
            return None
        return replace(current, lease_owner=None, lease_until=None)

    deps.store.update(meeting_id, free)


# ------------------------------------------------------------------------------------------------
# Gather, plan, commit


@dataclass(frozen=True, slots=True)
class _Fetched:
    """What Reports gave for one query: the sessions (None when the poll failed) and the cost."""

    query: tuple[str, datetime, datetime]
    sessions: list[Session] | None
    stats: FetchStats | None
    error: LastError | None
    warnings: tuple[str, ...] = ()
    skipped: int = 0


def _fetch(deps: Deps, query: tuple[str, datetime, datetime], polled_at: datetime) -> _Fetched:
    code, start, end = query
    # The privacy modes apply before the answer's duplicates are resolved (docs/rules.md).
    collector = SessionCollector(
        stored_form=lambda s: in_stored_form(s, deps.ip_mode, deps.location_mode)
    )
    pages = requests = activities = 0
    try:
        # Each page decoded as it arrives: a large meeting never holds all its raw pages. No
        # later than now: Reports refuses an endTime in the future.
        for page in deps.reports.call_ended_pages(
            meeting_code=code, start=start, end=min(end, polled_at)
        ):
            collector.add_activities(page.activities)
            pages, requests = pages + 1, requests + page.requests
            activities += len(page.activities)
    except ReportsError as failure:
        error = LastError(code=failure.code, message=failure.message, at=polled_at)
        return _Fetched(query, None, None, error)
    stats = FetchStats(pages=pages, requests=requests, activities=activities)
    warnings = tuple(collector.warnings())
    if warnings:
        logs.warning(
            "Reports answer decoded with warnings",
            skipped=collector.events_skipped,
            texts_repaired=collector.texts_repaired,
        )
    return _Fetched(query, collector.sessions(), stats, None, warnings, collector.events_skipped)


def _may_exchange(deps: Deps, one: MeetingRecord, other: MeetingRecord) -> bool:
    """Whether ``other`` may hold sessions that belong to ``one`` now, or gain ones it holds:
    the stored sessions of either overlap the other's window, or ``other`` was merged into
    ``one`` (absorbed: ``one`` takes its stored sessions, also those of a staged change of its
    that never landed, which its meeting document does not bound)."""
    if other.merged_into == one.meeting_id:
        return True

    def holds_in(holder: MeetingRecord, window_of: MeetingRecord) -> bool:
        window = deps.spec(window_of).window
        start, end = holder.sessions_start, holder.sessions_end
        return start is not None and end is not None and window.overlaps(start, end)

    return holds_in(other, one) or holds_in(one, other)


def _revision_reason(reason: CollectReason) -> RevisionReason:
    if reason in ("backfill", "neighbour", "manual", "erasure"):
        return reason
    return "poll"


def _plan(
    deps: Deps, meeting: MeetingRecord, fetched: _Fetched | None, *, reason: CollectReason
) -> tuple[PollPlan, _Fetched, Mapping[str, str]]:
    neighbours = [
        m
        for m in deps.store.with_code(meeting.meeting_code, ended=deps.neighbours_of(meeting))
        if m.meeting_id != meeting.meeting_id
    ]
    for neighbour in neighbours:
        if neighbour.is_found and not neighbour.chain_started:
            # A found meeting whose creator (a poll giving it sessions nobody took, a backfill
            # slice) died before asking for its first link: the named task, asked again.
            ensure_link(deps, neighbour, mark=False)
    polled_at = deps.clock()
    specs = [deps.spec(m) for m in [*neighbours, meeting]]
    # The leased meeting is not merged, so it has a selection span.
    start = reports_query_start(selection_spans(specs)[meeting.meeting_id], now=polled_at)
    end = reports_query_end(deps.spec(meeting))
    query = (reports_meeting_code(meeting.meeting_code), start, end)
    if fetched is None or fetched.query != query or fetched.sessions is None:
        fetched = _fetch(deps, query, polled_at)
    inputs = PollInputs(
        meeting=meeting,
        neighbours=neighbours,
        stored=(),
        donors={
            n.meeting_id: deps.store.participants(n.meeting_id)
            for n in neighbours
            if _may_exchange(deps, meeting, n)
        },
        fetched=fetched.sessions,
        error=fetched.error,
        answer_warnings=fetched.warnings,
        skipped_events=fetched.skipped,
        polled_at=polled_at,
        revision_reason=_revision_reason(reason),
        in_chain=reason == "poll",
        timing=deps.timing,
        window_before_s=deps.window_before_s,
        window_after_s=deps.window_after_s,
        ip_mode=deps.ip_mode,
        location_mode=deps.location_mode,
    )
    # Read after the meeting (so after its lease): an erasure recorded before this read is
    # honoured here, and one recorded later finds what this poll stores (``_erased_since``).
    erasures = deps.store.erased()
    if erasures:
        inputs = replace(inputs, erased=_erased(deps, erasures, inputs, ()))
    # An unchanged re-poll need not read every participant document (most polls of a settling
    # meeting): the plan made without them holds when it changes none and none lags. The
    # query runs after the meeting was read, and every write of a document but a status mirror
    # changes the meeting, so the fenced commit fails if they changed in between. An erasure's
    # poll reads them: the erased participant may be in them alone.
    plan = None if reason == "erasure" else plan_without_documents(inputs)
    if plan is not None and not deps.store.any_participant_not_mirroring(
        meeting.meeting_id, str(meeting.status)
    ):
        return plan, fetched, inputs.erased
    stored = deps.store.participants(meeting.meeting_id)
    if erasures:
        inputs = replace(inputs, erased=_erased(deps, erasures, inputs, stored))
    return plan_poll(replace(inputs, stored=stored)), fetched, inputs.erased


def _erased(
    deps: Deps,
    erasures: frozenset[str],
    inputs: PollInputs,
    stored: Sequence[Mapping[str, Any]],
) -> dict[str, str]:
    """The erased participants among those the poll read (fetched, stored, neighbours' and
    expected ones): key → the keyed hash that names them."""
    meeting = inputs.meeting
    keys = {participant_key(s) for s in inputs.fetched or ()}
    keys.update(str(d["participant_key"]) for d in stored)
    for documents in inputs.donors.values():
        keys.update(str(d["participant_key"]) for d in documents)
    keys.update(meeting.expected_participants)
    keys.update(meeting.missing_participants)
    return erased_names(deps, keys, erasures=erasures)


def _poll_leased(
    deps: Deps, leased: Versioned, *, owner: str, reason: CollectReason, seq: int | None
) -> PollOutcome | Skipped:
    fetched: _Fetched | None = None
    in_chain = reason == "poll"
    orphans_given = False
    for _ in range(MAX_PLANS):
        meeting = leased.record
        plan, fetched, erased = _plan(deps, meeting, fetched, reason=reason)
        lease_until = meeting.lease_until
        if lease_until is None or deps.clock() >= lease_until:
            logs.warning("poll outlived its lease; nothing stored")
            raise Busy(meeting.meeting_id)
        if plan.orphans and not orphans_given:
            # Found meetings first, then a plan that hands the sessions over to them: a crash
            # in between leaves the sessions here, where the found meeting's poll finds them.
            give_found_meetings(deps, meeting.meeting_code, plan.orphans)
            orphans_given = True
            committed = None
        else:
            # Before the commit that removes them: a crash in between leaves their documents,
            # which the next poll or erasure finds; after it, nothing would lead back here.
            # A change committed meanwhile (its revision unrenamed) fences this commit out.
            for key, name in sorted(erased.items()):
                deps.store.rename_in_revisions(meeting.meeting_id, key, name)
            committed = deps.store.commit(
                MeetingCommit(
                    meeting=plan.meeting,
                    expected=leased.version,
                    upserts=plan.upserts,
                    deletes=plan.deletes,
                    status_updates=plan.status_updates,
                    settle=plan.settle,
                    revision=plan.revision,
                )
            )
        if committed is not None:
            if committed.record.status is Status.COMPLETE and meeting.status is not Status.COMPLETE:
                # Counted once per meeting (a re-poll of a complete meeting is not a completion):
                # the log-based metric behind the "no meeting completed" alert (monitoring.tf).
                logs.info("meeting completed")
            outcome = _committed(deps, plan, committed.record, fetched, in_chain=in_chain)
            _erased_since(deps, plan)
            return outcome
        fresh = deps.store.read(meeting.meeting_id)
        if fresh is None:
            raise NotFound.meeting(meeting.meeting_id)
        if fresh.record.lease_owner != owner:
            raise Busy(meeting.meeting_id)  # the lease ran out and another delivery took it
        skip = _skip_reason(fresh.record, in_chain=in_chain, seq=seq)
        if skip is not None:
            _release(deps, meeting.meeting_id, owner=owner)
            return _skipped(deps, fresh.record, skip)
        logs.info("meeting changed during the poll; planning again")
        leased = fresh
    raise StoreContention(leased.record.meeting_id)


# ------------------------------------------------------------------------------------------------
# Erasure (docs/rules.md "Privacy"): the use case, and removing one participant from one meeting,
# are functions.erasure; a poll only leaves erased participants out, and checks after its commit.


def _erased_since(deps: Deps, plan: PollPlan) -> None:
    """Erase participants this poll stored whose erasure was recorded while it ran.

    The poll left out those erased before it read the erasures; an erasure recorded later looks
    for its participant's documents itself, but may have looked before this commit. Either that
    search finds what this poll stored, or this check (after the commit) finds the erasure."""
    if deps.erasure_key is None or not plan.upserts:
        return
    erasures = deps.store.erased()
    if not erasures:
        return
    for key in sorted({record.participant_key for record in plan.upserts}):
        name = erasure_name(key, deps.erasure_key)
        if name in erasures:
            # Imported here: the erasure use case polls through this module.
            from functions.erasure import erase_from_meeting

            logs.warning("participant erased during the poll; erasing it now")
            erase_from_meeting(deps, plan.meeting.meeting_id, key, name)


def _committed(
    deps: Deps, plan: PollPlan, stored: MeetingRecord, fetched: _Fetched, *, in_chain: bool
) -> PollOutcome:
    if in_chain or not stored.chain_started:
        # A one-off poll of a meeting whose first link was never asked for (its creator died in
        # between) asks for it: the link is a named task, asking twice creates one.
        stored = ensure_link(deps, stored)
    stored = tell_neighbours(deps, stored)  # a found meeting's times shrank
    if stored.status is Status.MERGED:
        _preliminary_after_merge(deps, stored)
    stored = _ask_for_repolls(deps, stored)
    writes = len(plan.upserts) + len(plan.deletes) + len(plan.status_updates)
    outcome = PollOutcome(
        meeting=stored,
        created=plan.created,
        updated=plan.updated,
        participant_writes=writes,
        stats=fetched.stats,
        selected=plan.selected,
        error=None if fetched.error is None else fetched.error.message,
    )
    stats = fetched.stats
    logs.info(
        "poll finished",
        status=str(stored.status),
        decision="final" if plan.decision.final else "continue",
        events=stats.activities if stats else None,
        pages=stats.pages if stats else None,
        requests=stats.requests if stats else None,
        participants=plan.selected.participant_count,
        participant_writes=writes,
        revision=stored.revision,
        next_poll_at=format_optional(stored.next_poll_at),
        warning=None if stored.last_warning is None else stored.last_warning.code,
        error=outcome.error,
        error_code=None if fetched.error is None else fetched.error.code,
    )
    return outcome
