"""Small in-memory fakes of the Meet side's ports (WorkspaceEvents, Directory, WorkspaceState),
for unit tests of ``functions.subscriptions`` and the Meet event handlers.

They behave as Google documents (reference/google-events.md §1): one subscription per user
credential and target (a second create answers ``ALREADY_EXISTS``), a 7-day maximum lifetime
after which Google deletes the subscription, suspension with a reason, reactivation only of a
suspended subscription, idempotent deletes. Faults are injected per method and user.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from functions.calendar_records import CalendarSyncState, ChannelRecord
from functions.errors import SubscriptionExists, WorkspaceError
from functions.meet_records import (
    DirectoryUser,
    EventSubscription,
    SubscriptionRecord,
    SubscriptionStateName,
    user_target,
)

#: Meet subscriptions cannot include resource data: 7 days at most (``ttl`` 0 = the maximum).
MAX_TTL = timedelta(days=7)


class FakeDirectory:
    """Users by email (any case) or id; groups by email. ``failures[email]`` is raised by
    ``user(email)``; ``group_failure`` by ``group_members``."""

    def __init__(
        self,
        users: Mapping[str, str] | None = None,
        groups: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        self.users: dict[str, str] = {k.lower(): v for k, v in (users or {}).items()}
        self.groups: dict[str, list[str]] = {k.lower(): list(v) for k, v in (groups or {}).items()}
        self.failures: dict[str, WorkspaceError] = {}
        self.group_failure: WorkspaceError | None = None
        self.calls = 0

    def add_user(self, email: str, user_id: str) -> None:
        self.users[email.lower()] = user_id

    def user(self, key: str) -> DirectoryUser | None:
        self.calls += 1
        email = key.lower()
        if email in self.failures:
            raise self.failures[email]
        if email in self.users:
            return DirectoryUser(id=self.users[email], primary_email=email)
        for known, user_id in self.users.items():
            if user_id == key:
                return DirectoryUser(id=user_id, primary_email=known)
        return None

    def group_members(self, group: str) -> list[str]:
        if self.group_failure is not None:
            raise self.group_failure
        members = self.groups.get(group.lower())
        if members is None:
            raise WorkspaceError(f"no group {group}", kind="permission")
        return list(members)


@dataclass(frozen=True, slots=True)
class _Held:
    owner: str
    subscription: EventSubscription


class FakeWorkspaceEvents:
    """The Workspace Events API's subscriptions, as the API holds them.

    ``directory``, when given, is checked as Google checks the credential: a user may subscribe
    only to its own ``//cloudidentity.googleapis.com/users/ID``. ``fail[(method, user)]`` is
    raised by that call (``method`` one of create, find, get, renew, reactivate, delete);
    ``before_create`` runs inside ``create`` before it decides (another runner's create lands
    there); ``blocked`` names subscriptions whose suspension cause is not fixed (reactivating them
    fails as Google's does). ``writes`` counts calls that change something at Google.
    """

    def __init__(
        self, clock: Callable[[], datetime], *, directory: FakeDirectory | None = None
    ) -> None:
        self.clock = clock
        self.directory = directory
        self.held: dict[str, _Held] = {}
        self.fail: dict[tuple[str, str], WorkspaceError] = {}
        self.before_create: Callable[[], None] | None = None
        self.blocked: set[str] = set()
        self.writes = 0
        self._ids = itertools.count(1)

    # Test controls

    def suspend(self, name: str, reason: str = "ENDPOINT_PERMISSION_DENIED") -> None:
        held = self.held[name]
        suspended = replace(held.subscription, state="SUSPENDED", suspension_reason=reason)
        self.held[name] = replace(held, subscription=suspended)

    def live(self) -> list[EventSubscription]:
        self._expire()
        return sorted((h.subscription for h in self.held.values()), key=lambda s: s.name)

    def owned_by(self, user: str) -> list[EventSubscription]:
        self._expire()
        return [h.subscription for h in self.held.values() if h.owner == user.lower()]

    # The port

    def create(
        self, *, as_user: str, target: str, event_types: Iterable[str], topic: str
    ) -> EventSubscription:
        self._check("create", as_user)
        if self.before_create is not None:
            hook, self.before_create = self.before_create, None
            hook()
        self._authorised(as_user, target)
        self._expire()
        if any(
            h.owner == as_user.lower() and h.subscription.target_resource == target
            for h in self.held.values()
        ):
            raise SubscriptionExists(target)
        name = f"subscriptions/fake-{next(self._ids)}"
        subscription = EventSubscription(
            name=name,
            target_resource=target,
            event_types=tuple(event_types),
            state="ACTIVE",
            suspension_reason=None,
            expire_time=self.clock() + MAX_TTL,
        )
        self.held[name] = _Held(as_user.lower(), subscription)
        self.writes += 1
        return subscription

    def find(self, *, as_user: str, target: str, event_type: str) -> EventSubscription | None:
        self._check("find", as_user)
        self._expire()
        for held in self.held.values():
            subscription = held.subscription
            if (
                held.owner == as_user.lower()
                and subscription.target_resource == target
                and event_type in subscription.event_types
            ):
                return subscription
        return None

    def get(self, name: str, *, as_user: str) -> EventSubscription | None:
        self._check("get", as_user)
        held = self._owned(name, as_user)
        return None if held is None else held.subscription

    def renew(self, name: str, *, as_user: str) -> EventSubscription:
        self._check("renew", as_user)
        held = self._existing(name, as_user)
        renewed = replace(held.subscription, expire_time=self.clock() + MAX_TTL)
        return self._store(held, renewed)

    def reactivate(self, name: str, *, as_user: str) -> EventSubscription:
        self._check("reactivate", as_user)
        held = self._existing(name, as_user)
        if held.subscription.state != "SUSPENDED":
            raise WorkspaceError(f"{name} is not suspended", kind="permission")
        if name in self.blocked:
            reason = held.subscription.suspension_reason
            raise WorkspaceError(f"the cause ({reason}) is not fixed", kind="permission")
        active: SubscriptionStateName = "ACTIVE"
        return self._store(held, replace(held.subscription, state=active, suspension_reason=None))

    def delete(self, name: str, *, as_user: str) -> None:
        self._check("delete", as_user)
        if self._owned(name, as_user) is not None:
            del self.held[name]
            self.writes += 1

    # Google's rules

    def _check(self, method: str, as_user: str) -> None:
        error = self.fail.get((method, as_user.lower()))
        if error is not None:
            raise error

    def _authorised(self, as_user: str, target: str) -> None:
        if self.directory is None:
            return
        user = self.directory.user(as_user)
        if user is None or user_target(user.id) != target:
            raise WorkspaceError(f"{as_user} may not subscribe to {target}", kind="permission")

    def _expire(self) -> None:
        """After its expire time a subscription is deleted by Google."""
        now = self.clock()
        for name, held in list(self.held.items()):
            expire_time = held.subscription.expire_time
            if expire_time is not None and expire_time <= now:
                del self.held[name]

    def _owned(self, name: str, as_user: str) -> _Held | None:
        self._expire()
        held = self.held.get(name)
        if held is None:
            return None
        if held.owner != as_user.lower():
            raise WorkspaceError(f"{as_user} may not read {name}", kind="permission")
        return held

    def _existing(self, name: str, as_user: str) -> _Held:
        held = self._owned(name, as_user)
        if held is None:
            raise WorkspaceError(f"{name} does not exist", kind="permission")
        return held

    def _store(self, held: _Held, subscription: EventSubscription) -> EventSubscription:
        self.held[subscription.name] = replace(held, subscription=subscription)
        self.writes += 1
        return subscription


class MemoryWorkspaceState:
    """The WorkspaceState port in memory; ``saves`` counts subscription writes."""

    def __init__(self) -> None:
        self.records: dict[str, SubscriptionRecord] = {}
        self.readers: dict[str, str] = {}
        self.events: dict[str, datetime] = {}
        self.saves = 0

    def subscriptions(self) -> list[SubscriptionRecord]:
        return [self.records[email] for email in sorted(self.records)]

    def subscription(self, organizer_email: str) -> SubscriptionRecord | None:
        return self.records.get(organizer_email.lower())

    def subscription_named(self, name: str) -> SubscriptionRecord | None:
        for record in self.subscriptions():
            if record.subscription == name:
                return record
        return None

    def save_subscription(self, record: SubscriptionRecord) -> None:
        self.records[record.organizer_email.lower()] = record
        self.saves += 1

    def delete_subscription(self, organizer_email: str) -> None:
        self.records.pop(organizer_email.lower(), None)

    def space_reader(self, space: str) -> str | None:
        return self.readers.get(space)

    def remember_space_reader(self, space: str, organizer_email: str) -> None:
        self.readers[space] = organizer_email

    def event_handled(self, event_id: str) -> bool:
        return event_id in self.events

    def remember_event(self, event_id: str, *, expire_at: datetime) -> None:
        self.events.setdefault(event_id, expire_at)


class MemoryCalendarState:
    """The CalendarState port in memory: the lease and the generation fence as in Firestore."""

    def __init__(self) -> None:
        self.records: dict[str, ChannelRecord] = {}
        self.syncs: dict[str, CalendarSyncState] = {}

    def channels(self) -> list[ChannelRecord]:
        return sorted(self.records.values(), key=lambda r: (r.calendar_id, r.created_at))

    def channel(self, channel_id: str) -> ChannelRecord | None:
        return self.records.get(channel_id)

    def save_channel(self, record: ChannelRecord) -> None:
        self.records[record.channel_id] = record

    def delete_channel(self, channel_id: str) -> None:
        self.records.pop(channel_id, None)

    def note_notification(self, channel_id: str, at: datetime) -> None:
        if channel_id in self.records:
            self.records[channel_id] = replace(self.records[channel_id], last_notification_at=at)

    def sync_state(self, calendar_id: str) -> CalendarSyncState | None:
        return self.syncs.get(calendar_id)

    def take_sync(
        self, calendar_id: str, *, organizer_email: str, owner: str, until: datetime, now: datetime
    ) -> CalendarSyncState | None:
        current = self.syncs.get(calendar_id) or CalendarSyncState(
            calendar_id=calendar_id, organizer_email=organizer_email
        )
        if current.lease_owner and current.lease_until and current.lease_until > now:
            return None
        taken = replace(current, lease_owner=owner, lease_until=until)
        self.syncs[calendar_id] = taken
        return taken

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
        current = self.syncs.get(calendar_id)
        if current is None or current.lease_owner != owner:
            return False
        stored = current.generation == generation and problem is None
        self.syncs[calendar_id] = replace(
            current,
            sync_token=sync_token if stored else current.sync_token,
            generation=current.generation + 1 if stored else current.generation,
            last_sync_at=now if stored else current.last_sync_at,
            lease_owner=None,
            lease_until=None,
            problem=problem,
        )
        return stored

    def drop_sync(self, calendar_id: str) -> None:
        self.syncs.pop(calendar_id, None)
