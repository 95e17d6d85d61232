"""Use case: a meeting is declared (webhook, CLI sync, backfill discovery) — docs/rules.md.

The meeting document is created insert-if-absent under an id that is a hash of its identity, so a
duplicate finds the same document; then its expected participants get estimates, the first link
of its chain is enqueued, and its neighbours are told (``functions.neighbours``). A replayed
``webhook-id`` answers with the meeting it was first accepted for.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final

from functions import logs
from functions.chain import ensure_link
from functions.errors import ConfigError, Conflict, InvalidInput, NotFound, StoreContention
from functions.known_meetings import KnownMeetings, known_facts
from functions.limits import REPORTS_RETENTION
from functions.meeting_codes import canonical_meeting_code
from functions.model import (
    FOUND_SOURCES,
    AttendanceChange,
    Declared,
    MeetingRecord,
    RevisionRecord,
    Source,
    absent_record,
    estimated_record,
    meeting_id_for,
)
from functions.neighbours import absorb_and_repoll_neighbours, nobody_to_tell
from functions.participant_keys import erased_among, erasure_name, participant_doc_id
from functions.ports import DeclarationFacts, DeclarationReads, Delivery, Deps, MeetingCommit
from functions.redeclaration import new_times, renamed
from functions.retention import check_retained
from functions.schedule import Status, deadline, first_poll_at
from functions.selection import MeetingSpec, declared_window, neighbourhood
from functions.stored_state import StoredState, carrying_landed_token, with_previous

__all__ = [
    "DELIVERY_MEMORY",
    "Accepted",
    "accept_meeting_end",
    "new_meeting_record",
    "tell_neighbours",
]

#: Webhook-id replay records live this long (Firestore TTL deletes them after).
DELIVERY_MEMORY: Final = timedelta(days=2)
#: Tries of one fenced estimates commit before answering "retry later".
_ESTIMATE_ATTEMPTS: Final = 5
#: Tries of a new meeting whose commit keeps finding a new erasure of one of its expected.
_ERASED_MEANWHILE_ATTEMPTS: Final = 3


@dataclass(frozen=True, slots=True)
class Accepted:
    meeting: MeetingRecord
    created: bool
    #: Created with nobody to tell: no other meeting of the code was written.
    others_untouched: bool = False


def new_meeting_record(
    declared: Declared, *, meeting_id: str, source: Source, deps: Deps, now: datetime
) -> MeetingRecord:
    window_start, window_end = declared_window(
        ended_at=declared.ended_at,
        started_at=declared.started_at,
        before_s=deps.window_before_s,
        after_s=deps.window_after_s,
    )
    return MeetingRecord(
        meeting_id=meeting_id,
        source=source,
        meeting_code=canonical_meeting_code(declared.meeting_code),
        ended_at=declared.ended_at,
        started_at=declared.started_at,
        external_id=declared.external_id,
        window_start=window_start,
        window_end=window_end,
        deadline=deadline(declared.ended_at, deps.timing),
        expected_participants=declared.expected_participants,
        missing_participants=declared.expected_participants,
        calendar_event_id=declared.calendar_event_id,
        declared_calendar_event_id=declared.calendar_event_id or None,
        organizer_email=declared.organizer_email,
        times_source=source,
        rsvps=dict(declared.rsvps),
        next_poll_at=first_poll_at(ended_at=declared.ended_at, now=now, timing=deps.timing),
        created_at=now,
        updated_at=now,
    )


def accept_meeting_end(
    deps: Deps,
    declared: Declared,
    *,
    source: Source = "webhook",
    webhook_id: str | None = None,
    conference_id: str | None = None,
    known: KnownMeetings | None = None,
) -> Accepted:
    """Create (or find) the meeting, its estimated attendance and the first task of its chain.

    A backfill meeting passes the ``conference_id`` it was found for: its identity; and may pass
    the code's meetings it has ``known`` (``functions.known_meetings``: when they replace the
    read).

    A new meeting costs two round trips: everything it reads at once (the documents its
    identity may name, the delivery record, the neighbours), and one request creating it with
    its estimates and its delivery record (and, when no neighbour's share changes, recorded as
    told) on condition that none of the expected is erased; when one is, the declaration reads
    the erasures among them too, and decides again.
    """
    now = deps.clock()
    if source not in FOUND_SOURCES:
        # Found meetings come from backfill ranges, which are refused at the edge instead.
        check_retained(
            declared.ended_at, now=now, retention_days=deps.retention_days, field="ended_at"
        )
    meeting_id, erasures = "", False
    for _ in range(_ERASED_MEANWHILE_ATTEMPTS):
        try:
            return _accept(
                deps, declared, source, webhook_id, conference_id, known, erasures, now=now
            )
        except _ErasedMeanwhile as erased:
            # Read again, the erasures too: the participant is left out this time.
            known, meeting_id, erasures = None, str(erased), True
    raise StoreContention(meeting_id)


class _ErasedMeanwhile(Exception):
    """A new meeting's commit found an erasure of one of its expected (argument: its id)."""


def _accept(
    deps: Deps,
    declared: Declared,
    source: Source,
    webhook_id: str | None,
    conference_id: str | None,
    known: KnownMeetings | None,
    erasures: bool,
    *,
    now: datetime,
) -> Accepted:
    facts = _read_for(
        deps,
        declared,
        webhook_id=webhook_id,
        conference_id=conference_id,
        known=known,
        erasures=erasures,
    )
    if webhook_id is not None:
        replayed = _replayed(deps, webhook_id, facts)
        if replayed is not None:
            return replayed
    declared = _without_erased(deps, declared, facts)
    meeting_id, alias = _identity(declared, conference_id=conference_id, source=source, facts=facts)
    with logs.bind(meeting_id=meeting_id):
        record = new_meeting_record(
            declared, meeting_id=meeting_id, source=source, deps=deps, now=now
        )
        if alias is not None:
            record = replace(record, aliases=(alias,))
        if source not in FOUND_SOURCES:
            _check_retention(record, now=now)
        delivery = (
            None
            if webhook_id is None
            else Delivery(webhook_id, meeting_id, expire_at=now + DELIVERY_MEMORY)
        )
        if not _exists(meeting_id, facts):
            created = _create(deps, record, facts, delivery=delivery)
            if created is not None:
                meeting, quiet = created
                logs.info("meeting created", status=str(meeting.status), source=source)
                return Accepted(meeting, created=True, others_untouched=quiet)
        # Declared before (or by a duplicate just now): its times, names and expected change.
        meeting = _update_declared(deps, record, source=source, now=now)
        meeting = ensure_link(deps, meeting, mark=False)
        meeting = tell_neighbours(deps, meeting)
        if delivery is not None:
            deps.store.remember_delivery(
                webhook_id=delivery.webhook_id,
                meeting_id=meeting_id,
                expire_at=delivery.expire_at,
            )
        return Accepted(meeting, created=False)


def _read_for(
    deps: Deps,
    declared: Declared,
    *,
    webhook_id: str | None,
    conference_id: str | None,
    known: KnownMeetings | None,
    erasures: bool,
) -> DeclarationFacts:
    """Everything a declaration may need to read, asked for at once. The erasures among the
    expected only when ``erasures``: a new meeting's commit is conditioned on there being none,
    so they are read after a commit that found one (and by every other write of estimates)."""
    external_id, event_id = declared.external_id, declared.calendar_event_id or None
    candidates = [
        meeting_id_for(
            calendar_event_id=event_id,
            meeting_code=declared.meeting_code,
            ended_at=declared.ended_at,
            conference_id=conference_id,
        )
    ]
    if external_id is not None:
        candidates.insert(0, meeting_id_for(external_id=external_id))
    expected = declared.expected_participants
    # The declared times with this deployment's windows: all the neighbourhood depends on.
    declared_times = MeetingSpec(
        meeting_id=candidates[0],
        meeting_code=declared.meeting_code,
        ended_at=declared.ended_at,
        started_at=declared.started_at,
        window_before_s=deps.window_before_s,
        window_after_s=deps.window_after_s,
    )
    reads = DeclarationReads(
        meeting_ids=candidates,
        webhook_id=webhook_id,
        erasure_names=_erasure_names(deps, expected) if erasures else (),
        any_erasure=deps.erasure_key is None and bool(expected),
        meeting_code=canonical_meeting_code(declared.meeting_code),
        neighbours=neighbourhood(declared_times),
        alias=external_id,
        calendar_event_id=event_id,
    )
    facts = None if known is None else known_facts(reads, known)
    return deps.store.declaration_reads(reads) if facts is None else facts


def _exists(meeting_id: str, facts: DeclarationFacts) -> bool:
    named = [*facts.by_event, *facts.aliased]
    return meeting_id in facts.meetings or any(m.meeting_id == meeting_id for m in named)


def _create(
    deps: Deps, record: MeetingRecord, facts: DeclarationFacts, *, delivery: Delivery | None
) -> tuple[MeetingRecord, bool] | None:
    """The new meeting, its estimates and its delivery record in one request, then its first
    link; None when it exists already (a duplicate created it meanwhile). With it, whether it
    had nobody to tell."""
    quiet = nobody_to_tell(deps, record, facts.neighbours)
    base = replace(record, neighbours_told_of=record.times) if quiet else record
    expected = base.expected_participants
    change = expected_change(base, [], expected=expected, now=deps.clock())
    # An erasure's search for the meetings naming its participant runs after the erasure is
    # recorded: it finds this meeting if the meeting landed first. The request lands only
    # while none of the expected is erased, so one of the two always sees the other.
    unerased = _erasure_names(deps, expected)
    commit = MeetingCommit(meeting=base, expected=None) if change is None else change
    landed = deps.store.commit(
        replace(commit, expected=None, creates=base, delivery=delivery, unerased=unerased)
    )
    if landed is None:
        if unerased and deps.store.erased_among(unerased):
            raise _ErasedMeanwhile(record.meeting_id)
        return None
    meeting = ensure_link(deps, landed.record, mark=False)
    if not quiet:
        meeting = tell_neighbours(deps, meeting)
    # Without ERASURE_KEY no erasure has a name to condition on: was any recorded meanwhile?
    if expected and deps.erasure_key is None and deps.store.erased():
        write_estimates(deps, meeting, expected=expected)
        meeting = deps.store.get(meeting.meeting_id) or meeting
    return meeting, quiet


def _erasure_names(deps: Deps, keys: Collection[str]) -> list[str]:
    key = deps.erasure_key
    return [] if key is None else [erasure_name(k, key) for k in keys]


def _identity(
    declared: Declared, *, conference_id: str | None, source: Source, facts: DeclarationFacts
) -> tuple[str, str | None]:
    """The meeting a declaration names (docs/rules.md "Identity"), and the external id it adds to
    that meeting's aliases: a declared ``calendar_event_id`` naming an existing meeting first,
    else the ``external_id`` (or a meeting naming it as an alias), else the
    ``calendar_event_id``, else the code and ``ended_at``. Conflict when the calendar event id and
    the external id name two different meetings."""
    external_id, event_id = declared.external_id, declared.calendar_event_id
    # Aliases are only ever given to meetings whose own id is not ``x-`` + hash of that external
    # id (the alias was added because no such meeting existed).
    aliased = facts.aliased[0].meeting_id if facts.aliased else None
    # Calendar's own declarations name their meeting by external id (an event whose Meet code
    # changed declares a new one under the same event id).
    if event_id and source != "calendar":
        by_event = [m for m in facts.by_event if not m.is_found]
        # The live one first: an event whose code changed left a cancelled meeting behind.
        by_event.sort(key=lambda m: (m.cancelled_at is not None, m.meeting_id))
        if by_event:
            meeting = by_event[0]
            by_external = aliased
            if external_id is not None and by_external is None:
                own = meeting_id_for(external_id=external_id)
                by_external = own if own in facts.meetings else None
            if by_external is not None and by_external != meeting.meeting_id:
                raise Conflict(
                    f"calendar_event_id names meeting {meeting.meeting_id} and external_id names "
                    f"meeting {by_external}"
                )
            named = {meeting.external_id, *meeting.aliases}
            alias = external_id if external_id is not None and external_id not in named else None
            return meeting.meeting_id, alias
    if external_id is not None:
        return aliased or meeting_id_for(external_id=external_id), None
    return (
        meeting_id_for(
            calendar_event_id=event_id or None,
            meeting_code=declared.meeting_code,
            ended_at=declared.ended_at,
            conference_id=conference_id,
        ),
        None,
    )


def erased_names(
    deps: Deps, keys: Collection[str], *, erasures: frozenset[str] | None = None
) -> dict[str, str]:
    """The erased participants among ``keys``: key → the keyed hash that names them.
    ``erasures``: the erasures already read (by default they are read here)."""
    if erasures is None:
        erasures = deps.store.erased() if keys else frozenset()
    if not erasures:
        return {}
    if deps.erasure_key is None:
        raise ConfigError(["ERASURE_KEY is required: erasures are recorded and must be honoured"])
    return erased_among(keys, erasures=erasures, erasure_key=deps.erasure_key)


def _without_erased(deps: Deps, declared: Declared, facts: DeclarationFacts) -> Declared:
    """The declaration without erased participants among the expected ones: a declaration
    replayed or sent again after an erasure never brings one back (docs/rules.md)."""
    expected = declared.expected_participants
    if facts.any_erasure:
        raise ConfigError(["ERASURE_KEY is required: erasures are recorded and must be honoured"])
    erased = (
        erased_among(expected, erasures=facts.erased, erasure_key=deps.erasure_key)
        if facts.erased and deps.erasure_key is not None
        else {}
    )
    if not erased:
        return declared
    logs.info("erased participants left out of the declaration", count=len(erased))
    return replace(declared, expected_participants=tuple(k for k in expected if k not in erased))


def tell_neighbours(deps: Deps, meeting: MeetingRecord) -> MeetingRecord:
    """New times (a new meeting, a reschedule, a found meeting that grew or shrank) change the
    neighbours' shares: tell them, once per set of times. Told before it is marked, so a crash
    in between tells them twice (the re-poll tasks are named: once)."""
    if meeting.neighbours_told_of == meeting.times or meeting.status is Status.MERGED:
        return meeting
    absorb_and_repoll_neighbours(deps, meeting)
    return _mark_told(deps, meeting)


def _mark_told(deps: Deps, meeting: MeetingRecord) -> MeetingRecord:
    told = meeting.times

    def mark(current: MeetingRecord) -> MeetingRecord | None:
        if current.times != told or current.neighbours_told_of == told:
            return None
        return replace(current, neighbours_told_of=told)

    return deps.store.update(meeting.meeting_id, mark) or meeting


def _check_retention(record: MeetingRecord, *, now: datetime) -> None:
    """A declared window that starts before Reports' retention could never be collected whole."""
    if record.window_start < now - REPORTS_RETENTION:
        field = "started_at" if record.started_at is not None else "ended_at"
        raise InvalidInput(
            "the meeting's window starts more than 180 days ago: the Reports API keeps 180 days "
            "of Meet activity",
            field=field,
            code="invalid_payload",
        )


def _replayed(deps: Deps, webhook_id: str, facts: DeclarationFacts) -> Accepted | None:
    """The answer to a ``webhook-id`` seen before: its meeting, whose chain is made sure of
    (asked for again: the request that remembered the webhook-id may have ended before it), and
    whose neighbours are told if they were not yet."""
    seen = facts.delivery
    if seen is None:
        return None
    stored = facts.meetings.get(seen)
    meeting = stored.record if stored is not None else deps.store.get(seen)
    if meeting is None:
        return None
    with logs.bind(meeting_id=meeting.meeting_id):
        logs.info("webhook replayed", webhook_id=webhook_id)
        meeting = ensure_link(deps, meeting, mark=False)
        return Accepted(tell_neighbours(deps, meeting), created=False)


def expected_change(
    meeting: MeetingRecord,
    stored: Sequence[Mapping[str, Any]],
    *,
    expected: tuple[str, ...],
    now: datetime,
    names: Mapping[str, str] | None = None,
) -> MeetingCommit | None:
    """The commit that makes ``expected`` the meeting's expected participants: estimates (or
    absences, once complete) for those not seen, the documents of those no longer expected
    removed; None when nothing changes. Real participants are left as they are. ``names``:
    erased participants among the stored ones, named in the revision record by their hash."""
    state = StoredState.of(stored, meeting)
    before, dirty, seen = state.before, state.dirty, state.seen
    unseen = [key for key in expected if key not in seen]
    complete = meeting.status is Status.COMPLETE
    make = absent_record if complete else estimated_record
    # The first estimates of a new meeting are its revision 0; any later change is a revision.
    revision = meeting.revision + (bool(meeting.participant_fingerprints) or meeting.revision > 0)
    records = [make(k, meeting=meeting, revision=revision, status=meeting.status) for k in unseen]
    known = meeting.participant_fingerprints
    upserts = [
        with_previous(r, before.get(r.doc_id, ("", None))[1])
        for r in records
        if r.doc_id in dirty or known.get(r.doc_id) != r.fingerprint
    ]
    keep = {r.doc_id for r in records}
    deletes = sorted(
        participant_doc_id(str(d["participant_key"]))
        for d in stored
        if (d.get("estimated") or d.get("absent"))
        and participant_doc_id(str(d["participant_key"])) not in keep
    )
    if not upserts and not deletes and meeting.expected_participants == expected:
        return None
    fingerprints = {d: f for d, f in known.items() if d not in deletes}
    fingerprints.update({r.doc_id: r.fingerprint for r in records})
    attendance_changed = bool(upserts or deletes) and revision > meeting.revision
    changes = [
        AttendanceChange(
            participant_key=r.participant_key,
            before=before.get(r.doc_id, ("", None))[1],
            after=r.attended_seconds,
        )
        for r in upserts
    ] + [
        AttendanceChange(
            participant_key=(names or {}).get(before[d][0], before[d][0]),
            before=before[d][1],
            after=None,
        )
        for d in deletes
        if before.get(d, ("", None))[1] is not None
    ]
    return MeetingCommit(
        meeting=replace(
            meeting,
            expected_participants=expected,
            missing_participants=tuple(unseen),
            participant_fingerprints=fingerprints,
            revision=revision if attendance_changed else meeting.revision,
            updated_at=now,
        ),
        expected=None,
        upserts=upserts,
        deletes=deletes,
        settle=carrying_landed_token(stored, meeting),
        revision=(
            RevisionRecord(
                revision=revision,
                at=now,
                reason="declaration",
                changes=sorted(changes, key=lambda c: c.participant_key),
            )
            if attendance_changed
            else None
        ),
    )


def write_estimates(deps: Deps, meeting: MeetingRecord, *, expected: tuple[str, ...]) -> None:
    """Make ``expected`` the meeting's expected participants, in one fenced commit with their
    estimates (idempotent; re-decided when the meeting changed meanwhile).

    Erased participants are left out (docs/rules.md): the erasures are read after the meeting, so
    one recorded before is honoured here, and one recorded later is found by the check after
    the commit, which then writes again without them."""
    for _ in range(_ESTIMATE_ATTEMPTS):
        current = deps.store.read(meeting.meeting_id)
        if current is None or current.record.status is Status.MERGED:
            return
        # A meeting that stores nothing yet (a new one, no change being staged into it) needs no
        # read of its participants.
        record = current.record
        unread = not record.participant_fingerprints and not record.multi_commit
        stored = [] if unread else deps.store.participants(meeting.meeting_id)
        names = erased_names(deps, [*expected, *(str(d["participant_key"]) for d in stored)])
        expected = tuple(key for key in expected if key not in names)
        change = expected_change(record, stored, expected=expected, now=deps.clock(), names=names)
        if change is None:
            return
        # As a poll does: renamed before the commit that removes their documents.
        for key, name in sorted(names.items()):
            deps.store.rename_in_revisions(meeting.meeting_id, key, name)
        committed = deps.store.commit(replace(change, expected=current.version)) is not None
        if committed and not erased_names(deps, expected):
            return
    raise StoreContention(meeting.meeting_id)


def _update_declared(
    deps: Deps, declared: MeetingRecord, *, source: Source, now: datetime
) -> MeetingRecord:
    """The same meeting declared again: another code is refused; new times from a source allowed
    to set them reschedule its chain (a found meeting's grow to cover its conference); new
    expected participants replace the old ones."""

    def change(current: MeetingRecord) -> MeetingRecord | None:
        if current.meeting_code != declared.meeting_code:
            raise Conflict(
                f"meeting {current.meeting_id} has meeting code {current.meeting_code}, not "
                f"{declared.meeting_code}"
            )
        if current.status is Status.MERGED:
            return None
        named = renamed(current, declared, source=source)
        times = new_times(current, declared, source=source)
        if times is None:
            return named
        started_at, ended_at = times
        window_start, window_end = declared_window(
            ended_at=ended_at,
            started_at=started_at,
            before_s=deps.window_before_s,
            after_s=deps.window_after_s,
        )
        return replace(
            current,
            ended_at=ended_at,
            started_at=started_at,
            window_start=window_start,
            window_end=window_end,
            deadline=deadline(ended_at, deps.timing),
            next_poll_at=first_poll_at(ended_at=ended_at, now=now, timing=deps.timing),
            # A new link supersedes the old one; the old task finds itself stale.
            chain_seq=current.chain_seq + 1,
            chain_started=False,
            status=Status.SCHEDULED if current.is_final else current.status,
            times_source=source,
            aliases=(named or current).aliases,
            cancelled_at=(named or current).cancelled_at,
            rsvps=(named or current).rsvps,
            updated_at=now,
        )

    updated = deps.store.update(declared.meeting_id, change)
    if updated is None:
        raise NotFound.meeting(declared.meeting_id)
    expected = declared.expected_participants
    # Calendar answers (rsvp) are part of the estimates: a changed answer rewrites them.
    if expected and (expected != updated.expected_participants or source == "calendar"):
        write_estimates(deps, updated, expected=expected)
        updated = deps.store.get(declared.meeting_id) or updated
    elif updated.chain_seq != declared.chain_seq and updated.attendance_source == "estimated":
        write_estimates(deps, updated, expected=updated.expected_participants)
    return updated
