"""Use case: Google Meet says a conference ended (docs/rules.md "Meet signals", "Preliminary
attendance"; §4.3).

A signal is not a declaration of a class: the meetings of the code whose windows overlap the
conference are polled soon (``max(now, end + FIRST_POLL_DELAY_S)``, a one-off poll that also
re-opens a final meeting once); the part of the conference none of them covers gets a ``meet``
meeting of its own (a found meeting, which a declared one absorbs later). Then Meet's own
participant sessions become the preliminary attendance of every meeting of the code that has no
Reports data yet, selected and clipped exactly like Reports sessions, in one fenced commit each.

Everything is idempotent: task names, meeting ids and preliminary fingerprints are derived from
the conference, so a replayed or duplicated event ends in the same state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from functions import logs
from functions.attendance import Session
from functions.chain import ensure_link, task_name
from functions.declarations import accept_meeting_end, erased_names
from functions.errors import AppError, StoreContention, WorkspaceError
from functions.intervals import Bounds
from functions.meet_attendance import (
    PreliminaryInputs,
    meet_sessions,
    preliminary_commit,
    uncovered_parts,
)
from functions.meet_records import (
    CONFERENCE_ENDED,
    LIFECYCLE_EVENT_TYPES,
    CloudEvent,
    Conference,
    MeetAttendee,
)
from functions.meeting_codes import canonical_meeting_code
from functions.model import Declared, MeetingRecord
from functions.participant_keys import erasure_name, participant_key
from functions.ports import CollectTask, Deps
from functions.schedule import Status
from functions.selection import selection_spans
from functions.stored_state import preliminary_sessions
from functions.timestamps import format_timestamp

__all__ = [
    "EVENT_MEMORY",
    "MEET_EXTERNAL_PREFIX",
    "SignalOutcome",
    "conference_ended",
    "handle_event",
    "write_preliminary",
]

#: ``external_id`` of a meeting created for a conference nobody declared (docs/rules.md).
MEET_EXTERNAL_PREFIX: Final = "meet:"
_PRELIMINARY_ATTEMPTS: Final = 5
#: Handled CloudEvent ids are remembered this long: longer than Pub/Sub keeps a message (7 days).
EVENT_MEMORY: Final = timedelta(days=8)


def handle_event(
    deps: Deps, event: CloudEvent, *, organizers: Sequence[str], topic: str | None
) -> str:
    """One Workspace Events CloudEvent, idempotent by ``ce-id``: what was done, in a word.

    A transient failure of Google's APIs propagates (the push is answered 5xx and redelivered);
    everything else is handled and acknowledged."""
    state = deps.workspace
    if state is None:
        raise RuntimeError("meet events need the workspace state port")
    if state.event_handled(event.id):
        logs.info("event replayed; already handled", event_type=event.type)
        return "duplicate"
    if event.type == CONFERENCE_ENDED:
        done = _conference_event(deps, event, organizers)
    elif event.type in LIFECYCLE_EVENT_TYPES:
        done = _lifecycle_event(deps, event, topic)
    else:
        logs.info("event type not handled; acknowledged", event_type=event.type)
        done = "ignored"
    state.remember_event(event.id, expire_at=deps.clock() + EVENT_MEMORY)
    return done


def _lifecycle_event(deps: Deps, event: CloudEvent, topic: str | None) -> str:
    from functions.subscriptions import note_event, on_lifecycle

    assert deps.workspace is not None
    name = event.subscription
    if name is None or deps.events is None or deps.directory is None or topic is None:
        logs.warning("lifecycle event without a usable subscription", event_type=event.type)
        return "unusable"
    note_event(deps.workspace, name, deps.clock())
    done = on_lifecycle(
        event_type=event.type,
        subscription_name=name,
        events=deps.events,
        state=deps.workspace,
        directory=deps.directory,
        topic=topic,
        clock=deps.clock,
    )
    logs.info("subscription lifecycle event handled", event_type=event.type, done=done)
    return done


def _conference_event(deps: Deps, event: CloudEvent, organizers: Sequence[str]) -> str:
    """Read the record and its space as an organizer who can, then apply the signal."""
    meet, state = deps.meet, deps.workspace
    assert meet is not None
    assert state is not None
    name = event.conference_record
    if name is None:
        logs.warning("conference event names no conference record; acknowledged")
        return "unusable"
    found = _readable_record(deps, name, event, organizers)
    if found is None:
        logs.warning("no organizer can read the conference record; acknowledged")
        return "unreadable"
    conference, organizer = found
    if state.space_reader(conference.space) != organizer:
        state.remember_space_reader(conference.space, organizer)
    _note_organizer_event(deps, organizer)
    try:
        space = meet.space(conference.space, as_user=organizer)
    except WorkspaceError as error:
        if error.retryable:
            raise
        logs.error("conference space unreadable; acknowledged", code=error.code)
        return "unreadable"
    if space is None or not space.meeting_code:
        logs.warning("conference space has no meeting code; acknowledged")
        return "no_code"
    try:
        attendees: Sequence[MeetAttendee] | None = meet.attendees(name, as_user=organizer)
    except WorkspaceError as error:
        if error.retryable:
            raise
        logs.error("Meet sessions unreadable; no preliminary attendance", code=error.code)
        attendees = None
    try:
        conference_ended(
            deps,
            conference=conference,
            meeting_code=space.meeting_code,
            attendees=attendees,
            emails=_emails(deps, attendees or ()),
            organizer_email=organizer,
        )
    except AppError as error:
        if error.retryable:
            raise
        # A conference the system may not record (older than the retention, a code no
        # declaration may name): acknowledged, or Pub/Sub would redeliver it for days.
        logs.warning("conference not recorded; acknowledged", code=error.code)
        return "refused"
    return "conference_ended"


def _readable_record(
    deps: Deps, name: str, event: CloudEvent, organizers: Sequence[str]
) -> tuple[Conference, str] | None:
    """The record, read as the organizer known to read its space, else each one in turn."""
    meet, state = deps.meet, deps.workspace
    assert meet is not None
    assert state is not None
    hint = state.space_reader(event.space) if event.space else None
    candidates = list(dict.fromkeys([*([hint] if hint else []), *organizers]))
    for organizer in candidates:
        try:
            conference = meet.conference(name, as_user=organizer)
        except WorkspaceError as error:
            if error.retryable:
                raise
            # The message may name the organizer: the code only (docs/rules.md: no email logged).
            logs.warning("organizer cannot read Meet records", code=error.code)
            continue
        if conference is not None:
            return conference, organizer
    return None


def _emails(deps: Deps, attendees: Iterable[MeetAttendee]) -> dict[str, str]:
    """``users/ID`` → the Directory's primary email, for the signed-in attendees it knows."""
    emails: dict[str, str] = {}
    if deps.directory is None:
        return emails
    for attendee in attendees:
        user = attendee.user
        if user is None or user in emails or not user.startswith("users/"):
            continue
        try:
            found = deps.directory.user(user.removeprefix("users/"))
        except WorkspaceError as error:
            if error.retryable:
                raise
            logs.warning("Directory refused a lookup", code=error.code)
            return emails
        if found is not None:
            emails[user] = found.primary_email
    return emails


def _note_organizer_event(deps: Deps, organizer: str) -> None:
    from functions.subscriptions import note_event

    assert deps.workspace is not None
    record = deps.workspace.subscription(organizer)
    if record is not None and record.subscription:
        note_event(deps.workspace, record.subscription, deps.clock())


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalOutcome:
    expedited: tuple[str, ...] = ()
    created: tuple[str, ...] = ()
    preliminary: tuple[str, ...] = ()


def conference_ended(
    deps: Deps,
    *,
    conference: Conference,
    meeting_code: str,
    attendees: Sequence[MeetAttendee] | None,
    emails: Mapping[str, str],
    organizer_email: str | None = None,
) -> SignalOutcome:
    """Apply one "conference ended" signal; ``attendees`` None when Meet's sessions could not be
    read (the meetings are still expedited or created)."""
    end = conference.end
    if end is None:
        logs.warning("conference has not ended; signal ignored", code=meeting_code)
        return SignalOutcome()
    code = canonical_meeting_code(meeting_code)
    own = MEET_EXTERNAL_PREFIX + conference.name
    # A meeting created for this conference polls at end + FIRST_POLL_DELAY_S by its own chain;
    # a delivery that died before asking for its first link is redelivered: asked again here.
    meetings = []
    for meeting in _overlapping(deps, code, conference):
        if (meeting.external_id or "").startswith(own):
            ensure_link(deps, meeting, mark=False)
        else:
            meetings.append(meeting)
    expedited = tuple(_expedite(deps, m, conference) for m in meetings)
    created = tuple(_create_uncovered(deps, code, conference, organizer_email))
    preliminary: list[str] = []
    if attendees is not None:
        sessions = meet_sessions(conference, attendees, meeting_code=code, emails=emails)
        for meeting in _overlapping(deps, code, conference):
            if meeting.attendance_source != "reports":
                with logs.bind(meeting_id=meeting.meeting_id):
                    if write_preliminary(deps, meeting.meeting_id, conference, sessions):
                        preliminary.append(meeting.meeting_id)
    logs.info(
        "conference ended handled",
        code=code,
        expedited=len(expedited),
        created=len(created),
        preliminary=len(preliminary),
    )
    return SignalOutcome(expedited=expedited, created=created, preliminary=tuple(preliminary))


def _overlapping(deps: Deps, code: str, conference: Conference) -> list[MeetingRecord]:
    """The code's meetings (not merged) whose window overlaps the conference."""
    end = conference.end or conference.start
    return [
        m
        for m in deps.store.with_code(code, ended=deps.around(conference.start, end))
        if m.status is not Status.MERGED and deps.spec(m).window.overlaps(conference.start, end)
    ]


def _expedite(deps: Deps, meeting: MeetingRecord, conference: Conference) -> str:
    """A one-off poll no later than ``end + FIRST_POLL_DELAY_S`` (named: once per conference)."""
    assert conference.end is not None
    now = deps.clock()
    at = max(now, conference.end + timedelta(seconds=deps.timing.first_poll_delay_s))
    deps.queue.enqueue(
        CollectTask(meeting.meeting_id, meeting.chain_seq, "meet"),
        task_id=task_name(meeting.meeting_id, "meet", conference.name),
        at=at,
    )
    return meeting.meeting_id


def _create_uncovered(
    deps: Deps, code: str, conference: Conference, organizer_email: str | None
) -> Iterable[str]:
    """A ``meet`` meeting for each part of the conference no meeting's window ∩ credited span
    covers: the part from the conference's start is ``meet:<record>``, any other
    ``meet:<record>@<its start>``. A signal never grows a meeting it created before (a declared
    meeting may have absorbed part of it since): a part whose meeting exists is left alone."""
    assert conference.end is not None
    meetings = deps.store.with_code(code, ended=deps.around(conference.start, conference.end))
    spans = selection_spans([deps.spec(m) for m in meetings])
    covered = [(s.start, s.end) for s in spans.values()]
    existing = {m.external_id for m in meetings}
    for start, end in uncovered_parts(conference.start, conference.end, covered):
        suffix = "" if start == conference.start else "@" + format_timestamp(start)
        external_id = MEET_EXTERNAL_PREFIX + conference.name + suffix
        if external_id in existing:
            continue
        declared = Declared(
            meeting_code=code,
            started_at=start,
            ended_at=end,
            external_id=external_id,
            organizer_email=organizer_email,
        )
        accepted = accept_meeting_end(deps, declared, source="meet")
        yield accepted.meeting.meeting_id


def reselect_preliminary(deps: Deps, meeting_code: str, around: Bounds) -> list[str]:
    """Meet's preliminary sessions of the code's meetings that end in ``around`` (merged ones
    included: theirs are kept), written again as each one's share under the current partition: a
    meeting declared after a signal takes its part, and the one that had it lets it go. The
    sessions come from a wider range, so that every session of those shares is among them. The
    meetings changed."""
    pool = deps.store.with_code(meeting_code, ended=deps.around(around.start, around.end))
    meetings = [m for m in pool if around.holds(m.ended_at)]
    sessions: dict[str, Session] = {}
    for meeting in pool:
        if meeting.attendance_source == "meet":
            stored = deps.store.participants(meeting.meeting_id)
            for session in preliminary_sessions(stored, meeting):
                sessions.setdefault(session.event_id, session)
    if not sessions:
        return []
    by_conference: dict[str, list[Session]] = {}
    for session in sessions.values():
        by_conference.setdefault(session.conference_id, []).append(session)
    changed: list[str] = []
    for meeting in meetings:
        if meeting.status is Status.MERGED or meeting.attendance_source == "reports":
            continue
        for name, group in sorted(by_conference.items()):
            start = min(s.join_time for s in group)
            conference = Conference(name=name, space="", start=start, end=None)
            with logs.bind(meeting_id=meeting.meeting_id):
                if write_preliminary(deps, meeting.meeting_id, conference, group):
                    changed.append(meeting.meeting_id)
    return changed


def write_preliminary(
    deps: Deps, meeting_id: str, conference: Conference, sessions: Sequence[Session]
) -> bool:
    """Write Meet's sessions as the meeting's preliminary attendance (one fenced commit);
    whether anything changed."""
    for _ in range(_PRELIMINARY_ATTEMPTS):
        current = deps.store.read(meeting_id)
        if current is None:
            return False
        meeting = current.record
        neighbours = [
            m
            for m in deps.store.with_code(meeting.meeting_code, ended=deps.neighbours_of(meeting))
            if m.meeting_id != meeting_id
        ]
        stored = deps.store.participants(meeting_id)
        keys = {participant_key(s) for s in sessions}
        keys.update(str(d["participant_key"]) for d in stored)
        keys.update(meeting.expected_participants)
        change = preliminary_commit(
            PreliminaryInputs(
                meeting=meeting,
                version=current.version,
                neighbours=neighbours,
                stored=stored,
                conference=conference,
                sessions=sessions,
                now=deps.clock(),
                window_before_s=deps.window_before_s,
                window_after_s=deps.window_after_s,
                ip_mode=deps.ip_mode,
                location_mode=deps.location_mode,
                erased=erased_names(deps, keys),
            )
        )
        if change is None:
            return False
        if deps.store.commit(change) is not None:
            logs.info(
                "preliminary attendance written",
                participants=change.meeting.participant_count,
                revision=change.meeting.revision,
            )
            _erased_since(deps, meeting_id, {r.participant_key for r in change.upserts})
            return True
        logs.info("meeting changed while writing preliminary attendance; again")
    raise StoreContention(meeting_id)


def _erased_since(deps: Deps, meeting_id: str, keys: set[str]) -> None:
    """An erasure recorded while the preliminary change was planned: erase what it stored (as a
    poll does after its commit, ``functions.polling``)."""
    if deps.erasure_key is None or not keys:
        return
    erasures = deps.store.erased()
    for key in sorted(keys):
        name = erasure_name(key, deps.erasure_key)
        if name in erasures:
            from functions.erasure import erase_from_meeting

            logs.warning("participant erased during the preliminary write; erasing it now")
            erase_from_meeting(deps, meeting_id, key, name)
