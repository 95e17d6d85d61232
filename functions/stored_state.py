"""What a meeting's participant documents say to a reader, and to the next change.

Pure. A change written in stages (``functions.commits``) puts documents in the store before the
meeting counts them; these are the rules every reader (views, billing's mirror, audit) and every
change (polls, declarations, merges) apply to tell what the meeting holds.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final

from functions.attendance import Session
from functions.model import (
    AttendanceChange,
    MeetingRecord,
    ParticipantRecord,
    estimated_record,
    stored_datetime,
)
from functions.participant_keys import participant_doc_id, participant_key
from functions.schedule import Status

__all__ = [
    "PREVIOUS_ATTENDED",
    "STAGED_COMMIT",
    "StoredState",
    "absorbable",
    "attendance_changes",
    "carrying_landed_token",
    "committed",
    "committed_attended",
    "is_committed",
    "lagging_mirrors",
    "preliminary_kept",
    "preliminary_sessions",
    "preliminary_taker",
    "stored_sessions",
    "with_previous",
]

#: On a participant document written ahead of its meeting (a staged change): which change. It is
#: part of the meeting once the meeting names that change in ``staged_commit``.
STAGED_COMMIT: Final = "staged_commit"

#: On a participant document written by a change: its ``attended_seconds`` before the change (None:
#: it had none). A document written ahead of its meeting (a staged change that did not land)
#: replaced the committed one, and this is how the audit trail still knows what that one said.
PREVIOUS_ATTENDED: Final = "previous_attended_seconds"


def is_committed(document: Mapping[str, Any], meeting: MeetingRecord) -> bool:
    """Whether a reader counts ``document``: not above the meeting's revision, and not written
    by a staged change other than the one the meeting landed (a fenced-out change's documents
    stay out, whatever revision a later change brings the meeting to)."""
    token = document.get(STAGED_COMMIT)
    landed = token is None or token == meeting.staged_commit
    return landed and int(document.get("revision") or 0) <= meeting.revision


def committed(
    documents: Iterable[Mapping[str, Any]], meeting: MeetingRecord
) -> list[Mapping[str, Any]]:
    """The participant documents a reader of ``meeting`` counts (:func:`is_committed`)."""
    return [d for d in documents if is_committed(d, meeting)]


def carrying_landed_token(
    documents: Iterable[Mapping[str, Any]], meeting: MeetingRecord
) -> tuple[str, ...]:
    """Documents still naming the staged change the meeting landed (its status mirrors did not
    all run). A reader counts them only while the meeting names that change, so a later staged
    change clears their token before it lands (``MeetingCommit.settle``)."""
    token = meeting.staged_commit
    if token is None:
        return ()
    return tuple(
        sorted(
            participant_doc_id(str(d["participant_key"]))
            for d in documents
            if d.get(STAGED_COMMIT) == token
        )
    )


def lagging_mirrors(
    documents: Iterable[Mapping[str, Any]], meeting: MeetingRecord
) -> tuple[str, ...]:
    """Documents the meeting counts whose ``meeting_status`` is not its status (a change whose
    mirrors did not all run). A document it does not count stays as it is: mirroring a
    fenced-out change's document would have billing count it."""
    status = str(meeting.status)
    return tuple(
        sorted(
            participant_doc_id(str(d["participant_key"]))
            for d in documents
            if d.get("meeting_status") != status and is_committed(d, meeting)
        )
    )


def committed_attended(document: Mapping[str, Any], meeting: MeetingRecord) -> int | None:
    """The ``attended_seconds`` ``meeting`` shows for this document (None: it shows none)."""
    if is_committed(document, meeting):
        return int(document.get("attended_seconds") or 0)
    previous = document.get(PREVIOUS_ATTENDED)
    return None if previous is None else int(previous)


@dataclass(frozen=True, slots=True)
class StoredState:
    """What a meeting's participant documents say, as a change needs it."""

    #: Per document id: the participant key and the attended seconds the meeting shows for it.
    before: Mapping[str, tuple[str, int | None]]
    #: Documents a reader does not count (a staged change that did not land): a change rewrites
    #: or removes them, whatever the fingerprints say.
    dirty: frozenset[str]
    #: Keys of the participants with sessions (in documents that landed or not: a staged change
    #: that did not land holds every session of the documents it replaced).
    seen: frozenset[str]
    #: Dirty documents with sessions: only a poll, which rebuilds them from their sessions,
    #: may rewrite them.
    unlanded_sessions: frozenset[str] = frozenset()

    @classmethod
    def of(cls, documents: Sequence[Mapping[str, Any]], meeting: MeetingRecord) -> StoredState:
        before: dict[str, tuple[str, int | None]] = {}
        dirty: set[str] = set()
        seen: set[str] = set()
        unlanded: set[str] = set()
        for document in documents:
            key = str(document["participant_key"])
            doc_id = participant_doc_id(key)
            before[doc_id] = (key, committed_attended(document, meeting))
            real = not document.get("estimated") and not document.get("absent")
            if real:
                seen.add(key)
            if not is_committed(document, meeting):
                dirty.add(doc_id)
                if real:
                    unlanded.add(doc_id)
        return cls(before, frozenset(dirty), frozenset(seen), frozenset(unlanded))

    def attended(self, doc_id: str) -> int | None:
        return self.before.get(doc_id, ("", None))[1]


def attendance_changes(
    state: StoredState,
    changed: Mapping[str, ParticipantRecord],
    removed: Sequence[str],
    *,
    names: Mapping[str, str],
) -> list[AttendanceChange]:
    """The revision record's changes: per document changed or removed, the attended seconds
    before and after (an erased participant named by its hash, ``names``)."""
    changes = [
        AttendanceChange(
            participant_key=record.participant_key,
            before=state.attended(doc_id),
            after=record.attended_seconds,
        )
        for doc_id, record in changed.items()
    ]
    for doc_id in removed:
        before = state.attended(doc_id)
        if before is not None:  # so the document was read: state.before holds its key
            key = state.before[doc_id][0]
            changes.append(AttendanceChange(names.get(key, key), before=before, after=None))
    return sorted(changes, key=lambda c: c.participant_key)


def preliminary_kept(
    stored: Sequence[Mapping[str, Any]],
    meeting: MeetingRecord,
    *,
    status: Status,
    revision: int,
    erased: Mapping[str, str],
) -> dict[str, ParticipantRecord]:
    """Before any Reports data, a meeting with Meet's preliminary attendance keeps it as it is
    (docs/rules.md), with estimates for the expected participants Meet did not see; the first
    poll with Reports data replaces them all. A preliminary document of a staged change that
    did not land is kept too (written again as the meeting's): it replaced the committed one,
    and dropping it would drop that participant's preliminary attendance."""
    records: dict[str, ParticipantRecord] = {}
    for document in stored:
        if not document.get("preliminary"):
            continue
        key = str(document["participant_key"])
        if key in erased:
            continue
        doc_id = participant_doc_id(key)
        fingerprint = str(
            document.get("fingerprint") or meeting.participant_fingerprints.get(doc_id, "")
        )
        # Written again as the meeting's: without the name of the change that wrote it, which
        # would keep it out of the meeting's count if that change never landed.
        kept = {k: v for k, v in document.items() if k != STAGED_COMMIT}
        kept.update(revision=revision, meeting_status=str(status))
        records[doc_id] = ParticipantRecord(doc_id=doc_id, document=kept, fingerprint=fingerprint)
    for key in meeting.expected_participants:
        record = estimated_record(key, meeting=meeting, revision=revision, status=status)
        records.setdefault(record.doc_id, record)
    return records


def absorbable(
    meeting: MeetingRecord, stored: Sequence[Mapping[str, Any]], erased: Mapping[str, str]
) -> bool:
    """Whether a found meeting that kept nothing may merge into a meeting that took its part:
    it held Reports sessions (stored now by the meetings that gained them), or it holds no
    preliminary attendance of anyone not erased (a ``meet`` meeting whose Meet sessions all
    went to declared meetings, which would otherwise end empty and billed nowhere)."""
    if not meeting.is_found:
        return False
    if meeting.found_sessions:
        return True
    return not any(
        document.get("preliminary") and str(document.get("participant_key")) not in erased
        for document in stored
    )


def preliminary_taker(
    meeting: MeetingRecord,
    stored: Sequence[Mapping[str, Any]],
    erased: Mapping[str, str],
    takers: Callable[[str, datetime, datetime], Iterable[str]],
    with_reports: Collection[str],
) -> str | None:
    """A found meeting that kept nothing of Reports' and still holds Meet's preliminary sessions:
    the meeting it merges into when meetings with Reports data (``with_reports``, among the
    ``takers`` of a session's code and times) take each of those sessions, as when Meet's signal
    created it while the class that covers it was being declared. Reports data replaced Meet's
    view of them there (docs/rules.md "Preliminary attendance"), so nothing is its own. None
    when one session is taken by no such meeting (then it is its own: a found meeting takes
    what no declared meeting covers)."""
    first: str | None = None
    code = meeting.meeting_code
    for session in preliminary_sessions(stored, meeting):
        if participant_key(session) in erased:
            continue
        gainers = takers(code, session.join_time, session.leave_time)
        taker = min((g for g in gainers if g in with_reports), default=None)
        if taker is None:
            return None
        first = taker if first is None else min(first, taker)
    return first


def with_previous(record: ParticipantRecord, previous: int | None) -> ParticipantRecord:
    """``record`` carrying what it replaces (:data:`PREVIOUS_ATTENDED`)."""
    return replace(record, document={**record.document, PREVIOUS_ATTENDED: previous})


def stored_sessions(
    documents: Iterable[Mapping[str, Any]], meeting: MeetingRecord
) -> list[Session]:
    """The sessions a meeting holds, read back from its participant documents.

    Documents a reader does not count yet (a staged change that did not land) are included: they
    replaced committed ones and hold all of those ones' sessions (a poll never drops a session
    it keeps), so their sessions are the meeting's too, and nothing is lost while they wait to be
    rewritten. Per-session identity fields are not stored: each session gets its participant's,
    which builds the same participant again (same key, same latest values). Addresses are as
    stored, so the IP mode is already applied (and applying it again changes nothing).
    """
    # Estimates, absences and Meet's preliminary sessions are not Reports sessions: the
    # Monotone rule holds only these (docs/rules.md "Preliminary attendance").
    return _document_sessions(documents, meeting, preliminary=False)


def preliminary_sessions(
    documents: Iterable[Mapping[str, Any]], meeting: MeetingRecord
) -> list[Session]:
    """The Meet sessions of a meeting's preliminary documents (as :func:`stored_sessions`)."""
    return _document_sessions(documents, meeting, preliminary=True)


def _document_sessions(
    documents: Iterable[Mapping[str, Any]], meeting: MeetingRecord, *, preliminary: bool
) -> list[Session]:
    sessions: list[Session] = []
    meeting_code = meeting.meeting_code
    for document in documents:
        if document.get("estimated") or document.get("absent"):
            continue
        if bool(document.get("preliminary")) is not preliminary:
            continue
        for raw in document.get("sessions") or ():
            sessions.append(
                Session(
                    event_id=str(raw["event_id"]),
                    conference_id=str(raw["conference_id"]),
                    endpoint_id=raw.get("endpoint_id"),
                    join_time=stored_datetime(raw["join_time"]),
                    leave_time=stored_datetime(raw["leave_time"]),
                    duration_seconds=int(raw["duration_seconds"]),
                    meeting_code=meeting_code,
                    identifier=document.get("identifier"),
                    identifier_type=document.get("identifier_type"),
                    display_name=document.get("display_name"),
                    is_external=bool(document.get("is_external")),
                    device_type=raw.get("device_type"),
                    ip_address=raw.get("ip_address"),
                    location_country=raw.get("location_country"),
                    location_region=raw.get("location_region"),
                )
            )
    return sessions
