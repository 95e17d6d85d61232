"""The simulated world: our in-memory ports behind switch points, a Reports API that is slow,
failing, partial or empty on the seed's say, and a task queue that delivers at least once."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from functions.errors import ReportsError
from functions.intervals import Bounds
from functions.meeting_search import Cursor, MeetingQuery
from functions.model import MeetingRecord
from functions.ports import (
    BackfillSlice,
    CodesRead,
    CollectTask,
    DeclarationFacts,
    DeclarationReads,
    FetchStats,
    MeetingCommit,
    ReportsPage,
    Versioned,
    read_one_ahead,
)
from tests.fakes import MemoryStore
from tests.simulation.scheduler import Scheduler


class SimClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class SwitchingStore:
    """The MemoryStore with a switch point before every call and between a commit's stages."""

    def __init__(self, store: MemoryStore, scheduler: Scheduler) -> None:
        self.inner = store
        self._point = scheduler.point
        store.between_stages = lambda: scheduler.point("store.commit stage")

    def get(self, meeting_id: str) -> MeetingRecord | None:
        self._point("store.get")
        return self.inner.get(meeting_id)

    def read(self, meeting_id: str) -> Versioned | None:
        self._point("store.read")
        return self.inner.read(meeting_id)

    def create(self, meeting: MeetingRecord) -> bool:
        self._point("store.create")
        return self.inner.create(meeting)

    def update(
        self, meeting_id: str, change: Callable[[MeetingRecord], MeetingRecord | None]
    ) -> MeetingRecord | None:
        self._point("store.update")
        return self.inner.update(meeting_id, change)

    def update_versioned(
        self, meeting_id: str, change: Callable[[MeetingRecord], MeetingRecord | None]
    ) -> Versioned | None:
        self._point("store.update")
        return self.inner.update_versioned(meeting_id, change)

    def commit(self, change: MeetingCommit) -> Versioned | None:
        self._point("store.commit")
        return self.inner.commit(change)

    def with_code(self, meeting_code: str, *, ended: Bounds) -> list[MeetingRecord]:
        self._point("store.with_code")
        return self.inner.with_code(meeting_code, ended=ended)

    def with_codes(self, ended: Mapping[str, Bounds]) -> dict[str, list[MeetingRecord]]:
        # The same point as one code's read: a schedule can switch or crash where the codes
        # are read, whichever way they are asked for.
        self._point("store.with_code")
        return self.inner.with_codes(ended)

    def with_codes_ahead(self, groups: Iterable[Mapping[str, Bounds]]) -> CodesRead:
        # Each read at a switch point of its own, made before the group before is handed out:
        # a schedule can run other writers between a group's read and its reconciling.
        return read_one_ahead(self.with_codes, groups)

    def named(
        self, *, calendar_event_id: str | None = None, alias: str | None = None
    ) -> list[MeetingRecord]:
        # No switch point: the simulated worlds declare no Calendar event ids or aliases, so this
        # lookup (in every declaration) races nothing here, and a point would move every schedule.
        return self.inner.named(calendar_event_id=calendar_event_id, alias=alias)

    def ended_between(self, start: datetime, end: datetime) -> list[MeetingRecord]:
        self._point("store.ended_between")
        return self.inner.ended_between(start, end)

    def overdue(self, before: datetime) -> list[MeetingRecord]:
        self._point("store.overdue")
        return self.inner.overdue(before)

    def participants(self, meeting_id: str) -> list[dict[str, Any]]:
        self._point("store.participants")
        return self.inner.participants(meeting_id)

    def revisions(self, meeting_id: str) -> list[dict[str, Any]]:
        self._point("store.revisions")
        return self.inner.revisions(meeting_id)

    def search(
        self, query: MeetingQuery, *, limit: int, after: Cursor | None
    ) -> list[MeetingRecord]:
        self._point("store.search")
        return self.inner.search(query, limit=limit, after=after)

    def any_participant_not_mirroring(self, meeting_id: str, meeting_status: str) -> bool:
        self._point("store.any_participant_not_mirroring")
        return self.inner.any_participant_not_mirroring(meeting_id, meeting_status)

    def delivery(self, webhook_id: str) -> str | None:
        self._point("store.delivery")
        return self.inner.delivery(webhook_id)

    def declaration_reads(self, reads: DeclarationReads) -> DeclarationFacts:
        # One point: the adapter answers it in one round trip.
        self._point("store.declaration_reads")
        return self.inner.declaration_reads(reads)

    def erased_among(self, names: Sequence[str]) -> frozenset[str]:
        # No switch point, as erased() (below).
        return self.inner.erased_among(names)

    def remember_delivery(self, *, webhook_id: str, meeting_id: str, expire_at: datetime) -> None:
        self._point("store.remember_delivery")
        self.inner.remember_delivery(
            webhook_id=webhook_id, meeting_id=meeting_id, expire_at=expire_at
        )

    def erased(self) -> frozenset[str]:
        # No switch point: the simulated worlds record no erasures, and a point in every poll
        # would move every schedule (and the seeds that find the mutants).
        return self.inner.erased()

    def record_erasure(self, name: str, *, at: datetime) -> None:
        self._point("store.record_erasure")
        self.inner.record_erasure(name, at=at)

    def meetings_naming(self, participant_key: str) -> list[str]:
        self._point("store.meetings_naming")
        return self.inner.meetings_naming(participant_key)

    def rename_in_revisions(self, meeting_id: str, participant_key: str, name: str) -> int:
        self._point("store.rename_in_revisions")
        return self.inner.rename_in_revisions(meeting_id, participant_key, name)

    def delete_meeting(self, meeting_id: str) -> None:
        self._point("store.delete_meeting")
        self.inner.delete_meeting(meeting_id)


@dataclass
class Pending:
    task: CollectTask
    name: str
    at: datetime
    retries: int = 0


#: How long Cloud Tasks refuses a name again after its task ran or was created.
NAME_MEMORY = timedelta(hours=1)


@dataclass
class SimQueue:
    """Named tasks (a name is refused for an hour), delivered by the simulation at their time."""

    scheduler: Scheduler
    clock: SimClock
    pending: list[Pending] = field(default_factory=list)
    names: dict[str, datetime] = field(default_factory=dict)

    def _take(self, task_id: str) -> bool:
        taken = self.names.get(task_id)
        if taken is not None and (
            self.clock.now - taken < NAME_MEMORY or any(p.name == task_id for p in self.pending)
        ):
            return False
        self.names[task_id] = self.clock.now
        return True

    def enqueue(self, task: CollectTask, *, task_id: str, at: datetime) -> bool:
        self.scheduler.point("queue.enqueue")
        if not self._take(task_id):
            return False
        self.pending.append(Pending(task, task_id, at))
        return True

    def enqueue_backfill_slice(self, part: BackfillSlice, *, task_id: str) -> bool:
        self.scheduler.point("queue.enqueue_backfill_slice")
        return self._take(task_id)

    def enqueue_calendar_sync(self, calendar_id: str, *, task_id: str) -> bool:
        # The simulated worlds watch no calendar; named like every task, never delivered here.
        self.scheduler.point("queue.enqueue_calendar_sync")
        return self._take(task_id)

    def retry(self, item: Pending, *, now: datetime) -> None:
        """The queue's own retry of a delivery that did not answer 2xx (or never answered):
        one task, backing off from 20 s to 5 min (a duplicate delivery failing too adds none)."""
        if any(p.name == item.name for p in self.pending):
            return
        delay = min(timedelta(seconds=20) * 2**item.retries, timedelta(minutes=5))
        self.pending.append(Pending(item.task, item.name, now + delay, item.retries + 1))

    def due(self, now: datetime) -> list[Pending]:
        ready = [p for p in self.pending if p.at <= now]
        self.pending = [p for p in self.pending if p.at > now]
        return ready


@dataclass
class Sighting:
    """One activity of the fake Reports API, visible in ``[visible_from, visible_until)``."""

    activity: Mapping[str, Any]
    leave: datetime
    code: str
    visible_from: datetime
    visible_until: datetime | None = None


@dataclass
class Faults:
    fail: float = 0.0
    empty: float = 0.0
    partial: float = 0.0
    slow: float = 0.0
    slow_by: timedelta = timedelta(minutes=6)


class SimReports:
    """``call_ended`` of the activities visible now, or a failure, an empty or partial answer,
    or a slow one (the clock moves on meanwhile), as the seed says."""

    def __init__(
        self, scheduler: Scheduler, clock: SimClock, rng: random.Random, faults: Faults
    ) -> None:
        self.scheduler = scheduler
        self.clock = clock
        self.rng = rng
        self.faults = faults
        self.sightings: list[Sighting] = []
        self.calls = 0

    def visible(self) -> list[Sighting]:
        now = self.clock.now
        return [
            s
            for s in self.sightings
            if s.visible_from <= now and (s.visible_until is None or now < s.visible_until)
        ]

    def call_ended(
        self, *, meeting_code: str | None, start: datetime, end: datetime | None = None
    ) -> tuple[list[Mapping[str, Any]], FetchStats]:
        self.scheduler.point("reports.call_ended")
        self.calls += 1
        roll = self.rng.random()
        faults = self.faults
        if roll < faults.fail:
            kind = self.rng.choice(["transient", "quota", "permission"])
            raise ReportsError(f"simulated Reports failure ({kind})", kind=kind)  # type: ignore[arg-type]
        if roll < faults.fail + faults.slow:
            self.clock.now += faults.slow_by
            self.scheduler.point("reports.call_ended slow page")
        items = [
            s.activity
            for s in self.visible()
            if (meeting_code is None or s.code == meeting_code)
            and start <= s.leave
            and (end is None or s.leave <= end)
        ]
        roll = self.rng.random()
        if roll < faults.empty:
            items = []
        elif roll < faults.empty + faults.partial:
            items = [item for item in items if self.rng.random() < 0.5]
        pages = max(1, -(-len(items) // 1000))
        return items, FetchStats(pages=pages, requests=pages, activities=len(items))

    def call_ended_pages(
        self, *, meeting_code: str | None, start: datetime, end: datetime | None = None
    ) -> Iterator[ReportsPage]:
        items, _ = self.call_ended(meeting_code=meeting_code, start=start, end=end)
        yield ReportsPage(activities=items)
