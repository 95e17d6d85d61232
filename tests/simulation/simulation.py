"""One seeded schedule: a personal room's classes, their declarations and deliveries, all run
concurrently against the in-memory ports, with crashes, duplicate deliveries and a Reports API
that is slow, failing, partial or empty; the invariants checked at every step and once quiet.

``simulate(seed)`` is a pure function of the seed: a failing seed replays exactly
(``python -m tests.simulation --seed N --trace``).

``simulate(seed, meet=True)`` (``--meet``) adds Google Meet's "conference ended" signals
(docs/rules.md "Meet signals", "Preliminary attendance"): for the declared classes' conferences, the
found one, and one only Meet may announce (Reports shows it soon, late or never; a webhook may
declare part or all of it after its signal), Meet's view of each conference (``tests.simulation
.meet``) is delivered at a round after it ended, sometimes twice at once, again later, and again
after the daily run; a copy may run as one step and be replayed at once (the replay must change
nothing), and once quiet each signal is replayed again (nothing of a meeting with Reports data may
move). The plan comes from a generator of its own, so the schedules without Meet are unchanged.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from functions.backfill import run_backfill_slice
from functions.declarations import accept_meeting_end
from functions.duplicates import dedupe_key
from functions.erasure import erase_participant
from functions.errors import AppError
from functions.model import Declared, meeting_id_for
from functions.participant_keys import erasure_name
from functions.polling import handle_collect_task, poll_meeting
from functions.ports import BackfillSlice, Deps
from functions.reports_events import parse_activity
from functions.schedule import FINAL_STATUSES, Timing
from local.simulate import call_ended
from tests.fakes import MemoryStore
from tests.simulation.invariants import Key, Observer, Times, Violation, erased_everywhere, quiet
from tests.simulation.meet import Delivery, Signal, meet_view, replay_changes_nothing, truth
from tests.simulation.scheduler import Scheduler
from tests.simulation.world import (
    Faults,
    Pending,
    Sighting,
    SimClock,
    SimQueue,
    SimReports,
    SwitchingStore,
)

CODE = "sim-room-abc"
BASE = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
M = timedelta(minutes=1)
TIMING = Timing(
    first_poll_delay_s=60,
    max_poll_interval_s=1200,
    collect_deadline_s=3 * 3600,
    settle_s=120,
    absent_grace_s=600,
)
BEFORE_S, AFTER_S = 900, 900
MAX_ROUNDS = 200
#: Rounds in which the clock walks two minutes at a time (through the unannounced conference),
#: whatever is due; after them it jumps to the next due task.
WALK_ROUNDS = 50
#: Scans of the backfill: two before the unannounced conference, one while it runs, one after.
BACKFILL_ROUNDS = (4, 9, 30, 45)
#: A declaration arrives for part of the unannounced conference (and an operator syncs it).
LATE_ROUND = 35
HEAL_ROUND = 55
FOUND_CONFERENCE = "conf-f"
#: With erasures: who may be erased, and when (while polls run, after they settled, with the
#: found conference, after the late declaration).
ERASABLE = ("amy@s.example", "bea@s.example", "cy@s.example", "di@s.example", "tutor@s.example")
ERASURE_ROUNDS = (0, 1, 2, 3, 4, 6, 10, 20, 36, 50)
ERASURE_KEY = "simulated-erasure-key-0123456789abcdef"
#: With Meet signals: a conference only Meet may announce (nobody declares it, or only part of it
#: and late), where it runs, and a signal's delivery after the daily run (Pub/Sub, hours later).
MEET_CONFERENCE = "conf-m"
MEET_PLACES = {
    "overtime": (95, 135),  # from inside class b's window to well past it
    "between": (118, 140),  # between class b's window and the found conference's
    "late": (175, 195),  # overlapping the found conference's end
}
AFTER_THE_DAILY_RUN = -1


@dataclass
class Result:
    seed: int
    problem: str | None
    steps: int
    trace: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass
class Class:
    external_id: str
    start: datetime
    end: datetime
    conference: str
    expected: tuple[str, ...]


def _sessions(rng: random.Random, klass: Class, people: list[str]) -> list[Sighting]:
    """A few stays (some rejoins, some duplicates) of ``people`` around the class's times."""
    sightings: list[Sighting] = []
    for person in people:
        for part in range(rng.choice([1, 1, 2])):
            join = klass.start + M * rng.randint(-12, 40) + M * 25 * part
            leave = min(join + M * rng.randint(1, 45), klass.end + M * rng.randint(0, 20))
            if leave <= join:
                continue
            activity = call_ended(
                meeting_code=CODE,
                conference_id=klass.conference,
                leave=leave,
                duration_s=int((leave - join).total_seconds()),
                identifier=person,
                endpoint_id=f"{klass.conference}-{person}-{part}",
            )
            # An unannounced conference is scanned while it runs: each stay shows soon after it
            # ends. A declared class is polled after it ends: its stays show around then.
            after = leave if klass.conference == FOUND_CONFERENCE else klass.end
            visible = after + M * rng.randint(0, 12)
            sightings.append(Sighting(activity, leave, "SIMROOMABC", visible))
            if rng.random() < 0.15:
                sightings.append(Sighting(activity, leave, "SIMROOMABC", visible + M))
    return sightings


def _poisoned(klass: Class, *, visible: datetime) -> list[Sighting]:
    """Events next to the good ones that once blocked a meeting (issue 11, defect 6): a
    duration no timedelta holds (unusable: skipped) and a display name holding a lone
    surrogate (a real session: its text repaired)."""
    unusable = call_ended(
        meeting_code=CODE,
        conference_id=klass.conference,
        leave=klass.end,
        duration_s=60,
        identifier="eve@s.example",
        endpoint_id=f"{klass.conference}-eve-poison",
    )
    for parameter in unusable["events"][0]["parameters"]:
        if parameter["name"] == "duration_seconds":
            parameter["intValue"] = "99999999999"
    odd_name = call_ended(
        meeting_code=CODE,
        conference_id=klass.conference,
        leave=klass.start + 30 * M,
        duration_s=600,
        identifier="fay@s.example",
        display_name="Fay \ud800",
        endpoint_id=f"{klass.conference}-fay-0",
    )
    return [
        Sighting(activity, activity_leave, "SIMROOMABC", visible)
        for activity, activity_leave in ((unusable, klass.end), (odd_name, klass.start + 30 * M))
    ]


@dataclass
class Plan:
    """What happens in one schedule, drawn from its seed."""

    classes: list[Class]
    found: Class | None
    sightings: list[Sighting]
    faults: Faults
    crash_chance: float
    duplicate_chance: float
    resend_times: bool
    resend_expected: bool
    manual_sync: bool
    backfill: bool
    #: The round in which Reports loses every event (retention passes), if any.
    lose_round: int | None
    late_declaration: bool


def draw(rng: random.Random) -> Plan:
    first = Class("a", BASE, BASE + 50 * M, "conf-a", ("tutor@s.example", "amy@s.example"))
    classes = [first]
    if rng.random() < 0.6:
        classes.append(Class("b", BASE + 55 * M, BASE + 110 * M, "conf-b", ("bea@s.example",)))
    found = None
    if rng.random() < 0.5:
        found = Class("f", BASE + 150 * M, BASE + 190 * M, FOUND_CONFERENCE, ())
    sightings: list[Sighting] = []
    for klass in [*classes, *([found] if found else [])]:
        people = rng.sample(["amy@s.example", "bea@s.example", "cy@s.example", "di@s.example"], 2)
        sightings += _sessions(rng, klass, ["tutor@s.example", *people])
    if rng.random() < 0.3:
        sightings += _poisoned(first, visible=first.end + M * rng.randint(0, 12))
    return Plan(
        classes=classes,
        found=found,
        sightings=sightings,
        faults=Faults(
            fail=rng.choice([0.0, 0.1, 0.3]),
            empty=rng.choice([0.0, 0.1]),
            partial=rng.choice([0.0, 0.2]),
            slow=rng.choice([0.0, 0.05, 0.15]),
        ),
        crash_chance=rng.choice([0.0, 0.01, 0.03]),
        duplicate_chance=rng.choice([0.0, 0.3]),
        resend_times=rng.random() < 0.3,
        resend_expected=rng.random() < 0.3,
        manual_sync=rng.random() < 0.5,
        backfill=rng.random() < 0.5,
        lose_round=rng.choice([None, None, 6, 12, 36, 52]),
        late_declaration=rng.random() < 0.6,
    )


def _declared(klass: Class, *, start: datetime | None = None) -> Declared:
    return Declared(
        meeting_code=CODE,
        ended_at=klass.end,
        started_at=start or klass.start,
        external_id=klass.external_id,
        expected_participants=klass.expected,
    )


class Redeliver(Exception):
    """An operation that failed as a task fails: the queue delivers it again next round."""


def _redelivered(action: Callable[[], object]) -> Callable[[], None]:
    """A task (a backfill slice) whose failure the queue retries until it succeeds."""

    def run() -> None:
        try:
            action()
        except AppError as error:
            raise Redeliver(str(error)) from error

    return run


def _tolerated(action: Callable[[], object]) -> Callable[[], None]:
    """An operation whose expected failures (busy, contention, conflict) end it quietly."""

    def run() -> None:
        with contextlib.suppress(AppError):
            action()

    return run


@dataclass(frozen=True)
class Erasure:
    """An operator erases ``person`` in round ``round`` (retried until it answers 2xx)."""

    person: str
    round: int

    @property
    def name(self) -> str:
        return erasure_name(self.person, ERASURE_KEY)


def draw_erasure(seed: int) -> Erasure:
    """From its own generator: the schedules without erasures stay exactly what they were."""
    rng = random.Random(seed * 104729 + 3)
    return Erasure(rng.choice(ERASABLE), rng.choice(ERASURE_ROUNDS))


@dataclass
class MeetPlan:
    """What Meet adds to a schedule (``--meet``), drawn from its own generator."""

    #: A conference only Meet may announce, if any; how Reports shows it ("soon" after each
    #: stay, "late" (an hour or two after it ended), or "never"); its sightings in Reports.
    extra: Class | None
    visibility: str
    sightings: list[Sighting]
    #: The extra conference's sessions as they were (whatever Reports shows of them).
    made: list[Sighting]
    #: A webhook for part (or all) of the extra conference, after its signal, and its round.
    declared: Class | None
    declared_round: int
    deliveries: list[Delivery]

    @property
    def signals(self) -> list[Signal]:
        return list({id(d.signal): d.signal for d in self.deliveries}.values())


def _round_at(instant: datetime) -> int:
    """The first round whose clock is at or after ``instant`` (the clock's walk)."""
    start = BASE + 115 * M
    return max(0, -(-(instant - start) // (2 * M)))


def _copies(rng: random.Random) -> tuple[bool, ...]:
    """One delivery, or two at once (Pub/Sub's duplicates); each copy atomic or not."""
    return tuple(rng.random() < 0.35 for _ in range(2 if rng.random() < 0.3 else 1))


def draw_meet(seed: int, plan: Plan) -> MeetPlan:
    """From its own generator: the schedules without Meet stay exactly what they were."""
    rng = random.Random(seed * 15485863 + 7)
    extra: Class | None = None
    visibility = "never"
    sightings: list[Sighting] = []
    made: list[Sighting] = []
    declared: Class | None = None
    declared_round = -1
    if rng.random() < 0.7:
        places = sorted(MEET_PLACES) if len(plan.classes) > 1 else ["between", "late"]
        start, end = MEET_PLACES[rng.choice(places)]
        extra = Class("m", BASE + start * M, BASE + end * M, MEET_CONFERENCE, ())
        people = rng.sample(["amy@s.example", "bea@s.example", "cy@s.example", "di@s.example"], 2)
        made = _sessions(rng, extra, ["tutor@s.example", *people])
        visibility = rng.choice(["soon", "late", "never"])
        if visibility == "soon":
            sightings = [replace(s, visible_from=s.leave + M * rng.randint(0, 12)) for s in made]
        elif visibility == "late":
            later = extra.end + M * rng.randint(60, 150)
            sightings = [replace(s, visible_from=later) for s in made]
    conferences = [k.conference for k in plan.classes]
    conferences += [plan.found.conference] if plan.found else []
    conferences += [extra.conference] if extra else []
    deliveries: list[Delivery] = []
    for conference_id in conferences:
        sessions = truth([*plan.sightings, *made], conference_id)
        if not sessions or rng.random() < (0.05 if conference_id == MEET_CONFERENCE else 0.15):
            continue
        signal = meet_view(rng, conference_id, sessions)
        assert signal.conference.end is not None
        first = min(WALK_ROUNDS, _round_at(signal.conference.end) + rng.randint(0, 6))
        deliveries.append(Delivery(first, signal, _copies(rng)))
        if rng.random() < 0.5:
            again = min(WALK_ROUNDS, first + rng.randint(1, 25))
            deliveries.append(Delivery(again, signal, (rng.random() < 0.5,)))
        if rng.random() < 0.3:
            deliveries.append(Delivery(AFTER_THE_DAILY_RUN, signal, (False,)))
        if conference_id == MEET_CONFERENCE and extra is not None and rng.random() < 0.5:
            declared_round = min(WALK_ROUNDS, first + rng.randint(1, 6))
            if rng.random() < 0.5:
                declared = Class("m", extra.start + 2 * M, extra.end - 2 * M, MEET_CONFERENCE, ())
            else:
                expected = ("tutor@s.example",)
                declared = Class("m", extra.start + 5 * M, extra.start + 10 * M, "", expected)
    return MeetPlan(extra, visibility, sightings, made, declared, declared_round, deliveries)


def sessions_of(sightings: list[Sighting], person: str) -> set[Key]:
    """The session keys of ``person`` among the sightings."""
    keys: set[Key] = set()
    for sighting in sightings:
        sessions, _, _ = parse_activity(dict(sighting.activity))
        for session in sessions:
            if (session.identifier or "").lower() == person:
                keys.add(dedupe_key(session))
    return keys


class World:
    def __init__(
        self,
        seed: int,
        plan: Plan,
        *,
        max_commit_bytes: int,
        erasure: Erasure | None = None,
        meet: MeetPlan | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.plan = plan
        self.erasure = erasure
        self.meet = meet
        self.clock = SimClock(BASE + 115 * M)
        self.scheduler = Scheduler(random.Random(seed * 7919 + 1), crash_chance=plan.crash_chance)
        self.memory = MemoryStore(max_commit_bytes=max_commit_bytes)
        self.queue = SimQueue(self.scheduler, self.clock)
        self.reports = SimReports(self.scheduler, self.clock, random.Random(seed + 17), plan.faults)
        self.reports.sightings = list(plan.sightings) + (meet.sightings if meet else [])
        #: The first round after the daily run (set once it ran).
        self.late_round = -1
        self.deps = Deps(
            store=SwitchingStore(self.memory, self.scheduler),
            queue=self.queue,
            reports=self.reports,
            clock=self.clock,
            timing=TIMING,
            window_before_s=BEFORE_S,
            window_after_s=AFTER_S,
            erasure_key=ERASURE_KEY if erasure else None,
        )
        self.erased_sessions = (
            sessions_of(plan.sightings, erasure.person) if erasure else set[Key]()
        )
        self.observer = Observer(
            self.memory,
            BEFORE_S,
            AFTER_S,
            aliases={erasure.person: erasure.name} if erasure else {},
            forgettable=self.erased_sessions,
        )
        self.scheduler.after_step = self.observer.step
        self.errors: list[str] = []
        #: Operations that crashed: their senders try again in the next round.
        self.resent: list[tuple[str, Callable[[], None]]] = []
        self.rounds = 0
        #: Declarations accepted, with the round they were accepted in.
        self.accepted: list[tuple[int, Declared]] = []

    def declare(self, declared: Declared) -> Callable[[], None]:
        def run() -> None:
            with contextlib.suppress(AppError):
                accept_meeting_end(self.deps, declared)
                self.accepted.append((self.rounds, declared))

        return run

    def last_declared_expected(self) -> dict[str, tuple[str, ...]]:
        """Per declared meeting, the expected participants its last accepted declaration named
        (when the last round that accepted one agrees on them)."""
        by_meeting: dict[str, list[tuple[int, Declared]]] = {}
        for accepted in self.accepted:
            meeting_id = meeting_id_for(external_id=accepted[1].external_id)
            by_meeting.setdefault(meeting_id, []).append(accepted)
        expected: dict[str, tuple[str, ...]] = {}
        for meeting_id, entries in by_meeting.items():
            last = max(number for number, _ in entries)
            named = {d.expected_participants for number, d in entries if number == last}
            if len(named) == 1:
                expected[meeting_id] = named.pop()
        return expected

    def _spawn(self, name: str, body: Callable[[], None]) -> None:
        def guarded() -> None:
            try:
                body()
            except (Violation, AppError, Redeliver):
                raise
            except Exception as error:
                self.errors.append(f"{name}: {type(error).__name__}: {error}")
                raise

        self.scheduler.spawn(name, guarded)

    def _deliver(self, item: Pending, copy: int) -> None:
        def body() -> None:
            try:
                handle_collect_task(self.deps, item.task)
            except AppError:
                self.queue.retry(item, now=self.clock.now)

        worker_name = f"task {item.task.meeting_id[:8]}#{item.task.attempt}/{copy}"
        self.scheduler.spawn(worker_name, body)

    def round(self, operations: list[tuple[str, Callable[[], None]]]) -> None:
        self.rounds += 1
        operations = [*self.resent, *operations]
        self.resent = []
        for name, body in operations:
            self._spawn(name, body)
        delivered: list[Pending] = []
        for item in self.queue.due(self.clock.now):
            duplicate = not item.retries and self.rng.random() < self.plan.duplicate_chance
            copies = 2 if duplicate else 1
            for copy in range(copies):
                delivered.append(item)
                self._deliver(item, copy)
        workers = list(self.scheduler.workers)
        self.scheduler.run()
        for worker in workers:
            if isinstance(worker.error, Violation):
                raise worker.error
            failed = worker.error is not None and not isinstance(worker.error, AppError | Redeliver)
            if failed:
                raise Violation(
                    f"{worker.name} failed: {type(worker.error).__name__}: {worker.error}"
                )
        deliveries = [w for w in workers if w.name.startswith("task ")]
        for worker, item in zip(deliveries, delivered, strict=True):
            if worker.dead:
                self.queue.retry(item, now=self.clock.now)
        for worker, operation in zip(workers, operations, strict=False):
            if worker.dead or isinstance(worker.error, Redeliver):
                self.resent.append(operation)
        if self.errors:
            raise Violation(self.errors[0])

    def pending_links(self) -> None:
        """Every live meeting has a task that will poll it (or heal its chain), once the senders
        of crashed declarations have sent them again and the queue has delivered again what
        crashed (a poll that died after giving sessions to a new found meeting, before its task
        was asked for, heals it when retried)."""
        if self.resent or any(p.retries for p in self.queue.pending):
            return
        waiting = {p.task.meeting_id for p in self.queue.pending}
        for meeting in self.memory.meetings.values():
            live = meeting.status not in FINAL_STATUSES and meeting.next_poll_at is not None
            if live and meeting.meeting_id not in waiting:
                started = "asked for" if meeting.chain_started else "never asked for"
                raise Violation(
                    f"{meeting.meeting_id}: live, but no task will poll it ({meeting.source}, "
                    f"first link {started})"
                    if meeting.attempts == 0
                    else f"{meeting.meeting_id}: live, but no task will poll it"
                )

    def advance(self) -> bool:
        """Move the clock to the next due task; False when nothing is left to deliver."""
        if not self.queue.pending:
            return False
        self.clock.now = max(self.clock.now, min(p.at for p in self.queue.pending))
        return True


def _operations(
    world: World, plan: Plan, round_number: int
) -> list[tuple[str, Callable[[], None]]]:
    deps = world.deps
    ops: list[tuple[str, Callable[[], None]]] = []
    if round_number == 0:
        for klass in plan.classes:
            declared = _declared(klass)
            sends = 2 if world.rng.random() < 0.3 else 1  # the platform may send it twice
            for send in range(sends):
                ops.append((f"webhook {klass.external_id}/{send}", world.declare(declared)))
    if round_number == 2 and plan.resend_times:
        first = plan.classes[0]
        moved = _declared(first, start=first.start + 10 * M)
        ops.append(("resend a new start", world.declare(moved)))
    if round_number == 3 and plan.resend_expected:
        first = plan.classes[0]
        new = replace(_declared(first), expected_participants=("amy@s.example", "cy@s.example"))
        ops.append(("resend new expected", world.declare(new)))
    if round_number in (2, 5) and plan.manual_sync:
        meeting_id = _id_of(world, plan.classes[0].external_id)
        if meeting_id is not None:
            ops.append(
                ("manual sync", _tolerated(lambda: poll_meeting(deps, meeting_id, reason="manual")))
            )
    if round_number in BACKFILL_ROUNDS and plan.backfill:
        part = BackfillSlice(
            since=BASE - 60 * M,
            until=world.clock.now,
            range_since=BASE - 60 * M,
            range_until=world.clock.now,
        )
        ops.append(("backfill", _redelivered(lambda: run_backfill_slice(deps, part))))
    erasure = world.erasure
    if erasure is not None and round_number == erasure.round:
        # Answers 503 when a poll holds a meeting's lease: the operator sends it again.
        erase = _redelivered(lambda: erase_participant(deps, erasure.person, wait=timedelta(0)))
        ops.append((f"erase {erasure.person}", erase))
    if round_number == LATE_ROUND and plan.found is not None and plan.late_declaration:
        # Its window leaves the conference's first and last minutes to the found meeting.
        found = plan.found
        late = Class("late", found.start + 15 * M, found.end - 20 * M, FOUND_CONFERENCE, ())
        ops.append(("webhook late", world.declare(_declared(late))))
        for meeting in list(world.memory.meetings.values()):
            if meeting.is_found:
                sync = _sync(deps, meeting.meeting_id)
                ops.append((f"sync found {meeting.meeting_id[:8]}", sync))
    if world.meet is not None:
        ops += _meet_operations(world, world.meet, round_number)
    return ops


def _meet_operations(
    world: World, meet: MeetPlan, round_number: int
) -> list[tuple[str, Callable[[], None]]]:
    """This round's "conference ended" signals (each copy a delivery of its own; one that
    crashed or answered 5xx is delivered again next round, as Pub/Sub does), and the webhook of
    the extra conference's class."""
    ops: list[tuple[str, Callable[[], None]]] = []
    for number, delivery in enumerate(meet.deliveries):
        late = delivery.round == AFTER_THE_DAILY_RUN and round_number == world.late_round
        if delivery.round != round_number and not late:
            continue
        for copy, atomic in enumerate(delivery.atomic):
            name = f"meet {delivery.signal.label}#{number}/{copy}{' atomic' if atomic else ''}"
            ops.append((name, _signal(world, delivery.signal, atomic=atomic)))
    if meet.declared is not None and round_number == meet.declared_round:
        ops.append(("webhook m", world.declare(_declared(meet.declared))))
    return ops


def _signal(world: World, signal: Signal, *, atomic: bool) -> Callable[[], None]:
    """A delivery of ``signal``: interleaved with everything else at every port call, or (atomic)
    as one step followed at once by its replay, which must change nothing."""

    def deliver() -> None:
        signal.deliver(world.deps, meeting_code=CODE)

    if not atomic:
        return _redelivered(deliver)

    def once_and_again() -> None:
        with world.scheduler.atomically():
            deliver()
            replay_changes_nothing(
                world.memory,
                deliver,
                queue=world.queue,
                what=f"the signal of {signal.label}",
                at=world.clock.now,
            )

    return _redelivered(once_and_again)


def _sync(deps: Deps, meeting_id: str) -> Callable[[], None]:
    return _tolerated(lambda: poll_meeting(deps, meeting_id, reason="manual"))


def _id_of(world: World, external_id: str) -> str | None:

    meeting_id = meeting_id_for(external_id=external_id)
    return meeting_id if meeting_id in world.memory.meetings else None


def _in_reports(world: World) -> dict[Key, Times]:
    """The sessions Reports returns now."""
    found: dict[Key, Times] = {}
    for sighting in world.reports.visible():
        sessions, _, _ = parse_activity(dict(sighting.activity))
        for session in sessions:
            key = (
                (session.conference_id, session.endpoint_id)
                if session.endpoint_id
                else ("", session.event_id)
            )
            found.setdefault(key, (session.join_time, session.leave_time))
    return found


def _universe(world: World, in_reports: dict[Key, Times]) -> dict[Key, Times]:
    """Every session some meeting ever stored, and those Reports returns."""
    return {**in_reports, **world.observer.seen}


def _drain(world: World, plan: Plan, first_round: int) -> int:
    """Rounds until no task is left; returns the next round's number."""
    for round_number in range(first_round, first_round + MAX_ROUNDS):
        if round_number == plan.lose_round:
            for sighting in world.reports.sightings:
                sighting.visible_until = world.clock.now  # Reports' data is gone (retention)
        if round_number == HEAL_ROUND:
            world.reports.faults = Faults()  # the world heals
        world.round(_operations(world, plan, round_number))
        world.pending_links()
        if round_number <= WALK_ROUNDS:
            world.clock.now += 2 * M
        elif not world.advance() and not (world.meet is not None and world.resent):
            # (A signal that crashed or answered 5xx is delivered again even when no task is
            # left; the schedules without Meet keep their old end.)
            return round_number + 1
    raise Violation("the chains never ended")


def _daily_run(world: World) -> None:
    """The scheduled backfill, hours later, in a world that has healed: no faults, no crashes."""
    world.clock.now += 2 * timedelta(hours=1)
    world.reports.faults = Faults()
    world.scheduler.crash_chance = 0.0
    part = BackfillSlice(
        since=BASE - 60 * M,
        until=world.clock.now,
        range_since=BASE - 60 * M,
        range_until=world.clock.now,
    )
    world.round([("daily backfill", lambda: _ignore(run_backfill_slice(world.deps, part)))])


def _ignore(_: object) -> None:
    return None


def _reports_keys(world: World) -> set[Key]:
    """Every session Reports ever had (visible or not by now)."""
    keys: set[Key] = set()
    for sighting in world.reports.sightings:
        sessions, _, _ = parse_activity(dict(sighting.activity))
        keys.update(
            (s.conference_id, s.endpoint_id) if s.endpoint_id else ("", s.event_id)
            for s in sessions
        )
    return keys


def _meet_quiet(world: World, meet: MeetPlan) -> None:
    """Once quiet, with Meet signals: each signal, replayed now, changes nothing of a meeting
    whose attendance comes from Reports (Meet never replaces Reports data, docs/rules.md).

    (Nothing stronger: the world changed since the signal came — neighbours declared, found
    meetings absorbed, Reports data arrived — so a replay now is not a replay of the state it
    was handled in; the replay of that state is checked when a copy is delivered atomically.)"""
    store = world.memory
    # Replayed here, hours later, each signal also asks for a poll of its meetings (the task
    # names were forgotten): that is the queue's, and left out.
    pending, names = list(world.queue.pending), dict(world.queue.names)
    for signal in meet.signals:

        def deliver(signal: Signal = signal) -> None:
            signal.deliver(world.deps, meeting_code=CODE)

        reports = [m for m, r in store.meetings.items() if r.attendance_source == "reports"]
        what = f"the signal of {signal.label}, once quiet"
        replay_changes_nothing(
            store, deliver, queue=None, what=what, at=world.clock.now, of=reports
        )
    world.queue.pending, world.queue.names = pending, names


def simulate(
    seed: int,
    *,
    max_commit_bytes: int = 6000,
    keep_trace: bool = False,
    erasure: bool = False,
    meet: bool = False,
) -> Result:
    """Run schedule ``seed``; the first invariant it breaks, if any. ``erasure``: an operator
    also erases one participant at some round (drawn from the seed). ``meet``: Google Meet's
    "conference ended" signals are delivered too (``MeetPlan``, drawn from the seed)."""
    if erasure and meet:
        raise ValueError("the erasure and Meet schedules are separate modes")
    plan = draw(random.Random(seed))
    erased = draw_erasure(seed) if erasure else None
    meet_plan = draw_meet(seed, plan) if meet else None
    world = World(seed, plan, max_commit_bytes=max_commit_bytes, erasure=erased, meet=meet_plan)
    problem: str | None = None
    try:
        next_round = _drain(world, plan, 0)
        _daily_run(world)
        world.late_round = max(next_round, HEAL_ROUND + 1)
        _drain(world, replace(plan, lose_round=None), world.late_round)
        gone = world.erased_sessions
        in_reports = {k: t for k, t in _in_reports(world).items() if k not in gone}
        expected = world.last_declared_expected()
        if erased is not None:
            expected = {
                meeting_id: tuple(k for k in keys if k != erased.person)
                for meeting_id, keys in expected.items()
            }
            erased_everywhere(world.memory, erased.person)
        quiet(
            world.memory,
            before_s=BEFORE_S,
            after_s=AFTER_S,
            universe={k: t for k, t in _universe(world, in_reports).items() if k not in gone},
            expected=expected,
            # The daily run scanned a healed Reports: each session it returned has a meeting.
            found=in_reports,
            reports_keys=_reports_keys(world),
        )
        if meet_plan is not None:
            _meet_quiet(world, meet_plan)
    except Violation as violation:
        problem = str(violation)
    trace = world.scheduler.trace if keep_trace else []
    return Result(seed, problem, len(world.scheduler.trace), trace)
