"""What must hold in every simulated world: at every step, and once it is quiet.

At every step (after each port call):
- readers of a meeting written in one commit see a whole poll: no participant document above the
  meeting's revision, ``revisions/{revision}`` present, and totals that add up;
- each revision record's ``before`` is the previous record's ``after`` for that participant;
- no committed session leaves a meeting that still takes it (polls never forget);
- (Meet's preliminary attendance, docs/rules.md) no preliminary document is counted in a meeting
  whose attendance comes from Reports, and none is ever billed (mirrors ``complete``).

Preliminary documents hold Meet's sessions, not Reports': every rule below about "sessions"
leaves them out, and they have rules of their own.

Once quiet (every delivery done, every deadline passed):
- no second of any session is credited to two live meetings;
- every session some meeting ever stored, or that Reports still returns, is in each meeting that
  takes it exactly once, and each session Reports returns to the healed daily run has a meeting;
- nobody is credited more seconds over all meetings than they were there, and what each meeting
  shows is what the rules make of the sessions it holds under the partition as it is now;
- a declared meeting expects what its last declaration named, each with a document;
- (checked by the simulation between rounds) every live meeting has a pending task;
- a found meeting (backfill, meet) that a declared one overlaps is merged, or keeps only what no
  declared meeting takes (Reports sessions and preliminary ones), and is merged once it gave
  everything away;
- every meeting holding Reports sessions says ``attendance_source: "reports"`` and counts no
  preliminary document; every stored non-preliminary session is one Reports had (Meet's are never
  counted as Reports'); a meeting whose only data is Meet's ends ``no_data`` (or ``failed``);
- what a meeting shows of its preliminary attendance is what the rules make of its Meet sessions
  under today's partition (so no second of a Meet session is credited to two meetings either).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from functions.model import MeetingRecord
from functions.schedule import Status
from functions.selection import MeetingSpec, Partition, select_meetings
from functions.stored_state import (
    committed,
    committed_attended,
    is_committed,
    preliminary_sessions,
    stored_sessions,
)
from tests.fakes import MemoryStore

Key = tuple[str, str]
Times = tuple[datetime, datetime]


class Violation(AssertionError):
    """An invariant broke; the message says which, of which meeting."""


def session_key(session: Mapping[str, Any]) -> Key:
    endpoint = session.get("endpoint_id")
    if endpoint is not None:
        return (str(session["conference_id"]), str(endpoint))
    return ("", str(session["event_id"]))


def committed_sessions(store: MemoryStore, meeting: MeetingRecord) -> list[Mapping[str, Any]]:
    """The Reports sessions a meeting holds: of its documents, those written by a staged change
    that did not land included (they replaced committed ones, sessions and all). Meet's
    preliminary documents hold no Reports session (docs/rules.md "Preliminary attendance")."""
    documents = store.participant_docs.get(meeting.meeting_id, {}).values()
    return [
        session
        for document in documents
        if not document.get("estimated")
        and not document.get("absent")
        and not document.get("preliminary")
        for session in document.get("sessions") or ()
    ]


def preliminary_held(store: MemoryStore, meeting: MeetingRecord) -> list[Mapping[str, Any]]:
    """The Meet sessions of the preliminary documents a reader of the meeting counts."""
    documents = store.participant_docs.get(meeting.meeting_id, {}).values()
    return [
        session
        for document in committed(documents, meeting)
        if document.get("preliminary")
        for session in document.get("sessions") or ()
    ]


def partition(store: MemoryStore, *, before_s: int, after_s: int) -> Partition:
    return Partition(
        m.spec(window_before_s=before_s, window_after_s=after_s) for m in store.meetings.values()
    )


@dataclass
class Observer:
    """Checks the step invariants after every step, remembering what it saw."""

    store: MemoryStore
    before_s: int
    after_s: int
    #: An erased participant's key → the name revision records give it once erased: one trail.
    aliases: Mapping[str, str] = field(default_factory=dict)
    #: Sessions an erasure may take away (the erased participant's).
    forgettable: set[Key] = field(default_factory=set)
    seen: dict[Key, Times] = field(default_factory=dict)
    held: dict[str, set[Key]] = field(default_factory=dict)
    chain_base: dict[str, dict[str, int]] = field(default_factory=dict)

    last_writes: int = -1
    #: The partition of the specs last seen: it changes only when a meeting's times do.
    _split: tuple[tuple[MeetingSpec, ...], Partition] | None = None

    def _partition(self) -> Partition:
        specs = tuple(
            m.spec(window_before_s=self.before_s, window_after_s=self.after_s)
            for m in self.store.meetings.values()
        )
        if self._split is None or self._split[0] != specs:
            self._split = (specs, Partition(specs))
        return self._split[1]

    def step(self) -> None:
        if self.store.writes == self.last_writes and not self.store.staging:
            return  # nothing was written since the last check
        self.last_writes = self.store.writes
        for meeting in self.store.meetings.values():
            self._reader(meeting)
            self._revisions(meeting)
        self._monotone()

    def _reader(self, meeting: MeetingRecord) -> None:
        docs = list(self.store.participant_docs.get(meeting.meeting_id, {}).values())
        revisions = self.store.revision_docs.get(meeting.meeting_id, {})
        if meeting.revision and meeting.revision not in revisions:
            raise Violation(f"{meeting.meeting_id}: revisions/{meeting.revision} is missing")
        _preliminary_step(meeting, docs)
        if meeting.multi_commit and meeting.meeting_id in self.store.staging:
            return  # an announced staged change being written: readers see fewer for now
        if not meeting.multi_commit:
            above = [d["participant_key"] for d in docs if not is_committed(d, meeting)]
            if above:
                raise Violation(f"{meeting.meeting_id}: documents not of its revision: {above}")
        if meeting.multi_commit and any(not is_committed(d, meeting) for d in docs):
            return  # a staged change that did not land: readers count fewer until rewritten
        real = [
            d
            for d in committed(docs, meeting)
            if not d.get("estimated") and not d.get("absent") and int(d.get("session_count") or 0)
        ]
        total = sum(int(d["attended_seconds"]) for d in real)
        if (meeting.participant_count, meeting.total_attended_seconds) != (len(real), total):
            raise Violation(
                f"{meeting.meeting_id}: totals {meeting.participant_count}/"
                f"{meeting.total_attended_seconds} but documents add up to {len(real)}/{total} "
                f"(attendance from {meeting.attendance_source})"
            )

    def _named(self, key: str) -> str:
        return self.aliases.get(key, key)

    def _revisions(self, meeting: MeetingRecord) -> None:
        docs = self.store.participant_docs.get(meeting.meeting_id, {}).values()
        if meeting.revision == 0:
            base = {
                self._named(str(d["participant_key"])): committed_attended(d, meeting) for d in docs
            }
            self.chain_base[meeting.meeting_id] = {k: v for k, v in base.items() if v is not None}
            return
        state = dict(self.chain_base.get(meeting.meeting_id, {}))
        records = self.store.revision_docs.get(meeting.meeting_id, {})
        for number in sorted(n for n in records if n <= meeting.revision):
            for change in records[number]["changes"]:
                key = self._named(change["participant_key"])
                if change["before"] != state.get(key):
                    raise Violation(
                        f"{meeting.meeting_id}: revisions/{number} says {key} had "
                        f"{change['before']}, the trail says {state.get(key)}"
                    )
                if change["after"] is None:
                    state.pop(key, None)
                else:
                    state[key] = change["after"]

    def _monotone(self) -> None:
        split = self._partition()
        for meeting in self.store.meetings.values():
            sessions = committed_sessions(self.store, meeting)
            keys = set()
            for session in sessions:
                key = session_key(session)
                keys.add(key)
                self.seen[key] = (session["join_time"], session["leave_time"])
            previous = self.held.get(meeting.meeting_id, set())
            self.held[meeting.meeting_id] = keys
            staging = meeting.multi_commit and meeting.meeting_id in self.store.staging
            if staging or meeting.status is Status.MERGED:
                continue
            spec = meeting.spec(window_before_s=self.before_s, window_after_s=self.after_s)
            for key in previous - keys - self.forgettable:
                join, leave = self.seen[key]
                if split.takes(spec, join, leave):
                    record = self.store.revision_docs.get(meeting.meeting_id, {})
                    reason = record.get(meeting.revision, {}).get("reason")
                    raise Violation(
                        f"{meeting.meeting_id}: session {key} left the meeting that takes it "
                        f"(revision {meeting.revision}, {reason})"
                    )


def quiet(
    store: MemoryStore,
    *,
    before_s: int,
    after_s: int,
    universe: Mapping[Key, Times],
    expected: Mapping[str, tuple[str, ...]] | None = None,
    found: Mapping[Key, Times] | None = None,
    reports_keys: Collection[Key] | None = None,
) -> None:
    """The invariants of a quiet world (see the module docstring). ``reports_keys``: every
    session Reports ever had (stored sessions must be among them)."""
    split = partition(store, before_s=before_s, after_s=after_s)
    live = [m for m in store.meetings.values() if m.status is not Status.MERGED]
    for meeting in store.meetings.values():
        _preliminary_quiet(store, meeting, reports_keys)
    for meeting in live:
        if meeting.is_found:
            _found_keeps_only_the_rest(store, meeting, split)
    credited: dict[Key, list[tuple[str, datetime, datetime]]] = {}
    for meeting in live:
        span = split.credited.get(meeting.meeting_id)
        counts: dict[Key, int] = {}
        for session in committed_sessions(store, meeting):
            key = session_key(session)
            counts[key] = counts.get(key, 0) + 1
            join, leave = session["join_time"], session["leave_time"]
            if span is not None:
                join = max(join, span.start) if span.start is not None else join
                leave = min(leave, span.end) if span.end is not None else leave
            if leave > join:
                credited.setdefault(key, []).append((meeting.meeting_id, join, leave))
        twice = [k for k, n in counts.items() if n > 1]
        if twice:
            raise Violation(f"{meeting.meeting_id}: sessions stored twice: {twice}")
    for key, pieces in credited.items():
        _disjoint(key, pieces)
    held = {m.meeting_id: {session_key(s) for s in committed_sessions(store, m)} for m in live}
    for key, (join, leave) in universe.items():
        for taker in _takers(split, live, join, leave):
            if key not in held.get(taker, set()):
                source = store.meetings[taker].attendance_source
                raise Violation(
                    f"{taker}: session {key} belongs to it but is not stored "
                    f"(attendance from {source})"
                )
    for meeting_id, keys in (expected or {}).items():
        _expected_as_declared(store, meeting_id, keys)
    for meeting in live:
        _as_the_rules_say(store, meeting, split)
        _preliminary_as_the_rules_say(store, meeting, split)
        _mirrored(store, meeting)
    billed_once(store, live)
    for key, (join, leave) in (found or {}).items():
        if not _takers(split, live, join, leave):
            raise Violation(f"session {key} is in Reports, and in no meeting")


def erased_everywhere(store: MemoryStore, person: str) -> None:
    """An erased participant is in no stored value: no document, no list, no map key, no
    revision record names them (docs/rules.md "Erasure")."""
    held = {
        "meetings": {k: m.to_document() for k, m in store.meetings.items()},
        "participants": store.participant_docs,
        "revisions": store.revision_docs,
    }
    text = json.dumps(held, default=str, sort_keys=True).lower()
    if person.lower() in text:
        where = [
            meeting_id
            for meeting_id in store.meetings
            if person
            in json.dumps(
                [
                    store.meetings[meeting_id].to_document(),
                    store.participant_docs.get(meeting_id, {}),
                    store.revision_docs.get(meeting_id, {}),
                ],
                default=str,
            )
        ]
        raise Violation(f"{person} was erased, and is still stored in {where}")


def _as_the_rules_say(store: MemoryStore, meeting: MeetingRecord, split: Partition) -> None:
    """What a quiet meeting shows is what the rules make of the sessions it holds, under the
    partition as it is now (no attendance left from an older one)."""
    documents = committed(store.participant_docs.get(meeting.meeting_id, {}).values(), meeting)
    held = stored_sessions(documents, meeting)
    specs = split.specs
    chosen = select_meetings(specs, held).get(meeting.meeting_id)
    want = (
        {}
        if chosen is None
        else {p.participant_key: p.attended_seconds for p in chosen.meeting.participants}
    )
    shown = {
        str(d["participant_key"]): int(d["attended_seconds"])
        for d in documents
        if not d.get("estimated")
        and not d.get("absent")
        and not d.get("preliminary")
        and int(d.get("session_count") or 0)
    }
    if shown != want:
        raise Violation(f"{meeting.meeting_id}: shows {shown}, its sessions make {want}")


def _preliminary_step(meeting: MeetingRecord, documents: Iterable[Mapping[str, Any]]) -> None:
    """At every step: the first Reports data replaces Meet's preliminary documents in its own
    commit, so none is counted once the attendance comes from Reports; and none is ever billed
    (billing counts documents mirroring ``complete``)."""
    for document in documents:
        if not document.get("preliminary") or not is_committed(document, meeting):
            continue
        if meeting.attendance_source == "reports":
            raise Violation(
                f"{meeting.meeting_id}: attendance from Reports, yet the preliminary document "
                f"of {document['participant_key']} is counted"
            )
        if document.get("meeting_status") == str(Status.COMPLETE):
            raise Violation(
                f"{meeting.meeting_id}: the preliminary document of "
                f"{document['participant_key']} is billed (complete)"
            )


#: The statuses a meeting whose only data is Meet's may end in: polls without Reports data end it
#: ``no_data`` (or ``failed`` when every poll failed), never ``complete`` (docs/rules.md).
WITHOUT_REPORTS_DATA = frozenset({Status.NO_DATA, Status.FAILED})


def _preliminary_quiet(
    store: MemoryStore, meeting: MeetingRecord, reports_keys: Collection[Key] | None
) -> None:
    """Once quiet (docs/rules.md "Preliminary attendance"): a meeting holding Reports sessions
    says so (``attendance_source`` ``reports``) and counts no preliminary document; a stored
    session that is not a preliminary one is a session Reports had (Meet's are never counted as
    Reports'); a live meeting whose attendance is Meet's ended ``no_data`` (or ``failed``)."""
    documents = committed(store.participant_docs.get(meeting.meeting_id, {}).values(), meeting)
    _preliminary_step(meeting, documents)
    preliminary = [d for d in documents if d.get("preliminary")]
    sessions = [
        session
        for d in documents
        if not d.get("preliminary") and not d.get("estimated") and not d.get("absent")
        for session in d.get("sessions") or ()
    ]
    if sessions and meeting.attendance_source != "reports":
        raise Violation(
            f"{meeting.meeting_id}: holds Reports sessions, attendance_source is "
            f"{meeting.attendance_source}"
        )
    if reports_keys is not None:
        foreign = sorted({session_key(s) for s in sessions} - set(reports_keys))
        if foreign:
            raise Violation(
                f"{meeting.meeting_id}: sessions {foreign} counted as Reports', Reports never "
                "had them"
            )
    if meeting.status is Status.MERGED:
        return
    if preliminary and meeting.status not in WITHOUT_REPORTS_DATA:
        raise Violation(f"{meeting.meeting_id}: only Meet's preliminary data, yet {meeting.status}")


def _preliminary_as_the_rules_say(
    store: MemoryStore, meeting: MeetingRecord, split: Partition
) -> None:
    """Meet's sessions are "selected and clipped exactly like Reports sessions" (docs/rules.md
    "Preliminary attendance"): what a quiet meeting shows of its preliminary attendance is what
    the rules make of the Meet sessions it holds under the partition as it is now, as
    :func:`_as_the_rules_say` asks of Reports sessions (so no second of a Meet session is
    credited to two meetings either)."""
    if meeting.attendance_source != "meet":
        return
    documents = committed(store.participant_docs.get(meeting.meeting_id, {}).values(), meeting)
    held = preliminary_sessions(documents, meeting)
    chosen = select_meetings(split.specs, held).get(meeting.meeting_id)
    want = (
        {}
        if chosen is None
        else {p.participant_key: p.attended_seconds for p in chosen.meeting.participants}
    )
    shown = {
        str(d["participant_key"]): int(d["attended_seconds"])
        for d in documents
        if d.get("preliminary")
    }
    if shown != want:
        raise Violation(
            f"{meeting.meeting_id}: shows preliminary {shown}, its Meet sessions make {want} "
            "under today's partition"
        )


def _found_keeps_only_the_rest(
    store: MemoryStore, meeting: MeetingRecord, split: Partition
) -> None:
    """A found meeting (``backfill``, ``meet``) that a declared one overlaps ends merged, or
    keeps only what no declared meeting covers (docs/rules.md "Backfill meetings", which
    "Meet signals" applies to ``meet`` meetings): once quiet it holds no session, Reports' or
    Meet's preliminary one, that it does not take; and one that gave part of itself away and has
    nothing left is merged."""
    spec = next(s for s in split.specs if s.meeting_id == meeting.meeting_id)
    reports = committed_sessions(store, meeting)
    kept = sorted(
        session_key(s) for s in reports if not split.takes(spec, s["join_time"], s["leave_time"])
    )
    if kept:
        raise Violation(
            f"{meeting.meeting_id}: found meeting keeps sessions {kept} it does not take"
        )
    declared = [s for s in split.specs if not s.found and s.code == spec.code]
    preliminary = preliminary_held(store, meeting)
    covered = sorted(
        session_key(s)
        for s in preliminary
        if any(split.takes(d, s["join_time"], s["leave_time"]) for d in declared)
    )
    if covered:
        raise Violation(
            f"{meeting.meeting_id}: found meeting keeps preliminary sessions {covered} a declared "
            "meeting takes"
        )
    if meeting.partly_merged_into and not reports and not preliminary:
        raise Violation(
            f"{meeting.meeting_id}: gave its sessions to {list(meeting.partly_merged_into)}, has "
            f"nothing left, and is {meeting.status}, not merged"
        )


def _mirrored(store: MemoryStore, meeting: MeetingRecord) -> None:
    """Billing counts the documents whose ``meeting_status`` is ``complete``: once quiet, every
    document of a meeting mirrors its status (none left ``staged`` or behind)."""
    documents = store.participant_docs.get(meeting.meeting_id, {})
    lagging = sorted(k for k, d in documents.items() if d["meeting_status"] != str(meeting.status))
    if lagging:
        raise Violation(f"{meeting.meeting_id} is {meeting.status}, documents {lagging} are not")


def billed_once(store: MemoryStore, meetings: Iterable[MeetingRecord]) -> None:
    """Nobody is credited more seconds, over all ``meetings``, than their sessions last (each
    session once, however many meetings hold it; one second of tolerance per meeting for its
    rounding). Two devices of one person may overlap in time and be credited in two meetings:
    what the contract rules out is a second of one session credited twice."""
    credited: dict[str, int] = {}
    intervals: dict[str, dict[Key, tuple[datetime, datetime]]] = {}
    count: dict[str, int] = {}
    for meeting in meetings:
        documents = store.participant_docs.get(meeting.meeting_id, {}).values()
        for document in committed(documents, meeting):
            if document.get("estimated") or document.get("absent") or document.get("preliminary"):
                continue
            key = str(document["participant_key"])
            credited[key] = credited.get(key, 0) + int(document["attended_seconds"])
            count[key] = count.get(key, 0) + 1
            intervals.setdefault(key, {}).update(
                (session_key(s), (s["join_time"], s["leave_time"]))
                for s in document.get("sessions") or ()
            )
    for key, seconds in credited.items():
        lasted = sum((leave - join).total_seconds() for join, leave in intervals[key].values())
        there = int(lasted) + count[key]
        if seconds > there:
            raise Violation(f"{key} is credited {seconds} s over meetings, was there {there} s")


def _expected_as_declared(store: MemoryStore, meeting_id: str, keys: tuple[str, ...]) -> None:
    """The last declaration's expected participants are the meeting's, each with a document."""
    meeting = store.meetings.get(meeting_id)
    if meeting is None or meeting.status is Status.MERGED:
        return
    if meeting.expected_participants != keys:
        raise Violation(
            f"{meeting_id}: expects {meeting.expected_participants}, last declared {keys}"
        )
    documents = committed(store.participant_docs.get(meeting_id, {}).values(), meeting)
    shown = {str(d["participant_key"]) for d in documents}
    if not set(keys) <= shown:
        raise Violation(f"{meeting_id}: no document for expected {sorted(set(keys) - shown)}")


def _takers(
    split: Partition, meetings: Iterable[MeetingRecord], join: datetime, leave: datetime
) -> list[str]:
    codes = {m.meeting_code for m in meetings}
    return [t for code in codes for t in split.takers(code, join, leave)]


def _disjoint(
    key: Key, pieces: list[tuple[str, datetime, datetime]], *, what: str = "session"
) -> None:
    for index, (one, start, end) in enumerate(pieces):
        for other, other_start, other_end in pieces[index + 1 :]:
            if one != other and max(start, other_start) < min(end, other_end):
                raise Violation(f"{what} {key} is credited to both {one} and {other}")
