"""A poll as a pure plan (docs/rules.md "Polls never forget, and change a meeting all at once").

:func:`plan_poll` takes everything a poll read — the meeting, its neighbours, the participant
documents it and they hold, and the Reports answer (or its failure) — and returns the whole
outcome: the participant documents to write and delete, the revision record, the meeting
document after the poll, and the next link of its chain. ``functions.polling`` gathers the inputs
and commits the plan in one fenced write; nothing here does I/O.

The session set is monotone: the sessions stored, plus those fetched, plus those
neighbours hold that now fall in this meeting's selection, restricted to that selection. A
session that leaves (the partition changed) is held until the meeting that gains it stores it,
so it never depends on Reports still returning it; one that no meeting gains is held until a
found meeting is given it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from functions.attendance import Meeting, Session, build_meeting
from functions.duplicates import dedupe_key, preferred
from functions.fingerprints import meeting_fingerprint, participant_fingerprints
from functions.model import (
    IpMode,
    LastError,
    LocationMode,
    MeetingRecord,
    ParticipantRecord,
    RevisionRecord,
    absent_record,
    estimated_record,
    in_stored_form,
    participant_record,
)
from functions.participant_keys import participant_doc_id, participant_key
from functions.poll_types import (
    INCOMPLETE_ANSWER,
    TEXTS_REPAIRED,
    UNUSABLE_EVENTS,
    Key,
    PollInputs,
    PollPlan,
)
from functions.schedule import Decision, PollHistory, PollResult, Status, decide
from functions.schedule import next_poll_at as scheduled_after
from functions.selection import (
    MeetingSpec,
    Partition,
    credited_spans,
    declared_window,
    select_meetings,
)
from functions.stored_state import (
    StoredState,
    absorbable,
    attendance_changes,
    carrying_landed_token,
    preliminary_kept,
    preliminary_taker,
    stored_sessions,
    with_previous,
)

__all__ = [
    "INCOMPLETE_ANSWER",
    "TEXTS_REPAIRED",
    "UNUSABLE_EVENTS",
    "PollInputs",
    "PollPlan",
    "plan_poll",
    "plan_without_documents",
]

#: How many times one poll plans again at a found meeting's moved times.
_TIMES_ROUNDS = 3


def _without_erased(sessions: Iterable[Session], inputs: PollInputs) -> list[Session]:
    """The sessions of participants not erased: an erased one's are never stored again."""
    if not inputs.erased:
        return list(sessions)
    return [s for s in sessions if participant_key(s) not in inputs.erased]


def _expected(meeting: MeetingRecord, inputs: PollInputs) -> MeetingRecord:
    """The meeting with erased participants out of its expected list (the missing ones are
    derived from it: ``_missing_expected``)."""
    if not inputs.erased:
        return meeting
    expected = tuple(k for k in meeting.expected_participants if k not in inputs.erased)
    return replace(meeting, expected_participants=expected)


def _spec(meeting: MeetingRecord, inputs: PollInputs) -> MeetingSpec:
    return meeting.spec(
        window_before_s=inputs.window_before_s, window_after_s=inputs.window_after_s
    )


def _union(
    *groups: Iterable[Session], fresh: Iterable[Session], modes: tuple[IpMode, LocationMode]
) -> dict[Key, Session]:
    """One copy of each session: duplicates resolved by the rule, a fresh copy winning a tie.
    Stored copies take the modes' stored form too (``fresh`` ones have it): one stored under a
    laxer mode is written again in the current one, and no copy wins by a removed value."""
    sessions: dict[Key, Session] = {}
    for group in groups:
        for stored in group:
            session = in_stored_form(stored, *modes)
            key = dedupe_key(session)
            known = sessions.get(key)
            sessions[key] = session if known is None else preferred(known, session)
    for session in fresh:
        key = dedupe_key(session)
        known = sessions.get(key)
        same = known is not None and known.event_id == session.event_id
        sessions[key] = session if known is None or same else preferred(known, session)
    return sessions


@dataclass(frozen=True, slots=True)
class _Selection:
    meeting: Meeting
    kept: dict[Key, Session]  # selected, plus held ones that have not been handed over yet
    handed_to: tuple[str, ...]  # meetings that gained (and store) sessions this one held
    releases: tuple[str, ...]  # neighbours holding sessions this one took, outside their span
    orphans: tuple[Session, ...]  # held ones no meeting takes: they need a found meeting
    warning: LastError | None
    partition: Partition  # who takes a session, among this meeting and its neighbours


def _select(inputs: PollInputs, *, documents_read: bool) -> _Selection:
    meeting = inputs.meeting
    code = meeting.meeting_code
    own = _without_erased(stored_sessions(inputs.stored, meeting), inputs)
    by_id = {n.meeting_id: n for n in inputs.neighbours}
    theirs = {
        neighbour_id: {
            dedupe_key(s): s
            for s in _without_erased(stored_sessions(docs, by_id[neighbour_id]), inputs)
        }
        for neighbour_id, docs in inputs.donors.items()
        if neighbour_id in by_id
    }
    modes = (inputs.ip_mode, inputs.location_mode)
    fetched = [in_stored_form(s, *modes) for s in inputs.fetched or ()]
    fetched = _without_erased(fetched, inputs)
    union = _union(own, *(d.values() for d in theirs.values()), fresh=fetched, modes=modes)
    specs = [_spec(n, inputs) for n in inputs.neighbours] + [_spec(meeting, inputs)]
    selection = select_meetings(specs, union.values())[meeting.meeting_id]
    chosen = {dedupe_key(s): s for s in selection.sessions}
    if not documents_read:
        # Taken to hold exactly the selected sessions: plan_without_documents keeps this plan
        # only when every participant's fingerprint (its sessions included) says so.
        own = list(chosen.values())
    partition = Partition(specs)
    spec_of = {spec.meeting_id: spec for spec in specs}
    kept = dict(chosen)
    handed_to: set[str] = set()
    orphans: list[Session] = []
    for session in own:
        key = dedupe_key(session)
        if key in chosen:
            continue
        gainers = [
            m
            for m in partition.takers(code, session.join_time, session.leave_time)
            if m != meeting.meeting_id
        ]
        if not gainers:
            orphans.append(union[key])  # held until a found meeting takes it: never to none
        if not gainers or any(key not in theirs.get(g, {}) for g in gainers):
            kept[key] = union[key]  # held until the meeting that gains it stores it
        handed_to.update(g for g in gainers if key in theirs.get(g, {}))
    # Neighbours to tell: those holding a session this meeting took that they no longer take
    # (they let it go), and those that take a session this meeting holds but do not hold it
    # (they take it from here: Reports may no longer have it). No neighbours: no other taker.
    releases = {
        neighbour_id
        for neighbour_id, held in theirs.items()
        if any(
            key in held
            and not partition.takes(spec_of[neighbour_id], session.join_time, session.leave_time)
            for key, session in chosen.items()
        )
    }
    releases |= {
        taker
        for key, session in (chosen.items() if inputs.neighbours else ())
        for taker in partition.takers(code, session.join_time, session.leave_time)
        if taker != meeting.meeting_id and key not in theirs.get(taker, {})
    }
    releases |= partition.lacking_takers(code, fetched, taken_here=chosen, held=theirs)
    selected = selection.meeting
    if len(kept) != len(chosen):
        selected = _rebuilt(selection.meeting, kept.values(), inputs, specs)
    return _Selection(
        meeting=selected,
        kept=kept,
        handed_to=tuple(sorted(handed_to)),
        releases=tuple(sorted(releases)),
        orphans=tuple(orphans),
        warning=inputs.last_warning(own, chosen, fetched),
        partition=partition,
    )


def _rebuilt(
    selected: Meeting, sessions: Iterable[Session], inputs: PollInputs, specs: list[MeetingSpec]
) -> Meeting:
    """The meeting's aggregates over the selected sessions and the held ones (clipped alike)."""
    credited = credited_spans(specs)[inputs.meeting.meeting_id]
    return build_meeting(
        sessions,
        clip=None if credited.is_open() else credited,
        meeting_code=selected.meeting_code,
        calendar_event_id=inputs.meeting.calendar_event_id,
        organizer_email=inputs.meeting.organizer_email,
    )


def _missing_expected(meeting: MeetingRecord, selected: Meeting) -> list[str]:
    seen = {p.participant_key for p in selected.participants}
    return [key for key in meeting.expected_participants if key not in seen]


def _decide(inputs: PollInputs, selected: Meeting, fingerprints: Mapping[str, str]) -> Decision:
    meeting = inputs.meeting
    succeeded = inputs.fetched is not None
    result = PollResult(
        succeeded=succeeded,
        sessions_fingerprint=meeting_fingerprint(selected, fingerprints) if succeeded else None,
        session_count=sum(p.session_count for p in selected.participants),
        missing_expected=len(_missing_expected(meeting, selected)),
    )
    history = PollHistory(
        status=meeting.status,
        sessions_fingerprint=meeting.sessions_fingerprint,
        fingerprint_seen_since=meeting.fingerprint_seen_since,
        successful_polls=meeting.successful_polls,
        ever_found_sessions=meeting.found_sessions,
    )
    return decide(
        history=history,
        result=result,
        polled_at=inputs.polled_at,
        ended_at=meeting.ended_at,
        timing=inputs.timing,
    )


def _records(
    inputs: PollInputs,
    selected: Meeting,
    fingerprints: Mapping[str, str],
    *,
    status: Status,
    revision: int,
) -> dict[str, ParticipantRecord]:
    """What the participant documents should hold after this poll. ``fingerprints``:
    :func:`participant_fingerprints` of ``selected``."""
    meeting = inputs.meeting
    records: dict[str, ParticipantRecord] = {}
    for participant in selected.participants:
        record = participant_record(
            participant,
            meeting=meeting,
            revision=revision,
            status=status,
            ip_mode=inputs.ip_mode,
            location_mode=inputs.location_mode,
            fingerprint_of_participant=fingerprints[participant.participant_key],
        )
        records[record.doc_id] = record
    if not selected.participants and meeting.attendance_source == "meet":
        return preliminary_kept(
            inputs.stored, meeting, status=status, revision=revision, erased=inputs.erased
        )
    unseen = absent_record if status is Status.COMPLETE else estimated_record
    if selected.participants or inputs.fetched is not None or status is Status.COMPLETE:
        for key in _missing_expected(meeting, selected):
            record = unseen(key, meeting=meeting, revision=revision, status=status)
            records[record.doc_id] = record
    else:
        # Nothing known yet and nothing fetched: the estimates stay as they are.
        for key in meeting.expected_participants:
            record = estimated_record(key, meeting=meeting, revision=revision, status=status)
            records[record.doc_id] = record
    return records


@dataclass(frozen=True, slots=True)
class _Attendance:
    records: dict[str, ParticipantRecord]
    changed: dict[str, ParticipantRecord]
    removed: tuple[str, ...]
    revision: int


def _attendance(
    inputs: PollInputs, selected: Meeting, status: Status, fingerprints: Mapping[str, str]
) -> _Attendance:
    meeting = inputs.meeting
    state = StoredState.of(inputs.stored, meeting)
    stored_ids = set(state.before)
    dirty = state.dirty
    known = meeting.participant_fingerprints
    records = _records(inputs, selected, fingerprints, status=status, revision=meeting.revision)
    changed = {d for d, r in records.items() if d in dirty or known.get(d) != r.fingerprint}
    removed = tuple(sorted(d for d in {*known, *stored_ids} if d not in records))
    if not changed and not removed:
        return _Attendance(records, {}, (), meeting.revision)
    revision = meeting.revision + 1
    records = {d: _at_revision(r, revision) for d, r in records.items()}
    upserts = {d: with_previous(records[d], state.attended(d)) for d in sorted(changed)}
    return _Attendance(records, upserts, removed, revision)


def _at_revision(record: ParticipantRecord, revision: int) -> ParticipantRecord:
    """The same record written by the change that makes ``revision``: the document's
    ``revision`` is the only field that names it (the fingerprint does not)."""
    return replace(record, document={**record.document, "revision": revision})


def _following(inputs: PollInputs, decision: Decision) -> tuple[datetime | None, int]:
    """The next link's time (None: no more polls) and the chain's sequence number after this."""
    meeting = inputs.meeting
    if not inputs.in_chain:
        return (None if decision.final else meeting.next_poll_at), meeting.chain_seq
    following = (
        None
        if decision.final
        else scheduled_after(
            polled_at=inputs.polled_at,
            polls_done=meeting.attempts + 1,
            ended_at=meeting.ended_at,
            timing=inputs.timing,
        )
    )
    return following, meeting.chain_seq + 1


def _shrunk(
    inputs: PollInputs, kept: Iterable[Session], partly_merged_into: tuple[str, ...]
) -> tuple[datetime | None, datetime, datetime, datetime]:
    """``started_at``, ``ended_at`` and the window after the poll: a found meeting partly merged
    away covers only the rest (docs/rules.md), its times shrink to its first join and last leave.
    Nothing else moves a meeting's times here."""
    meeting = inputs.meeting
    unchanged = (meeting.started_at, meeting.ended_at, meeting.window_start, meeting.window_end)
    sessions = list(kept)
    if not meeting.is_found or not partly_merged_into or not sessions:
        return unchanged
    started_at = min(s.join_time for s in sessions)
    ended_at = max(s.leave_time for s in sessions)
    window_start, window_end = declared_window(
        ended_at=ended_at,
        started_at=started_at,
        before_s=inputs.window_before_s,
        after_s=inputs.window_after_s,
    )
    return started_at, ended_at, window_start, window_end


def _repolls(meeting: MeetingRecord, selection: _Selection, *, moved: bool) -> tuple[str, ...]:
    """The neighbours to re-poll (this poll's, and any a delivery that died did not ask for), and
    itself when this poll ``moved`` its times: its share was clipped under the times it had."""
    itself = (meeting.meeting_id,) if moved else ()
    return tuple(sorted({*meeting.repolls_due, *selection.releases, *itself}))


def _absorbed(inputs: PollInputs, selection: _Selection) -> str | None:
    """The declared meeting a found meeting that kept nothing merges into (if absorbable), or
    that takes each of its preliminary sessions with Reports data of its own."""
    meeting, neighbours = inputs.meeting, inputs.neighbours
    if selection.kept or not meeting.is_found:
        return None
    if not absorbable(meeting, inputs.stored, inputs.erased):
        declared = [n for n in neighbours if not n.is_found]
        with_reports = [n.meeting_id for n in declared if n.attendance_source == "reports"]
        takers = selection.partition.takers
        return preliminary_taker(meeting, inputs.stored, inputs.erased, takers, with_reports)
    gainers = selection.handed_to or meeting.partly_merged_into
    return gainers[0] if gainers else None


def _after(
    inputs: PollInputs, selection: _Selection, decision: Decision, attendance: _Attendance
) -> MeetingRecord:
    """The meeting document after the poll."""
    meeting, selected, polled_at = inputs.meeting, selection.meeting, inputs.polled_at
    following, chain_seq = _following(inputs, decision)
    kept = selection.kept.values()
    declared = {n.meeting_id for n in inputs.neighbours if not n.is_found}
    declared_gainers = tuple(
        g for g in selection.handed_to if g in declared and g not in meeting.partly_merged_into
    )
    partly_merged_into = (
        (*meeting.partly_merged_into, *declared_gainers)
        if meeting.is_found
        else meeting.partly_merged_into
    )
    started_at, ended_at, window_start, window_end = _shrunk(inputs, kept, partly_merged_into)
    moved = (started_at, ended_at) != (meeting.started_at, meeting.ended_at)
    # Meet's preliminary attendance, until Reports has data: its counts stay the meeting's.
    preliminary = not selected.participants and meeting.attendance_source == "meet"
    kept_preliminary = [r for r in attendance.records.values() if r.document.get("preliminary")]
    return replace(
        meeting,
        started_at=started_at,
        ended_at=ended_at,
        window_start=window_start,
        window_end=window_end,
        status=decision.status,
        attempts=meeting.attempts + 1,
        last_polled_at=polled_at,
        next_poll_at=following,
        chain_seq=chain_seq,
        # A one-off poll leaves the chain's link as it was (started or not); a link's poll
        # starts the next link only once it is enqueued.
        chain_started=meeting.chain_started if not inputs.in_chain else following is None,
        revision=attendance.revision,
        participant_fingerprints={d: r.fingerprint for d, r in attendance.records.items()},
        sessions_fingerprint=decision.sessions_fingerprint,
        fingerprint_seen_since=decision.fingerprint_seen_since,
        successful_polls=meeting.successful_polls + (inputs.fetched is not None),
        last_error=inputs.error or (None if inputs.fetched is not None else meeting.last_error),
        last_warning=selection.warning,
        completed_at=(
            polled_at
            if decision.status is Status.COMPLETE and meeting.status is not Status.COMPLETE
            else meeting.completed_at
        ),
        conference_ids=selected.conference_ids or meeting.conference_ids,
        calendar_event_id=selected.calendar_event_id or meeting.calendar_event_id,
        organizer_email=selected.organizer_email or meeting.organizer_email,
        participant_count=(
            selected.participant_count if not preliminary else len(kept_preliminary)
        ),
        total_attended_seconds=(
            selected.total_attended_seconds
            if not preliminary
            else sum(r.attended_seconds for r in kept_preliminary)
        ),
        actual_start=selected.actual_start if not preliminary else meeting.actual_start,
        actual_end=selected.actual_end if not preliminary else meeting.actual_end,
        missing_participants=(
            tuple(_missing_expected(meeting, selected))
            if not preliminary
            else meeting.missing_participants
        ),
        attendance_source="reports" if selected.participants else meeting.attendance_source,
        sessions_start=min((s.join_time for s in kept), default=None),
        sessions_end=max((s.leave_time for s in kept), default=None),
        partly_merged_into=partly_merged_into,
        repolls_due=_repolls(meeting, selection, moved=moved),
        # This poll rewrites or removes every document of a staged change that never landed.
        staging_progress=None,
        lease_owner=None,
        lease_until=None,
        updated_at=polled_at,
    )


def plan_poll(inputs: PollInputs) -> PollPlan:
    """Everything one poll changes, decided from what it read (see the module docstring). A
    found meeting whose times the plan moves is planned again at them (its share is selected and
    clipped under its times) until they hold; past the rounds, it re-polls itself."""
    plan = _plan(inputs, documents_read=True)
    for _ in range(_TIMES_ROUNDS):
        after = plan.meeting
        if after.status is Status.MERGED or after.times == inputs.meeting.times:
            return plan
        at_new_times = replace(
            inputs.meeting,
            started_at=after.started_at,
            ended_at=after.ended_at,
            window_start=after.window_start,
            window_end=after.window_end,
        )
        inputs = replace(inputs, meeting=at_new_times)
        plan = _plan(inputs, documents_read=True)
    return plan


def plan_without_documents(inputs: PollInputs) -> PollPlan | None:
    """The plan of a poll that did not read the participant documents, or None when it must.

    For a meeting whose documents all mirror its status (the caller checks) and that no staged
    change began writing into since a poll read them all (``staging_progress``), the stored
    sessions are taken to be the selected ones. That holds when the plan writes no document
    (each fingerprint, sessions included, is as stored) and the status does not move: then
    :func:`plan_poll` plans the same. A change, a failed answer or a first poll: None."""
    meeting = inputs.meeting
    unknown = meeting.staging_progress is not None or not meeting.participant_fingerprints
    # Preliminary documents are kept from what is stored: they must be read.
    unknown = unknown or meeting.attendance_source == "meet"
    if inputs.stored or inputs.fetched is None or unknown:
        return None
    plan = _plan(inputs, documents_read=False)
    moved = plan.upserts or plan.deletes or plan.revision is not None or plan.orphans
    if moved or plan.meeting.status is not meeting.status:
        return None
    return plan


def _plan(inputs: PollInputs, *, documents_read: bool) -> PollPlan:
    inputs = replace(inputs, meeting=_expected(inputs.meeting, inputs)) if inputs.erased else inputs
    selection = _select(inputs, documents_read=documents_read)
    fingerprints = participant_fingerprints(selection.meeting)
    decision = _decide(inputs, selection.meeting, fingerprints)
    merged_into = _absorbed(inputs, selection)
    if merged_into is not None:
        return _merged_plan(inputs, selection, decision, merged_into)
    attendance = _attendance(inputs, selection.meeting, decision.status, fingerprints)
    meeting = _after(inputs, selection, decision, attendance)
    # Every kept document mirrors the status: the ones whose mirror lags (the status moved, or a
    # staged change's mirrors never ran) are brought up to date.
    lagging = {
        participant_doc_id(str(d["participant_key"]))
        for d in inputs.stored
        if d.get("meeting_status") != str(decision.status)
    }
    revision = None
    if attendance.changed or attendance.removed:
        revision = RevisionRecord(
            revision=attendance.revision,
            at=inputs.polled_at,
            reason=inputs.revision_reason,
            changes=attendance_changes(
                StoredState.of(inputs.stored, inputs.meeting),
                attendance.changed,
                attendance.removed,
                names=inputs.erased,
            ),
        )
    real = {participant_doc_id(p.participant_key) for p in selection.meeting.participants}
    previous = set(inputs.meeting.participant_fingerprints)
    return PollPlan(
        meeting=meeting,
        upserts=tuple(attendance.changed.values()),
        deletes=attendance.removed,
        status_updates=tuple(
            d for d in sorted(attendance.records) if d not in attendance.changed and d in lagging
        ),
        revision=revision,
        settle=carrying_landed_token(inputs.stored, inputs.meeting),
        selected=selection.meeting,
        decision=decision,
        created=tuple(d for d in attendance.changed if d in real and d not in previous),
        updated=tuple(d for d in attendance.changed if d in real and d in previous),
        repolls=meeting.repolls_due,
        orphans=selection.orphans,
    )


def _merged_plan(
    inputs: PollInputs, selection: _Selection, decision: Decision, merged_into: str
) -> PollPlan:
    """A found meeting whose sessions all went to declared meetings: ``merged``, its documents
    kept (the audit trail) with their status mirrored."""
    meeting = inputs.meeting
    merged = replace(
        meeting,
        status=Status.MERGED,
        merged_into=merged_into,
        next_poll_at=None,
        chain_started=True,
        attempts=meeting.attempts + 1,
        last_polled_at=inputs.polled_at,
        repolls_due=_repolls(meeting, selection, moved=False),
        lease_owner=None,
        lease_until=None,
        updated_at=inputs.polled_at,
    )
    return PollPlan(
        meeting=merged,
        upserts=(),
        deletes=(),
        status_updates=tuple(
            sorted(participant_doc_id(str(d["participant_key"])) for d in inputs.stored)
        ),
        revision=None,
        settle=carrying_landed_token(inputs.stored, inputs.meeting),
        selected=selection.meeting,
        decision=replace(decision, status=Status.MERGED, final=True),
        created=(),
        updated=(),
        repolls=merged.repolls_due,
        orphans=selection.orphans,
    )
