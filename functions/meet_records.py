"""What the Meet REST, Workspace Events and Directory adapters answer, as plain records.

No Google type crosses the ports (``functions.ports``): the adapters turn Google's JSON into these
records, with aware datetimes and Google's resource names kept as they are.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

CONFERENCE_ENDED: Final = "google.workspace.meet.conference.v2.ended"
SUBSCRIPTION_SUSPENDED: Final = "google.workspace.events.subscription.v1.suspended"
SUBSCRIPTION_EXPIRATION_REMINDER: Final = (
    "google.workspace.events.subscription.v1.expirationReminder"
)
SUBSCRIPTION_EXPIRED: Final = "google.workspace.events.subscription.v1.expired"
LIFECYCLE_EVENT_TYPES: Final = frozenset(
    {SUBSCRIPTION_SUSPENDED, SUBSCRIPTION_EXPIRATION_REMINDER, SUBSCRIPTION_EXPIRED}
)
#: The event types our subscriptions ask for (lifecycle events come without asking).
SUBSCRIBED_EVENT_TYPES: Final = (CONFERENCE_ENDED,)
#: Workspace Events target of a user's conferences: ``//cloudidentity.googleapis.com/users/ID``.
USER_TARGET_PREFIX: Final = "//cloudidentity.googleapis.com/users/"

_CONFERENCE_RECORD: Final = re.compile(r"conferenceRecords/[A-Za-z0-9_-]{1,128}")
_SPACE: Final = re.compile(r"spaces/[A-Za-z0-9_-]{1,128}")
_SUBSCRIPTION: Final = re.compile(r"subscriptions/[A-Za-z0-9_.~-]{1,256}")

AttendeeKind = Literal["signed_in", "anonymous", "phone"]
SubscriptionStateName = Literal["ACTIVE", "SUSPENDED", "DELETED", "STATE_UNSPECIFIED"]


def user_target(user_id: str) -> str:
    """The Workspace Events target resource of a Directory user id."""
    return USER_TARGET_PREFIX + user_id


@dataclass(frozen=True, slots=True, kw_only=True)
class Conference:
    """A Meet ``ConferenceRecord``: ``name`` is ``conferenceRecords/ID``, ``space``
    ``spaces/ID``; ``end`` is None while the conference runs."""

    name: str
    space: str
    start: datetime
    end: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class MeetSpace:
    """A Meet ``Space``: ``meeting_code`` as Meet writes it (``abc-mnop-xyz``), if it has one."""

    name: str
    meeting_code: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class MeetSessionTimes:
    """One ``ParticipantSession``: ``end`` is None while the participant is still in the call."""

    name: str
    start: datetime
    end: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class MeetAttendee:
    """A ``Participant`` with its sessions. ``user`` is ``users/ID`` for a signed-in user (the
    Directory user id), None otherwise; ``display_name`` is the name Meet shows (for a phone
    user, the partially redacted number)."""

    name: str
    kind: AttendeeKind
    user: str | None
    display_name: str | None
    sessions: tuple[MeetSessionTimes, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectoryUser:
    id: str
    primary_email: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """What went wrong last with an organizer's subscription: ``{code, message, at}``."""

    code: str
    message: str
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriptionRecord:
    """``workspace_subscriptions/{id}``: what this system knows of one organizer's Workspace
    Events subscription (docs/cli.md ``subscriptions``). ``subscription`` is the API's
    ``subscriptions/ID`` once one exists."""

    organizer_email: str
    user_id: str | None = None
    subscription: str | None = None
    state: str | None = None
    expire_time: datetime | None = None
    last_event_at: datetime | None = None
    problem: Problem | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EventSubscription:
    """A Workspace Events ``Subscription`` as the API holds it."""

    name: str
    target_resource: str
    event_types: tuple[str, ...]
    state: SubscriptionStateName
    suspension_reason: str | None
    expire_time: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class CloudEvent:
    id: str
    type: str
    source: str | None
    subject: str | None
    data: Mapping[str, Any] = field(default_factory=dict)
    message_id: str | None = None

    @property
    def space(self) -> str | None:
        """``spaces/ID`` when ``source`` names a Meet space (README "The local stack": the fake's
        form; Google's is unconfirmed, so this is a hint only)."""
        prefix = "//meet.googleapis.com/"
        if self.source and self.source.startswith(prefix):
            rest = self.source[len(prefix) :]
            if _SPACE.fullmatch(rest):
                return rest
        return None

    @property
    def conference_record(self) -> str | None:
        """The ``conferenceRecords/ID`` a conference event's data names, if any."""
        record = self.data.get("conferenceRecord")
        name = record.get("name") if isinstance(record, Mapping) else None
        if isinstance(name, str) and _CONFERENCE_RECORD.fullmatch(name):
            return name
        return None

    @property
    def subscription(self) -> str | None:
        """``subscriptions/ID`` a lifecycle event names (in its data, else its source)."""
        named = self.data.get("subscription")
        if isinstance(named, Mapping):
            name = named.get("name")
            if isinstance(name, str) and _SUBSCRIPTION.fullmatch(name):
                return name
        prefix = "//workspaceevents.googleapis.com/"
        for value in (self.source, self.subject):
            if value and value.startswith(prefix) and _SUBSCRIPTION.fullmatch(value[len(prefix) :]):
                return value[len(prefix) :]
        return None
