"""GoogleMeetApi, GoogleDirectory and GoogleWorkspaceEvents, built as production builds them,
against the local fake of Meet REST v2, Workspace Events v1 and the Directory API.

The stock googleapiclient clients, google_auth_httplib2 and httplib2 do the HTTP; the adapters
authenticate to the fake with static ``local-subject:<email>`` tokens, which is how the fake knows
who asks. Only the sleeps are recorded instead of slept.
"""

from __future__ import annotations

import os

os.environ.setdefault("NO_GCE_CHECK", "True")

import datetime as dt
import socket
import threading
from collections.abc import Iterator
from typing import Any

import google.auth
import google.oauth2.credentials
import pytest

from functions.adapters.backoff import Backoff
from functions.adapters.google_credentials import (
    DIRECTORY_GROUP_MEMBER_SCOPE,
    DIRECTORY_USER_SCOPE,
    MEET_SCOPE,
    REPORTS_SCOPE,
    SubjectConnections,
    keyless_delegated_credentials,
)
from functions.adapters.workspace import (
    MEET_PAGE_SIZE,
    GoogleDirectory,
    GoogleMeetApi,
    GoogleWorkspaceEvents,
    attendee_of,
    conference_of,
    session_of,
    space_of,
    subscription_of,
    workspace_service,
)
from functions.config import Settings
from functions.errors import SubscriptionExists, WorkspaceError
from functions.meet_records import CONFERENCE_ENDED, Conference, MeetSpace, user_target
from functions.ports import Directory, MeetApi, WorkspaceEvents
from local.fake_google_auth import FakeIam, FakeSourceCredentials, FakeTokenServer
from local.fake_workspace import FakeWorkspaceServer

ORGANIZER = "olive.organizer@school.example"
OTHER = "oscar.other@school.example"
ADMIN = "reports-admin@school.example"
ORGANIZER_ID = "1001"
TOPIC = "projects/demo-attendance/topics/workspace-events"
TARGET = user_target(ORGANIZER_ID)
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


class Sleeps:
    """Records the delays the adapters ask for instead of sleeping them."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class Clock:
    """The fake's clock (subscription expiry), moved by the tests."""

    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Name resolution of anything but loopback fails, and so does any lookup of Application
    Default Credentials: against a stand-in the adapters must not look for Google credentials."""
    real = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name not in LOOPBACK:
            raise OSError(f"test refused a connection to {name!r}")
        return real(host, *args, **kwargs)

    def no_default(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("google.auth.default() was called")

    monkeypatch.setattr(socket, "getaddrinfo", guarded)
    monkeypatch.setattr(google.auth, "default", no_default)
    monkeypatch.delenv(
        "GOOGLE_SDK_EXPERIMENTAL_PYTHON_REGIONAL_ACCESS_BOUNDARY_LOOKUP_ENABLED", raising=False
    )


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def server(clock: Clock) -> Iterator[FakeWorkspaceServer]:
    with FakeWorkspaceServer(clock=clock) as fake:
        yield fake


@pytest.fixture
def fake(server: FakeWorkspaceServer, clock: Clock) -> FakeWorkspaceServer:
    server.reset()
    clock.now = dt.datetime.now(dt.UTC)
    return server


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def settings_for(url: str) -> Settings:
    return Settings.from_env(
        {
            "GOOGLE_CLOUD_PROJECT": "demo-attendance",
            "TASKS_LOCATION": "europe-west1",
            "TASKS_QUEUE": "collect",
            "COLLECT_URL": "http://127.0.0.1:9/collect",
            "TASKS_SERVICE_ACCOUNT": "tasks@demo-attendance.iam.gserviceaccount.com",
            "REPORTS_ADMIN_SUBJECT": ADMIN,
            "MEET_API_ENDPOINT": url,
            "WORKSPACE_EVENTS_API_ENDPOINT": url,
            "DIRECTORY_API_ENDPOINT": url,
        },
        role="cli",
    )


def backoff(sleeps: Sleeps, **options: Any) -> Backoff:
    return Backoff(sleep=sleeps, jitter=lambda: 1.0, base_delay_s=0.01, **options)


@pytest.fixture
def meet(fake: FakeWorkspaceServer, sleeps: Sleeps) -> GoogleMeetApi:
    return GoogleMeetApi.from_settings(settings_for(fake.url), backoff=backoff(sleeps))


@pytest.fixture
def directory(fake: FakeWorkspaceServer, sleeps: Sleeps) -> GoogleDirectory:
    return GoogleDirectory.from_settings(settings_for(fake.url), backoff=backoff(sleeps))


@pytest.fixture
def events(fake: FakeWorkspaceServer, sleeps: Sleeps) -> GoogleWorkspaceEvents:
    return GoogleWorkspaceEvents.from_settings(settings_for(fake.url), backoff=backoff(sleeps))


def test_the_adapters_implement_the_ports(
    meet: GoogleMeetApi, directory: GoogleDirectory, events: GoogleWorkspaceEvents
) -> None:
    # Checked by mypy: each adapter is assignable to its port.
    ports: tuple[MeetApi, Directory, WorkspaceEvents] = (meet, directory, events)
    assert len(ports) == 3


def stamp(when: dt.datetime) -> str:
    return when.isoformat(timespec="microseconds").replace("+00:00", "Z")


def load_conference(
    fake: FakeWorkspaceServer,
    *,
    record: str = "c1",
    space: str = "space1",
    code: str = "abc-mnop-xyz",
    participants: int = 1,
    sessions: int = 1,
    readers: list[str] | None = None,
) -> None:
    """A conference of ``participants`` signed-in users with ``sessions`` sessions each."""
    name = f"conferenceRecords/{record}"
    people: list[dict[str, Any]] = []
    times: list[dict[str, Any]] = []
    for index in range(participants):
        participant = f"{name}/participants/p{index:04d}"
        people.append(
            {
                "name": participant,
                "earliestStartTime": stamp(T0 + dt.timedelta(seconds=index)),
                "signedinUser": {"user": f"users/{index + 1}", "displayName": f"Student {index}"},
            }
        )
        for number in range(sessions):
            start = T0 + dt.timedelta(seconds=index, minutes=2 * number)
            times.append(
                {
                    "name": f"{participant}/participantSessions/s{number:04d}",
                    "startTime": stamp(start),
                    "endTime": stamp(start + dt.timedelta(minutes=1, microseconds=123456)),
                }
            )
    fake.load(
        spaces=[{"name": f"spaces/{space}", "meetingCode": code}],
        conference_records=[
            {
                "name": name,
                "space": f"spaces/{space}",
                "startTime": stamp(T0),
                "endTime": stamp(T0 + dt.timedelta(hours=1)),
            }
        ],
        participants=people,
        participant_sessions=times,
        space_readers={f"spaces/{space}": readers} if readers else {},
    )


def api_requests(fake: FakeWorkspaceServer, prefix: str = "/") -> list[dict[str, Any]]:
    return [r for r in fake.requests() if r["path"].startswith(prefix)]


# ----------------------------------------------------------------------------- Meet REST


def test_conference_and_space_by_name_and_by_code(
    fake: FakeWorkspaceServer, meet: GoogleMeetApi
) -> None:
    load_conference(fake)

    assert meet.conference("conferenceRecords/c1", as_user=ORGANIZER) == Conference(
        name="conferenceRecords/c1",
        space="spaces/space1",
        start=T0,
        end=T0 + dt.timedelta(hours=1),
    )
    expected = MeetSpace(name="spaces/space1", meeting_code="abc-mnop-xyz")
    assert meet.space("spaces/space1", as_user=ORGANIZER) == expected
    assert meet.space("abc-mnop-xyz", as_user=ORGANIZER) == expected
    assert meet.space("ABC-MNOP-XYZ", as_user=ORGANIZER) == expected
    assert [(r["path"], r["subject"]) for r in fake.requests()] == [
        ("/v2/conferenceRecords/c1", ORGANIZER),
        ("/v2/spaces/space1", ORGANIZER),
        ("/v2/spaces/abc-mnop-xyz", ORGANIZER),
        ("/v2/spaces/ABC-MNOP-XYZ", ORGANIZER),
    ]


def test_participants_and_sessions_are_read_across_pages(
    fake: FakeWorkspaceServer, meet: GoogleMeetApi
) -> None:
    load_conference(fake, participants=MEET_PAGE_SIZE + 10, sessions=1)
    many = "conferenceRecords/c1/participants/p0003"
    extra = [
        {
            "name": f"{many}/participantSessions/x{number:04d}",
            "startTime": stamp(T0 + dt.timedelta(hours=2, seconds=number)),
        }
        for number in range(MEET_PAGE_SIZE + 5)
    ]
    fake.load(participant_sessions=extra)

    attendees = meet.attendees("conferenceRecords/c1", as_user=ORGANIZER)

    assert len(attendees) == MEET_PAGE_SIZE + 10
    assert len({a.name for a in attendees}) == MEET_PAGE_SIZE + 10
    by_name = {a.name: a for a in attendees}
    first = by_name["conferenceRecords/c1/participants/p0000"]
    assert (first.kind, first.user, first.display_name) == ("signed_in", "users/1", "Student 0")
    (session,) = first.sessions
    assert session.start == T0
    assert session.end == T0 + dt.timedelta(minutes=1, milliseconds=123)  # milliseconds kept
    assert session.start.tzinfo is dt.UTC
    crowded = by_name[many].sessions
    assert len(crowded) == MEET_PAGE_SIZE + 6
    assert [s.start for s in crowded] == sorted(s.start for s in crowded)
    assert crowded[-1].end is None  # still in the call

    listings = api_requests(fake, "/v2/conferenceRecords/c1/participants")
    pages = [r for r in listings if r["path"].endswith("/participants")]
    assert len(pages) == 2
    assert all(r["query"]["pageSize"] == str(MEET_PAGE_SIZE) for r in listings)
    assert "pageToken" not in pages[0]["query"]
    assert "pageToken" in pages[1]["query"]
    crowded_pages = [r for r in listings if r["path"] == f"/v2/{many}/participantSessions"]
    assert len(crowded_pages) == 2
    assert len(listings) == 2 + MEET_PAGE_SIZE + 10 + 1


def test_anonymous_and_phone_participants(fake: FakeWorkspaceServer, meet: GoogleMeetApi) -> None:
    load_conference(fake, participants=0)
    fake.load(
        participants=[
            {
                "name": "conferenceRecords/c1/participants/anon",
                "earliestStartTime": stamp(T0),
                "anonymousUser": {"displayName": "Guest"},
            },
            {
                "name": "conferenceRecords/c1/participants/tel",
                "earliestStartTime": stamp(T0),
                "phoneUser": {"displayName": "+44 20 ••• ••12"},
            },
        ]
    )
    attendees = sorted(meet.attendees("conferenceRecords/c1", as_user=ORGANIZER), key=str)
    assert [(a.kind, a.user, a.display_name, a.sessions) for a in attendees] == [
        ("anonymous", None, "Guest", ()),
        ("phone", None, "+44 20 ••• ••12", ()),
    ]


def test_missing_records_answer_none(fake: FakeWorkspaceServer, meet: GoogleMeetApi) -> None:
    load_conference(fake)
    assert meet.conference("conferenceRecords/nope", as_user=ORGANIZER) is None
    assert meet.space("spaces/nope", as_user=ORGANIZER) is None
    assert meet.space("zzz-zzzz-zzz", as_user=ORGANIZER) is None
    assert meet.attendees("conferenceRecords/nope", as_user=ORGANIZER) == []
    assert [r["status"] for r in fake.requests()] == [404] * 4
    # Names that are not Meet's are never sent.
    assert meet.conference("spaces/space1", as_user=ORGANIZER) is None
    assert meet.space("a/b", as_user=ORGANIZER) is None
    assert len(fake.requests()) == 4


def test_a_record_the_organizer_may_not_read_answers_none(
    fake: FakeWorkspaceServer, meet: GoogleMeetApi, sleeps: Sleeps
) -> None:
    load_conference(fake, readers=[ORGANIZER])

    assert meet.conference("conferenceRecords/c1", as_user=OTHER) is None
    assert meet.space("abc-mnop-xyz", as_user=OTHER) is None
    assert meet.attendees("conferenceRecords/c1", as_user=OTHER) == []
    assert [(r["status"], r["subject"]) for r in fake.requests()] == [(403, OTHER)] * 3
    assert sleeps.delays == []

    assert meet.conference("conferenceRecords/c1", as_user=ORGANIZER) is not None
    assert len(meet.attendees("conferenceRecords/c1", as_user=ORGANIZER)) == 1


def test_meet_api_not_enabled_is_a_permission_error_naming_the_step(
    fake: FakeWorkspaceServer, meet: GoogleMeetApi, sleeps: Sleeps
) -> None:
    load_conference(fake)
    fake.add_faults({"path_prefix": "/v2/", "status": 403, "reason": "SERVICE_DISABLED"})

    with pytest.raises(WorkspaceError) as info:
        meet.conference("conferenceRecords/c1", as_user=ORGANIZER)

    assert info.value.kind == "permission"
    assert not info.value.retryable
    assert "enable the Google Meet REST API in the project" in info.value.message
    assert "has not been used in project" in info.value.message
    assert "\n" not in info.value.message
    assert len(fake.requests()) == 1
    assert sleeps.delays == []


def test_a_401_names_the_scope_to_authorise(fake: FakeWorkspaceServer, meet: GoogleMeetApi) -> None:
    load_conference(fake)
    fake.add_faults({"path_prefix": "/v2/", "status": 401})

    with pytest.raises(WorkspaceError) as info:
        meet.attendees("conferenceRecords/c1", as_user=ORGANIZER)

    assert info.value.kind == "permission"
    assert "authorise the service account's client id for" in info.value.message
    assert MEET_SCOPE in info.value.message
    assert "Domain-wide delegation" in info.value.message
    assert [r["status"] for r in fake.requests()] == [401]  # a static token: never refreshed


def test_503_is_retried_then_succeeds(
    fake: FakeWorkspaceServer, meet: GoogleMeetApi, sleeps: Sleeps
) -> None:
    load_conference(fake)
    fake.add_faults({"path_prefix": "/v2/conferenceRecords/c1", "status": 503, "count": 2})

    assert meet.conference("conferenceRecords/c1", as_user=ORGANIZER) is not None

    assert [r["status"] for r in fake.requests()] == [503, 503, 200]
    assert sleeps.delays == pytest.approx([0.01, 0.02])


def test_429_waits_at_least_retry_after(
    fake: FakeWorkspaceServer, meet: GoogleMeetApi, sleeps: Sleeps
) -> None:
    load_conference(fake, sessions=2)
    fake.add_faults(
        {"path_prefix": "/v2/conferenceRecords/c1/participants/", "status": 429, "retry_after_s": 7}
    )

    (attendee,) = meet.attendees("conferenceRecords/c1", as_user=ORGANIZER)

    assert len(attendee.sessions) == 2
    assert [r["status"] for r in fake.requests()] == [200, 429, 200]
    assert sleeps.delays == [7.0]


def test_retries_give_up_with_a_retryable_error(fake: FakeWorkspaceServer, sleeps: Sleeps) -> None:
    load_conference(fake)
    fake.add_faults({"path_prefix": "/v2/", "status": 500, "count": 10})
    meet = GoogleMeetApi.from_settings(
        settings_for(fake.url), backoff=backoff(sleeps, max_attempts=3)
    )

    with pytest.raises(WorkspaceError) as info:
        meet.conference("conferenceRecords/c1", as_user=ORGANIZER)

    assert info.value.kind == "transient"
    assert info.value.retryable
    assert info.value.message == "Meet REST API 500 backendError after 3 attempt(s)"
    assert len(sleeps.delays) == 2


def test_concurrent_readers_each_get_their_own_conference(fake: FakeWorkspaceServer) -> None:
    # httplib2 is not thread-safe: each thread has its own connection per subject, and the
    # subject of every request is the one that thread asked as.
    organizers = [f"organizer{index}@school.example" for index in range(6)]
    for index, organizer in enumerate(organizers):
        load_conference(
            fake,
            record=f"c{index}",
            space=f"space{index}",
            code=f"abc-mnop-xy{chr(97 + index)}",
            participants=index + 1,
            readers=[organizer],
        )
    meet = GoogleMeetApi.from_settings(settings_for(fake.url))
    errors: list[BaseException] = []

    def read(index: int) -> None:
        try:
            for _ in range(4):
                found = meet.attendees(f"conferenceRecords/c{index}", as_user=organizers[index])
                assert len(found) == index + 1
                assert all(a.name.startswith(f"conferenceRecords/c{index}/") for a in found)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=read, args=(index,)) for index in range(len(organizers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert {r["status"] for r in fake.requests()} == {200}


# ----------------------------------------------------------------------------- Directory


def test_directory_user_by_id_email_and_meet_name(
    fake: FakeWorkspaceServer, directory: GoogleDirectory
) -> None:
    fake.load(
        users=[{"id": ORGANIZER_ID, "primaryEmail": ORGANIZER, "aliases": ["olive@school.example"]}]
    )

    for key in (ORGANIZER_ID, f"users/{ORGANIZER_ID}", ORGANIZER, "olive@school.example"):
        found = directory.user(key)
        assert found is not None, key
        assert (found.id, found.primary_email) == (ORGANIZER_ID, ORGANIZER)
    assert directory.user("404404") is None
    assert directory.user("nobody@school.example") is None
    assert directory.user("") is None
    logged = fake.requests()
    assert {r["subject"] for r in logged} == {ADMIN}
    assert [r["status"] for r in logged] == [200, 200, 200, 200, 404, 404]


def test_group_members_are_read_across_pages(
    fake: FakeWorkspaceServer, directory: GoogleDirectory
) -> None:
    emails = [f"Teacher{index:03d}@school.example" for index in range(450)]
    fake.load(
        users=[{"id": "2002", "primaryEmail": "nested-owner@school.example"}],
        groups=[
            {"email": "nested@school.example", "members": ["nested-owner@school.example"]},
            {"email": "organizers@school.example", "members": [*emails, "nested@school.example"]},
        ],
    )

    members = directory.group_members("organizers@school.example")

    assert members == [email.lower() for email in emails]  # the nested group is not a user
    pages = fake.requests()
    assert len(pages) == 3
    assert all(r["query"]["maxResults"] == "200" for r in pages)
    assert all(r["subject"] == ADMIN for r in pages)


def test_an_unknown_group_is_a_permission_error(
    fake: FakeWorkspaceServer, directory: GoogleDirectory
) -> None:
    with pytest.raises(WorkspaceError) as info:
        directory.group_members("ghosts@school.example")
    assert info.value.kind == "permission"
    assert "ghosts@school.example" in info.value.message


def test_directory_403_names_the_admin_subject(
    fake: FakeWorkspaceServer, directory: GoogleDirectory
) -> None:
    fake.add_faults({"path_prefix": "/admin/", "status": 403})
    with pytest.raises(WorkspaceError) as info:
        directory.user(ORGANIZER_ID)
    assert info.value.kind == "permission"
    assert "REPORTS_ADMIN_SUBJECT" in info.value.message


def test_admin_sdk_not_enabled(fake: FakeWorkspaceServer, directory: GoogleDirectory) -> None:
    fake.add_faults({"path_prefix": "/admin/", "status": 403, "reason": "accessNotConfigured"})
    with pytest.raises(WorkspaceError) as info:
        directory.group_members("organizers@school.example")
    assert info.value.kind == "permission"
    assert "enable the Admin SDK API in the project" in info.value.message


# ----------------------------------------------------------------------------- Workspace Events


def create(events: GoogleWorkspaceEvents, target: str = TARGET) -> Any:
    return events.create(
        as_user=ORGANIZER, target=target, event_types=[CONFERENCE_ENDED], topic=TOPIC
    )


def test_create_waits_for_the_operation(
    fake: FakeWorkspaceServer, events: GoogleWorkspaceEvents, sleeps: Sleeps, clock: Clock
) -> None:
    fake.configure(operation_polls_before_done=3)

    created = create(events)

    assert created.name.startswith("subscriptions/")
    assert (created.target_resource, created.event_types) == (TARGET, (CONFERENCE_ENDED,))
    assert (created.state, created.suspension_reason) == ("ACTIVE", None)
    assert created.expire_time is not None
    # ttl 0s asks for the maximum, which the fake caps at 7 days.
    assert abs(created.expire_time - (clock.now + dt.timedelta(days=7))) < dt.timedelta(seconds=1)
    logged = fake.requests()
    assert [(r["method"], r["path"].split("/")[2]) for r in logged] == [
        ("POST", "subscriptions"),
        ("GET", "operations"),
        ("GET", "operations"),
        ("GET", "operations"),
    ]
    assert {r["subject"] for r in logged} == {ORGANIZER}
    assert len(sleeps.delays) == 3
    (stored,) = fake.subscriptions()
    assert stored["name"] == created.name
    assert stored["notificationEndpoint"] == {"pubsubTopic": TOPIC}
    assert stored["payloadOptions"] == {"includeResource": False}


def test_an_operation_that_never_finishes_gives_up(
    fake: FakeWorkspaceServer, sleeps: Sleeps
) -> None:
    fake.configure(operation_polls_before_done=1000)
    events = GoogleWorkspaceEvents(
        workspace_service("workspaceevents", "v1", fake.url),
        SubjectConnections(lambda subject: static_token(subject)),
        backoff=backoff(sleeps),
        operation_wait_s=1.0,
    )
    with pytest.raises(WorkspaceError) as info:
        create(events)
    assert info.value.kind == "transient"
    assert "not done" in info.value.message
    assert sum(sleeps.delays) <= 1.0
    assert len(sleeps.delays) == 6  # 0.01 + 0.02 + … + 0.32 = 0.63; the next 0.64 is too long


def static_token(subject: str) -> Any:
    return google.oauth2.credentials.Credentials(token="local-subject:" + subject)  # type: ignore[no-untyped-call]


def test_already_exists_then_find_returns_it(
    fake: FakeWorkspaceServer, events: GoogleWorkspaceEvents
) -> None:
    created = create(events)

    with pytest.raises(SubscriptionExists) as info:
        create(events)
    assert info.value.target == TARGET
    assert info.value.status == 409

    found = events.find(as_user=ORGANIZER, target=TARGET, event_type=CONFERENCE_ENDED)
    assert found == created
    listing = [r for r in fake.requests() if r["method"] == "GET"][-1]
    assert listing["query"]["filter"] == (
        f'event_types:"{CONFERENCE_ENDED}" AND target_resource="{TARGET}"'
    )
    other = "google.workspace.meet.participant.v2.joined"
    assert events.find(as_user=ORGANIZER, target=TARGET, event_type=other) is None
    assert (
        events.find(as_user=ORGANIZER, target=user_target("9"), event_type=CONFERENCE_ENDED) is None
    )


def test_get_renew_and_expiry(
    fake: FakeWorkspaceServer, events: GoogleWorkspaceEvents, clock: Clock
) -> None:
    created = create(events)
    assert events.get(created.name, as_user=ORGANIZER) == created

    clock.now += dt.timedelta(days=3)
    renewed = events.renew(created.name, as_user=ORGANIZER)

    assert renewed.name == created.name
    assert created.expire_time is not None
    assert renewed.expire_time is not None
    assert renewed.expire_time - created.expire_time > dt.timedelta(days=3) - dt.timedelta(
        seconds=1
    )
    patch = next(r for r in fake.requests() if r["method"] == "PATCH")
    assert patch["query"]["updateMask"] == "ttl"
    assert events.get(created.name, as_user=ORGANIZER) == renewed

    fake.expire(created.name)
    assert events.get(created.name, as_user=ORGANIZER) is None
    with pytest.raises(WorkspaceError):
        events.renew(created.name, as_user=ORGANIZER)


def test_reactivate_after_suspension(
    fake: FakeWorkspaceServer, events: GoogleWorkspaceEvents
) -> None:
    created = create(events)
    fake.suspend(created.name, "USER_AUTHORIZATION_FAILURE")

    suspended = events.get(created.name, as_user=ORGANIZER)
    assert suspended is not None
    assert (suspended.state, suspended.suspension_reason) == (
        "SUSPENDED",
        "USER_AUTHORIZATION_FAILURE",
    )
    assert events.find(as_user=ORGANIZER, target=TARGET, event_type=CONFERENCE_ENDED) == suspended

    reactivated = events.reactivate(created.name, as_user=ORGANIZER)
    assert (reactivated.name, reactivated.state, reactivated.suspension_reason) == (
        created.name,
        "ACTIVE",
        None,
    )
    # Reactivating an active subscription is refused (FAILED_PRECONDITION), not retried.
    with pytest.raises(WorkspaceError) as info:
        events.reactivate(created.name, as_user=ORGANIZER)
    assert info.value.kind == "transient"
    assert "400" in info.value.message


def test_delete_is_idempotent(fake: FakeWorkspaceServer, events: GoogleWorkspaceEvents) -> None:
    created = create(events)
    fake.configure(operation_polls_before_done=1)

    events.delete(created.name, as_user=ORGANIZER)
    events.delete(created.name, as_user=ORGANIZER)
    events.delete("subscriptions/never-existed", as_user=ORGANIZER)

    assert fake.subscriptions() == []
    assert events.get(created.name, as_user=ORGANIZER) is None
    deletes = [r for r in fake.requests() if r["method"] == "DELETE"]
    assert len(deletes) == 3
    assert all(r["query"]["allowMissing"] == "true" and r["status"] == 200 for r in deletes)
    # A new subscription on the target may be created again.
    assert create(events).name != created.name


def test_events_api_not_enabled_and_quota(
    fake: FakeWorkspaceServer, events: GoogleWorkspaceEvents, sleeps: Sleeps
) -> None:
    fake.add_faults({"path_prefix": "/v1/", "status": 403, "reason": "SERVICE_DISABLED"})
    with pytest.raises(WorkspaceError) as info:
        create(events)
    assert info.value.kind == "permission"
    assert "enable the Google Workspace Events API" in info.value.message

    fake.add_faults({"path_prefix": "/v1/subscriptions", "status": 429, "retry_after_s": 2})
    assert create(events).state == "ACTIVE"
    assert sleeps.delays == [2.0]


# ----------------------------------------------------------------------------- delegation


@pytest.fixture
def iam() -> FakeIam:
    return FakeIam()


def delegated_meet(
    fake: FakeWorkspaceServer, iam: FakeIam, token_server: FakeTokenServer, sleeps: Sleeps
) -> GoogleMeetApi:
    def credentials(subject: str) -> Any:
        return keyless_delegated_credentials(
            subject=subject,
            source=FakeSourceCredentials(),
            request=iam,
            token_uri=token_server.token_uri,
            scopes=[MEET_SCOPE],
        )

    return GoogleMeetApi(
        workspace_service("meet", "v2", fake.url),
        SubjectConnections(credentials),
        backoff=backoff(sleeps),
    )


def test_keyless_delegation_impersonates_the_organizer_once(
    fake: FakeWorkspaceServer, iam: FakeIam, sleeps: Sleeps
) -> None:
    load_conference(fake, participants=3)
    with FakeTokenServer(
        expected_subject=ORGANIZER, expected_scope=MEET_SCOPE, iam=iam
    ) as token_server:
        meet = delegated_meet(fake, iam, token_server, sleeps)
        assert meet.conference("conferenceRecords/c1", as_user=ORGANIZER) is not None
        assert len(meet.attendees("conferenceRecords/c1", as_user=ORGANIZER)) == 3
        grants = token_server.requests()
    assert [(g["status"], g["claims"]["sub"], g["claims"]["scope"]) for g in grants] == [
        (200, ORGANIZER, MEET_SCOPE)
    ]


def test_keyless_scope_not_authorised_names_the_meet_scope(
    fake: FakeWorkspaceServer, iam: FakeIam, sleeps: Sleeps
) -> None:
    load_conference(fake)
    with FakeTokenServer(
        expected_subject=ORGANIZER, expected_scope=REPORTS_SCOPE, iam=iam
    ) as token_server:
        meet = delegated_meet(fake, iam, token_server, sleeps)
        with pytest.raises(WorkspaceError) as info:
            meet.conference("conferenceRecords/c1", as_user=ORGANIZER)
    assert info.value.kind == "permission"
    assert "unauthorized_client" in info.value.message
    assert f"client id for {MEET_SCOPE}" in info.value.message
    assert REPORTS_SCOPE not in info.value.message
    assert fake.requests() == []
    assert sleeps.delays == []


def test_keyless_organizer_outside_the_workspace(
    fake: FakeWorkspaceServer, iam: FakeIam, sleeps: Sleeps
) -> None:
    with FakeTokenServer(
        expected_subject=ORGANIZER, expected_scope=MEET_SCOPE, iam=iam
    ) as token_server:
        meet = delegated_meet(fake, iam, token_server, sleeps)
        with pytest.raises(WorkspaceError) as info:
            meet.conference("conferenceRecords/c1", as_user="stranger@elsewhere.example")
    assert info.value.kind == "permission"
    assert info.value.message.startswith("the organizer is not a user of this Workspace")


def test_a_subject_that_is_not_an_email_is_a_permission_error(
    fake: FakeWorkspaceServer, iam: FakeIam, sleeps: Sleeps
) -> None:
    with FakeTokenServer(
        expected_subject=ORGANIZER, expected_scope=MEET_SCOPE, iam=iam
    ) as token_server:
        meet = delegated_meet(fake, iam, token_server, sleeps)
        with pytest.raises(WorkspaceError) as info:
            meet.conference("conferenceRecords/c1", as_user="")
    assert info.value.kind == "permission"
    assert "unavailable" in info.value.message


def test_keyless_directory_asks_for_both_directory_scopes(
    fake: FakeWorkspaceServer, iam: FakeIam, sleeps: Sleeps
) -> None:
    fake.load(users=[{"id": ORGANIZER_ID, "primaryEmail": ORGANIZER}])
    scopes = f"{DIRECTORY_USER_SCOPE} {DIRECTORY_GROUP_MEMBER_SCOPE}"
    with FakeTokenServer(expected_subject=ADMIN, expected_scope=scopes, iam=iam) as token_server:

        def credentials(subject: str) -> Any:
            return keyless_delegated_credentials(
                subject=subject,
                source=FakeSourceCredentials(),
                request=iam,
                token_uri=token_server.token_uri,
                scopes=[DIRECTORY_USER_SCOPE, DIRECTORY_GROUP_MEMBER_SCOPE],
            )

        directory = GoogleDirectory(
            workspace_service("admin", "directory_v1", fake.url),
            SubjectConnections(credentials),
            subject=ADMIN,
            backoff=backoff(sleeps),
        )
        found = directory.user(ORGANIZER_ID)
        (grant,) = token_server.requests()
    assert found is not None
    assert found.primary_email == ORGANIZER
    assert set(grant["claims"]["scope"].split()) == set(scopes.split())
    assert grant["claims"]["sub"] == ADMIN


# ----------------------------------------------------------------------------- parsing


def test_malformed_items_are_skipped_not_crashes() -> None:
    assert conference_of({"name": "conferenceRecords/x", "space": "spaces/s"}) is None
    assert conference_of({"name": 7, "space": "spaces/s", "startTime": stamp(T0)}) is None
    assert conference_of({"name": "conferenceRecords/x", "startTime": stamp(T0)}) is None
    ongoing = conference_of(
        {
            "name": "conferenceRecords/x",
            "space": "spaces/s",
            "startTime": "2026-03-02T10:00:00+01:00",
        }
    )
    assert ongoing is not None
    assert ongoing.start == T0
    assert ongoing.end is None
    assert space_of({"name": "spaces/s", "meetingCode": 12}) == MeetSpace(
        name="spaces/s", meeting_code=None
    )
    assert space_of({"meetingCode": "abc-mnop-xyz"}) is None
    assert attendee_of({"name": "conferenceRecords/x/participants/p"}) is None
    assert attendee_of({"name": "conferenceRecords/x/participants/p", "signedinUser": "x"}) is None
    odd = attendee_of(
        {"name": "conferenceRecords/x/participants/p", "signedinUser": {"user": "people/1"}}
    )
    assert odd is not None
    assert (odd.kind, odd.user, odd.display_name) == ("signed_in", None, None)
    assert session_of({"name": "s", "startTime": "yesterday"}) is None
    assert (
        session_of({"name": "s", "startTime": stamp(T0), "endTime": stamp(T0 - dt.timedelta(1))})
        is None
    )
    assert session_of({"startTime": stamp(T0)}) is None


def test_subscription_json_is_read_liberally() -> None:
    camel = subscription_of(
        {
            "name": "subscriptions/a",
            "targetResource": TARGET,
            "eventTypes": [CONFERENCE_ENDED, 3],
            "state": "SUSPENDED",
            "suspensionReason": "ENDPOINT_NOT_FOUND",
            "expireTime": "2026-03-09T09:00:00.000000001Z",
        }
    )
    assert camel is not None
    assert camel.event_types == (CONFERENCE_ENDED,)
    assert (camel.state, camel.suspension_reason) == ("SUSPENDED", "ENDPOINT_NOT_FOUND")
    assert camel.expire_time == T0 + dt.timedelta(days=7)
    snake = subscription_of(
        {"name": "subscriptions/b", "target_resource": TARGET, "event_types": [CONFERENCE_ENDED]}
    )
    assert snake is not None
    assert (snake.state, snake.suspension_reason, snake.expire_time) == (
        "STATE_UNSPECIFIED",
        None,
        None,
    )
    unspecified = subscription_of(
        {
            "name": "subscriptions/c",
            "targetResource": TARGET,
            "state": "SOMETHING_NEW",
            "suspensionReason": "ERROR_TYPE_UNSPECIFIED",
        }
    )
    assert unspecified is not None
    assert (unspecified.state, unspecified.suspension_reason) == ("STATE_UNSPECIFIED", None)
    # An Operation has a name too: it is never read as a Subscription.
    assert (
        subscription_of({"name": "operations/op1", "done": True, "targetResource": TARGET}) is None
    )
    assert subscription_of({"name": "subscriptions/d"}) is None
