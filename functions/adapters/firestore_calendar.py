"""The CalendarState port on Firestore: the open push channels and each calendar's sync state.

Layout::

    calendar_channels/{channel id}     ChannelRecord (the token only as its SHA-256)
    calendar_syncs/{sha256(calendar)}  CalendarSyncState: the sync token, its generation, the lease

The lease and the token are changed in transactions on the one sync document, so two syncs of a
calendar never run at once and a token is stored only over the generation it was read from.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from google.api_core.exceptions import NotFound
from google.cloud import firestore

from functions.calendar_records import CalendarSyncState, ChannelRecord
from functions.config import Settings
from functions.errors import StoreContention
from functions.model import stored_datetime

CHANNELS: Final = "calendar_channels"
_CHANNEL_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
SYNCS: Final = "calendar_syncs"


def sync_doc_id(calendar_id: str) -> str:
    return hashlib.sha256(calendar_id.strip().lower().encode("utf-8")).hexdigest()


class FirestoreCalendarState:
    def __init__(self, client: firestore.Client) -> None:
        self._client = client
        self._channels = client.collection(CHANNELS)
        self._syncs = client.collection(SYNCS)

    @classmethod
    def from_settings(cls, settings: Settings) -> FirestoreCalendarState:
        from functions.adapters.firestore_store import firestore_client

        return cls(firestore_client(settings))

    # Channels

    def channels(self) -> list[ChannelRecord]:
        records = [_channel(s.to_dict() or {}) for s in self._channels.stream()]
        return sorted(records, key=lambda r: (r.calendar_id, r.created_at, r.channel_id))

    def channel(self, channel_id: str) -> ChannelRecord | None:
        # Ours are 32 hex digits; anything else (".", "..", "a/b", "__x__") names none, and some
        # would be refused by Firestore itself.
        if _CHANNEL_ID.fullmatch(channel_id) is None or channel_id.startswith("__"):
            return None
        snapshot = self._channels.document(channel_id).get()
        return _channel(snapshot.to_dict() or {}) if snapshot.exists else None

    def save_channel(self, record: ChannelRecord) -> None:
        self._channels.document(record.channel_id).set(dataclasses.asdict(record))

    def delete_channel(self, channel_id: str) -> None:
        self._channels.document(channel_id).delete()

    def note_notification(self, channel_id: str, at: datetime) -> None:
        reference = self._channels.document(channel_id)
        # The channel may have been closed meanwhile: nothing to note then.
        with contextlib.suppress(NotFound):
            reference.update({"last_notification_at": at})

    # Syncs

    def sync_state(self, calendar_id: str) -> CalendarSyncState | None:
        snapshot = self._syncs.document(sync_doc_id(calendar_id)).get()
        return _sync(snapshot.to_dict() or {}) if snapshot.exists else None

    def take_sync(
        self, calendar_id: str, *, organizer_email: str, owner: str, until: datetime, now: datetime
    ) -> CalendarSyncState | None:
        reference = self._syncs.document(sync_doc_id(calendar_id))
        # A plain read first: a lease held is the common answer under a burst of notifications,
        # and transactions that would only find it held contend for nothing (the emulator's
        # locks make them wait their turn).
        snapshot = reference.get()
        if snapshot.exists:
            current = _sync(snapshot.to_dict() or {})
            if current.lease_owner and current.lease_until and current.lease_until > now:
                return None

        @firestore.transactional
        def take(transaction: firestore.Transaction) -> CalendarSyncState | None:
            snapshot = reference.get(transaction=transaction)
            current = (
                _sync(snapshot.to_dict() or {})
                if snapshot.exists
                else CalendarSyncState(calendar_id=calendar_id, organizer_email=organizer_email)
            )
            if current.lease_owner and current.lease_until and current.lease_until > now:
                return None
            taken = dataclasses.replace(
                current, organizer_email=organizer_email, lease_owner=owner, lease_until=until
            )
            transaction.set(reference, dataclasses.asdict(taken))
            return taken

        try:
            result: CalendarSyncState | None = take(self._client.transaction())
        except ValueError:  # the transaction lost to other writers every time: held, then
            return None
        return result

    def finish_sync(
        self,
        calendar_id: str,
        *,
        owner: str,
        sync_token: str | None,
        generation: int,
        now: datetime,
        problem: str | None = None,
    ) -> bool:
        reference = self._syncs.document(sync_doc_id(calendar_id))

        @firestore.transactional
        def finish(transaction: firestore.Transaction) -> bool:
            snapshot = reference.get(transaction=transaction)
            if not snapshot.exists:
                return False
            current = _sync(snapshot.to_dict() or {})
            if current.lease_owner != owner:
                return False
            stored = current.generation == generation and problem is None
            done = dataclasses.replace(
                current,
                sync_token=sync_token if stored else current.sync_token,
                generation=current.generation + 1 if stored else current.generation,
                last_sync_at=now if stored else current.last_sync_at,
                lease_owner=None,
                lease_until=None,
                problem=problem,
            )
            transaction.set(reference, dataclasses.asdict(done))
            return stored

        try:
            result: bool = finish(self._client.transaction())
        except ValueError:  # contention: the lease runs out and the next sync reads again
            raise StoreContention(f"calendar sync state {sync_doc_id(calendar_id)[:8]}") from None
        return result

    def drop_sync(self, calendar_id: str) -> None:
        self._syncs.document(sync_doc_id(calendar_id)).delete()


def _moment(value: Any) -> datetime | None:
    return stored_datetime(value) if isinstance(value, datetime) else None


def _channel(document: Mapping[str, Any]) -> ChannelRecord:
    created = _moment(document.get("created_at"))
    if created is None:
        raise ValueError("a channel document without created_at")
    return ChannelRecord(
        channel_id=str(document["channel_id"]),
        calendar_id=str(document["calendar_id"]),
        organizer_email=str(document["organizer_email"]),
        resource_id=str(document.get("resource_id") or ""),
        token_hash=str(document["token_hash"]),
        expiration=_moment(document.get("expiration")),
        created_at=created,
        address=str(document.get("address") or ""),
        last_notification_at=_moment(document.get("last_notification_at")),
        replaced_by=document.get("replaced_by"),
    )


def _sync(document: Mapping[str, Any]) -> CalendarSyncState:
    return CalendarSyncState(
        calendar_id=str(document["calendar_id"]),
        organizer_email=str(document["organizer_email"]),
        sync_token=document.get("sync_token"),
        generation=int(document.get("generation") or 0),
        last_sync_at=_moment(document.get("last_sync_at")),
        lease_owner=document.get("lease_owner"),
        lease_until=_moment(document.get("lease_until")),
        problem=document.get("problem"),
    )
