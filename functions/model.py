"""The stored shape of meetings and participants (docs/rules.md "Documents"), as typed records.

Pure: records convert to and from plain document dicts whose datetimes stay aware ``datetime``s
(the Firestore client stores them as Timestamps and reads them back as aware datetimes). The
adapter only moves these dicts; every field name lives here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any, Literal

from functions.attendance import Participant, Session
from functions.fingerprints import (
    absence_fingerprint,
    estimate_fingerprint,
    stored_participant_fingerprint,
)

# Re-exported: meeting ids are part of the stored shape; their rule lives in meeting_ids.
from functions.meeting_ids import _short_hash
from functions.meeting_ids import is_meeting_id as is_meeting_id
from functions.meeting_ids import meeting_id_for as meeting_id_for
from functions.participant_keys import identity_fields, participant_doc_id
from functions.schedule import FINAL_STATUSES, Status
from functions.selection import MeetingSpec
from functions.timestamps import format_timestamp, parse_timestamp

Source = Literal["webhook", "calendar", "backfill", "manual", "meet"]
#: Which source's times win when several declare one meeting (docs/rules.md "Which times win").
TIMES_RANK: dict[str, int] = {"backfill": 0, "meet": 1, "calendar": 2, "webhook": 3, "manual": 4}
#: Sources that only found a meeting (from its sessions, or Meet's "conference ended" signal)
#: rather than declaring a class: their meetings take what no declared meeting covers
#: (``functions.selection``), and a declared meeting that overlaps them absorbs them.
FOUND_SOURCES: frozenset[str] = frozenset({"backfill", "meet"})
RevisionReason = Literal[
    "poll", "backfill", "neighbour", "manual", "meet", "declaration", "erasure"
]
AttendanceSource = Literal["estimated", "meet", "reports"]
IpMode = Literal["full", "truncated", "none"]
LocationMode = Literal["full", "country", "none"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Declared:
    """A declared meeting end, whoever declares it (webhook, CLI sync, backfill)."""

    meeting_code: str
    ended_at: datetime
    started_at: datetime | None = None
    external_id: str | None = None
    calendar_event_id: str | None = None
    organizer_email: str | None = None
    expected_participants: tuple[str, ...] = ()
    #: Calendar only: each expected participant's answer (accepted, declined, tentative,
    #: needsAction); docs/rules.md "Calendar changes".
    rsvps: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class LastError:
    """``last_error`` and ``last_warning``: ``{code, message, at}``."""

    code: str
    message: str
    at: datetime

    def to_document(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "at": self.at}

    @classmethod
    def from_document(cls, document: Mapping[str, Any] | None) -> LastError | None:
        if not document:
            return None
        return cls(
            code=document["code"], message=document["message"], at=stored_datetime(document["at"])
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class MeetingRecord:
    """``meetings/{meeting_id}``: documented fields (docs/firestore.md), then the chain's own
    bookkeeping.

    Changes go through ``dataclasses.replace``, which ``mypy --strict`` checks field by field.
    """

    meeting_id: str
    source: Source
    meeting_code: str
    ended_at: datetime
    started_at: datetime | None
    external_id: str | None
    window_start: datetime
    window_end: datetime
    deadline: datetime
    expected_participants: tuple[str, ...] = ()
    missing_participants: tuple[str, ...] = ()
    status: Status = Status.SCHEDULED
    merged_into: str | None = None
    attempts: int = 0
    next_poll_at: datetime | None = None
    last_polled_at: datetime | None = None
    completed_at: datetime | None = None
    last_error: LastError | None = None
    last_warning: LastError | None = None
    attendance_source: AttendanceSource = "estimated"
    revision: int = 0
    #: Meet conference records (``conferenceRecords/ID``) whose signals reached this meeting.
    conference_records: tuple[str, ...] = ()
    #: When its Calendar event was cancelled, lost its Meet link, turned all-day or moved out of
    #: range (docs/rules.md "Calendar changes"); cleared if it comes back.
    cancelled_at: datetime | None = None
    #: Other external ids that name this meeting (a webhook naming a Calendar event's id).
    aliases: tuple[str, ...] = ()
    #: The source whose times the meeting has (a lower-ranking one never moves them).
    times_source: Source | None = None
    #: The ``calendar_event_id`` a declaration gave (identity; the one Reports copies is not).
    declared_calendar_event_id: str | None = None
    #: Calendar answers of the expected participants (the ``rsvp`` of their documents).
    rsvps: Mapping[str, str] = field(default_factory=dict)
    #: Declared meetings that took some of this found meeting's sessions (it keeps the rest).
    partly_merged_into: tuple[str, ...] = ()
    #: The last change was written in stages (see README "Commits"): readers ignore participant
    #: documents whose ``revision`` is above the meeting's.
    multi_commit: bool = False
    #: The staged change that landed last (``functions.commits``): its documents are the meeting's.
    staged_commit: str | None = None
    #: The change being staged and how many of its requests are written ("token/n"): every
    #: staged request changes it, so a change read before that request is fenced out.
    staging_progress: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    # §1 meeting aggregates.
    conference_ids: tuple[str, ...] = ()
    calendar_event_id: str | None = None
    organizer_email: str | None = None
    actual_start: datetime | None = None
    actual_end: datetime | None = None
    participant_count: int = 0
    total_attended_seconds: int = 0
    # The chain: the sequence number of the task that may poll next; other deliveries are stale.
    chain_seq: int = 1
    chain_started: bool = False
    # The settle rule's memory.
    sessions_fingerprint: str | None = None
    fingerprint_seen_since: datetime | None = None
    successful_polls: int = 0
    # participant doc id → fingerprint of what is stored, so unchanged documents are not rewritten.
    participant_fingerprints: Mapping[str, str] = field(default_factory=dict)
    #: Earliest join and latest leave of the stored sessions, unclipped: which neighbours may hold
    #: sessions that a changed partition hands to another meeting.
    sessions_start: datetime | None = None
    sessions_end: datetime | None = None
    #: Grows when a neighbour's declaration moves this meeting's credited span: fences a poll in
    #: flight that planned with the old partition.
    span_version: int = 0
    #: Grows with every request that writes status mirrors outside a change of the meeting (a
    #: landed change's last stages, a repair): it changes the meeting, so a writer that read the
    #: documents before is fenced out instead of landing over mirrors it did not see.
    mirror_requests: int = 0
    #: The times (``started_at``/``ended_at``) the meeting's neighbours were last told of: a
    #: declaration retried after a crash tells them again if they were not.
    neighbours_told_of: str | None = None
    #: Neighbours this meeting's last commit re-polls (functions.polling): cleared once their
    #: tasks are asked for, so a delivery that died in between has the next one ask again.
    repolls_due: tuple[str, ...] = ()
    lease_owner: str | None = None
    lease_until: datetime | None = None

    @property
    def found_sessions(self) -> bool:
        """Whether any poll ever found Reports sessions (the settle rule's memory)."""
        return self.attendance_source == "reports"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def times(self) -> str:
        """``started_at``/``ended_at`` as one string (what ``neighbours_told_of`` remembers)."""
        start = "" if self.started_at is None else format_timestamp(self.started_at)
        return f"{start}/{format_timestamp(self.ended_at)}"

    def as_told(self) -> MeetingRecord | None:
        """The meeting at the times its neighbours were last told of (None if never told)."""
        if self.neighbours_told_of is None:
            return None
        start, _, end = self.neighbours_told_of.partition("/")
        ended_at = parse_timestamp(end)
        if ended_at is None:
            return None
        return replace(
            self, started_at=parse_timestamp(start) if start else None, ended_at=ended_at
        )

    @property
    def is_found(self) -> bool:
        """Found from its sessions (backfill) rather than declared as a class."""
        return self.source in FOUND_SOURCES

    def spec(self, *, window_before_s: int, window_after_s: int) -> MeetingSpec:
        """The meeting as the selection rules see it, with the deployment's windows."""
        return MeetingSpec(
            meeting_id=self.meeting_id,
            meeting_code=self.meeting_code,
            ended_at=self.ended_at,
            started_at=self.started_at,
            merged=self.status is Status.MERGED,
            found=self.is_found,
            window_before_s=window_before_s,
            window_after_s=window_after_s,
            calendar_event_id=self.calendar_event_id,
            organizer_email=self.organizer_email,
        )

    def to_document(self) -> dict[str, Any]:
        # Field by field, not dataclasses.asdict: that deep-copies every value, on every write.
        document = {name: getattr(self, name) for name in _MEETING_FIELDS}
        document["status"] = str(self.status)
        document["expected_participants"] = list(self.expected_participants)
        document["missing_participants"] = list(self.missing_participants)
        document["conference_ids"] = list(self.conference_ids)
        document["conference_records"] = list(self.conference_records)
        document["aliases"] = list(self.aliases)
        document["rsvps"] = dict(self.rsvps)
        document["partly_merged_into"] = list(self.partly_merged_into)
        document["repolls_due"] = list(self.repolls_due)
        document["participant_fingerprints"] = dict(self.participant_fingerprints)
        for name in ("last_error", "last_warning"):
            notice: LastError | None = getattr(self, name)
            document[name] = None if notice is None else notice.to_document()
        return document

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> MeetingRecord:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in document.items() if k in known}
        values["status"] = Status(values.get("status", Status.SCHEDULED))
        for name in (
            "expected_participants",
            "missing_participants",
            "conference_ids",
            "conference_records",
            "aliases",
            "partly_merged_into",
            "repolls_due",
        ):
            values[name] = tuple(values.get(name) or ())
        values["participant_fingerprints"] = dict(values.get("participant_fingerprints") or {})
        values["rsvps"] = dict(values.get("rsvps") or {})
        for name in ("last_error", "last_warning"):
            values[name] = LastError.from_document(values.get(name))
        for name, value in list(values.items()):
            if isinstance(value, datetime):
                values[name] = stored_datetime(value)
        return cls(**values)

    def public_document(self) -> dict[str, Any]:
        """The fields callers see (GET /meetings/{id}): everything but the chain's internals."""
        document = self.to_document()
        for name in _INTERNAL_MEETING_FIELDS:
            document.pop(name, None)
        return document


_MEETING_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(MeetingRecord))

_INTERNAL_MEETING_FIELDS = (
    "chain_seq",
    "chain_started",
    "sessions_fingerprint",
    "fingerprint_seen_since",
    "successful_polls",
    "participant_fingerprints",
    "sessions_start",
    "sessions_end",
    "span_version",
    "mirror_requests",
    "neighbours_told_of",
    "repolls_due",
    "staged_commit",
    "staging_progress",
    "lease_owner",
    "lease_until",
    "times_source",
    "rsvps",
)


def stored_datetime(moment: datetime) -> datetime:
    """A datetime as read back from a document: a plain aware UTC ``datetime``."""
    # The Firestore client returns aware UTC datetimes (with nanoseconds); normalise to datetime.
    return datetime(
        moment.year,
        moment.month,
        moment.day,
        moment.hour,
        moment.minute,
        moment.second,
        moment.microsecond,
        tzinfo=UTC if moment.tzinfo is None else moment.tzinfo,
    ).astimezone(UTC)


def apply_ip_mode(address: str | None, *, mode: IpMode) -> str | None:
    """``IP_ADDRESS_MODE``: full, truncated to /24 (IPv4) or /48 (IPv6), or dropped."""
    if address is None or mode == "full":
        return address
    if mode == "none":
        return None
    try:
        parsed = ipaddress.ip_address(address.strip())
    except ValueError:
        return None  # unparseable: storing it "truncated" could leak it whole
    prefix = 24 if parsed.version == 4 else 48
    return str(ipaddress.ip_network(f"{parsed}/{prefix}", strict=False).network_address)


def apply_location_mode(
    country: str | None, region: str | None, *, mode: LocationMode
) -> tuple[str | None, str | None]:
    """``LOCATION_MODE``: ``(location_country, location_region)`` both kept (full), the country
    only (country), or neither (none)."""
    if mode == "full":
        return country, region
    return (country if mode == "country" else None), None


def session_document(
    session: Session, ip_mode: IpMode, location_mode: LocationMode = "full"
) -> dict[str, Any]:
    """A session as a participant document stores it: in :func:`in_stored_form`."""
    session = in_stored_form(session, ip_mode, location_mode)
    return {
        "conference_id": session.conference_id,
        "endpoint_id": session.endpoint_id,
        "join_time": session.join_time,
        "leave_time": session.leave_time,
        "duration_seconds": session.duration_seconds,
        "device_type": session.device_type,
        "ip_address": session.ip_address,
        "location_country": session.location_country,
        "location_region": session.location_region,
        "event_id": session.event_id,
    }


def in_stored_form(session: Session, ip_mode: IpMode, location_mode: LocationMode) -> Session:
    """A session as it will be stored (docs/rules.md Privacy): its address under
    ``IP_ADDRESS_MODE``, its location under ``LOCATION_MODE``. The one home of both rules:
    sessions take this form before anything is de-duplicated, selected, fingerprinted or
    stored, so nothing stored or derived depends on a value the modes remove, and a session
    fetched again equals the one read back. Applying it twice changes nothing; under the
    ``full`` modes it is the session itself."""
    if ip_mode == "full" and location_mode == "full":
        return session  # what the rules below give, without their work: it runs per session
    address = apply_ip_mode(session.ip_address, mode=ip_mode)
    country, region = apply_location_mode(
        session.location_country, session.location_region, mode=location_mode
    )
    if (address, country, region) == (
        session.ip_address,
        session.location_country,
        session.location_region,
    ):
        return session
    return replace(session, ip_address=address, location_country=country, location_region=region)


def _participant_in_stored_form(
    participant: Participant, ip_mode: IpMode, location_mode: LocationMode
) -> Participant:
    if ip_mode == "full" and location_mode == "full":
        return participant  # every session is its own stored form (``in_stored_form``)
    sessions = tuple(in_stored_form(s, ip_mode, location_mode) for s in participant.sessions)
    if all(a is b for a, b in zip(sessions, participant.sessions, strict=True)):
        return participant
    return replace(participant, sessions=sessions)


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantRecord:
    """``meetings/{id}/participants/{doc_id}`` (docs/rules.md), with the fingerprint stored."""

    doc_id: str
    document: Mapping[str, Any]
    fingerprint: str

    @property
    def participant_key(self) -> str:
        return str(self.document["participant_key"])

    @property
    def attended_seconds(self) -> int:
        return int(self.document["attended_seconds"])


def participant_record(
    participant: Participant,
    *,
    meeting: MeetingRecord,
    revision: int,
    status: Status,
    ip_mode: IpMode,
    location_mode: LocationMode = "full",
    fingerprint_of_participant: str | None = None,
) -> ParticipantRecord:
    """A participant with real sessions, its document and fingerprint both over the sessions in
    :func:`in_stored_form`: the fingerprint is of what is stored, never of a removed value.
    ``fingerprint_of_participant``: ``participant_fingerprint(participant)``, when the caller has
    it; used only when the participant is already in stored form (a poll's are)."""
    fetched = participant
    participant = _participant_in_stored_form(participant, ip_mode, location_mode)
    known = fingerprint_of_participant if participant is fetched else None
    document: dict[str, Any] = {
        "participant_key": participant.participant_key,
        "email": participant.email,
        "identifier": participant.identifier,
        "identifier_type": participant.identifier_type,
        "display_name": participant.display_name,
        "is_external": participant.is_external,
        "first_join": participant.first_join,
        "last_leave": participant.last_leave,
        "session_count": participant.session_count,
        "total_session_seconds": participant.total_session_seconds,
        "attended_seconds": participant.attended_seconds,
        "sessions": [session_document(s, ip_mode, location_mode) for s in participant.sessions],
        "estimated": False,
        "absent": False,
        "preliminary": False,
    }
    fingerprint = stored_participant_fingerprint(participant, ip_mode, location_mode, known=known)
    return _with_meeting_fields(
        participant.participant_key,
        document,
        fingerprint=fingerprint,
        meeting=meeting,
        revision=revision,
        status=status,
    )


def preliminary_record(
    participant: Participant,
    *,
    meeting: MeetingRecord,
    revision: int,
    status: Status,
    ip_mode: IpMode,
    location_mode: LocationMode = "full",
) -> ParticipantRecord:
    """A participant from Meet's own sessions (docs/rules.md "Preliminary attendance"): shaped as
    a real one, marked ``preliminary``, with a fingerprint of its own so that the first Reports
    poll rewrites it even when Reports says the same."""
    record = participant_record(
        participant,
        meeting=meeting,
        revision=revision,
        status=status,
        ip_mode=ip_mode,
        location_mode=location_mode,
    )
    fingerprint = "meet-" + record.fingerprint
    document = {**record.document, "preliminary": True, "fingerprint": fingerprint}
    return ParticipantRecord(doc_id=record.doc_id, document=document, fingerprint=fingerprint)


def estimated_record(
    key: str, *, meeting: MeetingRecord, revision: int, status: Status
) -> ParticipantRecord:
    """An expected participant before real data: the declared class length (docs/rules.md)."""
    start = meeting.started_at or meeting.ended_at
    return _sessionless_record(
        key,
        first_join=start,
        last_leave=meeting.ended_at,
        attended_seconds=round((meeting.ended_at - start).total_seconds()),
        estimated=True,
        fingerprint=estimate_fingerprint(key, start, meeting.ended_at),
        meeting=meeting,
        revision=revision,
        status=status,
    )


def absent_record(
    key: str, *, meeting: MeetingRecord, revision: int, status: Status
) -> ParticipantRecord:
    """An expected participant never seen, once the meeting completed (docs/rules.md)."""
    return _sessionless_record(
        key,
        first_join=None,
        last_leave=None,
        attended_seconds=0,
        estimated=False,
        fingerprint=absence_fingerprint(key),
        meeting=meeting,
        revision=revision,
        status=status,
    )


def _sessionless_record(
    key: str,
    *,
    first_join: datetime | None,
    last_leave: datetime | None,
    attended_seconds: int,
    estimated: bool,
    fingerprint: str,
    meeting: MeetingRecord,
    revision: int,
    status: Status,
) -> ParticipantRecord:
    document: dict[str, Any] = {
        **identity_fields(key),
        "is_external": False,
        "first_join": first_join,
        "last_leave": last_leave,
        "session_count": 0,
        "total_session_seconds": 0,
        "attended_seconds": attended_seconds,
        "sessions": [],
        "estimated": estimated,
        "absent": not estimated,
        "preliminary": False,
    }
    return _with_meeting_fields(
        key, document, fingerprint=fingerprint, meeting=meeting, revision=revision, status=status
    )


def _with_meeting_fields(
    key: str,
    document: dict[str, Any],
    *,
    fingerprint: str,
    meeting: MeetingRecord,
    revision: int,
    status: Status,
) -> ParticipantRecord:
    rsvp = meeting.rsvps.get(key)
    if rsvp is not None:
        # A changed answer rewrites the document; without one, fingerprints are as before.
        fingerprint = _short_hash(fingerprint, "rsvp", rsvp)[:16]
    document.update(
        {
            "meeting_id": meeting.meeting_id,
            "meeting_code": meeting.meeting_code,
            "ended_at": meeting.ended_at,
            "revision": revision,
            "meeting_status": str(status),
            "fingerprint": fingerprint,
            "rsvp": rsvp,
        }
    )
    return ParticipantRecord(
        doc_id=participant_doc_id(key), document=document, fingerprint=fingerprint
    )


@dataclass(frozen=True, slots=True)
class AttendanceChange:
    participant_key: str
    before: int | None
    after: int | None


@dataclass(frozen=True, slots=True)
class RevisionRecord:
    """``meetings/{id}/revisions/{revision}``: the audit trail for billing disputes.

    ``participant_keys`` repeats the keys its changes name, so that an erasure finds every
    record naming a participant with one collection-group query (Firestore cannot query a field
    inside an array of maps)."""

    revision: int
    at: datetime
    reason: RevisionReason
    changes: Sequence[AttendanceChange]

    def to_document(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "at": self.at,
            "reason": self.reason,
            # Field by field, not asdict (which deep-copies each value): same keys, same order.
            "changes": [
                {"participant_key": c.participant_key, "before": c.before, "after": c.after}
                for c in self.changes
            ],
            "participant_keys": sorted({change.participant_key for change in self.changes}),
        }
