"""The WorkspaceState port on Firestore: what the Meet side remembers.

Layout::

    workspace_subscriptions/{sha256(email)}  one organizer's subscription (SubscriptionRecord)
    meet_spaces/{space id}                   which organizer last read a Meet space
    meet_deliveries/{sha256(ce-id)}          handled CloudEvents; ``expire_at`` is the TTL field
                                             (Pub/Sub keeps a message 7 days at most)

Emails and ``ce-id`` are hashed into document ids (path-safe, fixed length); the values are
fields. Datetimes read back are plain aware UTC datetimes.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from google.api_core.exceptions import AlreadyExists
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from functions.config import Settings
from functions.meet_records import Problem, SubscriptionRecord
from functions.model import stored_datetime
from functions.retention import EXPIRE_AT

SUBSCRIPTIONS: Final = "workspace_subscriptions"
SPACES: Final = "meet_spaces"
EVENT_DELIVERIES: Final = "meet_deliveries"

_SPACE_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def _hashed(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def subscription_doc_id(organizer_email: str) -> str:
    return _hashed(organizer_email.strip().lower())


def space_doc_id(space: str) -> str:
    """``spaces/ID`` → ``ID`` when it is a plain id (Meet's are), else ``~`` and its hash (``~``
    is never in a plain id, so the two kinds cannot collide)."""
    space_id = space.removeprefix("spaces/")
    if _SPACE_ID.fullmatch(space_id) and not space_id.startswith("__"):
        return space_id
    return "~" + _hashed(space)


def event_doc_id(event_id: str) -> str:
    return _hashed(event_id)


class FirestoreWorkspaceState:
    def __init__(self, client: firestore.Client) -> None:
        self._client = client
        self._subscriptions = client.collection(SUBSCRIPTIONS)
        self._spaces = client.collection(SPACES)
        self._deliveries = client.collection(EVENT_DELIVERIES)

    @classmethod
    def from_settings(cls, settings: Settings) -> FirestoreWorkspaceState:
        from functions.adapters.firestore_store import firestore_client

        return cls(firestore_client(settings))

    # Subscriptions

    def subscriptions(self) -> list[SubscriptionRecord]:
        records = [_record(s.to_dict() or {}) for s in self._subscriptions.stream()]
        return sorted(records, key=lambda record: record.organizer_email)

    def subscription(self, organizer_email: str) -> SubscriptionRecord | None:
        snapshot = self._subscriptions.document(subscription_doc_id(organizer_email)).get()
        return _record(snapshot.to_dict() or {}) if snapshot.exists else None

    def subscription_named(self, name: str) -> SubscriptionRecord | None:
        query = self._subscriptions.where(filter=FieldFilter("subscription", "==", name))
        for snapshot in query.limit(1).stream():
            return _record(snapshot.to_dict() or {})
        return None

    def save_subscription(self, record: SubscriptionRecord) -> None:
        reference = self._subscriptions.document(subscription_doc_id(record.organizer_email))
        reference.set(_document(record))

    def delete_subscription(self, organizer_email: str) -> None:
        self._subscriptions.document(subscription_doc_id(organizer_email)).delete()

    # Space readers

    def space_reader(self, space: str) -> str | None:
        snapshot = self._spaces.document(space_doc_id(space)).get()
        if not snapshot.exists:
            return None
        organizer = (snapshot.to_dict() or {}).get("organizer_email")
        return str(organizer) if organizer else None

    def remember_space_reader(self, space: str, organizer_email: str) -> None:
        self._spaces.document(space_doc_id(space)).set(
            {
                "space": space,
                "organizer_email": organizer_email,
                "updated_at": firestore.SERVER_TIMESTAMP,
            }
        )

    # Handled CloudEvents

    def event_handled(self, event_id: str) -> bool:
        return bool(self._deliveries.document(event_doc_id(event_id)).get().exists)

    def remember_event(self, event_id: str, *, expire_at: datetime) -> None:
        # create, not set: a second delivery keeps the first handling's time.
        with contextlib.suppress(AlreadyExists):
            self._deliveries.document(event_doc_id(event_id)).create(
                {"handled_at": firestore.SERVER_TIMESTAMP, EXPIRE_AT: expire_at}
            )


def _document(record: SubscriptionRecord) -> dict[str, Any]:
    problem = record.problem
    return {
        "organizer_email": record.organizer_email,
        "user_id": record.user_id,
        "subscription": record.subscription,
        "state": record.state,
        "expire_time": record.expire_time,
        "last_event_at": record.last_event_at,
        "problem": None
        if problem is None
        else {"code": problem.code, "message": problem.message, "at": problem.at},
        "updated_at": record.updated_at,
    }


def _moment(value: Any) -> datetime | None:
    return stored_datetime(value) if isinstance(value, datetime) else None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _problem(value: Any) -> Problem | None:
    if not isinstance(value, Mapping):
        return None
    at = _moment(value.get("at"))
    if at is None:
        return None
    return Problem(code=str(value.get("code")), message=str(value.get("message")), at=at)


def _record(document: Mapping[str, Any]) -> SubscriptionRecord:
    return SubscriptionRecord(
        organizer_email=str(document["organizer_email"]),
        user_id=_text(document.get("user_id")),
        subscription=_text(document.get("subscription")),
        state=_text(document.get("state")),
        expire_time=_moment(document.get("expire_time")),
        last_event_at=_moment(document.get("last_event_at")),
        problem=_problem(document.get("problem")),
        updated_at=_moment(document.get("updated_at")),
    )
