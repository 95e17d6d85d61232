"""The ports the use cases talk to, and :class:`Deps`, the bundle they are given.

Adapters (``functions/adapters/``) implement the ports; unit tests use the small fakes in
``tests/fakes.py``. No Google type crosses these interfaces: records, plain dicts of Reports
activities and aware datetimes only.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, Protocol

from functions.calendar_records import (
    CalendarPage,
    CalendarSyncState,
    ChannelRecord,
    OpenedChannel,
)
from functions.intervals import Bounds
from functions.limits import WINDOW_AFTER_S, WINDOW_BEFORE_S
from functions.meet_records import (
    Conference,
    DirectoryUser,
    EventSubscription,
    MeetAttendee,
    MeetSpace,
    SubscriptionRecord,
)
from functions.meeting_search import Cursor, MeetingQuery
from functions.model import (
    IpMode,
    LocationMode,
    MeetingRecord,
    ParticipantRecord,
    RevisionRecord,
)
from functions.schedule import Timing
from functions.selection import MeetingSpec, neighbourhood, neighbourhood_of_time

Clock = Callable[[], datetime]
CollectReason = Literal["poll", "neighbour", "backfill", "manual", "restart", "erasure", "meet"]


@dataclass(frozen=True, slots=True)
class CollectTask:
    """What a collect task carries: which meeting, which link of its chain, and why."""

    meeting_id: str
    attempt: int
    reason: CollectReason = "poll"


@dataclass(frozen=True, slots=True, kw_only=True)
class BackfillSlice:
    """One part of a fanned-out backfill: its own Reports range, and the run's whole range."""

    since: datetime
    until: datetime
    range_since: datetime
    range_until: datetime


@dataclass(frozen=True, slots=True)
class ReportsPage:
    activities: Sequence[Mapping[str, Any]]
    requests: int = 1


@dataclass(frozen=True, slots=True)
class FetchStats:
    pages: int
    requests: int
    activities: int


class ReportsSource(Protocol):
    def call_ended(
        self, *, meeting_code: str | None, start: datetime, end: datetime | None = None
    ) -> tuple[list[Mapping[str, Any]], FetchStats]:
        """Every ``call_ended`` activity (all pages) for the code (API form); ReportsError."""
        ...

    def call_ended_pages(
        self, *, meeting_code: str | None, start: datetime, end: datetime | None = None
    ) -> Iterator[ReportsPage]:
        """The same, one page at a time (``requests`` counts the page's tries)."""
        ...


class TaskQueue(Protocol):
    def enqueue(self, task: CollectTask, *, task_id: str, at: datetime) -> bool:
        """Create the named task; False when a task of that name exists or ran recently."""
        ...

    def enqueue_backfill_slice(self, part: BackfillSlice, *, task_id: str) -> bool:
        """A task for the backfill function to scan one slice (due now); False if it exists."""
        ...

    def enqueue_calendar_sync(self, calendar_id: str, *, task_id: str) -> bool:
        """A task for the backfill function to sync one calendar's changes (due now)."""
        ...


#: A store's token of one state of a meeting document (Firestore: its update time). Opaque.
Version = object


@dataclass(frozen=True, slots=True)
class Versioned:
    """A meeting as stored, with the version a fenced commit must find unchanged."""

    record: MeetingRecord
    version: Version


@dataclass(frozen=True, slots=True, kw_only=True)
class MeetingCommit:
    """Everything one change of a meeting writes, visible together or not at all.

    ``expected`` fences it: the commit happens only if the meeting document is still at that
    version. ``status_updates`` are participant documents that keep their content but mirror the
    meeting's new status. ``functions.commits`` says how a change too large for one request is
    written in stages.
    """

    meeting: MeetingRecord
    expected: Version
    upserts: Sequence[ParticipantRecord] = ()
    deletes: Sequence[str] = ()
    status_updates: Sequence[str] = ()
    revision: RevisionRecord | None = None
    #: Documents naming the staged change the meeting landed before
    #: (``functions.model.carrying_landed_token``): if this change is written in stages, their
    #: token is cleared before it lands, so that they stay counted once it names its own.
    settle: Sequence[str] = ()
    #: Names this change's documents if it is written in stages (unique per attempt).
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    #: The meeting this change creates (a new declaration): created by the same request when
    #: the change fits one (``expected`` is then unused), else on its own first. The commit
    #: answers None when the meeting exists already.
    creates: MeetingRecord | None = None
    #: A webhook-id to remember, with the request that lands the change (docs/api.md "ingest").
    delivery: Delivery | None = None
    #: Erasure names (keyed hashes) none of which may be recorded when the change lands: the
    #: request that lands it fails whole, answering None, if one is. A declaration's estimates
    #: need no erasure check after their commit with it.
    unerased: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class Delivery:
    """A webhook-id accepted for a meeting; forgotten after ``expire_at`` (Firestore TTL)."""

    webhook_id: str
    meeting_id: str
    expire_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class DeclarationReads:
    """What a declaration asks for before it writes, all read at once (one round trip)."""

    meeting_ids: Sequence[str]
    webhook_id: str | None = None
    #: Erasure names (keyed hashes) of the expected participants.
    erasure_names: Sequence[str] = ()
    #: With no ``ERASURE_KEY``: whether any erasure exists (then one is required).
    any_erasure: bool = False
    meeting_code: str
    neighbours: Bounds
    alias: str | None = None
    calendar_event_id: str | None = None


#: The fields of a declaration's neighbours that it reads (``neighbours.nobody_to_tell``), with
#: those every record needs: a store may give :attr:`DeclarationFacts.neighbours` with only
#: these, the rest at their defaults. A property test holds the rule to them.
NEIGHBOUR_FIELDS: Final = (
    "meeting_id",
    "source",
    "meeting_code",
    "ended_at",
    "started_at",
    "external_id",
    "window_start",
    "window_end",
    "deadline",
    "status",
    "attendance_source",
    "sessions_start",
    "sessions_end",
)


@dataclass(frozen=True, slots=True)
class DeclarationFacts:
    """The answers to :class:`DeclarationReads`."""

    meetings: Mapping[str, Versioned]
    delivery: str | None
    erased: frozenset[str]
    any_erasure: bool
    #: Judged only, never written back: they may hold only :data:`NEIGHBOUR_FIELDS`.
    neighbours: Sequence[MeetingRecord]
    aliased: Sequence[MeetingRecord]
    by_event: Sequence[MeetingRecord]


#: The answers of :meth:`MeetingStore.with_codes_ahead`, one per group (closing it stops the reads).
CodesRead = Generator[dict[str, list[MeetingRecord]], None, None]


class MeetingStore(Protocol):
    def get(self, meeting_id: str) -> MeetingRecord | None: ...

    def read(self, meeting_id: str) -> Versioned | None: ...

    def create(self, meeting: MeetingRecord) -> bool:
        """Insert if absent; False when a meeting with that id exists."""
        ...

    def update(
        self,
        meeting_id: str,
        change: Callable[[MeetingRecord], MeetingRecord | None],
    ) -> MeetingRecord | None:
        """Atomic read-modify-write of the meeting document alone, re-decided on fresh data if it
        changed meanwhile (bookkeeping: leases, chain marks, a neighbour's span bump).

        ``change`` returns the new record, or None to leave the stored one as it is. Returns what
        is stored afterwards (None if no meeting); raises StoreContention after repeated losses."""
        ...

    def update_versioned(
        self,
        meeting_id: str,
        change: Callable[[MeetingRecord], MeetingRecord | None],
    ) -> Versioned | None:
        """:meth:`update`, returning the version of what is stored afterwards."""
        ...

    def commit(self, change: MeetingCommit) -> Versioned | None:
        """Write ``change`` (meeting document last); None, with nothing visible changed, when the
        meeting is no longer at ``change.expected``."""
        ...

    def with_code(self, meeting_code: str, *, ended: Bounds) -> list[MeetingRecord]:
        """The meetings of the code whose ``ended_at`` lies in ``ended`` (both ends included;
        both given: a query over a code's whole history is what docs/rules.md "Bounded" rules
        out)."""
        ...

    def with_codes(self, ended: Mapping[str, Bounds]) -> dict[str, list[MeetingRecord]]:
        """:meth:`with_code` of each code with its own bounds (every code given is a key of the
        answer), in fewer round trips than one per code."""
        ...

    def with_codes_ahead(self, groups: Iterable[Mapping[str, Bounds]]) -> CodesRead:
        """:meth:`with_codes` of each group in turn, the next group's read made while the caller
        works on this one's answer. So an answer may be as old as the hand-out of the one
        before it: the caller's own writes meanwhile must not concern the later groups, and any
        other writer meanwhile is one more concurrent writer, which every commit's condition
        already covers."""
        ...

    def named(
        self, *, calendar_event_id: str | None = None, alias: str | None = None
    ) -> list[MeetingRecord]:
        """The meetings declared with that ``calendar_event_id``, or naming ``alias`` among their
        aliases (docs/rules.md "Identity")."""
        ...

    def ended_between(self, start: datetime, end: datetime) -> list[MeetingRecord]:
        """Meetings whose ``ended_at`` is in ``[start, end)``."""
        ...

    def search(
        self, query: MeetingQuery, *, limit: int, after: Cursor | None
    ) -> list[MeetingRecord]:
        """The first ``limit`` meetings matching ``query`` strictly after ``after``, newest
        first by ``ended_at`` then meeting id (``functions.meeting_search`` has the rules; ask
        for one more than a page to know whether another follows)."""
        ...

    def overdue(self, before: datetime) -> list[MeetingRecord]:
        """Meetings still scheduled or collecting whose ``next_poll_at`` is before ``before``."""
        ...

    def participants(self, meeting_id: str) -> list[dict[str, Any]]: ...

    def revisions(self, meeting_id: str) -> list[dict[str, Any]]:
        """The meeting's revision records (``RevisionRecord.to_document``), oldest first; empty
        for a meeting without any (or none at all)."""
        ...

    def any_participant_not_mirroring(self, meeting_id: str, meeting_status: str) -> bool:
        """Whether a participant document's ``meeting_status`` is not ``meeting_status``: a
        mirror that lags, or a document of a staged change (``staged``). One cheap query."""
        ...

    def delivery(self, webhook_id: str) -> str | None:
        """The meeting id a webhook-id was accepted for, if it was seen before."""
        ...

    def declaration_reads(self, reads: DeclarationReads) -> DeclarationFacts:
        """Everything a declaration reads, in one round trip: the meeting documents by id, the
        delivery record, the erasures among the expected, the code's meetings ending within
        ``reads.neighbours`` and those naming the alias or the Calendar event id."""
        ...

    def erased_among(self, names: Sequence[str]) -> frozenset[str]:
        """Which of these erasure names are recorded (one batched read)."""
        ...

    def remember_delivery(
        self, *, webhook_id: str, meeting_id: str, expire_at: datetime
    ) -> None: ...

    # Privacy (docs/rules.md): erasures and retention.

    def erased(self) -> frozenset[str]:
        """The names (keyed hashes) of every erased participant."""
        ...

    def record_erasure(self, name: str, *, at: datetime) -> None:
        """Remember an erasure for good (``erasures/{name}``, never expiring); idempotent."""
        ...

    def meetings_naming(self, participant_key: str) -> list[str]:
        """The meetings with a participant document of ``participant_key``, or naming it as
        expected or missing."""
        ...

    def rename_in_revisions(self, meeting_id: str, participant_key: str, name: str) -> int:
        """Replace ``participant_key`` by ``name`` in the meeting's revision records; how many
        records changed."""
        ...

    def delete_meeting(self, meeting_id: str) -> None:
        """Delete the meeting and everything under it (retention); idempotent."""
        ...


def read_one_ahead(
    read: Callable[[Mapping[str, Bounds]], dict[str, list[MeetingRecord]]],
    groups: Iterable[Mapping[str, Bounds]],
) -> CodesRead:
    """:meth:`MeetingStore.with_codes_ahead` in one thread: each group is read before the one
    before it is handed out, the oldest answer a store reading ahead may give."""
    pending: dict[str, list[MeetingRecord]] | None = None
    for group in groups:
        answer = read(group)
        if pending is not None:
            yield pending
        pending = answer
    if pending is not None:
        yield pending


class MeetApi(Protocol):
    """Meet REST API v2, read as ``as_user`` (domain-wide delegation: the organizer).

    A record the user may not read (403 without a set-up reason) or that does not exist (404)
    answers None; set-up problems and failures after retries raise WorkspaceError."""

    def conference(self, name: str, *, as_user: str) -> Conference | None:
        """``conferenceRecords.get`` of ``conferenceRecords/ID``."""
        ...

    def space(self, name: str, *, as_user: str) -> MeetSpace | None:
        """``spaces.get`` of ``spaces/ID`` (or a meeting code)."""
        ...

    def attendees(self, conference: str, *, as_user: str) -> list[MeetAttendee]:
        """Every participant of the conference (all pages) with all its sessions."""
        ...


class Directory(Protocol):
    """Admin SDK Directory API, read as the Reports admin (``REPORTS_ADMIN_SUBJECT``)."""

    def user(self, key: str) -> DirectoryUser | None:
        """``users.get`` by id or email; None when the directory has no such user (404)."""
        ...

    def group_members(self, group: str) -> list[str]:
        """The member emails of a group (all pages; members that are users only)."""
        ...


class WorkspaceEvents(Protocol):
    """Workspace Events API v1 subscriptions, each call impersonating ``as_user`` (the
    organizer who owns the subscription). Long-running operations are waited for."""

    def create(
        self, *, as_user: str, target: str, event_types: Sequence[str], topic: str
    ) -> EventSubscription:
        """``subscriptions.create`` (maximum ttl); SubscriptionExists on ``ALREADY_EXISTS``."""
        ...

    def find(self, *, as_user: str, target: str, event_type: str) -> EventSubscription | None:
        """The subscription on ``target`` for ``event_type`` (``subscriptions.list``)."""
        ...

    def get(self, name: str, *, as_user: str) -> EventSubscription | None:
        """None when it no longer exists."""
        ...

    def renew(self, name: str, *, as_user: str) -> EventSubscription:
        """``patch`` with ``updateMask=ttl`` to the maximum."""
        ...

    def reactivate(self, name: str, *, as_user: str) -> EventSubscription: ...

    def delete(self, name: str, *, as_user: str) -> None:
        """Idempotent (``allowMissing``)."""
        ...


class CalendarApi(Protocol):
    """Google Calendar API v3, each call impersonating ``as_user`` (the organizer) with
    ``calendar.events.readonly``. Events come back as Google's ``Event`` JSON (single instances:
    ``singleEvents=true``, deleted ones included)."""

    def events_page(
        self,
        calendar_id: str,
        *,
        as_user: str,
        sync_token: str | None = None,
        time_min: datetime | None = None,
        time_max: datetime | None = None,
        page_token: str | None = None,
    ) -> CalendarPage:
        """One page of ``events.list``; SyncTokenExpired when Google answers 410."""
        ...

    def watch(
        self,
        calendar_id: str,
        *,
        as_user: str,
        channel_id: str,
        token: str,
        address: str,
        ttl_s: int,
    ) -> OpenedChannel:
        """``events.watch``: open a push channel to ``address``."""
        ...

    def stop(self, *, as_user: str, channel_id: str, resource_id: str) -> None:
        """``channels.stop``; a channel already gone is not an error."""
        ...


class CalendarState(Protocol):
    """What the Calendar side remembers in Firestore: the open push channels and each
    calendar's sync token, with the lease that keeps two syncs of one calendar apart."""

    def channels(self) -> list[ChannelRecord]: ...

    def channel(self, channel_id: str) -> ChannelRecord | None: ...

    def save_channel(self, record: ChannelRecord) -> None: ...

    def delete_channel(self, channel_id: str) -> None: ...

    def note_notification(self, channel_id: str, at: datetime) -> None:
        """``last_notification_at`` of the channel (a single-field update)."""
        ...

    def sync_state(self, calendar_id: str) -> CalendarSyncState | None: ...

    def take_sync(
        self, calendar_id: str, *, organizer_email: str, owner: str, until: datetime, now: datetime
    ) -> CalendarSyncState | None:
        """Take the calendar's sync lease (creating its state); None when another sync holds
        it. Atomic."""
        ...

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
        """Store the new sync token and release the lease, only if ``owner`` still holds it and
        the generation is still ``generation`` (then it grows by one); whether it was stored."""
        ...

    def drop_sync(self, calendar_id: str) -> None: ...


class WorkspaceState(Protocol):
    """What the Meet side remembers in Firestore: each organizer's subscription, which organizer
    reads which Meet space, and which CloudEvents were handled (by ``ce-id``, with a TTL)."""

    def subscriptions(self) -> list[SubscriptionRecord]: ...

    def subscription(self, organizer_email: str) -> SubscriptionRecord | None: ...

    def subscription_named(self, name: str) -> SubscriptionRecord | None:
        """The record whose ``subscription`` is ``name`` (``subscriptions/ID``)."""
        ...

    def save_subscription(self, record: SubscriptionRecord) -> None: ...

    def delete_subscription(self, organizer_email: str) -> None: ...

    def space_reader(self, space: str) -> str | None:
        """The organizer who last read ``space`` (``spaces/ID``) successfully."""
        ...

    def remember_space_reader(self, space: str, organizer_email: str) -> None: ...

    def event_handled(self, event_id: str) -> bool:
        """Whether the CloudEvent ``ce-id`` was handled already."""
        ...

    def remember_event(self, event_id: str, *, expire_at: datetime) -> None:
        """Record ``ce-id`` as handled (the record expires at ``expire_at``); idempotent."""
        ...


class IdTokenVerifier(Protocol):
    def verify(
        self, *, authorization: str | None, audience: str, allowed_emails: Collection[str]
    ) -> Mapping[str, Any]:
        """The claims of a Google-signed ID token in an ``Authorization: Bearer`` header.

        Unauthorized (401) when it proves nothing, Forbidden (403) for another identity,
        Unavailable (503) when the signing certificates cannot be fetched."""
        ...


@dataclass(frozen=True, slots=True)
class Deps:
    """What the use cases are given: the ports, the clock and the settings they apply."""

    store: MeetingStore
    queue: TaskQueue
    reports: ReportsSource
    clock: Clock
    timing: Timing = field(default_factory=Timing)
    window_before_s: int = WINDOW_BEFORE_S
    window_after_s: int = WINDOW_AFTER_S
    ip_mode: IpMode = "full"
    location_mode: LocationMode = "full"
    #: The key of the erasure hashes (docs/rules.md Privacy); None only where nothing is written.
    erasure_key: str | None = None
    retention_days: int | None = None
    #: The Meet side (docs/rules.md "Meet signals", §4.3); None where a function does not use it.
    meet: MeetApi | None = None
    directory: Directory | None = None
    events: WorkspaceEvents | None = None
    workspace: WorkspaceState | None = None
    calendar: CalendarApi | None = None
    calendars: CalendarState | None = None

    def spec(self, meeting: MeetingRecord) -> MeetingSpec:
        """The meeting as the selection rules see it, with this deployment's windows."""
        return meeting.spec(
            window_before_s=self.window_before_s, window_after_s=self.window_after_s
        )

    def neighbours_of(self, meeting: MeetingRecord, *more: MeetingRecord) -> Bounds:
        """The ``ended_at`` range holding every meeting whose share can change with any of
        ``meetings`` (a meeting, and the times its neighbours were told of): what
        :meth:`MeetingStore.with_code` is asked for (docs/rules.md "Bounded")."""
        bounds = neighbourhood(self.spec(meeting))
        for other in more:
            bounds = bounds.joined(neighbourhood(self.spec(other)))
        return bounds

    def around(self, start: datetime, end: datetime) -> Bounds:
        """The ``ended_at`` range of the meetings that matter to sessions between ``start``
        and ``end`` (a conference, a backfill's slice)."""
        return neighbourhood_of_time(
            start, end, window_before_s=self.window_before_s, window_after_s=self.window_after_s
        )
