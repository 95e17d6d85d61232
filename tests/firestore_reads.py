"""Reads of stored documents that only tests make (the system itself never reads them back)."""

from __future__ import annotations

from typing import Any

from google.cloud import firestore

from functions.adapters.firestore_store import MEETINGS, REVISIONS


def stored_revisions(client: firestore.Client, meeting_id: str) -> list[dict[str, Any]]:
    """A meeting's revision records, oldest first."""
    collection = client.collection(MEETINGS).document(meeting_id).collection(REVISIONS)
    documents = [snapshot.to_dict() or {} for snapshot in collection.stream()]
    return sorted(documents, key=lambda d: int(d.get("revision", 0)))
