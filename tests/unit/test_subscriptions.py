"""The organizers' Workspace Events subscriptions (functions.subscriptions): the daily run, the
lifecycle events and the ``subscriptions`` command, over the in-memory fakes of
tests/workspace_fakes.py (which hold Google's rules: ALREADY_EXISTS per user and target, 7-day
expiry, suspension)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.cli import cli
from functions.config import READS
from functions.errors import ConfigError, WorkspaceError
from functions.meet_records import (
    SUBSCRIBED_EVENT_TYPES,
    SUBSCRIPTION_EXPIRATION_REMINDER,
    SUBSCRIPTION_EXPIRED,
    SUBSCRIPTION_SUSPENDED,
    Problem,
    SubscriptionRecord,
    user_target,
)
from functions.ports import Directory, WorkspaceEvents, WorkspaceState
from functions.subscriptions import (
    NOT_A_USER,
    SUSPENDED,
    EnsureReport,
    ensure_subscriptions,
    expand_organizers,
    human_duration,
    note_event,
    on_lifecycle,
    render_table,
    subscription_rows,
)
from tests.fakes import ManualClock
from tests.workspace_fakes import (
    MAX_TTL,
    FakeDirectory,
    FakeWorkspaceEvents,
    MemoryCalendarState,
    MemoryWorkspaceState,
)

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
TOPIC = "projects/attendance-test/topics/workspace-events"
A, B, C = "a@school.example", "b@school.example", "c@school.example"
IDS = {A: "111", B: "222", C: "333"}
H = timedelta(hours=1)


@dataclass
class World:
    clock: ManualClock = field(default_factory=lambda: ManualClock(T0))
    directory: FakeDirectory = field(default_factory=lambda: FakeDirectory(IDS))
    state: MemoryWorkspaceState = field(default_factory=MemoryWorkspaceState)
    events: FakeWorkspaceEvents = field(init=False)
    forgotten: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.events = FakeWorkspaceEvents(self.clock, directory=self.directory)

    def ensure(self, *organizers: str) -> EnsureReport:
        return ensure_subscriptions(
            organizers=organizers,
            events=self.events,
            directory=self.directory,
            state=self.state,
            topic=TOPIC,
            clock=self.clock,
        )

    def lifecycle(self, event_type: str, name: str) -> str:
        return on_lifecycle(
            event_type=event_type,
            subscription_name=name,
            events=self.events,
            state=self.state,
            directory=self.directory,
            topic=TOPIC,
            clock=self.clock,
        )

    def advance(self, delta: timedelta) -> None:
        self.clock.now += delta

    def record(self, email: str) -> SubscriptionRecord:
        record = self.state.subscription(email)
        assert record is not None, email
        return record

    def name(self, email: str) -> str:
        name = self.record(email).subscription
        assert name is not None
        return name


@pytest.fixture
def world() -> World:
    return World()


def settled(records: list[SubscriptionRecord]) -> list[SubscriptionRecord]:
    """Records without their bookkeeping time, to compare outcomes."""
    return [replace(record, updated_at=None) for record in records]


def test_the_fakes_implement_the_ports(world: World) -> None:
    events: WorkspaceEvents = world.events
    directory: Directory = world.directory
    state: WorkspaceState = world.state
    names = {type(port).__name__ for port in (events, directory, state)}
    assert names == {"FakeWorkspaceEvents", "FakeDirectory", "MemoryWorkspaceState"}


# ------------------------------------------------------------------------------------------------
# expand_organizers


@pytest.mark.parametrize(
    ("organizers", "group", "members", "expected"),
    [
        ((A, B), None, [], (A, B)),
        ((B, A, B), None, [], (A, B)),
        ((" A@School.Example ", ""), None, [], (A,)),
        ((), "staff@school.example", [C, "B@school.example"], (B, C)),
        ((A,), "staff@school.example", [A.upper(), C], (A, C)),
        ((), "staff@school.example", [], ()),
    ],
)
def test_organizers_are_the_setting_plus_the_group(
    organizers: tuple[str, ...], group: str | None, members: list[str], expected: tuple[str, ...]
) -> None:
    directory = FakeDirectory(IDS, {"staff@school.example": members})
    assert expand_organizers(organizers, group, directory) == expected


def test_a_group_needs_the_directory() -> None:
    with pytest.raises(ConfigError, match="ORGANIZER_GROUP"):
        expand_organizers([A], "staff@school.example", None)
    assert expand_organizers([A], None, None) == (A,)


def test_a_group_that_cannot_be_read_fails_rather_than_shrinking_the_list() -> None:
    directory = FakeDirectory(IDS, {"staff@school.example": [B]})
    directory.group_failure = WorkspaceError("Directory down", kind="transient")
    with pytest.raises(WorkspaceError):
        expand_organizers([A], "staff@school.example", directory)


# ------------------------------------------------------------------------------------------------
# ensure_subscriptions


def test_first_run_creates_one_subscription_per_organizer(world: World) -> None:
    report = world.ensure(A, B)
    assert report == EnsureReport(created=2)
    for email in (A, B):
        record = world.record(email)
        (held,) = world.events.owned_by(email)
        assert held.name == record.subscription
        assert held.target_resource == user_target(IDS[email])
        assert held.event_types == SUBSCRIBED_EVENT_TYPES
        assert record == SubscriptionRecord(
            organizer_email=email,
            user_id=IDS[email],
            subscription=held.name,
            state="ACTIVE",
            expire_time=T0 + MAX_TTL,
            updated_at=T0,
        )


def test_a_second_run_with_nothing_changed_changes_nothing(world: World) -> None:
    world.ensure(A, B)
    before = (world.state.subscriptions(), world.events.live(), world.state.saves)
    writes = world.events.writes
    world.advance(H)
    assert world.ensure(A, B) == EnsureReport(unchanged=2)
    assert (world.state.subscriptions(), world.events.live(), world.state.saves) == before
    assert world.events.writes == writes


def test_an_existing_subscription_is_reused_on_already_exists(world: World) -> None:
    # Created before this system kept records of it (or its record was lost).
    existing = world.events.create(
        as_user=A, target=user_target(IDS[A]), event_types=SUBSCRIBED_EVENT_TYPES, topic=TOPIC
    )
    assert world.ensure(A) == EnsureReport(reused=1)
    assert world.name(A) == existing.name
    assert world.events.live() == [existing]


def test_a_recorded_subscription_that_is_gone_is_replaced(world: World) -> None:
    world.ensure(A)
    world.events.delete(world.name(A), as_user=A)
    assert world.ensure(A) == EnsureReport(created=1)
    (held,) = world.events.live()
    assert world.name(A) == held.name


@pytest.mark.parametrize(
    ("elapsed", "renewed"),
    [
        (timedelta(0), False),
        (timedelta(days=4), False),
        (MAX_TTL - timedelta(hours=48), False),  # exactly 48 h left
        (MAX_TTL - timedelta(hours=48) + timedelta(seconds=1), True),
        (timedelta(days=6, hours=23), True),
    ],
)
def test_renewed_when_it_expires_within_48_hours_and_not_before(
    world: World, elapsed: timedelta, renewed: bool
) -> None:
    world.ensure(A)
    world.advance(elapsed)
    report = world.ensure(A)
    assert report == (EnsureReport(renewed=1) if renewed else EnsureReport(unchanged=1))
    expected = world.clock.now + MAX_TTL if renewed else T0 + MAX_TTL
    assert world.record(A).expire_time == expected
    assert world.events.live()[0].expire_time == expected


@settings(max_examples=60, deadline=None)
@given(elapsed_s=st.integers(min_value=0, max_value=int(MAX_TTL.total_seconds()) - 1))
def test_after_a_run_every_subscription_has_at_least_48_hours_left(elapsed_s: int) -> None:
    world = World()
    world.ensure(A)
    world.advance(timedelta(seconds=elapsed_s))
    report = world.ensure(A)
    left = world.record(A).expire_time
    assert left is not None
    assert left - world.clock.now >= timedelta(hours=48)
    assert report.renewed == (elapsed_s > (MAX_TTL - timedelta(hours=48)).total_seconds())
    assert report.created == 0


def test_an_expired_subscription_is_created_again(world: World) -> None:
    world.ensure(A)
    old = world.name(A)
    world.advance(MAX_TTL + timedelta(seconds=1))  # Google deleted it
    assert world.ensure(A) == EnsureReport(created=1)
    assert world.name(A) != old
    assert world.record(A).expire_time == world.clock.now + MAX_TTL


def test_a_suspended_subscription_is_reactivated(world: World) -> None:
    world.ensure(A)
    world.events.suspend(world.name(A), "ENDPOINT_PERMISSION_DENIED")
    assert world.ensure(A) == EnsureReport(reactivated=1)
    record = world.record(A)
    assert (record.state, record.problem) == ("ACTIVE", None)
    assert world.events.live()[0].state == "ACTIVE"


def test_a_suspension_whose_cause_is_not_fixed_is_recorded_and_retried(world: World) -> None:
    world.ensure(A)
    name = world.name(A)
    world.events.suspend(name, "USER_SCOPE_REVOKED")
    world.events.blocked.add(name)
    world.advance(H)
    assert world.ensure(A) == EnsureReport(problems=1)
    record = world.record(A)
    assert record.state == "SUSPENDED"
    assert record.problem is not None
    assert record.problem.code == SUSPENDED
    assert "USER_SCOPE_REVOKED" in record.problem.message
    assert record.problem.at == world.clock.now
    world.events.blocked.clear()  # the admin fixed it
    assert world.ensure(A) == EnsureReport(reactivated=1)
    assert (world.record(A).state, world.record(A).problem) == ("ACTIVE", None)


def test_someone_no_longer_an_organizer_is_unsubscribed(world: World) -> None:
    world.ensure(A, B)
    assert world.ensure(A) == EnsureReport(deleted=1, unchanged=1)
    assert world.state.subscription(B) is None
    assert world.events.owned_by(B) == []
    assert len(world.events.owned_by(A)) == 1


def test_a_failed_unsubscribe_is_kept_with_its_problem_and_retried(world: World) -> None:
    world.ensure(A, B)
    world.events.fail[("delete", B)] = WorkspaceError("quota", kind="quota")
    assert world.ensure(A) == EnsureReport(unchanged=1, problems=1)
    problem = world.record(B).problem
    assert problem is not None
    assert problem.code == "quota"
    del world.events.fail[("delete", B)]
    assert world.ensure(A) == EnsureReport(deleted=1, unchanged=1)
    assert world.events.owned_by(B) == []


def test_an_unsubscribe_that_keeps_failing_ends_when_the_subscription_expired(world: World) -> None:
    world.ensure(A, B)
    world.events.fail[("delete", B)] = WorkspaceError("user deleted", kind="permission")
    world.advance(MAX_TTL + H)
    report = world.ensure(A)
    assert (report.deleted, report.problems) == (1, 0)
    assert world.state.subscription(B) is None


def test_a_record_without_a_subscription_is_simply_removed(world: World) -> None:
    world.ensure("nobody@school.example")
    assert world.ensure(A) == EnsureReport(created=1, deleted=1)
    assert [r.organizer_email for r in world.state.subscriptions()] == [A]


def test_someone_not_in_the_workspace_gets_a_problem(world: World) -> None:
    report = world.ensure("nobody@school.example", A)
    assert report == EnsureReport(created=1, problems=1)
    record = world.record("nobody@school.example")
    assert record.subscription is None
    assert record.problem == Problem(code=NOT_A_USER, message="not a user of this Workspace", at=T0)


@pytest.mark.parametrize("method", ["user", "get", "create", "find", "renew", "reactivate"])
@pytest.mark.parametrize("kind", ["permission", "quota", "transient"])
def test_a_failing_organizer_does_not_stop_the_others(world: World, method: str, kind: str) -> None:
    world.ensure(A, B, C)
    world.advance(MAX_TTL - H)  # every subscription needs renewing: renew is called for each
    if method == "create":
        world.events.delete(world.name(B), as_user=B)
    elif method == "find":
        world.state.delete_subscription(B)  # its record lost: create answers ALREADY_EXISTS
    elif method == "reactivate":
        world.events.suspend(world.name(B), "OTHER")
    error = WorkspaceError(f"{method} failed", kind=kind)  # type: ignore[arg-type]
    if method == "user":
        world.directory.failures[B] = error
    else:
        world.events.fail[(method, B)] = error
    report = world.ensure(A, B, C)
    assert (report.problems, report.renewed) == (1, 2)
    problem = world.record(B).problem
    assert problem is not None
    assert problem.code == (SUSPENDED if method == "reactivate" else kind)
    assert f"{method} failed" in problem.message
    assert problem.at == world.clock.now
    for other in (A, C):
        record = world.record(other)
        assert (record.problem, record.expire_time) == (None, world.clock.now + MAX_TTL)


def test_two_runners_interleaved_end_where_one_runner_ends(world: World) -> None:
    """A second run creates the subscription between the first run's get and create: the first
    one's create answers ALREADY_EXISTS and it reuses the second one's subscription."""
    alone = World()
    alone.ensure(A, B)
    seen: list[EnsureReport] = []
    world.events.before_create = lambda: seen.append(world.ensure(A, B))
    first = world.ensure(A, B)
    assert seen == [EnsureReport(created=2)]
    assert first == EnsureReport(reused=1, unchanged=1)
    assert settled(world.state.subscriptions()) == settled(alone.state.subscriptions())
    assert [s.name for s in world.events.owned_by(A)] == [world.name(A)]
    assert [s.name for s in world.events.owned_by(B)] == [world.name(B)]
    assert world.ensure(A, B) == EnsureReport(unchanged=2)


EMAILS = (A, B, C, "nobody@school.example")
step = st.one_of(
    st.tuples(st.just("ensure"), st.sets(st.sampled_from(EMAILS))),
    st.tuples(st.just("advance"), st.integers(min_value=1, max_value=8 * 24)),
    st.tuples(st.just("suspend"), st.sampled_from((A, B, C))),
    st.tuples(st.just("vanish"), st.sampled_from((A, B, C))),
    st.tuples(st.just("forget"), st.sampled_from((A, B, C))),
    st.tuples(
        st.just("lifecycle"),
        st.sampled_from(
            (SUBSCRIPTION_EXPIRATION_REMINDER, SUBSCRIPTION_EXPIRED, SUBSCRIPTION_SUSPENDED)
        ),
        st.sampled_from((A, B, C)),
    ),
)


def apply_step(world: World, action: tuple[object, ...]) -> None:
    kind, *args = action
    subject = args[-1]
    held = world.events.owned_by(str(subject)) if isinstance(subject, str) else []
    if kind == "ensure":
        assert isinstance(subject, set)
        world.ensure(*sorted(subject))
    elif kind == "advance":
        assert isinstance(subject, int)
        world.advance(timedelta(hours=subject))
    elif kind == "suspend" and held:
        world.events.suspend(held[0].name)
    elif kind == "vanish" and held:
        world.events.delete(held[0].name, as_user=str(subject))
    elif kind == "forget":  # a record lost: its subscription is unknown to us from now on
        world.state.delete_subscription(str(subject))
        world.forgotten.add(str(subject))
    elif kind == "lifecycle":
        record = world.state.subscription(str(subject))
        if record is not None and record.subscription is not None:
            world.lifecycle(str(args[0]), record.subscription)


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(step, max_size=12), final=st.sets(st.sampled_from(EMAILS)))
def test_whatever_happened_a_run_leaves_every_organizer_subscribed_once(
    steps: list[tuple[object, ...]], final: set[str]
) -> None:
    world = World()
    for action in steps:
        apply_step(world, action)
    world.ensure(*sorted(final))
    now = world.clock.now
    users = final - {"nobody@school.example"}
    assert {r.organizer_email for r in world.state.subscriptions()} == final
    for email in (A, B, C):
        held = world.events.owned_by(email)
        if email not in users:
            # Closed, unless its record was lost: then it lingers until it expires.
            assert held == [] or email in world.forgotten
            continue
        record = world.record(email)
        assert [s.name for s in held] == [record.subscription]
        assert record.state == held[0].state == "ACTIVE"
        assert record.problem is None
        assert record.expire_time == held[0].expire_time
        assert record.expire_time is not None
        assert record.expire_time - now >= timedelta(hours=48)
    saves, writes = world.state.saves, world.events.writes
    again = world.ensure(*sorted(final))
    assert again == EnsureReport(unchanged=len(users), problems=len(final - users))
    assert (world.state.saves, world.events.writes) == (saves, writes)


# ------------------------------------------------------------------------------------------------
# Lifecycle events


def test_an_unknown_subscription_is_left_alone(world: World) -> None:
    world.ensure(A)
    saves, writes = world.state.saves, world.events.writes
    for event_type in (
        SUBSCRIPTION_EXPIRATION_REMINDER,
        SUBSCRIPTION_EXPIRED,
        SUBSCRIPTION_SUSPENDED,
    ):
        assert world.lifecycle(event_type, "subscriptions/other") == "unknown subscription"
    assert (world.state.saves, world.events.writes) == (saves, writes)


def test_an_expiration_reminder_renews(world: World) -> None:
    world.ensure(A)
    world.advance(MAX_TTL - 12 * H)
    assert world.lifecycle(SUBSCRIPTION_EXPIRATION_REMINDER, world.name(A)) == "renewed"
    record = world.record(A)
    assert record.expire_time == world.clock.now + MAX_TTL
    assert record.updated_at == world.clock.now
    assert world.events.live()[0].expire_time == world.clock.now + MAX_TTL


def test_a_reminder_for_a_subscription_already_gone_creates_it_again(world: World) -> None:
    world.ensure(A)
    old = world.name(A)
    world.events.delete(old, as_user=A)
    assert world.lifecycle(SUBSCRIPTION_EXPIRATION_REMINDER, old) == "recreated"
    assert world.name(A) != old
    assert [s.name for s in world.events.owned_by(A)] == [world.name(A)]


def test_expired_creates_it_again_and_a_redelivery_is_unknown(world: World) -> None:
    world.ensure(A)
    old = world.name(A)
    world.advance(MAX_TTL)
    assert world.lifecycle(SUBSCRIPTION_EXPIRED, old) == "recreated"
    new = world.name(A)
    assert new != old
    assert world.record(A).state == "ACTIVE"
    assert world.lifecycle(SUBSCRIPTION_EXPIRED, old) == "unknown subscription"
    assert world.name(A) == new


def test_expired_reuses_one_another_runner_created(world: World) -> None:
    world.ensure(A)
    old = world.name(A)
    world.advance(MAX_TTL)
    other = world.events.create(
        as_user=A, target=user_target(IDS[A]), event_types=SUBSCRIBED_EVENT_TYPES, topic=TOPIC
    )
    assert world.lifecycle(SUBSCRIPTION_EXPIRED, old) == "recreated"
    assert world.name(A) == other.name
    assert world.events.live() == [other]


def test_suspended_records_the_reason_and_reactivates(world: World) -> None:
    world.ensure(A)
    world.events.suspend(world.name(A), "ENDPOINT_NOT_FOUND")
    world.advance(H)
    assert world.lifecycle(SUBSCRIPTION_SUSPENDED, world.name(A)) == "reactivated"
    record = world.record(A)
    assert record.state == "ACTIVE"
    assert record.problem == Problem(
        code=SUSPENDED, message="ENDPOINT_NOT_FOUND", at=world.clock.now
    )
    # The next daily run finds it healthy and clears the problem.
    assert world.ensure(A) == EnsureReport(unchanged=1)
    assert world.record(A).problem is None


def test_suspended_that_cannot_be_reactivated_keeps_the_problem(world: World) -> None:
    world.ensure(A)
    name = world.name(A)
    world.events.suspend(name, "USER_AUTHORIZATION_FAILURE")
    world.events.blocked.add(name)
    assert world.lifecycle(SUBSCRIPTION_SUSPENDED, name) == "suspended"
    record = world.record(A)
    assert record.state == "SUSPENDED"
    assert record.problem is not None
    assert record.problem.code == SUSPENDED
    assert record.problem.message.startswith("USER_AUTHORIZATION_FAILURE; reactivating failed")


def test_suspended_for_one_already_active_again_records_no_problem(world: World) -> None:
    world.ensure(A)
    assert world.lifecycle(SUBSCRIPTION_SUSPENDED, world.name(A)) == "not suspended"
    assert world.record(A).problem is None


@pytest.mark.parametrize("kind", ["quota", "transient"])
@pytest.mark.parametrize(
    ("event_type", "method"),
    [
        (SUBSCRIPTION_EXPIRATION_REMINDER, "renew"),
        (SUBSCRIPTION_EXPIRATION_REMINDER, "get"),
        (SUBSCRIPTION_EXPIRED, "create"),
        (SUBSCRIPTION_SUSPENDED, "get"),
        (SUBSCRIPTION_SUSPENDED, "reactivate"),
    ],
)
def test_retryable_failures_propagate_so_pubsub_retries(
    world: World, event_type: str, method: str, kind: str
) -> None:
    world.ensure(A)
    name = world.name(A)
    world.events.suspend(name) if event_type == SUBSCRIPTION_SUSPENDED else None
    world.events.fail[(method, A)] = WorkspaceError("later", kind=kind)  # type: ignore[arg-type]
    with pytest.raises(WorkspaceError):
        world.lifecycle(event_type, name)
    del world.events.fail[(method, A)]
    assert world.lifecycle(event_type, name) in ("renewed", "recreated", "reactivated")


@pytest.mark.parametrize(
    ("event_type", "method"),
    [
        (SUBSCRIPTION_EXPIRATION_REMINDER, "renew"),
        (SUBSCRIPTION_EXPIRED, "create"),
        (SUBSCRIPTION_SUSPENDED, "get"),
    ],
)
def test_permission_failures_are_recorded_and_swallowed(
    world: World, event_type: str, method: str
) -> None:
    world.ensure(A)
    name = world.name(A)
    world.events.fail[(method, A)] = WorkspaceError("scope not granted", kind="permission")
    assert world.lifecycle(event_type, name) == "problem"
    assert world.record(A).problem == Problem(
        code="permission", message="scope not granted", at=world.clock.now
    )


def test_other_event_types_are_ignored(world: World) -> None:
    world.ensure(A)
    saves = world.state.saves
    assert (
        world.lifecycle("google.workspace.events.subscription.v9.new", world.name(A)) == "ignored"
    )
    assert world.state.saves == saves


def test_note_event_moves_last_event_at_forward_only(world: World) -> None:
    world.ensure(A)
    name = world.name(A)
    assert note_event(world.state, name, T0 + H)
    assert note_event(world.state, name, T0)  # older: kept as it was
    assert world.record(A).last_event_at == T0 + H
    assert not note_event(world.state, "subscriptions/unknown", T0)
    # The daily run keeps it.
    world.ensure(A)
    assert world.record(A).last_event_at == T0 + H


# ------------------------------------------------------------------------------------------------
# subscription_rows, render_table, the command


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (-5, "expired"),
        (0, "expired"),
        (59, "<1m"),
        (60, "1m"),
        (3 * 3600 + 125, "3h 2m"),
        (int((MAX_TTL - H).total_seconds()), "6d 23h"),
        (int(MAX_TTL.total_seconds()), "7d 0h"),
    ],
)
def test_human_durations(seconds: int | None, text: str) -> None:
    assert human_duration(seconds) == text


def test_rows_name_state_expiry_last_event_and_problem(world: World) -> None:
    world.ensure(B, "nobody@school.example", A)
    note_event(world.state, world.name(A), T0 + H)
    world.advance(H + timedelta(seconds=0.5))
    rows = subscription_rows(world.state, world.clock.now)
    assert [row["organizer"] for row in rows] == [A, B, "nobody@school.example"]
    assert rows[0] == {
        "organizer": A,
        "subscription": world.name(A),
        "state": "ACTIVE",
        "expires_in": int((MAX_TTL - H).total_seconds()) - 1,
        "last_event_at": "2026-03-02T07:00:00.000Z",
        "problem": None,
    }
    assert rows[2]["problem"] == "not a user of this Workspace"
    assert rows[2]["expires_in"] is None
    table = render_table(rows)
    lines = table.splitlines()
    assert lines[0].split() == [
        "Organizer",
        "Subscription",
        "State",
        "Expires",
        "in",
        "Last",
        "event",
        "Problem",
    ]
    assert len(lines) == 4
    assert "6d 22h" in lines[1]
    assert "not a user of this Workspace" in lines[3]
    assert "(no organizer" in render_table([])


CLI_ENV = {
    "GOOGLE_CLOUD_PROJECT": "attendance-test",
    "TASKS_LOCATION": "europe-west1",
    "TASKS_QUEUE": "collect",
    "COLLECT_URL": "http://127.0.0.1:9/collect",
    "TASKS_SERVICE_ACCOUNT": "tasks@attendance-test.iam.gserviceaccount.com",
    "REPORTS_API_ENDPOINT": "http://127.0.0.1:9",
    "ORGANIZERS": f"{A},{B}",
    "WORKSPACE_EVENTS_TOPIC": TOPIC,
}


@pytest.fixture
def live_world(monkeypatch: pytest.MonkeyPatch) -> World:
    """A world on the wall clock (the command uses it), wired into the command."""
    world = World()
    world.clock.now = datetime.now(UTC)
    world.events.clock = lambda: datetime.now(UTC)
    for name in READS["cli"]:
        monkeypatch.delenv(name, raising=False)
    for name, value in CLI_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("functions.cli.operator_workspace", lambda settings: world.state)
    calendars = MemoryCalendarState()
    monkeypatch.setattr("functions.cli.operator_calendar", lambda settings, api: (None, calendars))
    monkeypatch.setattr(
        "functions.cli.operator_workspace_apis", lambda settings: (world.events, world.directory)
    )
    return world


def test_cli_json_lists_the_rows(live_world: World) -> None:
    live_world.ensure(A)
    result = CliRunner().invoke(cli, ["subscriptions", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [set(row) for row in rows] == [
        {"kind", "organizer", "subscription", "state", "expires_in", "last_event_at", "problem"}
    ]
    assert rows[0]["kind"] == "meet"
    assert rows[0]["organizer"] == A
    assert rows[0]["state"] == "ACTIVE"
    assert 0 < rows[0]["expires_in"] <= MAX_TTL.total_seconds()
    assert result.stderr == ""


def test_cli_ensure_subscribes_and_reports_counts(live_world: World) -> None:
    result = CliRunner().invoke(cli, ["subscriptions", "--ensure"])
    assert result.exit_code == 0, result.output
    assert "created 2," in result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()[1:]] == [A, B]
    assert len(live_world.events.live()) == 2
    again = CliRunner().invoke(cli, ["subscriptions", "--ensure", "--json"])
    assert "unchanged 2" in again.stderr
    assert len(json.loads(again.stdout)) == 2


def test_cli_ensure_with_a_problem_prints_the_table_and_exits_1(
    live_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORGANIZERS", f"{A},nobody@school.example")
    result = CliRunner().invoke(cli, ["subscriptions", "--ensure"])
    assert result.exit_code == 1
    assert "not a user of this Workspace" in result.stdout
    assert result.stderr.splitlines()[-1] == (
        "subscriptions: 1 organizer(s) have a problem (see the table)"
    )


@pytest.mark.parametrize(
    ("unset", "named"),
    [
        (["ORGANIZERS"], "ORGANIZERS or ORGANIZER_GROUP"),
        (["WORKSPACE_EVENTS_TOPIC"], "WORKSPACE_EVENTS_TOPIC"),
    ],
)
def test_cli_ensure_without_its_settings_is_one_line(
    live_world: World, monkeypatch: pytest.MonkeyPatch, unset: list[str], named: str
) -> None:
    for name in unset:
        monkeypatch.delenv(name)
    result = CliRunner().invoke(cli, ["subscriptions", "--ensure"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("subscriptions: invalid configuration:")
    assert named in result.stderr
    assert live_world.events.live() == []
    # Listing needs neither.
    assert CliRunner().invoke(cli, ["subscriptions"]).exit_code == 0
