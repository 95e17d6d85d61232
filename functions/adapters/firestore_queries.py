"""The bounded reads of a code's meetings on Firestore (docs/rules.md "Bounded"), for
``functions.adapters.firestore_store``.

Index: meetings (meeting_code, ended_at) — infra/firestore.indexes.json. An ``in`` filter on the
code is served by the same index as an equality (Firestore runs it as one equality per value).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Final

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.collection import CollectionReference
from google.cloud.firestore_v1.query import Query

from functions.intervals import Bounds
from functions.meeting_search import Cursor, MeetingQuery, select, shows_participant
from functions.model import MeetingRecord
from functions.ports import CodesRead

MEETINGS: Final = "meetings"
PARTICIPANTS: Final = "participants"
REVISIONS: Final = "revisions"
#: Firestore's limit on the values of one ``in`` filter.
IN_VALUES: Final = 30
#: The threads that read a backfill's next codes while it reconciles the codes before.
_READ_AHEAD = ThreadPoolExecutor(max_workers=4, thread_name_prefix="read-ahead")
#: Reads in flight per caller of :func:`with_codes_ahead`. Two were no faster than one against
#: the emulator (a 200,000-event backfill's discovery: 11.2 to 13.3 s against 10.3 to 10.7 s).
READS_AHEAD: Final = 1


def with_code(
    meetings: CollectionReference, meeting_code: str, ended: Bounds
) -> list[MeetingRecord]:
    code = FieldFilter("meeting_code", "==", meeting_code)
    return list(_ended_within(meetings, code, ended))


def _ended_within(
    meetings: CollectionReference, code: FieldFilter, ended: Bounds
) -> Iterator[MeetingRecord]:
    """The meetings passing ``code`` whose ``ended_at`` lies in ``ended`` (both ends included)."""
    query = (
        meetings.where(filter=code)
        .where(filter=FieldFilter("ended_at", ">=", ended.start))
        .where(filter=FieldFilter("ended_at", "<=", ended.end))
    )
    return (MeetingRecord.from_document(snapshot_data(s)) for s in query.stream())


def with_codes(
    meetings: CollectionReference, ended: Mapping[str, Bounds]
) -> dict[str, list[MeetingRecord]]:
    """:func:`with_code` of every code, in one query per :data:`IN_VALUES` codes: each asks for
    the range holding its codes' bounds, and every code keeps only what lies in its own."""
    found: dict[str, list[MeetingRecord]] = {code: [] for code in ended}
    for group in _groups(ended):
        spanned = Bounds(
            min(ended[code].start for code in group), max(ended[code].end for code in group)
        )
        codes = FieldFilter("meeting_code", "in", list(group))
        for record in _ended_within(meetings, codes, spanned):
            if record.meeting_code in found and ended[record.meeting_code].holds(record.ended_at):
                found[record.meeting_code].append(record)
    return found


def with_codes_ahead(
    read: Callable[[Mapping[str, Bounds]], dict[str, list[MeetingRecord]]],
    groups: Iterable[Mapping[str, Bounds]],
) -> CodesRead:
    """``read`` of each group in turn, :data:`READS_AHEAD` reads in flight beside the caller's
    work: a backfill's reads of its codes took as long as the commits of the meetings it found,
    one after the other."""
    pending: collections.deque[Future[dict[str, list[MeetingRecord]]]] = collections.deque()
    try:
        for group in groups:
            pending.append(_READ_AHEAD.submit(read, group))
            if len(pending) > READS_AHEAD:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        # A caller that stops early (a failure) leaves no read running unheeded; what they
        # answer is no longer anyone's.
        for running in pending:
            if not running.cancel():
                running.exception()


def _groups(ended: Mapping[str, Bounds]) -> Iterator[Sequence[str]]:
    # Codes in the order of their ranges: a group's range then spans little more than its own.
    ordered = sorted(ended, key=lambda code: (ended[code].start, code))
    for index in range(0, len(ordered), IN_VALUES):
        yield ordered[index : index + IN_VALUES]


def snapshot_data(snapshot: Any) -> dict[str, Any]:
    """A snapshot's fields without ``to_dict``'s deep copy.

    The snapshot already deep-copied what it decoded, and nothing else holds it: a second copy
    per document was a third of the time a poll of 5,000 participants spent reading them.
    Falls back to ``to_dict`` should the client stop keeping its data in ``_data``.
    """
    data = getattr(snapshot, "_data", None)
    if isinstance(data, dict):
        return data
    return snapshot.to_dict() or {}


def search_naming(
    client: firestore.Client,
    documents_of_key: Query,
    query: MeetingQuery,
    limit: int,
    after: Cursor | None,
) -> list[MeetingRecord]:
    """A search with a participant: the meetings with a document of the key
    (``documents_of_key``), read, then filtered and paged on their own fields."""
    documents: dict[str, list[dict[str, Any]]] = {}
    for snapshot in documents_of_key.stream():
        meeting = snapshot.reference.parent.parent
        documents.setdefault(meeting.id, []).append(snapshot_data(snapshot))
    if not documents:
        return []
    meetings = client.collection(MEETINGS)
    references = [meetings.document(meeting_id) for meeting_id in sorted(documents)]
    found = (
        MeetingRecord.from_document(snapshot_data(s))
        for s in client.get_all(references)
        if s.exists
    )
    naming = [m for m in found if shows_participant(documents[m.meeting_id], m)]
    return select(naming, query, limit=limit, after=after)


def meetings_naming(client: firestore.Client, participant_key: str) -> list[str]:
    """The ids of the meetings with a document naming ``participant_key`` (an erasure's)."""
    # Indexes: the participants collection group by participant_key, the revisions one by
    # participant_keys (infra/firestore.tf).
    group = client.collection_group(PARTICIPANTS).where(
        filter=FieldFilter("participant_key", "==", participant_key)
    )
    found = {snapshot.reference.parent.parent.id for snapshot in group.select([]).stream()}
    # Revision records name participants that left the meeting since (a declaration no
    # longer expecting them, sessions handed to a neighbour).
    named = client.collection_group(REVISIONS).where(
        filter=FieldFilter("participant_keys", "array_contains", participant_key)
    )
    found.update(snapshot.reference.parent.parent.id for snapshot in named.select([]).stream())
    for listed in ("expected_participants", "missing_participants"):
        query = client.collection(MEETINGS).where(
            filter=FieldFilter(listed, "array_contains", participant_key)
        )
        found.update(snapshot.id for snapshot in query.select([]).stream())
    return sorted(found)


def rename_in_revisions(
    meetings: CollectionReference, meeting_id: str, participant_key: str, name: str
) -> int:
    """Every revision record of the meeting naming ``participant_key`` names ``name`` instead;
    answers how many were rewritten."""
    collection = meetings.document(meeting_id).collection(REVISIONS)
    renamed = 0
    for snapshot in collection.stream():
        changes = (snapshot.to_dict() or {}).get("changes") or []
        if not any(c.get("participant_key") == participant_key for c in changes):
            continue
        renamed_changes = _renamed(changes, participant_key, name)
        keys = sorted({str(change.get("participant_key")) for change in renamed_changes})
        snapshot.reference.update({"changes": renamed_changes, "participant_keys": keys})
        renamed += 1
    return renamed


def _renamed(
    changes: list[dict[str, Any]], participant_key: str, name: str
) -> list[dict[str, Any]]:
    return [
        {**change, "participant_key": name}
        if change.get("participant_key") == participant_key
        else change
        for change in changes
    ]
