"""The MeetingStore port on Firestore. The only module that knows Firestore types.

Layout (docs/rules.md "Documents")::

    meetings/{meeting_id}                       the meeting, its aggregates and its chain's state
    meetings/{meeting_id}/participants/{doc_id} one participant (collection group: billing queries)
    meetings/{meeting_id}/revisions/{revision}  the audit trail
    webhook_deliveries/{sha256(webhook-id)}     replay protection; ``expire_at`` is the TTL field
    erasures/{HMAC(ERASURE_KEY, key)}           erased participants; never expire

With ``RETENTION_DAYS`` set, every meeting, participant and revision document carries
``expire_at`` (``functions.retention``), written with it: the TTL field of their policies.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from typing import Any

from google.api_core.exceptions import Aborted, AlreadyExists, FailedPrecondition, NotFound
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.document import DocumentReference
from google.cloud.firestore_v1.query import Query

from functions.adapters import firestore_queries
from functions.adapters.firestore_lookups import Lookups
from functions.adapters.firestore_queries import MEETINGS, PARTICIPANTS, REVISIONS
from functions.adapters.firestore_queries import snapshot_data as _snapshot_data
from functions.adapters.firestore_writes import (
    RawBatch,
    create_write,
    delete_write,
    set_write,
    update_document,
    update_write,
)
from functions.commits import Landed, Stage, Write, fits_one_request, mirror_fence, stages
from functions.config import Settings
from functions.errors import StoreContention
from functions.intervals import Bounds
from functions.limits import EMULATOR_COMMIT_BYTES, FIRESTORE_COMMIT_BYTES
from functions.meeting_search import (
    ORDER,
    Cursor,
    MeetingQuery,
    ended_range,
    equality_filters,
)
from functions.model import MeetingRecord, stored_datetime
from functions.ports import (
    CodesRead,
    DeclarationFacts,
    DeclarationReads,
    MeetingCommit,
    Version,
    Versioned,
)
from functions.retention import EXPIRE_AT, expire_at
from functions.schedule import LIVE_STATUSES
from functions.stored_state import PREVIOUS_ATTENDED, STAGED_COMMIT

DELIVERIES = "webhook_deliveries"
ERASURES = "erasures"
#: Tries of one optimistic update before it answers "retry later" (503).
MAX_UPDATE_ATTEMPTS = 10
#: Reads and tries of one request of status mirrors while other writers keep changing the meeting.
_MIRROR_ATTEMPTS = 5
#: The threads that send a declaration's reads side by side (each waits on the network only).
_READS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="declaration-reads")
#: The threads that send a staged change's requests (one in flight per change: each waits for
#: Firestore while the caller builds the next).
_STAGES = ThreadPoolExecutor(max_workers=4, thread_name_prefix="staged-commit")


def firestore_client(settings: Settings) -> firestore.Client:
    if settings.firestore_emulator_host:
        # The client reads FIRESTORE_EMULATOR_HOST itself; anonymous credentials keep google-auth
        # from looking for (or probing a metadata server for) real ones.
        return firestore.Client(
            project=settings.google_cloud_project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        )
    return firestore.Client(project=settings.google_cloud_project)


class FirestoreStore:
    def __init__(
        self,
        client: firestore.Client,
        *,
        max_commit_bytes: int = EMULATOR_COMMIT_BYTES,
        retention_days: int | None = None,
        lookups_ready: bool | None = None,
    ) -> None:
        """``max_commit_bytes``: the largest request this store writes in one commit (Google
        takes 10 MiB, the emulator 4 MiB); larger changes go in stages (``functions.commits``).
        The default fits both. ``retention_days``: ``RETENTION_DAYS``, for ``expire_at``.
        ``lookups_ready``: whether declarations read the lookup documents (None: once their
        marker is found; ``functions.adapters.firestore_lookups``)."""
        self._client = client
        self._lookups = Lookups(client, retention_days=retention_days, ready=lookups_ready)
        self._meetings = client.collection(MEETINGS)
        self._max_commit_bytes = max_commit_bytes
        self._retention_days = retention_days
        # An ``absent`` write: a delete that must find no document, so the request fails
        # (ALREADY_EXISTS, as a create finding its document does) when it finds one.
        self._absent = client.write_option(exists=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> FirestoreStore:
        limit = (
            EMULATOR_COMMIT_BYTES if settings.firestore_emulator_host else FIRESTORE_COMMIT_BYTES
        )
        return cls(
            firestore_client(settings),
            max_commit_bytes=limit,
            retention_days=settings.retention_days,
        )

    def _expiring(self, data: Mapping[str, Any] | None, ended_at: datetime) -> dict[str, Any]:
        """A meeting's, participant's or revision's fields with their ``expire_at``: every write
        carries it, so it follows the meeting's ``ended_at`` (and the setting) as they change."""
        document = dict(data or {})
        expiry = expire_at(ended_at, self._retention_days)
        if expiry is not None:
            document[EXPIRE_AT] = expiry
        return document

    def get(self, meeting_id: str) -> MeetingRecord | None:
        stored = self.read(meeting_id)
        return None if stored is None else stored.record

    def read(self, meeting_id: str) -> Versioned | None:
        snapshot = self._meetings.document(meeting_id).get()
        if not snapshot.exists:
            return None
        return Versioned(
            MeetingRecord.from_document(snapshot.to_dict() or {}), snapshot.update_time
        )

    def create(self, meeting: MeetingRecord) -> bool:
        try:
            self._create_meeting(meeting)
        except AlreadyExists:
            return False
        return True

    def _create_meeting(self, meeting: MeetingRecord) -> Version:
        """The meeting document alone, with its lookup entries (AlreadyExists if it exists)."""
        document = self._expiring(meeting.to_document(), meeting.ended_at)
        path = self._meetings.document(meeting.meeting_id)._document_path
        batch = RawBatch(self._client, [create_write(path, document)])
        batch.extend(self._lookups.writes_for(meeting.meeting_id, document))
        return batch.commit()[0].update_time

    def update(
        self,
        meeting_id: str,
        change: Callable[[MeetingRecord], MeetingRecord | None],
    ) -> MeetingRecord | None:
        stored = self.update_versioned(meeting_id, change)
        return None if stored is None else stored.record

    def update_versioned(
        self,
        meeting_id: str,
        change: Callable[[MeetingRecord], MeetingRecord | None],
    ) -> Versioned | None:
        """Optimistic read-modify-write: the write carries the read's ``update_time`` as a
        precondition, and a concurrent change makes it fail, re-read and decide again.

        Unlike a transaction it takes no lock, so concurrent deliveries (duplicates, races) do not
        queue behind each other, and most calls, which change nothing, cost one read.
        """
        reference = self._meetings.document(meeting_id)
        for attempt in range(MAX_UPDATE_ATTEMPTS):
            current = self.read(meeting_id)
            if current is None:
                return None
            updated = change(current.record)
            if updated is None:
                return current
            precondition = self._client.write_option(last_update_time=current.version)
            try:
                document = self._expiring(updated.to_document(), updated.ended_at)
                entries = self._lookups.writes_for(meeting_id, document)
                result = update_document(
                    self._client, reference, document, precondition, also=entries
                )
            except (FailedPrecondition, Aborted):
                time.sleep(min(1.0, 0.02 * 2**attempt) * (0.5 + random.random()))  # noqa: S311
                continue
            return Versioned(updated, result.update_time)
        raise StoreContention(meeting_id)

    def commit(self, change: MeetingCommit) -> Versioned | None:
        """Each stage is one batch; the fenced meeting write carries the version last seen as its
        precondition, so a stage finding the meeting changed fails whole and stops the rest."""
        meeting_id = change.meeting.meeting_id
        if change.creates is not None and not fits_one_request(
            change, max_bytes=self._max_commit_bytes
        ):
            # Too large to create with its estimates: the meeting alone first, then the change
            # in stages after it (docs/rules.md "Atomic").
            try:
                created = self._create_meeting(change.creates)
            except AlreadyExists:
                return None
            change = replace(change, creates=None, expected=created)
        planned = stages(change, max_bytes=self._max_commit_bytes)
        if len(planned) > 1:
            return self._commit_stages(change, planned)
        try:
            writes, ended_at = planned[0].writes, change.meeting.ended_at
            version = self._commit_writes(meeting_id, writes, change.expected, ended_at=ended_at)
        except (FailedPrecondition, Aborted, NotFound, AlreadyExists):
            return None
        return Versioned(change.meeting, version)

    def _commit_stages(self, change: MeetingCommit, planned: list[Stage]) -> Versioned | None:
        """The requests of a staged change, one after another, each fenced on the version the
        one before produced. While a request is in flight the next one's writes are built (all
        but its fenced meeting write, which needs that version): building them is most of the
        client's time, and the wait for Firestore is most of the rest."""
        meeting_id, ended_at = change.meeting.meeting_id, change.meeting.ended_at
        version = change.expected
        in_flight: Future[Version] | None = None
        try:
            for stage in planned:
                if stage.only_while is not None:
                    if in_flight is not None:
                        version, in_flight = in_flight.result(), None
                    if not self._mirror(meeting_id, stage, stage.only_while):
                        break  # the meeting moved on: whoever moved it mirrors what it needs
                    continue
                built = [
                    None if write.fenced else self._raw_write(meeting_id, write, None, ended_at)
                    for write in stage.writes
                ]
                if in_flight is not None:
                    version, in_flight = in_flight.result(), None
                raw = [
                    self._raw_write(meeting_id, write, version, ended_at) if pb is None else pb
                    for write, pb in zip(stage.writes, built, strict=True)
                ]
                raw.extend(self._lookup_writes(meeting_id, stage.writes))
                in_flight = _STAGES.submit(self._send, stage.writes, raw, version)
            if in_flight is not None:
                version = in_flight.result()
        except (FailedPrecondition, Aborted, NotFound, AlreadyExists):
            return None
        return Versioned(change.meeting, version)

    def _mirror(self, meeting_id: str, stage: Stage, landed: Landed) -> bool:
        """One request of status mirrors after the change landed, only while ``landed`` holds
        (checked on a fresh read, and fenced on it). False: it no longer holds."""
        for _ in range(_MIRROR_ATTEMPTS):
            current = self.read(meeting_id)
            if current is None or not landed.holds(current.record):
                return False
            fence = mirror_fence(current.record)
            try:
                self._commit_writes(
                    meeting_id,
                    [*stage.writes, fence],
                    current.version,
                    ended_at=current.record.ended_at,
                )
                return True
            except (FailedPrecondition, Aborted):
                continue  # the meeting changed since the read: decide again
            except NotFound:
                pass
            # A participant a later change deleted keeps no mirror: write the others one by one
            # (rare), each on a fresh read.
            try:
                for write in stage.writes:
                    one = self.read(meeting_id)
                    if one is None or not landed.holds(one.record):
                        return False
                    with contextlib.suppress(NotFound):
                        self._commit_writes(
                            meeting_id,
                            [write, mirror_fence(one.record)],
                            one.version,
                            ended_at=one.record.ended_at,
                        )
                return True
            except (FailedPrecondition, Aborted):
                continue
        return False

    def _commit_writes(
        self, meeting_id: str, writes: list[Write], version: Version, *, ended_at: datetime
    ) -> Version:
        # RawBatch sends what the client's WriteBatch would (same writes, preconditions, request
        # and errors) but builds the protos itself: the client's per-value proto-plus encoding
        # was most of a large poll (functions/adapters/firestore_writes.py).
        batch = RawBatch(self._client)
        for write in writes:
            reference = self._reference(meeting_id, write)
            data = self._data(write, ended_at)
            if write.kind == "delete":
                batch.delete(reference)
            elif write.kind == "absent":
                batch.delete(reference, option=self._absent)
            elif write.kind == "set":
                batch.set(reference, data)
            elif write.kind == "create":
                batch.create(reference, data)
            elif write.fenced:
                option = self._client.write_option(last_update_time=version)
                batch.update(reference, data, option=option)
            else:
                batch.update(reference, data)
        batch.extend(self._lookup_writes(meeting_id, writes))
        return self._next_version(writes, batch.commit(), version, sent=len(batch))

    def _lookup_writes(self, meeting_id: str, writes: Sequence[Write]) -> list[Any]:
        """The lookup entries of the meeting documents among ``writes``, for the same request."""
        return [
            raw
            for write in writes
            if write.target == "meeting" and write.data is not None
            for raw in self._lookups.writes_for(meeting_id, write.data)
        ]

    def _data(self, write: Write, ended_at: datetime) -> Mapping[str, Any]:
        # A webhook-id's record keeps its own expire_at (as remember_delivery writes it).
        delivery = write.target == "delivery"
        return (write.data if delivery else self._expiring(write.data, ended_at)) or {}

    def _raw_write(
        self, meeting_id: str, write: Write, version: Version, ended_at: datetime
    ) -> Any:
        """The one write :meth:`_commit_writes` would add to its batch for ``write``."""
        path = self._reference(meeting_id, write)._document_path
        data = self._data(write, ended_at)
        if write.kind == "delete":
            return delete_write(path)
        if write.kind == "absent":
            return delete_write(path, self._absent)
        if write.kind == "set":
            return set_write(path, data)
        if write.kind == "create":
            return create_write(path, data)
        option = self._client.write_option(last_update_time=version) if write.fenced else None
        return update_write(path, data, option)

    def _send(self, writes: list[Write], raw: list[Any], version: Version) -> Version:
        results = RawBatch(self._client, raw).commit()
        return self._next_version(writes, results, version, sent=len(raw))

    @staticmethod
    def _next_version(
        writes: list[Write], results: Sequence[Any], version: Version, *, sent: int
    ) -> Version:
        # ``sent``: the writes, then their lookup entries (whose results are not read).
        if len(results) != sent:  # what zip(strict=True) over every result raised
            raise ValueError(f"Firestore answered {len(results)} results to {sent} writes")
        # Only the meeting's versioned writes' results are read (wrapping all 5,000 took 45 ms):
        # the update_time of the fenced update (or of the create) is the next version.
        for index, write in enumerate(writes):
            if write.fenced or (write.kind == "create" and write.target == "meeting"):
                version = results[index].update_time
        return version

    def _reference(self, meeting_id: str, write: Write) -> DocumentReference:
        meeting = self._meetings.document(meeting_id)
        if write.target == "meeting":
            return meeting
        if write.target == "delivery":
            delivery: DocumentReference = self._client.collection(DELIVERIES).document(
                _delivery_id(write.doc_id)
            )
            return delivery
        if write.target == "erasure":
            erasure: DocumentReference = self._client.collection(ERASURES).document(write.doc_id)
            return erasure
        collection = REVISIONS if write.target == "revision" else PARTICIPANTS
        reference: DocumentReference = meeting.collection(collection).document(write.doc_id)
        return reference

    def with_code(self, meeting_code: str, *, ended: Bounds) -> list[MeetingRecord]:
        return firestore_queries.with_code(self._meetings, meeting_code, ended)

    def with_codes(self, ended: Mapping[str, Bounds]) -> dict[str, list[MeetingRecord]]:
        return firestore_queries.with_codes(self._meetings, ended)

    def with_codes_ahead(self, groups: Iterable[Mapping[str, Bounds]]) -> CodesRead:
        return firestore_queries.with_codes_ahead(self.with_codes, groups)

    def named(
        self, *, calendar_event_id: str | None = None, alias: str | None = None
    ) -> list[MeetingRecord]:
        if calendar_event_id is not None:
            query = self._meetings.where(
                filter=FieldFilter("declared_calendar_event_id", "==", calendar_event_id)
            )
        else:
            query = self._meetings.where(filter=FieldFilter("aliases", "array_contains", alias))
        return [MeetingRecord.from_document(s.to_dict() or {}) for s in query.stream()]

    def ended_between(self, start: datetime, end: datetime) -> list[MeetingRecord]:
        query = self._meetings.where(filter=FieldFilter("ended_at", ">=", start)).where(
            filter=FieldFilter("ended_at", "<", end)
        )
        return [MeetingRecord.from_document(s.to_dict() or {}) for s in query.stream()]

    def search(
        self, query: MeetingQuery, *, limit: int, after: Cursor | None
    ) -> list[MeetingRecord]:
        """Without a participant: one query sending every filter (its composite index is in
        infra/firestore.indexes.json). With one: the meetings with a document of the key, read
        and then filtered and paged on their own fields (``functions.meeting_search`` says why)."""
        if query.participant_key is not None:
            return firestore_queries.search_naming(
                self._client, self.participant_query(query.participant_key), query, limit, after
            )
        found = self.search_query(query, limit=limit, after=after).stream()
        return [MeetingRecord.from_document(_snapshot_data(s)) for s in found]

    def search_query(self, query: MeetingQuery, *, limit: int, after: Cursor | None) -> Query:
        """The meetings query of a search without a participant, as sent."""
        request: Query = self._meetings.limit(limit)
        for field_path, operator, value in (*equality_filters(query), *ended_range(query)):
            request = request.where(filter=FieldFilter(field_path, operator, value))
        for field_path, direction in ORDER:
            request = request.order_by(field_path, direction=direction)
        if after is not None:
            request = request.start_after([after.ended_at, after.meeting_id])
        return request

    def participant_query(self, participant_key: str) -> Query:
        """The participant documents of a key, with what :func:`shows_participant` reads.
        Index: the collection-group ``participant_key`` override (as for erasures)."""
        return (
            self._client.collection_group(PARTICIPANTS)
            .where(filter=FieldFilter("participant_key", "==", participant_key))
            .select(["revision", STAGED_COMMIT, PREVIOUS_ATTENDED])
        )

    def overdue(self, before: datetime) -> list[MeetingRecord]:
        # Index: meetings (status, next_poll_at) — infra/firestore.indexes.json.
        query = self._meetings.where(
            filter=FieldFilter("status", "in", sorted(str(status) for status in LIVE_STATUSES))
        ).where(filter=FieldFilter("next_poll_at", "<", before))
        return [MeetingRecord.from_document(s.to_dict() or {}) for s in query.stream()]

    def participants(self, meeting_id: str) -> list[dict[str, Any]]:
        collection = self._meetings.document(meeting_id).collection(PARTICIPANTS)
        return [_snapshot_data(snapshot) for snapshot in collection.stream()]

    def revisions(self, meeting_id: str) -> list[dict[str, Any]]:
        # Sorted here, not by the query: document ids are the numbers as text ("10" < "2").
        collection = self._meetings.document(meeting_id).collection(REVISIONS)
        documents = [dict(_snapshot_data(snapshot)) for snapshot in collection.stream()]
        for document in documents:
            document.pop(EXPIRE_AT, None)  # retention's bookkeeping, not the record's
            if isinstance(document.get("at"), datetime):
                document["at"] = stored_datetime(document["at"])
        return sorted(documents, key=lambda d: int(d.get("revision") or 0))

    def any_participant_not_mirroring(self, meeting_id: str, meeting_status: str) -> bool:
        # Every participant document has the field, so "!=" (which skips documents without
        # it) misses none; the automatic single-field index serves it.
        collection = self._meetings.document(meeting_id).collection(PARTICIPANTS)
        query = collection.where(filter=FieldFilter("meeting_status", "!=", meeting_status))
        return any(True for _ in query.limit(1).select([]).stream())

    def delivery(self, webhook_id: str) -> str | None:
        snapshot = self._client.collection(DELIVERIES).document(_delivery_id(webhook_id)).get()
        if not snapshot.exists:
            return None
        meeting_id = (snapshot.to_dict() or {}).get("meeting_id")
        return str(meeting_id) if meeting_id else None

    def declaration_reads(self, reads: DeclarationReads) -> DeclarationFacts:
        """One batched get (meetings, delivery record, erasures) and the queries beside it, all
        sent at once: a declaration waits for one round trip, not five."""
        meetings = [self._meetings.document(meeting_id) for meeting_id in reads.meeting_ids]
        delivery = (
            None
            if reads.webhook_id is None
            else self._client.collection(DELIVERIES).document(_delivery_id(reads.webhook_id))
        )
        erasures = [self._client.collection(ERASURES).document(n) for n in reads.erasure_names]
        references = [*meetings, *erasures, *([] if delivery is None else [delivery])]
        lookups = self._lookups
        ready = lookups.ready  # read once: another request may find the marker meanwhile
        looked_up = (
            lookups.references(reads.meeting_code, reads.neighbours, reads.alias) if ready else []
        )
        references += [*looked_up, *([] if ready is not None else [lookups.marker])]
        # The queries on the pool, only those asked for; the batched get here, meanwhile.
        neighbours = (
            None
            if ready
            else _READS.submit(self.with_code, reads.meeting_code, ended=reads.neighbours)
        )
        aliased = (
            None if ready or reads.alias is None else _READS.submit(self.named, alias=reads.alias)
        )
        by_event = (
            None
            if reads.calendar_event_id is None
            else _READS.submit(self.named, calendar_event_id=reads.calendar_event_id)
        )
        erasure = _READS.submit(self._any_erasure) if reads.any_erasure else None
        found = {s.reference.path: s for s in self._client.get_all(references) if s.exists}
        if ready is None and lookups.marker.path in found:
            lookups.ready = True  # for the next declaration: this one asked the queries
        delivered = None if delivery is None else found.get(delivery.path)
        meeting_id = None if delivered is None else (delivered.to_dict() or {}).get("meeting_id")
        by_id = {
            ref.id: Versioned(
                MeetingRecord.from_document(_snapshot_data(found[ref.path])),
                found[ref.path].update_time,
            )
            for ref in meetings
            if ref.path in found
        }
        if neighbours is None:
            near, aliases = lookups.answers(
                reads, [found[r.path] for r in looked_up if r.path in found], by_id
            )
        else:
            near = neighbours.result()
            aliases = [] if aliased is None else aliased.result()
        return DeclarationFacts(
            meetings=by_id,
            delivery=str(meeting_id) if meeting_id else None,
            erased=frozenset(ref.id for ref in erasures if ref.path in found),
            any_erasure=erasure is not None and erasure.result(),
            neighbours=near,
            aliased=aliases,
            by_event=[] if by_event is None else by_event.result(),
        )

    def _any_erasure(self) -> bool:
        query = self._client.collection(ERASURES).select([]).limit(1)
        return any(True for _ in query.stream())

    def erased_among(self, names: Sequence[str]) -> frozenset[str]:
        if not names:
            return frozenset()
        references = [self._client.collection(ERASURES).document(name) for name in names]
        return frozenset(s.id for s in self._client.get_all(references) if s.exists)

    def remember_delivery(self, *, webhook_id: str, meeting_id: str, expire_at: datetime) -> None:
        self._client.collection(DELIVERIES).document(_delivery_id(webhook_id)).set(
            {"webhook_id": webhook_id[:256], "meeting_id": meeting_id, "expire_at": expire_at}
        )

    # Privacy: erasures and retention.

    def erased(self) -> frozenset[str]:
        # Keys only: the names are the document ids.
        documents = self._client.collection(ERASURES).select([]).stream()
        return frozenset(snapshot.id for snapshot in documents)

    def record_erasure(self, name: str, *, at: datetime) -> None:
        with contextlib.suppress(AlreadyExists):
            # No expire_at: no TTL policy ever deletes an erasure.
            self._client.collection(ERASURES).document(name).create({"erased_at": at})

    def meetings_naming(self, participant_key: str) -> list[str]:
        return firestore_queries.meetings_naming(self._client, participant_key)

    def rename_in_revisions(self, meeting_id: str, participant_key: str, name: str) -> int:
        return firestore_queries.rename_in_revisions(
            self._meetings, meeting_id, participant_key, name
        )

    def index_lookups(self) -> int:
        """Every stored meeting's lookup entries, then their marker (the migration that lets
        declarations read them instead of querying); answers how many meetings."""
        return self._lookups.index_all(self._meetings)

    def delete_meeting(self, meeting_id: str) -> None:
        # Children first: a crash in between leaves the meeting, so the next sweep finds it.
        reference = self._meetings.document(meeting_id)
        for collection in (PARTICIPANTS, REVISIONS):
            self._client.recursive_delete(reference.collection(collection))
        reference.delete()


def _delivery_id(webhook_id: str) -> str:
    # Hashed: a webhook-id is caller-chosen text and may not be a valid document id.
    return hashlib.sha256(webhook_id.encode("utf-8")).hexdigest()
