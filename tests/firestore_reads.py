"""Reads of stored documents that only tests make (the system itself never reads them back)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from google.cloud import firestore

from functions.adapters.firestore_queries import MEETINGS, REVISIONS
from functions.intervals import Bounds

#: Every ``ended_at`` a test stores: the range a test reads a code's every meeting with.
ALL_TIME: Final = Bounds(datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC))


def stored_revisions(client: firestore.Client, meeting_id: str) -> list[dict[str, Any]]:
    """A meeting's revision records, oldest first."""
    collection = client.collection(MEETINGS).document(meeting_id).collection(REVISIONS)
    documents = [snapshot.to_dict() or {} for snapshot in collection.stream()]
    return sorted(documents, key=lambda d: int(d.get("revision", 0)))
