"""openapi.yaml against the implementation: a valid OpenAPI 3.1 description; every route of every
function documented and served, nothing else served; the request schemas accept what our own
serialisers write; the answer schemas accept what the handlers answer (over in-memory ports).
"""

from __future__ import annotations

import base64
import copy
import json
import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV31SpecValidator

from functions import app
from functions.calendar_records import ChannelRecord
from functions.calendar_sync import token_hash
from functions.config import Settings
from functions.errors import InvalidInput, ReportsError, Unavailable, WorkspaceError
from functions.http_edge import route_api, route_ingest
from functions.meet_records import (
    CONFERENCE_ENDED,
    SUBSCRIPTION_EXPIRATION_REMINDER,
    SUBSCRIPTION_SUSPENDED,
    Conference,
    MeetAttendee,
    MeetSessionTimes,
    MeetSpace,
    SubscriptionRecord,
    user_target,
)
from functions.payloads import (
    TASK_REASONS,
    backfill_slice_body,
    calendar_sync_body,
    collect_task_body,
    parse_backfill_request,
    parse_collect_task,
    parse_meeting_ended,
)
from functions.ports import BackfillSlice, CollectReason, CollectTask, Deps
from functions.pubsub_push import UnusablePush, parse_push
from functions.schedule import Timing
from functions.signatures import sign_webhook
from local.demo import the_day
from local.fake_calendar import _Channel as FakeCalendarChannel
from local.simulate import Stay, activities_for
from tests.fakes import FakeIdTokens, ManualClock, MemoryQueue, MemoryStore, ScriptedReports
from tests.fuzz.spec import (
    FUNCTIONS,
    Operation,
    answer_problems,
    load_spec,
    operation,
    operations,
    request_body_pointer,
    schema_problems,
)
from tests.unit.test_calendar import FakeCalendar
from tests.unit.test_calendar import event as calendar_event
from tests.workspace_fakes import (
    FakeDirectory,
    FakeWorkspaceEvents,
    MemoryCalendarState,
    MemoryWorkspaceState,
)

SPEC = load_spec()
NOTIFICATIONS = "ingestCalendarNotification"
#: Answered by the HTTP server in front of a function, never by the function these tests call:
#: an ``Expect`` header other than 100-continue, headers over its limits.
SERVER_REFUSALS = {"417", "431"}

# ------------------------------------------------------------------------------------------------
# The description itself


def test_the_description_is_valid_openapi_3_1() -> None:
    assert SPEC["openapi"].startswith("3.1.")
    validate(SPEC, cls=OpenAPIV31SpecValidator)
    for schema in SPEC["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_the_validator_refuses_a_broken_description() -> None:
    broken = copy.deepcopy(SPEC)
    broken["paths"]["/ingest"]["post"]["responses"]["2OO"] = {"description": "no such status"}
    with pytest.raises(Exception, match="2OO"):
        validate(broken, cls=OpenAPIV31SpecValidator)


def test_every_path_names_its_function_and_every_function_has_a_server() -> None:
    servers = [server["x-function"] for server in SPEC["servers"]]
    assert sorted(servers) == sorted(FUNCTIONS)
    for key, item in SPEC["paths"].items():
        function, path = item["x-function"], item["x-path"]
        assert function in FUNCTIONS
        assert key == f"/{function}" + ("" if path == "/" else path)


#: Every route each function serves: (function, method, path) → the router's name for it.
ROUTES = {
    ("ingest", "POST", "/"): "meeting_ended",
    ("ingest", "POST", "/calendar/notifications"): "calendar_notification",
    ("api", "POST", "/meetings/sync"): "declare_and_sync",
    ("api", "GET", "/meetings/{meeting_id}"): "get",
    ("api", "POST", "/meetings/{meeting_id}/sync"): "sync",
    ("api", "GET", "/meetings/{meeting_id}/report"): "report",
    ("api", "POST", "/erasures"): "erase",
    ("collect", "POST", "/"): "collect",
    ("backfill", "POST", "/"): "backfill",
    ("meet_events", "POST", "/"): "meeting_ended",  # meet_events routes as ingest does
}


def test_every_route_of_every_function_is_documented_once() -> None:
    documented = [(op.function, op.method, op.path) for op in operations()]
    assert sorted(documented) == sorted(ROUTES)


def test_every_operation_documents_the_refusals_of_its_edge() -> None:
    for op in operations():
        responses = op.description()["responses"]
        assert {"401", "405", "5XX"} <= responses.keys(), op
        assert op.description()["security"], op
        if op.method == "POST":
            assert "413" in responses, op
            # Every POST reads a JSON body but the Calendar notifications, which ignore theirs.
            assert ("415" in responses) is (op.operation_id != NOTIFICATIONS), op
        if op.function != "ingest":
            assert "403" in responses, op
        if op.function == "meet_events":
            # Pub/Sub redelivers anything but a 2xx: an unusable push is 204, never a 400.
            assert {"200", "204", "404", "502", "503"} <= responses.keys(), op
            assert "400" not in responses, op


# ------------------------------------------------------------------------------------------------
# The routers: what is documented is served, what is not is refused

NOW = datetime(2026, 11, 20, 11, 0, tzinfo=UTC)
END = NOW - timedelta(minutes=15)
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OPERATOR = "operator@acme.iam.gserviceaccount.com"
TASKS = "tasks@acme.iam.gserviceaccount.com"
SCHEDULER = "scheduler@acme.iam.gserviceaccount.com"
API_URL = "http://127.0.0.1:10/"
COLLECT_URL = "http://127.0.0.1:9/"
BACKFILL_URL = "http://127.0.0.1:11/"
MEET_EVENTS_URL = "http://127.0.0.1:12/"
PUSH = "pubsub-push@acme.iam.gserviceaccount.com"
TOPIC = "projects/acme/topics/workspace-events"
ORGANIZER = "organizer@school.example"
RECORD = "conferenceRecords/rec-1"
SPACE = "spaces/space-1"
MEET_CODE = "mno-pqrs-tuv"
ENV = {
    "GOOGLE_CLOUD_PROJECT": "acme",
    "TASKS_LOCATION": "here",
    "TASKS_QUEUE": "q",
    "COLLECT_URL": COLLECT_URL,
    "BACKFILL_URL": BACKFILL_URL,
    "TASKS_SERVICE_ACCOUNT": TASKS,
    "SCHEDULER_SERVICE_ACCOUNT": SCHEDULER,
    "REPORTS_API_ENDPOINT": "http://127.0.0.1:9",
    "ERASURE_KEY": "k" * 32,
}
# One runtime serves every handler here; each reads only its own fields.
SETTINGS = replace(
    Settings.from_env(ENV, role="backfill"),
    webhook_secrets=(SECRET,),
    api_url=API_URL,
    api_principals=(OPERATOR,),
    meet_events_url=MEET_EVENTS_URL,
    pubsub_push_service_account=PUSH,
    workspace_events_topic=TOPIC,
    organizers=(ORGANIZER,),
)


class FakeMeet:
    """Meet REST as the organizer reads it: one ended conference, with one participant."""

    def __init__(self) -> None:
        start, end = NOW - timedelta(hours=2), NOW - timedelta(hours=1)
        self.records = {RECORD: Conference(name=RECORD, space=SPACE, start=start, end=end)}
        self.session = MeetSessionTimes(
            name=f"{RECORD}/participants/p1/sessions/s1", start=start, end=end
        )
        self.failure: WorkspaceError | None = None

    def conference(self, name: str, *, as_user: str) -> Conference | None:
        if self.failure is not None:
            raise self.failure
        return self.records.get(name) if as_user == ORGANIZER else None

    def space(self, name: str, *, as_user: str) -> MeetSpace | None:
        return MeetSpace(name=name, meeting_code=MEET_CODE) if name == SPACE else None

    def attendees(self, conference: str, *, as_user: str) -> list[MeetAttendee]:
        return [
            MeetAttendee(
                name=f"{conference}/participants/p1",
                kind="signed_in",
                user="users/7",
                display_name="Student",
                sessions=(self.session,),
            )
        ]


def workspace(rt: app.Runtime) -> MemoryWorkspaceState:
    state = rt.deps.workspace
    assert isinstance(state, MemoryWorkspaceState)
    return state


@pytest.fixture
def rt() -> app.Runtime:
    clock = ManualClock(NOW)
    directory = FakeDirectory({ORGANIZER: "1", "student@school.example": "7"})
    deps = Deps(
        store=MemoryStore(),
        queue=MemoryQueue(),
        reports=ScriptedReports(),
        clock=clock,
        timing=Timing(),
        erasure_key=SETTINGS.erasure_key,
        meet=FakeMeet(),
        directory=directory,
        events=FakeWorkspaceEvents(clock, directory=directory),
        workspace=MemoryWorkspaceState(),
    )
    tokens = FakeIdTokens(COLLECT_URL, API_URL, BACKFILL_URL, MEET_EVENTS_URL)
    return app.Runtime(SETTINGS, deps, tokens)


HANDLERS = {
    "ingest": app.ingest,
    "api": app.api,
    "collect": app.collect,
    "backfill": app.backfill,
    "meet_events": app.meet_events,
}


def request(
    method: str,
    path: str,
    body: bytes = b"",
    *,
    identity: str | None = None,
    signed: bool = False,
    content_type: str | None = None,
) -> app.HttpRequest:
    headers: dict[str, str] = {}
    if identity is not None:
        headers["authorization"] = f"Bearer {identity}"
    if signed:
        webhook_id = f"msg_{uuid.uuid4().hex}"  # a replayed id would answer 200 whatever it says
        signature = sign_webhook(secret=SECRET, webhook_id=webhook_id, timestamp=NOW, body=body)
        headers.update({k.lower(): v for k, v in signature.items()})
    return app.HttpRequest(
        method=method,
        path=path,
        headers=headers,
        body=body,
        content_type=content_type or ("application/json" if body else None),
        content_length=len(body),
    )


@pytest.mark.parametrize("op", operations(), ids=str)
def test_the_router_serves_every_documented_operation(op: Operation, rt: app.Runtime) -> None:
    path = op.local_path({"meeting_id": "m-1"})
    expected = ROUTES[(op.function, op.method, op.path)]
    if op.function in ("ingest", "meet_events"):
        assert route_ingest(op.method, path) == (expected,)
    elif op.function == "api":
        assert route_api(op.method, path)[0] == expected
    # Through the handler: past the route and the edge's checks, up to the missing credential.
    status, body = HANDLERS[op.function](request(op.method, path), rt)
    assert status == 401, body
    assert answer_problems(op, status, body) == []


#: Methods and paths no function documents: (function, method, path, status).
UNDOCUMENTED = [
    *[("ingest", method, "/", 405) for method in ("GET", "PUT", "DELETE", "PATCH", "OPTIONS")],
    *[
        ("ingest", method, "/calendar/notifications", 405)
        for method in ("GET", "PUT", "DELETE", "PATCH", "OPTIONS")
    ],
    ("ingest", "POST", "/calendar", 404),
    ("ingest", "POST", "/calendar/notification", 404),
    ("ingest", "POST", "/calendar/notifications/x", 404),
    ("ingest", "POST", "/Calendar/Notifications", 404),
    ("ingest", "POST", "/meetings/sync", 404),
    ("ingest", "GET", "/meetings/m-1", 404),
    ("ingest", "POST", "/meetings/m-1/sync", 404),
    ("ingest", "POST", "/erasures", 404),
    ("ingest", "POST", "/x", 404),
    ("api", "GET", "/erasures", 405),
    ("api", "DELETE", "/erasures", 405),
    ("api", "PUT", "/meetings/m-1", 405),
    ("api", "DELETE", "/meetings/m-1", 405),
    ("api", "POST", "/meetings/m-1", 405),
    ("api", "GET", "/meetings/m-1/sync", 405),
    ("api", "PUT", "/meetings/sync", 405),
    ("api", "GET", "/", 404),
    ("api", "POST", "/", 404),
    ("api", "POST", "/meetings", 404),
    ("api", "GET", "/meetings/a/b", 404),
    ("api", "GET", "/meetings/__x__", 404),
    ("api", "POST", "/meetings/a.b/sync", 404),
    ("api", "POST", "/meetings/m-1/sync/x", 404),
    ("api", "GET", "/meetings/" + "a" * 129, 404),
    ("api", "POST", "/erasures/x", 404),
    ("api", "POST", "/calendar/notifications", 404),
    *[("collect", method, "/", 405) for method in ("GET", "PUT", "DELETE", "PATCH")],
    *[("backfill", method, "/", 405) for method in ("GET", "PUT", "DELETE", "PATCH")],
    *[("meet_events", method, "/", 405) for method in ("GET", "PUT", "DELETE", "PATCH")],
    ("meet_events", "POST", "/x", 404),
    ("meet_events", "POST", "/meetings/sync", 404),
    ("meet_events", "GET", "/meetings/m-1", 404),
    ("meet_events", "POST", "/_fake/meet/events", 404),
    ("meet_events", "POST", "/calendar/notifications", 404),
]


@pytest.mark.parametrize(("function", "method", "path", "status"), UNDOCUMENTED)
def test_what_is_not_documented_is_not_served(
    function: str, method: str, path: str, status: int, rt: app.Runtime
) -> None:
    identity = {
        "ingest": None,
        "api": OPERATOR,
        "collect": TASKS,
        "backfill": SCHEDULER,
        "meet_events": PUSH,
    }[function]
    body = b'{"type": "meeting.ended"}' if method in ("POST", "PUT", "PATCH") else b""
    got, answer = HANDLERS[function](
        request(method, path, body, identity=identity, signed=function == "ingest"), rt
    )
    assert got == status, answer
    # The refusal is the documented error body.
    assert schema_problems("/components/schemas/Error", answer) == []
    assert rt.deps.store.meetings == {}  # type: ignore[attr-defined]
    assert workspace(rt).events == {}


# ------------------------------------------------------------------------------------------------
# Request bodies: the schemas accept what our own serialisers write


def body_problems(operation_id: str, body: bytes | Any) -> list[str]:
    value = json.loads(body) if isinstance(body, bytes) else body
    return schema_problems(request_body_pointer(operation(operation_id)), value)


@pytest.mark.parametrize("reason", TASK_REASONS)
def test_the_collect_task_schema_accepts_the_queues_task_bodies(reason: CollectReason) -> None:
    task = CollectTask(meeting_id="m-3f1c2a9b8d7e6f5a4b3c2d1e", attempt=7, reason=reason)
    body = collect_task_body(task)
    assert body_problems("collectPoll", body) == []
    assert parse_collect_task(body) == task


def test_the_backfill_schema_accepts_slices_and_runs() -> None:
    part = BackfillSlice(
        since=NOW - timedelta(hours=6),
        until=NOW - timedelta(milliseconds=1),
        range_since=NOW - timedelta(hours=48),
        range_until=NOW,
    )
    body = backfill_slice_body(part)
    assert body_problems("backfillRun", body) == []
    assert parse_backfill_request(body).part == part
    # What Cloud Scheduler (and StackClient.trigger_backfill) send, and a range.
    for run in ({}, {"since": "2026-11-18T00:00:00Z", "until": "2026-11-20T00:00:00+01:00"}):
        assert body_problems("backfillRun", run) == []
        assert parse_backfill_request(json.dumps(run).encode()).part is None
    # A calendar's sync, as a notification queues it; the description's examples.
    sync = calendar_sync_body(ORGANIZER)
    assert body_problems("backfillRun", sync) == []
    assert parse_backfill_request(sync).calendar_id == ORGANIZER
    content = operation("backfillRun").description()["requestBody"]["content"]
    for example in content["application/json"]["examples"].values():
        assert body_problems("backfillRun", example["value"]) == []
        parse_backfill_request(json.dumps(example["value"]).encode())


@pytest.mark.parametrize(
    "calendar_id",
    ["a@b.co", "teacher@school.example", "t.o+m@sub.school.example", "x" * 64 + "@y.example"],
)
def test_the_calendar_sync_schema_accepts_what_the_parser_accepts(calendar_id: str) -> None:
    body = {"calendar_sync": {"calendar_id": calendar_id}}
    assert body_problems("backfillRun", body) == []
    assert parse_backfill_request(json.dumps(body).encode()).calendar_id == calendar_id


@pytest.mark.parametrize(
    "sync",
    [
        "teacher@school.example",
        5,
        [],
        {},
        {"calendar_id": None},
        {"calendar_id": 5},
        {"calendar_id": "ab"},
        {"calendar_id": "no-at-sign"},
        {"calendar_id": "x" * 254 + "@y"},
        {"calendar_id": "a\n@b"},
        {"calendar_id": "a@b\u0000"},
        {"calendar_id": "a@b\u0085"},
        {"calendar_id": "a@b"},
        {"calendar_id": "Teacher@School.example"},
        {"calendar_id": "\u00e9l\u00e8ve@\u00e9cole.fr"},
        {"calendar_id": " @ "},
    ],
)
def test_the_calendar_sync_schema_refuses_what_the_parser_refuses(sync: object) -> None:
    body = {"calendar_sync": sync}
    assert body_problems("backfillRun", body) != []
    with pytest.raises(InvalidInput):
        parse_backfill_request(json.dumps(body).encode())


def test_the_declaration_schemas_accept_the_demos_webhooks() -> None:
    algebra, biology, *_ = the_day(NOW)
    for payload in (algebra, biology):
        assert body_problems("ingestMeetingEnded", payload) == []
        parse_meeting_ended(json.dumps(payload).encode(), now=NOW + timedelta(days=7))
        manual = {k: v for k, v in payload.items() if k != "type"}
        assert body_problems("apiDeclareAndSync", manual) == []
        # The webhook needs its type; the manual declaration does not.
        assert body_problems("ingestMeetingEnded", manual) != []


def test_the_erasure_schema_accepts_a_participant_key() -> None:
    assert body_problems("apiErase", {"participant_key": "Ben@School.example"}) == []
    assert body_problems("apiErase", {"participant_key": ""}) != []


def header_parameters(operation_id: str) -> dict[str, str]:
    """The operation's header parameters: name (lower case) → the pointer of its description."""
    found = {}
    for parameter in operation(operation_id).description().get("parameters", []):
        pointer = parameter["$ref"].removeprefix("#")
        described = SPEC["components"]["parameters"][pointer.rsplit("/", 1)[1]]
        if described["in"] == "header":
            found[described["name"].lower()] = pointer
    return found


def header_problems(operation_id: str, headers: Mapping[str, str]) -> list[str]:
    """Why ``headers`` are not what the operation's header parameters describe."""
    sent = {name.lower(): value for name, value in headers.items()}
    problems = []
    for name, pointer in header_parameters(operation_id).items():
        described = SPEC["components"]["parameters"][pointer.rsplit("/", 1)[1]]
        if name not in sent:
            problems += [f"{name} is missing"] if described.get("required") else []
            continue
        problems += [f"{name}: {p}" for p in schema_problems(f"{pointer}/schema", sent[name])]
    return problems


def test_the_notification_headers_are_those_google_sends() -> None:
    # Google's push headers as the local fake Calendar writes them (google-events.md §4).
    channel = FakeCalendarChannel(
        id=uuid.uuid4().hex,
        resource_id="ret08u3rv24htgh289g",
        calendar_id=ORGANIZER,
        address="http://127.0.0.1:1/calendar/notifications",
        token="t" * 43,
        expiration=NOW + timedelta(days=7),
        params={},
    )
    for state, number in (("sync", 1), ("exists", 2), ("not_exists", 3)):
        sent = channel.headers(state, number)
        assert header_problems(NOTIFICATIONS, sent) == []
        assert {name.lower() for name in sent} == header_parameters(NOTIFICATIONS).keys()
    examples = {
        name: SPEC["components"]["parameters"][pointer.rsplit("/", 1)[1]]["example"]
        for name, pointer in header_parameters(NOTIFICATIONS).items()
    }
    assert header_problems(NOTIFICATIONS, examples) == []
    assert header_problems(NOTIFICATIONS, {**examples, "x-goog-resource-state": "x"}) != []
    assert header_problems(NOTIFICATIONS, {}) != []


def test_every_documented_example_of_an_answer_is_valid() -> None:
    checked = 0
    for op in operations():
        for status, response in op.description()["responses"].items():
            escaped = status.replace("/", "~1")
            media = response.get("content", {}).get("application/json")
            if media is None:
                continue
            schema = f"{op.pointer}/responses/{escaped}/content/application~1json/schema"
            values = [e["value"] for e in media.get("examples", {}).values()]
            values += [media["example"]] if "example" in media else []
            for value in values:
                assert schema_problems(schema, value) == [], (op, status, value)
                checked += 1
    assert checked >= 10


def push(
    event_type: str,
    data: dict[str, Any],
    *,
    event_id: str = "evt-1",
    source: str = "//meet.googleapis.com/" + SPACE,
) -> dict[str, Any]:
    """A wrapped Pub/Sub push of a binary-mode CloudEvent, every field Pub/Sub sends."""
    published = "2026-11-20T10:00:01.250Z"
    return {
        "message": {
            "attributes": {
                "ce-specversion": "1.0",
                "ce-type": event_type,
                "ce-id": event_id,
                "ce-source": source,
                "ce-subject": source,
                "ce-time": "2026-11-20T10:00:00.000Z",
                "ce-datacontenttype": "application/json",
            },
            "data": base64.b64encode(json.dumps(data).encode()).decode(),
            "messageId": "17",
            "message_id": "17",
            "publishTime": published,
            "publish_time": published,
        },
        "subscription": "projects/acme/subscriptions/workspace-events-push",
        "deliveryAttempt": 1,
    }


ENDED = push(CONFERENCE_ENDED, {"conferenceRecord": {"name": RECORD}})


def lifecycle(event_type: str, name: str, event_id: str) -> dict[str, Any]:
    source = "//workspaceevents.googleapis.com/" + name
    data = {"subscription": {"name": name, "state": "ACTIVE"}}
    return push(event_type, data, event_id=event_id, source=source)


def test_the_push_schema_accepts_what_pubsub_sends_and_its_examples_are_events() -> None:
    reminder = lifecycle(SUBSCRIPTION_EXPIRATION_REMINDER, "subscriptions/s-1", "r-1")
    assert body_problems("meetEventsPush", ENDED) == []
    assert body_problems("meetEventsPush", reminder) == []
    # Without Pub/Sub's snake_case copies, the optional attributes and deliveryAttempt.
    minimal = copy.deepcopy(ENDED)
    for name in ("message_id", "publish_time"):
        del minimal["message"][name]
    for name in ("ce-subject", "ce-time", "ce-datacontenttype"):
        del minimal["message"]["attributes"][name]
    del minimal["deliveryAttempt"]
    assert body_problems("meetEventsPush", minimal) == []
    examples = operation("meetEventsPush").description()["requestBody"]["content"]
    for example in examples["application/json"]["examples"].values():
        envelope = example["value"]
        assert body_problems("meetEventsPush", envelope) == []
        event = parse_push(json.dumps(envelope).encode())
        assert event.conference_record or event.subscription, event
        data_schema = "/components/schemas/MeetEventData"
        assert schema_problems(data_schema, dict(event.data)) == []
        assert event.type in json.dumps(SPEC["components"]["schemas"]["CloudEventAttributes"])


def test_the_event_data_schemas_accept_what_the_handler_reads() -> None:
    ended = {"conferenceRecord": {"name": RECORD}}
    assert schema_problems("/components/schemas/MeetConferenceEndedData", ended) == []
    reminder = lifecycle(SUBSCRIPTION_SUSPENDED, "subscriptions/s-1", "s-1")
    event = parse_push(json.dumps(reminder).encode())
    assert event.subscription == "subscriptions/s-1"
    data_schema = "/components/schemas/SubscriptionLifecycleData"
    assert schema_problems(data_schema, dict(event.data)) == []
    # Names the handler would not use are refused by the schemas too.
    for name in ("conferenceRecords/../x", "conferenceRecords/", "spaces/x"):
        bad = {"conferenceRecord": {"name": name}}
        assert schema_problems("/components/schemas/MeetConferenceEndedData", bad) != []
    for name in ("subscriptions/", "projects/p/subscriptions/s"):
        assert schema_problems(data_schema, {"subscription": {"name": name}}) != []


def _with_message(**changes: Any) -> dict[str, Any]:
    envelope = copy.deepcopy(ENDED)
    envelope["message"].update(changes)
    return envelope


@pytest.mark.parametrize(
    "envelope",
    [
        {"message": "x", "subscription": "s"},
        _with_message(data="%%%"),
        _with_message(data=5),
        _with_message(attributes={"ce-id": 1, "ce-type": CONFERENCE_ENDED, "ce-source": "s"}),
        _with_message(attributes={"ce-type": CONFERENCE_ENDED, "ce-source": "s"}),
        _with_message(attributes={**ENDED["message"]["attributes"], "ce-id": "   "}),
        _with_message(attributes={**ENDED["message"]["attributes"], "ce-type": "t" * 1025}),
    ],
)
def test_the_push_schema_refuses_what_the_parser_cannot_use(envelope: dict[str, Any]) -> None:
    assert body_problems("meetEventsPush", envelope) != []
    with pytest.raises(UnusablePush):
        parse_push(json.dumps(envelope).encode())


@pytest.mark.parametrize(
    ("operation_id", "body"),
    [
        ("ingestMeetingEnded", {"type": "meeting.ended", "meeting_code": "abc-defg-hij"}),
        ("ingestMeetingEnded", {"type": "other", "meeting_code": "abc", "ended_at": "x"}),
        ("collectPoll", {"meeting_id": "a b", "attempt": 1}),
        ("collectPoll", {"meeting_id": "__x__", "attempt": 1}),
        ("collectPoll", {"meeting_id": "m-1", "attempt": 0}),
        ("backfillRun", {"slice": {"since": "2026-11-18T00:00:00Z"}}),
    ],
)
def test_the_request_schemas_refuse_what_the_parsers_refuse(
    operation_id: str, body: dict[str, Any]
) -> None:
    assert body_problems(operation_id, body) != []


# ------------------------------------------------------------------------------------------------
# Answers: the handlers' real answers are what the description documents


def meeting_ended(**extra: Any) -> bytes:
    payload = {
        "type": "meeting.ended",
        "meeting_code": "ABC-defg-HIJ",
        "ended_at": "2026-11-20T10:45:00Z",
        "started_at": "2026-11-20T10:00:00+00:00",
        "external_id": "algebra-1",
        "expected_participants": ["Teacher@School.example", "absent@school.example"],
    }
    payload.update(extra)
    return json.dumps(payload).encode()


class Answers:
    """Calls a handler and checks its answer against the description."""

    def __init__(self, rt: app.Runtime) -> None:
        self.rt = rt
        self.seen: set[tuple[str, int]] = set()

    def __call__(self, operation_id: str, req: app.HttpRequest, status: int) -> dict[str, Any]:
        op = operation(operation_id)
        got, body = HANDLERS[op.function](req, self.rt)
        assert got == status, body
        # As main.py sends it: compact JSON bytes, or nothing for a 204.
        sent = b"" if got == 204 else app.json_bytes(body)
        assert answer_problems(op, got, sent) == []
        self.seen.add((operation_id, got))
        return body


def attendance(rt: app.Runtime) -> None:
    reports: ScriptedReports = rt.deps.reports  # type: ignore[assignment]
    reports.activities += activities_for(
        [
            Stay("teacher@school.example", END - timedelta(minutes=45), END),
            Stay("kid@school.example", END - timedelta(minutes=40), END - timedelta(minutes=20)),
            Stay("kid@school.example", END - timedelta(minutes=10), END, device_type="android"),
            Stay("", END - timedelta(minutes=30), END, identifier_type=None, display_name="Guest"),
        ],
        meeting_code="abc-defg-hij",
        conference_id="c",
    )


def test_the_answers_of_ingest_are_documented(rt: app.Runtime) -> None:
    answer = Answers(rt)
    created = answer("ingestMeetingEnded", request("POST", "/", meeting_ended(), signed=True), 202)
    answer("ingestMeetingEnded", request("POST", "/", meeting_ended(), signed=True), 200)
    other_code = meeting_ended(meeting_code="zzz-zzzz-zzz")
    answer("ingestMeetingEnded", request("POST", "/", other_code, signed=True), 409)
    bad_time = meeting_ended(ended_at="2026-11-20T10:45:00")
    refusal = answer("ingestMeetingEnded", request("POST", "/", bad_time, signed=True), 400)
    assert refusal["error"]["field"] == "ended_at"
    answer("ingestMeetingEnded", request("POST", "/", meeting_ended()), 401)
    answer("ingestMeetingEnded", request("POST", "/x", meeting_ended(), signed=True), 404)
    answer("ingestMeetingEnded", request("GET", "/"), 405)
    answer("ingestMeetingEnded", request("POST", "/", b"x" * 70_000), 413)
    answer("ingestMeetingEnded", request("POST", "/", b"hi", content_type="text/plain"), 415)
    assert created["meeting_id"]


def test_the_answers_of_the_api_are_documented(rt: app.Runtime) -> None:
    answer = Answers(rt)
    _, created = app.ingest(request("POST", "/", meeting_ended(), signed=True), rt)
    meeting = f"/meetings/{created['meeting_id']}"
    # Estimated attendance, then real sessions, then a failing Reports poll.
    estimated = answer("apiGetMeeting", request("GET", meeting, identity=OPERATOR), 200)
    assert {p["estimated"] for p in estimated["participants"]} == {True}
    attendance(rt)
    synced = answer("apiSyncMeeting", request("POST", f"{meeting}/sync", identity=OPERATOR), 200)
    assert len(synced["participants"]) == 4
    view = answer("apiGetMeeting", request("GET", meeting, identity=OPERATOR), 200)
    assert any(p["sessions"] for p in view["participants"])
    reports: ScriptedReports = rt.deps.reports  # type: ignore[assignment]
    reports.failures.append(ReportsError("grant the client id", kind="permission"))
    failed = answer("apiSyncMeeting", request("POST", f"{meeting}/sync", identity=OPERATOR), 502)
    assert failed["status"] == "error"

    manual = json.loads(meeting_ended(external_id="manual-1"))
    del manual["type"]
    declared = answer(
        "apiDeclareAndSync",
        request("POST", "/meetings/sync", json.dumps(manual).encode(), identity=OPERATOR),
        200,
    )
    assert declared["meeting_id"]
    answer(
        "apiDeclareAndSync",
        request("POST", "/meetings/sync", b'{"meeting_code": "abc"}', identity=OPERATOR),
        400,
    )
    answer("apiGetMeeting", request("GET", meeting), 401)
    answer("apiGetMeeting", request("GET", meeting, identity="kid@school.example"), 403)
    answer("apiGetMeeting", request("GET", "/meetings/nope", identity=OPERATOR), 404)
    answer("apiSyncMeeting", request("POST", "/meetings/nope/sync", identity=OPERATOR), 404)
    answer("apiGetMeeting", request("PUT", meeting, identity=OPERATOR), 405)
    answer(
        "apiErase",
        request("POST", "/erasures", b'{"participant_key": ""}', identity=OPERATOR),
        400,
    )
    answer("apiErase", request("POST", "/erasures", b"[]", identity=OPERATOR), 400)
    answer("apiErase", request("POST", "/erasures", b"{}", content_type="text/plain"), 415)


def test_the_answer_of_an_erasure_is_documented(rt: app.Runtime) -> None:
    pytest.importorskip("functions.erasure", reason="POST /erasures is being written")
    answer = Answers(rt)
    _, created = app.ingest(request("POST", "/", meeting_ended(), signed=True), rt)
    attendance(rt)
    app.api(request("POST", f"/meetings/{created['meeting_id']}/sync", identity=OPERATOR), rt)
    body = b'{"participant_key": "Kid@School.example"}'
    erased = answer("apiErase", request("POST", "/erasures", body, identity=OPERATOR), 200)
    assert erased["meetings_changed"] == 1


def test_the_answers_of_collect_are_documented(rt: app.Runtime) -> None:
    answer = Answers(rt)
    _, created = app.ingest(request("POST", "/", meeting_ended(), signed=True), rt)
    attendance(rt)
    queue: MemoryQueue = rt.deps.queue  # type: ignore[assignment]
    task = collect_task_body(queue.pop_next().task)
    polled = answer("collectPoll", request("POST", "/", task, identity=TASKS), 200)
    assert (polled["meeting_id"], polled["polled"]) == (created["meeting_id"], True)
    again = answer("collectPoll", request("POST", "/", task, identity=TASKS), 200)
    assert again["polled"] is False
    unknown = CollectTask(meeting_id="nope", attempt=1)
    skipped = answer(
        "collectPoll", request("POST", "/", collect_task_body(unknown), identity=TASKS), 200
    )
    assert (skipped["skipped"], skipped["status"], skipped["revision"]) == ("unknown", None, None)
    manual = collect_task_body(replace(unknown, reason="manual"))
    never_queued = answer("collectPoll", request("POST", "/", manual, identity=TASKS), 400)
    assert never_queued["error"]["field"] == "reason"
    bad = b'{"meeting_id": "a b", "attempt": 1}'
    refused = answer("collectPoll", request("POST", "/", bad, identity=TASKS), 400)
    assert refused["error"]["code"] == "invalid_task"
    answer("collectPoll", request("POST", "/", task), 401)
    answer("collectPoll", request("POST", "/", task, identity=OPERATOR), 403)
    answer("collectPoll", request("GET", "/", identity=TASKS), 405)
    answer("collectPoll", request("POST", "/", b" " * 70_000, identity=TASKS), 413)
    answer("collectPoll", request("POST", "/", task, content_type="text/csv"), 415)


def test_the_answers_of_backfill_are_documented(rt: app.Runtime) -> None:
    answer = Answers(rt)
    attendance(rt)
    ran = answer("backfillRun", request("POST", "/", identity=SCHEDULER), 200)
    assert ran["slices"] == 9  # 48 hours in 6-hour slices, and the millisecond at the end
    assert ran["subscriptions"]["created"] == 1  # the organizer's Workspace Events subscription
    queue: MemoryQueue = rt.deps.queue  # type: ignore[assignment]
    (holding_the_class,) = [s for s in queue.slices if s.since <= END <= s.until]
    part = backfill_slice_body(holding_the_class)
    scanned = answer("backfillRun", request("POST", "/", part, identity=TASKS), 200)
    assert scanned["meetings_created"] == 1
    since = b'{"since": "2026-11-20T12:00:00Z"}'
    answer("backfillRun", request("POST", "/", since, identity=SCHEDULER), 400)
    answer("backfillRun", request("POST", "/", b"{", identity=SCHEDULER), 400)
    answer("backfillRun", request("POST", "/"), 401)
    answer("backfillRun", request("POST", "/", identity=OPERATOR), 403)
    answer("backfillRun", request("PUT", "/", identity=SCHEDULER), 405)
    answer("backfillRun", request("POST", "/", b"{}", content_type="text/plain"), 415)


NOTIFICATIONS_URL = "http://127.0.0.1:13/calendar/notifications"
CHANNEL, RESOURCE, CHANNEL_TOKEN = uuid.uuid4().hex, "ret08u3rv24htgh289g", "s3cr3t-" + "t" * 36


def with_calendars(rt: app.Runtime, *channels: ChannelRecord) -> app.Runtime:
    """``rt`` with the Calendar side: a fake Calendar API, channel state holding ``channels``,
    and the notification address (so the daily run opens channels)."""
    state = MemoryCalendarState()
    for record in channels:
        state.save_channel(record)
    return replace(
        rt,
        settings=replace(rt.settings, calendar_notifications_url=NOTIFICATIONS_URL),
        deps=replace(rt.deps, calendar=FakeCalendar(), calendars=state),
    )


def channel_record(channel_id: str = CHANNEL, **changes: Any) -> ChannelRecord:
    record = ChannelRecord(
        channel_id=channel_id,
        calendar_id=ORGANIZER,
        organizer_email=ORGANIZER,
        resource_id=RESOURCE,
        token_hash=token_hash(CHANNEL_TOKEN),
        expiration=NOW + timedelta(days=6),
        created_at=NOW - timedelta(days=1),
        address=NOTIFICATIONS_URL,
    )
    return replace(record, **changes)


def notification(
    *,
    state: str = "exists",
    number: str = "7",
    method: str = "POST",
    body: bytes = b"",
    content_type: str | None = None,
    **headers: str | None,
) -> app.HttpRequest:
    """A push of the channel ``CHANNEL`` as Google sends it; ``headers`` (``x_goog_channel_id``
    for ``X-Goog-Channel-ID``) replace its headers, None leaves one out."""
    sent: dict[str, str | None] = {
        "x-goog-channel-id": CHANNEL,
        "x-goog-channel-token": CHANNEL_TOKEN,
        "x-goog-channel-expiration": "Thu, 26 Nov 2026 11:00:00 GMT",
        "x-goog-resource-id": RESOURCE,
        "x-goog-resource-uri": "https://www.googleapis.com/calendar/v3/calendars/o/events",
        "x-goog-resource-state": state,
        "x-goog-message-number": number,
    }
    sent.update({name.replace("_", "-"): value for name, value in headers.items()})
    return app.HttpRequest(
        method=method,
        path="/calendar/notifications",
        headers={name: value for name, value in sent.items() if value is not None},
        body=body,
        content_type=content_type,
        content_length=len(body),
    )


def test_the_answers_of_calendar_notifications_are_documented(rt: app.Runtime) -> None:
    other_token = "another channel's token"
    rt = with_calendars(
        rt,
        channel_record(),
        channel_record("other-channel", token_hash=token_hash(other_token)),
        # Stored before events.watch answered: no resource id yet.
        channel_record("pending-channel", resource_id=""),
    )
    answer = Answers(rt)
    queue: MemoryQueue = rt.deps.queue  # type: ignore[assignment]
    state: MemoryCalendarState = rt.deps.calendars  # type: ignore[assignment]
    first = answer(NOTIFICATIONS, notification(state="sync", number="1"), 200)
    assert first == {"accepted": "sync"}
    assert queue.calendar_syncs == []
    for number in ("2", "2"):  # the same message again queues nothing new
        changed = answer(NOTIFICATIONS, notification(number=number), 200)
        assert changed == {"accepted": "sync_enqueued"}
    assert queue.calendar_syncs == [ORGANIZER]
    # Whatever the state says but sync is a change; a small body is ignored, whatever its type.
    for request_ in (
        notification(state="not_exists", number="3"),
        notification(state="whatever", number="4"),
        notification(number="5", body=b"<xml/>", content_type="text/xml"),
    ):
        assert answer(NOTIFICATIONS, request_, 200) == {"accepted": "sync_enqueued"}
    assert queue.calendar_syncs == [ORGANIZER] * 4

    # Forged: nothing is read or written, nothing queued.
    before = copy.deepcopy(state.records), copy.deepcopy(state.syncs)
    forged = [
        notification(x_goog_channel_token=CHANNEL_TOKEN + "x"),
        notification(x_goog_channel_token=CHANNEL_TOKEN.upper()),
        notification(x_goog_channel_token=""),
        notification(x_goog_channel_token=None),
        notification(x_goog_channel_token=other_token),  # the token of another channel
        notification(x_goog_channel_token=token_hash(CHANNEL_TOKEN)),  # what is stored
        notification(x_goog_resource_id="ret08u3rv24htgh289h"),
        notification(x_goog_resource_id=""),
        notification(x_goog_resource_id=None),
        notification(x_goog_channel_id="unknown"),
        notification(x_goog_channel_id=CHANNEL.upper()),
        notification(x_goog_channel_id=CHANNEL + "x" * 64),
        notification(x_goog_channel_id=""),
        notification(x_goog_channel_id=None),
        notification(x_goog_channel_id="pending-channel", x_goog_resource_id=""),
        notification(x_goog_channel_id="other-channel"),
        notification(state="sync", x_goog_channel_token="x"),
        # The ingest webhook's credential is no credential here.
        request("POST", "/calendar/notifications", signed=True),
    ]
    for forgery in forged:
        refused = answer(NOTIFICATIONS, forgery, 401)
        assert refused["error"]["code"] == "unauthorized"
    assert (state.records, state.syncs) == before
    assert queue.calendar_syncs == [ORGANIZER] * 4
    answer(NOTIFICATIONS, notification(method="GET"), 405)
    answer(NOTIFICATIONS, notification(method="PUT", body=b"{}"), 405)
    answer(NOTIFICATIONS, notification(body=b"x" * 4097, content_type="text/plain"), 413)
    assert queue.calendar_syncs == [ORGANIZER] * 4
    # The trailing slash is the same route.
    slash = replace(notification(number="6"), path="/calendar/notifications/")
    assert answer(NOTIFICATIONS, slash, 200) == {"accepted": "sync_enqueued"}

    def unavailable(channel_id: str) -> ChannelRecord | None:
        raise Unavailable("Firestore is unavailable")

    state.channel = unavailable  # type: ignore[method-assign]
    assert answer(NOTIFICATIONS, notification(), 503)["error"]["code"] == "unavailable"
    # Every answer the description documents was reached, but the HTTP server's own refusals.
    responses = set(operation(NOTIFICATIONS).description()["responses"])
    documented = responses - {"5XX", "400"} - SERVER_REFUSALS
    assert {str(status) for _, status in answer.seen} - {"503"} == documented


def test_a_deployment_without_channels_refuses_every_notification(rt: app.Runtime) -> None:
    assert rt.deps.calendars is None
    refused = Answers(rt)(NOTIFICATIONS, notification(), 401)
    assert refused["error"]["code"] == "unauthorized"
    queue: MemoryQueue = rt.deps.queue  # type: ignore[assignment]
    assert queue.calendar_syncs == []


def test_the_answers_of_a_calendar_sync_are_documented(rt: app.Runtime) -> None:
    rt = with_calendars(rt)
    answer = Answers(rt)
    calendar: FakeCalendar = rt.deps.calendar  # type: ignore[assignment]
    state: MemoryCalendarState = rt.deps.calendars  # type: ignore[assignment]
    # The daily run opens the organizer's channel (and syncs the calendar in full).
    calendar.put(ORGANIZER, calendar_event("stand-up", code=None))
    ran = answer("backfillRun", request("POST", "/", identity=SCHEDULER), 200)
    assert ran["channels"] == {
        "opened": 1,
        "renewed": 0,
        "closed": 0,
        "unchanged": 0,
        "problems": 0,
    }
    assert [opened[0] for opened in calendar.opened] == [ORGANIZER]
    # A class is added, then cancelled: each change is synced by the task a notification queues.
    lesson = calendar_event("lesson-1", start=NOW + timedelta(hours=1))
    calendar.put(ORGANIZER, lesson)
    task = calendar_sync_body(ORGANIZER)
    synced = answer("backfillRun", request("POST", "/", task, identity=TASKS), 200)
    assert synced == {
        "calendar_sync": {
            "events": 1,
            "declared": 1,
            "cancelled": 0,
            "ignored": 0,
            "full": False,
            "refused": 0,
        }
    }
    calendar.put(ORGANIZER, {**lesson, "status": "cancelled"})
    cancelled = answer("backfillRun", request("POST", "/", task, identity=TASKS), 200)
    assert cancelled["calendar_sync"]["cancelled"] == 1
    # Another sync of the calendar runs: this one is busy (retried by Cloud Tasks); the daily
    # run's Calendar part counts it as that organizer's problem and goes on.
    held = state.take_sync(
        ORGANIZER,
        organizer_email=ORGANIZER,
        owner="other",
        until=NOW + timedelta(minutes=5),
        now=NOW,
    )
    assert held is not None
    busy = answer("backfillRun", request("POST", "/", task, identity=TASKS), 409)
    assert busy["error"]["code"] == "busy"
    ran = answer("backfillRun", request("POST", "/", identity=SCHEDULER), 200)
    assert ran["channels"]["problems"] == 1
    state.finish_sync(ORGANIZER, owner="other", sync_token=None, generation=-1, now=NOW)

    def failing() -> None:
        raise WorkspaceError("Google Calendar API 503 after 6 attempt(s)", kind="transient")

    calendar.before_page = failing
    assert answer("backfillRun", request("POST", "/", task, identity=TASKS), 502)["error"] == {
        "code": "transient",
        "message": "temporarily unavailable; retry later",
    }
    # Refused before anything is read.
    lists = calendar.lists
    bad = b'{"calendar_sync": {"calendar_id": "nobody"}}'
    refused = answer("backfillRun", request("POST", "/", bad, identity=TASKS), 400)
    assert refused["error"]["field"] == "calendar_sync.calendar_id"
    answer("backfillRun", request("POST", "/", task), 401)
    answer("backfillRun", request("POST", "/", task, identity=OPERATOR), 403)
    answer("backfillRun", request("POST", "/", task, content_type="text/plain"), 415)
    assert calendar.lists == lists


def pushed(
    envelope: dict[str, Any] | bytes,
    *,
    identity: str | None = PUSH,
    path: str = "/",
    content_type: str | None = None,
) -> app.HttpRequest:
    body = envelope if isinstance(envelope, bytes) else json.dumps(envelope).encode()
    return request("POST", path, body, identity=identity, content_type=content_type)


def subscribed(rt: app.Runtime) -> str:
    """The organizer's subscription, as the daily run leaves it."""
    events = rt.deps.events
    assert events is not None
    created = events.create(
        as_user=ORGANIZER, target=user_target("1"), event_types=[CONFERENCE_ENDED], topic=TOPIC
    )
    workspace(rt).save_subscription(
        SubscriptionRecord(
            organizer_email=ORGANIZER,
            user_id="1",
            subscription=created.name,
            state=created.state,
            expire_time=created.expire_time,
        )
    )
    return created.name


UNUSABLE_PUSHES = [
    b"",
    b"not json",
    b"[]",
    b'{"message": "x"}',
    json.dumps(_with_message(data="%%%")).encode(),
    json.dumps(_with_message(data=base64.b64encode(b"[1]").decode())).encode(),
    json.dumps(_with_message(attributes={"ce-type": CONFERENCE_ENDED})).encode(),
    json.dumps(_with_message(attributes={"ce-id": "1", "ce-type": 5})).encode(),
]


def test_the_answers_of_meet_events_are_documented(rt: app.Runtime) -> None:
    answer = Answers(rt)
    meet: FakeMeet = rt.deps.meet  # type: ignore[assignment]
    handled = answer("meetEventsPush", pushed(ENDED), 200)
    assert handled == {"handled": "conference_ended"}
    store: MemoryStore = rt.deps.store  # type: ignore[assignment]
    (meeting,) = store.meetings.values()
    assert (meeting.source, meeting.meeting_code) == ("meet", MEET_CODE)
    assert answer("meetEventsPush", pushed(ENDED), 200) == {"handled": "duplicate"}
    for envelope, word in [
        (
            push(
                CONFERENCE_ENDED,
                {"conferenceRecord": {"name": "conferenceRecords/x"}},
                event_id="e-2",
            ),
            "unreadable",
        ),
        (push(CONFERENCE_ENDED, {}, event_id="e-3"), "unusable"),
        (push("google.workspace.meet.participant.v2.joined", {}, event_id="e-4"), "ignored"),
        (
            lifecycle(SUBSCRIPTION_EXPIRATION_REMINDER, "subscriptions/x", "e-5"),
            "unknown subscription",
        ),
        (lifecycle(SUBSCRIPTION_EXPIRATION_REMINDER, subscribed(rt), "e-6"), "renewed"),
    ]:
        assert answer("meetEventsPush", pushed(envelope), 200) == {"handled": word}
    for body in UNUSABLE_PUSHES:
        assert answer("meetEventsPush", pushed(body), 204) == {}
    # Refused before the body is read; nothing is remembered of a refused push.
    remembered = dict(workspace(rt).events)
    answer("meetEventsPush", pushed(ENDED, identity=None), 401)
    answer("meetEventsPush", pushed(ENDED, identity=OPERATOR), 403)
    answer("meetEventsPush", pushed(ENDED, path="/x"), 404)
    answer("meetEventsPush", request("GET", "/", identity=PUSH), 405)
    answer("meetEventsPush", pushed(b" " * 70_000), 413)
    answer("meetEventsPush", pushed(ENDED, content_type="text/plain"), 415)
    # Failures worth a retry: Pub/Sub redelivers, and the event is not remembered as handled.
    retried = push(CONFERENCE_ENDED, {"conferenceRecord": {"name": RECORD}}, event_id="e-7")
    meet.failure = WorkspaceError("Meet REST API 503 after 6 attempt(s)", kind="transient")
    assert answer("meetEventsPush", pushed(retried), 502)["error"]["code"] == "transient"
    meet.failure = None

    def unavailable(event_id: str) -> bool:
        raise Unavailable("Firestore is unavailable")

    workspace(rt).event_handled = unavailable  # type: ignore[method-assign]
    assert answer("meetEventsPush", pushed(retried), 503)["error"]["code"] == "unavailable"
    assert workspace(rt).events == remembered
    # Every answer the description documents was reached, but an unexpected 500 and the HTTP
    # server's own refusals.
    responses = set(operation("meetEventsPush").description()["responses"])
    documented = responses - {"5XX"} - SERVER_REFUSALS
    assert {str(status) for _, status in answer.seen} == documented


def test_an_unexpected_failure_answers_the_documented_5xx(rt: app.Runtime) -> None:
    def broken(meeting_id: str) -> None:
        raise RuntimeError("secret internals")

    rt.deps.store.get = broken  # type: ignore[method-assign]
    body = Answers(rt)("apiGetMeeting", request("GET", "/meetings/m-1", identity=OPERATOR), 500)
    assert body["error"]["code"] == "internal"


def test_answers_with_undocumented_statuses_or_shapes_are_caught() -> None:
    op = operation("apiGetMeeting")
    assert answer_problems(op, 418, {"error": {"code": "x", "message": "y"}}) != []
    assert answer_problems(op, 200, {"meeting": {}, "participants": []}) != []
    assert answer_problems(op, 404, {"error": "not found"}) != []
    view_with_bad_time = {"meeting": {"ended_at": "2026-13-45T99:00:00.000Z"}, "participants": []}
    assert any("ended_at" in p for p in answer_problems(op, 200, view_with_bad_time))
