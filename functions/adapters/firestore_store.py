"""The MeetingStore port on Firestore. The only module that knows Firestore types.

Layout (CONTRACT §3 "Documents")::

    meetings/{meeting_id}                       the meeting, its aggregates and its chain's state
    meetings/{meeting_id}/participants/{doc_id} one participant (collection group: billing queries)
    meetings/{meeting_id}/revisions/{revision}  the audit trail
    webhook_deliveries/{sha256(webhook-id)}     replay protection; ``expire_at`` is the TTL field
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, Literal, TypeAlias

from google.api_core.exceptions import Aborted, AlreadyExists, FailedPrecondition, NotFound
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.document import DocumentReference

from functions.config import Settings
from functions.errors import StoreContention
from functions.model import MeetingRecord, ParticipantRecord, RevisionRecord
from functions.schedule import LIVE_STATUSES, Status

MEETINGS = "meetings"
PARTICIPANTS = "participants"
REVISIONS = "revisions"
DELIVERIES = "webhook_deliveries"
#: Keep commits at ≤ 500 writes: the emulator and older clients expect it.
MAX_WRITES_PER_COMMIT = 500
#: Tries of one optimistic update before it answers "retry later" (503).
MAX_UPDATE_ATTEMPTS = 10

_Write: TypeAlias = tuple[
    Literal["set", "update", "delete"], DocumentReference, dict[str, Any] | None
]


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
    def __init__(self, client: firestore.Client) -> None:
        self._client = client
        self._meetings = client.collection(MEETINGS)

    def get(self, meeting_id: str) -> MeetingRecord | None:
        snapshot = self._meetings.document(meeting_id).get()
        if not snapshot.exists:
            return None
        return MeetingRecord.from_document(snapshot.to_dict() or {})

    def create(self, meeting: MeetingRecord) -> bool:
        try:
            self._meetings.document(meeting.meeting_id).create(meeting.to_document())
        except AlreadyExists:
            return False
        return True

    def update(
        self,
        meeting_id: str,
        change: Callable[[MeetingRecord], MeetingRecord | None],
    ) -> MeetingRecord | None:
        """Optimistic read-modify-write: the write carries the read's ``update_time`` as a
        precondition, and a concurrent change makes it fail, re-read and decide again.

        Unlike a transaction it takes no lock, so concurrent deliveries (duplicates, races) do not
        queue behind each other, and most calls, which change nothing, cost one read.
        """
        reference = self._meetings.document(meeting_id)
        for attempt in range(MAX_UPDATE_ATTEMPTS):
            snapshot = reference.get()
            if not snapshot.exists:
                return None
            current = MeetingRecord.from_document(snapshot.to_dict() or {})
            updated = change(current)
            if updated is None:
                return current
            precondition = self._client.write_option(last_update_time=snapshot.update_time)
            try:
                reference.update(updated.to_document(), option=precondition)
            except (FailedPrecondition, Aborted):
                time.sleep(min(1.0, 0.02 * 2**attempt) * (0.5 + random.random()))  # noqa: S311
                continue
            return updated
        raise StoreContention(meeting_id)

    def with_code(self, meeting_code: str) -> list[MeetingRecord]:
        query = self._meetings.where(filter=FieldFilter("meeting_code", "==", meeting_code))
        return [MeetingRecord.from_document(s.to_dict() or {}) for s in query.stream()]

    def ended_between(self, start: datetime, end: datetime) -> list[MeetingRecord]:
        query = self._meetings.where(filter=FieldFilter("ended_at", ">=", start)).where(
            filter=FieldFilter("ended_at", "<", end)
        )
        return [MeetingRecord.from_document(s.to_dict() or {}) for s in query.stream()]

    def overdue(self, before: datetime) -> list[MeetingRecord]:
        # Index: meetings (status, next_poll_at) — infra/firestore.indexes.json.
        query = self._meetings.where(
            filter=FieldFilter("status", "in", sorted(str(status) for status in LIVE_STATUSES))
        ).where(filter=FieldFilter("next_poll_at", "<", before))
        return [MeetingRecord.from_document(s.to_dict() or {}) for s in query.stream()]

    def participants(self, meeting_id: str) -> list[dict[str, Any]]:
        collection = self._meetings.document(meeting_id).collection(PARTICIPANTS)
        return [snapshot.to_dict() or {} for snapshot in collection.stream()]

    def participant_documents(
        self, meeting_id: str, *, doc_ids: Iterable[str]
    ) -> dict[str, dict[str, Any]]:
        collection = self._meetings.document(meeting_id).collection(PARTICIPANTS)
        references = [collection.document(doc_id) for doc_id in doc_ids]
        if not references:
            return {}
        return {
            snapshot.id: snapshot.to_dict() or {}
            for snapshot in self._client.get_all(references)
            if snapshot.exists
        }

    def write_participants(
        self,
        meeting_id: str,
        *,
        upserts: Sequence[ParticipantRecord] = (),
        deletes: Sequence[str] = (),
        status_updates: Sequence[str] = (),
        status: Status | None = None,
    ) -> int:
        collection = self._meetings.document(meeting_id).collection(PARTICIPANTS)
        operations: list[_Write] = [
            ("set", collection.document(r.doc_id), dict(r.document)) for r in upserts
        ]
        operations += [("delete", collection.document(doc_id), None) for doc_id in deletes]
        if status is not None:
            operations += [
                ("update", collection.document(doc_id), {"meeting_status": str(status)})
                for doc_id in status_updates
            ]
        for start in range(0, len(operations), MAX_WRITES_PER_COMMIT):
            chunk = operations[start : start + MAX_WRITES_PER_COMMIT]
            try:
                self._commit(chunk)
            except NotFound:
                # A status mirror on a participant deleted meanwhile: write the rest one by one.
                for operation in chunk:
                    with contextlib.suppress(NotFound):
                        self._commit([operation])
        return len(operations)

    def _commit(self, operations: Sequence[_Write]) -> None:
        batch = self._client.batch()
        for kind, reference, data in operations:
            if kind == "delete" or data is None:
                batch.delete(reference)
            elif kind == "set":
                batch.set(reference, data)
            else:
                batch.update(reference, data)
        batch.commit()

    def write_revision(self, meeting_id: str, revision: RevisionRecord) -> None:
        reference = (
            self._meetings.document(meeting_id)
            .collection(REVISIONS)
            .document(str(revision.revision))
        )
        reference.set(revision.to_document())

    def delivery(self, webhook_id: str) -> str | None:
        snapshot = self._client.collection(DELIVERIES).document(_delivery_id(webhook_id)).get()
        if not snapshot.exists:
            return None
        meeting_id = (snapshot.to_dict() or {}).get("meeting_id")
        return str(meeting_id) if meeting_id else None

    def remember_delivery(self, *, webhook_id: str, meeting_id: str, expire_at: datetime) -> None:
        self._client.collection(DELIVERIES).document(_delivery_id(webhook_id)).set(
            {"webhook_id": webhook_id[:256], "meeting_id": meeting_id, "expire_at": expire_at}
        )


def _delivery_id(webhook_id: str) -> str:
    # Hashed: a webhook-id is caller-chosen text and may not be a valid document id.
    return hashlib.sha256(webhook_id.encode("utf-8")).hexdigest()
