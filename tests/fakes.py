"""Small in-memory implementations of our own ports, for unit tests of the use cases."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from functions.commits import Write, fits_one_request, mirror_fence, stages
from functions.errors import Forbidden, ReportsError, Unauthorized
from functions.intervals import Bounds
from functions.meeting_search import Cursor, MeetingQuery, shows_participant
from functions.meeting_search import select as search_select
from functions.model import MeetingRecord
from functions.ports import (
    BackfillSlice,
    CodesRead,
    CollectTask,
    DeclarationFacts,
    DeclarationReads,
    FetchStats,
    MeetingCommit,
    ReportsPage,
    Versioned,
    read_one_ahead,
)
from functions.schedule import Status


def _copied(document: Mapping[str, Any]) -> dict[str, Any]:
    """A copy no caller's change can reach back through: documents hold scalars, and lists of
    flat dicts (sessions, revision changes)."""
    return {
        name: [dict(item) if isinstance(item, Mapping) else item for item in value]
        if isinstance(value, list)
        else value
        for name, value in document.items()
    }


class MemoryStore:
    """The MeetingStore port in memory, enforcing what the Firestore adapter relies on: versions
    and fenced writes, one-request size limits (``max_commit_bytes``: a change larger than that is
    written in the stages ``functions.commits`` plans), and a whole stage failing when one of its
    writes cannot be applied. ``between_stages`` is called between two stages of one commit (the
    simulation switches or crashes there)."""

    def __init__(self, *, max_commit_bytes: int = 1 << 40) -> None:
        self.meetings: dict[str, MeetingRecord] = {}
        self.declaration_reads_made = 0
        #: Every with_code read (code, ended_at range): bounded reads are checked on these.
        self.code_reads: list[tuple[str, Bounds]] = []
        #: with_codes calls (each also adds its codes' reads to ``code_reads``).
        self.batched_code_reads = 0
        self.versions: dict[str, int] = {}
        self.participant_docs: dict[str, dict[str, dict[str, Any]]] = {}
        self.revision_docs: dict[str, dict[int, dict[str, Any]]] = {}
        self.deliveries: dict[str, str] = {}
        self.erasures: dict[str, datetime] = {}
        self.participant_writes = 0
        self.max_commit_bytes = max_commit_bytes
        self.between_stages: Callable[[], None] = lambda: None
        #: Meetings with a staged change between its announcement and its landing.
        self.staging: set[str] = set()
        #: Grows with every write of any kind: a reader that saw this value has seen it all.
        self.writes = 0
        self._clock = 0

    def _stamp(self, meeting_id: str, *, changed: bool = True) -> int:
        """The meeting's version after a write. As in Firestore, a write that changes nothing
        keeps the update time it had (and so does not fence anyone out)."""
        self.writes += 1
        if not changed:
            return self.versions[meeting_id]
        self._clock += 1
        self.versions[meeting_id] = self._clock
        return self._clock

    def get(self, meeting_id: str) -> MeetingRecord | None:
        return self.meetings.get(meeting_id)

    def read(self, meeting_id: str) -> Versioned | None:
        meeting = self.meetings.get(meeting_id)
        return None if meeting is None else Versioned(meeting, self.versions[meeting_id])

    def create(self, meeting: MeetingRecord) -> bool:
        if meeting.meeting_id in self.meetings:
            return False
        self.meetings[meeting.meeting_id] = meeting
        self._stamp(meeting.meeting_id)
        return True

    def update(
        self, meeting_id: str, change: Callable[[MeetingRecord], MeetingRecord | None]
    ) -> MeetingRecord | None:
        stored = self.update_versioned(meeting_id, change)
        return None if stored is None else stored.record

    def update_versioned(
        self, meeting_id: str, change: Callable[[MeetingRecord], MeetingRecord | None]
    ) -> Versioned | None:
        current = self.read(meeting_id)
        if current is None:
            return None
        updated = change(current.record)
        if updated is None:
            return current
        self.meetings[meeting_id] = updated
        return Versioned(updated, self._stamp(meeting_id, changed=updated != current.record))

    def commit(self, change: MeetingCommit) -> Versioned | None:
        meeting_id = change.meeting.meeting_id
        if change.creates is not None and not fits_one_request(
            change, max_bytes=self.max_commit_bytes
        ):
            # As the adapter does: the meeting on its own first, the change staged after it.
            if not self.create(change.creates):
                return None
            change = replace(change, creates=None, expected=self.versions[meeting_id])
        version = change.expected
        landed = False
        planned = stages(change, max_bytes=self.max_commit_bytes)
        try:
            for index, stage in enumerate(planned):
                if index:
                    self.staging.add(meeting_id)
                    self.between_stages()
                if stage.only_while is not None:
                    # Read and written in one step here, as the adapter's fenced request does.
                    current = self.read(meeting_id)
                    if current is None or not stage.only_while.holds(current.record):
                        break
                    writes = [*stage.writes, mirror_fence(current.record)]
                    self._apply(meeting_id, writes, current.version, skip_missing=True)
                    continue
                applied = self._apply(meeting_id, stage.writes, version, skip_missing=landed)
                if applied is None:
                    return None
                version = applied
                if stage.lands:
                    landed = True
                    self.staging.discard(meeting_id)
        finally:
            if not landed:
                self.staging.discard(meeting_id)
        return Versioned(self.meetings[meeting_id], version)

    def _apply(
        self, meeting_id: str, writes: Sequence[Write], version: object, *, skip_missing: bool
    ) -> object | None:
        """One request, all or nothing: None (and nothing applied) when a fenced write finds
        another version or, before the change landed, an update finds no document."""
        docs = self.participant_docs.get(meeting_id, {})
        for write in writes:
            if write.kind == "create" and meeting_id in self.meetings:
                return None
            if write.kind == "absent" and write.doc_id in self.erasures:
                return None
            if write.fenced and (
                meeting_id not in self.meetings or self.versions[meeting_id] != version
            ):
                return None
            missing = write.target == "participant" and write.doc_id not in docs
            if write.kind == "update" and missing and not skip_missing:
                return None
        for write in writes:
            version = self._write(meeting_id, write, version)
        return version

    def _write(self, meeting_id: str, write: Write, version: object) -> object:
        if write.kind == "absent":
            return version  # a condition only: nothing is written
        self.writes += 1
        if write.kind == "create":
            self.meetings[meeting_id] = MeetingRecord.from_document(write.data or {})
            return self._stamp(meeting_id)
        if write.target == "delivery":
            self.deliveries[write.doc_id] = str((write.data or {})["meeting_id"])
            return version
        if write.target == "meeting":
            before = self.meetings[meeting_id]
            document = {**before.to_document(), **(write.data or {})}
            self.meetings[meeting_id] = MeetingRecord.from_document(document)
            return self._stamp(meeting_id, changed=self.meetings[meeting_id] != before)
        if write.target == "revision":
            revisions = self.revision_docs.setdefault(meeting_id, {})
            revisions[int(write.doc_id)] = _copied(write.data or {})
            return version
        docs = self.participant_docs.setdefault(meeting_id, {})
        self.participant_writes += 1
        if write.kind == "delete":
            docs.pop(write.doc_id, None)
        elif write.kind == "set":
            docs[write.doc_id] = _copied(write.data or {})
        elif write.doc_id in docs:
            docs[write.doc_id].update(_copied(write.data or {}))
        return version

    def with_code(self, meeting_code: str, *, ended: Bounds) -> list[MeetingRecord]:
        self.code_reads.append((meeting_code, ended))
        return [
            m
            for m in self.meetings.values()
            if m.meeting_code == meeting_code and ended.holds(m.ended_at)
        ]

    def with_codes(self, ended: Mapping[str, Bounds]) -> dict[str, list[MeetingRecord]]:
        self.batched_code_reads += 1
        return {code: self.with_code(code, ended=bounds) for code, bounds in ended.items()}

    def with_codes_ahead(self, groups: Iterable[Mapping[str, Bounds]]) -> CodesRead:
        return read_one_ahead(self.with_codes, groups)

    def named(
        self, *, calendar_event_id: str | None = None, alias: str | None = None
    ) -> list[MeetingRecord]:
        if calendar_event_id is not None:
            return [
                m
                for m in self.meetings.values()
                if m.declared_calendar_event_id == calendar_event_id
            ]
        return [m for m in self.meetings.values() if alias in m.aliases]

    def ended_between(self, start: datetime, end: datetime) -> list[MeetingRecord]:
        return [m for m in self.meetings.values() if start <= m.ended_at < end]

    def search(
        self, query: MeetingQuery, *, limit: int, after: Cursor | None
    ) -> list[MeetingRecord]:
        meetings: Iterable[MeetingRecord] = self.meetings.values()
        key = query.participant_key
        if key is not None:
            meetings = [
                m
                for m in meetings
                if shows_participant(
                    [
                        d
                        for d in self.participant_docs.get(m.meeting_id, {}).values()
                        if d.get("participant_key") == key
                    ],
                    m,
                )
            ]
        return search_select(meetings, query, limit=limit, after=after)

    def overdue(self, before: datetime) -> list[MeetingRecord]:
        return [
            m
            for m in self.meetings.values()
            if m.status in (Status.SCHEDULED, Status.COLLECTING)
            and m.next_poll_at is not None
            and m.next_poll_at < before
        ]

    def participants(self, meeting_id: str) -> list[dict[str, Any]]:
        return [_copied(d) for d in self.participant_docs.get(meeting_id, {}).values()]

    def revisions(self, meeting_id: str) -> list[dict[str, Any]]:
        documents = self.revision_docs.get(meeting_id, {})
        return [_copied(documents[number]) for number in sorted(documents)]

    def any_participant_not_mirroring(self, meeting_id: str, meeting_status: str) -> bool:
        documents = self.participant_docs.get(meeting_id, {}).values()
        return any(d.get("meeting_status", meeting_status) != meeting_status for d in documents)

    def delivery(self, webhook_id: str) -> str | None:
        return self.deliveries.get(webhook_id)

    def declaration_reads(self, reads: DeclarationReads) -> DeclarationFacts:
        # The store's own state, not its public methods: one call, as in the adapter.
        self.declaration_reads_made += 1
        return DeclarationFacts(
            meetings={
                meeting_id: Versioned(self.meetings[meeting_id], self.versions[meeting_id])
                for meeting_id in reads.meeting_ids
                if meeting_id in self.meetings
            },
            delivery=None if reads.webhook_id is None else self.deliveries.get(reads.webhook_id),
            erased=frozenset(n for n in reads.erasure_names if n in self.erasures),
            any_erasure=reads.any_erasure and bool(self.erasures),
            neighbours=MemoryStore.with_code(self, reads.meeting_code, ended=reads.neighbours),
            aliased=[] if reads.alias is None else MemoryStore.named(self, alias=reads.alias),
            by_event=(
                []
                if reads.calendar_event_id is None
                else MemoryStore.named(self, calendar_event_id=reads.calendar_event_id)
            ),
        )

    def erased_among(self, names: Sequence[str]) -> frozenset[str]:
        return frozenset(name for name in names if name in self.erasures)

    def remember_delivery(self, *, webhook_id: str, meeting_id: str, expire_at: datetime) -> None:
        self.deliveries[webhook_id] = meeting_id

    def erased(self) -> frozenset[str]:
        return frozenset(self.erasures)

    def record_erasure(self, name: str, *, at: datetime) -> None:
        self.writes += 1
        self.erasures.setdefault(name, at)

    def meetings_naming(self, participant_key: str) -> list[str]:
        found = {
            meeting_id
            for meeting_id, docs in self.participant_docs.items()
            if any(d.get("participant_key") == participant_key for d in docs.values())
        }
        found.update(
            m.meeting_id
            for m in self.meetings.values()
            if participant_key in m.expected_participants
            or participant_key in m.missing_participants
        )
        found.update(
            meeting_id
            for meeting_id, revisions in self.revision_docs.items()
            if any(participant_key in (r.get("participant_keys") or ()) for r in revisions.values())
        )
        return sorted(found)

    def rename_in_revisions(self, meeting_id: str, participant_key: str, name: str) -> int:
        renamed = 0
        for revision in self.revision_docs.get(meeting_id, {}).values():
            changes = revision.get("changes") or []
            if any(c.get("participant_key") == participant_key for c in changes):
                self.writes += 1
                revision["changes"] = [
                    {**c, "participant_key": name}
                    if c.get("participant_key") == participant_key
                    else c
                    for c in changes
                ]
                revision["participant_keys"] = sorted(
                    {str(c.get("participant_key")) for c in revision["changes"]}
                )
                renamed += 1
        return renamed

    def delete_meeting(self, meeting_id: str) -> None:
        self.writes += 1
        self.participant_docs.pop(meeting_id, None)
        self.revision_docs.pop(meeting_id, None)
        self.meetings.pop(meeting_id, None)
        self.versions.pop(meeting_id, None)


@dataclass
class QueuedTask:
    task: CollectTask
    task_id: str
    at: datetime


@dataclass
class MemoryQueue:
    tasks: list[QueuedTask] = field(default_factory=list)
    names: set[str] = field(default_factory=set)
    slices: list[BackfillSlice] = field(default_factory=list)
    calendar_syncs: list[str] = field(default_factory=list)

    def enqueue(self, task: CollectTask, *, task_id: str, at: datetime) -> bool:
        if task_id in self.names:
            return False
        self.names.add(task_id)
        self.tasks.append(QueuedTask(task, task_id, at))
        return True

    def enqueue_backfill_slice(self, part: BackfillSlice, *, task_id: str) -> bool:
        if task_id in self.names:
            return False
        self.names.add(task_id)
        self.slices.append(part)
        return True

    def enqueue_calendar_sync(self, calendar_id: str, *, task_id: str) -> bool:
        if task_id in self.names:
            return False
        self.names.add(task_id)
        self.calendar_syncs.append(calendar_id)
        return True

    def pop_next(self) -> QueuedTask:
        due = min(self.tasks, key=lambda t: t.at)
        self.tasks.remove(due)
        return due


@dataclass
class ScriptedReports:
    """Serves whatever activities are visible; ``failures`` are raised first, one per call.
    ``meanwhile`` are what happens elsewhere while a call is slow: one runs (and is dropped)
    before each call answers."""

    activities: list[Mapping[str, Any]] = field(default_factory=list)
    failures: list[ReportsError] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    meanwhile: list[Callable[[], object]] = field(default_factory=list)

    def call_ended(
        self, *, meeting_code: str | None, start: datetime, end: datetime | None = None
    ) -> tuple[list[Mapping[str, Any]], FetchStats]:
        self.calls.append({"meeting_code": meeting_code, "start": start, "end": end})
        if self.meanwhile:
            self.meanwhile.pop(0)()
        if self.failures:
            raise self.failures.pop(0)
        selected = []
        for item in self.activities:
            params = item["events"][0]["parameters"]
            code = next(p["value"] for p in params if p["name"] == "meeting_code")
            in_range = start <= _time(item) and (end is None or _time(item) <= end)
            if in_range and (meeting_code is None or code == meeting_code):
                selected.append(item)
        pages = max(1, -(-len(selected) // 1000))
        return selected, FetchStats(pages=pages, requests=pages, activities=len(selected))

    def call_ended_pages(
        self, *, meeting_code: str | None, start: datetime, end: datetime | None = None
    ) -> Iterator[ReportsPage]:
        selected, _ = self.call_ended(meeting_code=meeting_code, start=start, end=end)
        for offset in range(0, max(len(selected), 1), 1000):
            yield ReportsPage(activities=selected[offset : offset + 1000])


def _time(item: Mapping[str, Any]) -> datetime:
    return datetime.fromisoformat(str(item["id"]["time"]).replace("Z", "+00:00"))


class ManualClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class FakeIdTokens:
    """ID tokens as ``Bearer <email>``, issued for any of ``audiences``: enough to exercise the
    handlers' checks without Google's signatures (tests/integration/test_id_tokens.py covers
    those)."""

    def __init__(self, *audiences: str) -> None:
        self.audiences = audiences

    def verify(
        self, *, authorization: str | None, audience: str, allowed_emails: Collection[str]
    ) -> Mapping[str, Any]:
        scheme, _, email = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not email:
            raise Unauthorized("missing Authorization header")
        if audience not in self.audiences:
            raise Unauthorized("invalid OIDC token: token audience does not match")
        if email.lower() not in {allowed.lower() for allowed in allowed_emails}:
            raise Forbidden("this identity may not call this function")
        return {"email": email, "aud": audience, "email_verified": True}
