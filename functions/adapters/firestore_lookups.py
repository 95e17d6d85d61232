"""Lookup documents: what a declaration's first read gets by key where it would otherwise query
(docs/rules.md "Documents"), for ``functions.adapters.firestore_store``.

A webhook's queries (the code's meetings in its neighbourhood, the meetings naming its external
id as an alias) took longer than the batched get beside them, and most of the request after it.
Instead, every write of a meeting document adds, in the same request, the meeting's entry to:

- ``meeting_lookups/code~{sha256(code)}~{week}``: ``meetings.{meeting_id}: ended_at``, the week
  being that of ``ended_at`` (7-day buckets counted from the epoch);
- ``meeting_lookups/alias~{sha256(alias)}``: ``meetings.{meeting_id}: true``, per alias.

An entry is never removed when a meeting moves or goes: the documents are a superset. A reader
takes the candidates they name, gets them, and keeps those whose own fields answer the query
(the code and ``ended_at``, or the alias): what the query would have answered, from a read as
fresh. A meeting's current entry is always there, because it was written with the meeting.

Meetings written before these documents have no entries: until ``meeting_lookups/complete``
exists (written by ``index_all``, ``python -m functions index-lookups``, after it indexed every
meeting), declarations run the queries.

Retention: a week's document expires (``expire_at``) after every meeting that can end in it;
an alias document with the meeting that last wrote it (an alias names one meeting: a second
declaration naming it is a conflict).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from google.cloud import firestore
from google.cloud.firestore_v1 import _helpers
from google.cloud.firestore_v1.collection import CollectionReference
from google.cloud.firestore_v1.document import DocumentReference

from functions.adapters.firestore_queries import MEETINGS, snapshot_data
from functions.adapters.firestore_writes import RawBatch
from functions.intervals import Bounds
from functions.model import MeetingRecord
from functions.ports import NEIGHBOUR_FIELDS, DeclarationReads, Versioned
from functions.retention import EXPIRE_AT, expire_at

__all__ = [
    "BUCKET",
    "LOOKUPS",
    "Lookups",
    "bucket_of",
    "buckets_of",
]

LOOKUPS: Final = "meeting_lookups"
#: The marker: every meeting stored has its entries.
COMPLETE: Final = "complete"
BUCKET: Final = timedelta(days=7)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
#: Meetings indexed per request by :meth:`Lookups.index_all`.
_INDEX_BATCH: Final = 200
#: The fields :meth:`Lookups.index_all` reads of each meeting: what its entries hold.
_INDEXED_FIELDS: Final = ("meeting_code", "ended_at", "aliases")


def bucket_of(moment: datetime) -> int:
    """The week of ``moment``: the bucket whose document holds a meeting that ended then."""
    return (moment - _EPOCH) // BUCKET


def buckets_of(bounds: Bounds) -> range:
    """Every bucket holding an instant of ``bounds``."""
    return range(bucket_of(bounds.start), bucket_of(bounds.end) + 1)


def _hashed(text: str) -> str:
    # Codes and external ids are caller text: hashed, they are always valid document ids.
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def code_document_id(meeting_code: str, bucket: int) -> str:
    return f"code~{_hashed(meeting_code)}~{bucket}"


def alias_document_id(alias: str) -> str:
    return f"alias~{_hashed(alias)}"


class Lookups:
    """The lookup documents of one database: their writes, their reads, their migration."""

    def __init__(
        self, client: firestore.Client, *, retention_days: int | None, ready: bool | None = None
    ) -> None:
        """``ready``: whether every stored meeting has its entries; None: read the marker (and
        remember it once found: it is never removed)."""
        self._client = client
        self._collection = client.collection(LOOKUPS)
        self._meetings = client.collection(MEETINGS)
        self._retention_days = retention_days
        self.ready = ready

    @property
    def marker(self) -> DocumentReference:
        return self._collection.document(COMPLETE)

    def writes_for(self, meeting_id: str, document: Mapping[str, Any]) -> list[Any]:
        """The raw writes adding a meeting document's entries (merged, without precondition:
        they never fail a request), or none when ``document`` does not carry its code and
        ``ended_at`` (a partial update changes neither)."""
        code, ended_at = document.get("meeting_code"), document.get("ended_at")
        if not isinstance(code, str) or not isinstance(ended_at, datetime):
            return []
        bucket = bucket_of(ended_at)
        bucket_end = _EPOCH + (bucket + 1) * BUCKET
        entries: list[tuple[str, dict[str, Any]]] = [
            (
                code_document_id(code, bucket),
                self._expiring({"meetings": {meeting_id: ended_at}}, bucket_end),
            )
        ]
        for alias in document.get("aliases") or ():
            if isinstance(alias, str):
                data = self._expiring({"meetings": {meeting_id: True}}, ended_at)
                entries.append((alias_document_id(alias), data))
        return [
            write._pb
            for document_id, data in entries
            for write in _helpers.pbs_for_set_with_merge(
                self._collection.document(document_id)._document_path, data, merge=True
            )
        ]

    def _expiring(self, data: dict[str, Any], ended_at: datetime) -> dict[str, Any]:
        expiry = expire_at(ended_at, self._retention_days)
        return data if expiry is None else {**data, EXPIRE_AT: expiry}

    def references(self, meeting_code: str, neighbours: Bounds, alias: str | None) -> list[Any]:
        """The lookup documents naming every meeting of the code whose ``ended_at`` may lie in
        ``neighbours``, and every meeting naming ``alias``."""
        ids = [code_document_id(meeting_code, bucket) for bucket in buckets_of(neighbours)]
        if alias is not None:
            ids.append(alias_document_id(alias))
        return [self._collection.document(document_id) for document_id in ids]

    @staticmethod
    def candidates(
        documents: Iterable[Mapping[str, Any]], neighbours: Bounds
    ) -> tuple[set[str], set[str]]:
        """The meeting ids that lookup documents name and that may answer, by code and by
        alias: a code entry only when the ``ended_at`` it recorded lies in ``neighbours`` (a
        meeting's current ``ended_at`` always has its entry, so one recorded outside names a
        meeting that moved)."""
        by_code: set[str] = set()
        by_alias: set[str] = set()
        for document in documents:
            for meeting_id, value in (document.get("meetings") or {}).items():
                if not isinstance(value, datetime):
                    by_alias.add(meeting_id)
                elif neighbours.holds(value):
                    by_code.add(meeting_id)
        return by_code, by_alias

    def answers(
        self,
        reads: DeclarationReads,
        documents: Sequence[Any],
        read: Mapping[str, Versioned],
    ) -> tuple[list[MeetingRecord], list[MeetingRecord]]:
        """What the two queries would answer (neighbours, aliased), from the lookup documents
        read beside the meetings ``read``: the meetings they name that the first get did not
        read come from a second, only when they name any. Named by the code alone, a meeting
        is got with only the fields a neighbour is judged by (``NEIGHBOUR_FIELDS``)."""
        entries = (snapshot_data(document) for document in documents)
        by_code, by_alias = self.candidates(entries, reads.neighbours)
        named, near = by_alias - set(read), by_code - set(read)
        # One get either way; whole meetings when an alias names one (its identity is used).
        others = self._get(named | near) if named else self._get(near, NEIGHBOUR_FIELDS)
        everything = [*(stored.record for stored in read.values()), *others]
        return answering(everything, reads.meeting_code, reads.neighbours, reads.alias)

    def _get(
        self, meeting_ids: Iterable[str], fields: Sequence[str] | None = None
    ) -> list[MeetingRecord]:
        references = [self._meetings.document(meeting_id) for meeting_id in sorted(meeting_ids)]
        if not references:
            return []
        found = self._client.get_all(references, field_paths=fields)
        return [MeetingRecord.from_document(snapshot_data(s)) for s in found if s.exists]

    def index_all(self, meetings: CollectionReference) -> int:
        """Add the entries of every stored meeting, then the marker; answers how many meetings.
        Idempotent, and safe beside running functions: their writes add their own entries."""
        indexed = 0
        for chunk in _chunks(meetings.select(list(_INDEXED_FIELDS)).stream()):
            writes = [w for s in chunk for w in self.writes_for(s.id, s.to_dict() or {})]
            if writes:
                RawBatch(self._client, writes).commit()
            indexed += len(chunk)
        self.marker.set({"indexed_meetings": indexed, "at": datetime.now(UTC)})
        self.ready = True
        return indexed


def answering(
    meetings: Sequence[MeetingRecord], meeting_code: str, neighbours: Bounds, alias: str | None
) -> tuple[list[MeetingRecord], list[MeetingRecord]]:
    """Of the meetings read, those the two queries would answer, in their order: the code's in
    ``neighbours`` (by ``ended_at``, then id), and those naming ``alias`` (by id)."""
    unique = {m.meeting_id: m for m in meetings}
    ordered = sorted(unique.values(), key=lambda m: m.meeting_id)
    near = [m for m in ordered if m.meeting_code == meeting_code and neighbours.holds(m.ended_at)]
    near.sort(key=lambda m: m.ended_at)  # stable: ties stay in id order
    named = [] if alias is None else [m for m in ordered if alias in m.aliases]
    return near, named


def _chunks(snapshots: Iterable[Any]) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for snapshot in snapshots:
        chunk.append(snapshot)
        if len(chunk) == _INDEX_BATCH:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
