"""The fake Meet REST + Workspace Events + Directory server, driven by the stock google-api-python-client.

Every fidelity point goes through ``googleapiclient.discovery.build(..., static_discovery=True)``
pointed at the fake, as the adapters use it; control calls and the Pub/Sub push go over plain HTTP
to a receiver and a token mint started here on 127.0.0.1.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import google.auth.credentials
import google.auth.crypt
import google.auth.jwt
import google.oauth2.credentials
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from local.fake_workspace import FakeWorkspaceServer, format_time, parse_duration

os.environ["NO_GCE_CHECK"] = "True"

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
A = "a@x.test"
B = "b@x.test"
ENDED = "google.workspace.meet.conference.v2.ended"
STARTED = "google.workspace.meet.conference.v2.started"
JOINED = "google.workspace.meet.participant.v2.joined"
LEFT = "google.workspace.meet.participant.v2.left"
BASE = dt.datetime(2026, 1, 15, 9, 0, tzinfo=dt.UTC)
TOPIC = "projects/demo-attendance/topics/workspace-events"
KID = "test-mint-key"


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuses name resolution of anything but loopback, so no test can reach a Google host."""
    real = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name not in LOOPBACK:
            raise OSError(f"test refused a connection to {name!r}")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)


# --- local helpers: a movable clock, a push receiver and a token mint ---------------------------


class Clock:
    """Real UTC time plus an offset the tests move."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(0)

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset

    def advance(self, **delta: float) -> None:
        self.offset += dt.timedelta(**delta)


class _Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        del format, args

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _answer(self, status: int, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class Receiver:
    """What MEET_EVENTS_URL would be: records every push and answers ``status``."""

    def __init__(self) -> None:
        self.pushes: list[dict[str, Any]] = []
        self.status = 204
        owner = self

        class Handler(_Quiet):
            def do_POST(self) -> None:
                owner.pushes.append(
                    {"path": self.path, "headers": dict(self.headers), "body": self._body()}
                )
                self._answer(owner.status, b"")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/meet-events"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class Mint:
    """The token mint of README "The local stack": ``{"audience", "email"}`` → ``{"id_token"}`` (RS256)."""

    def __init__(self) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self.public_pem = (
            key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
        signer = google.auth.crypt.RSASigner.from_string(pem, key_id=KID)  # type: ignore[no-untyped-call]
        self.asked: list[dict[str, Any]] = []
        owner = self

        class Handler(_Quiet):
            def do_POST(self) -> None:
                asked = json.loads(self._body())
                owner.asked.append(asked)
                now = int(time.time())
                claims = {
                    "iss": "https://accounts.google.com",
                    "aud": asked["audience"],
                    "email": asked["email"],
                    "email_verified": True,
                    "sub": "1" * 21,
                    "azp": "1" * 21,
                    "iat": now,
                    "exp": now + 3600,
                }
                token: bytes = google.auth.jwt.encode(signer, claims)  # type: ignore[no-untyped-call]
                self._answer(200, json.dumps({"id_token": token.decode()}).encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/token"

    def verify(self, token: str, audience: str) -> dict[str, Any]:
        claims: dict[str, Any] = google.auth.jwt.decode(  # type: ignore[no-untyped-call]
            token, certs={KID: self.public_pem}, audience=audience
        )
        return claims

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.stop()


@pytest.fixture(scope="module")
def mint() -> Iterator[Mint]:
    m = Mint()
    yield m
    m.stop()


@pytest.fixture(scope="module")
def server(clock: Clock, receiver: Receiver, mint: Mint) -> Iterator[FakeWorkspaceServer]:
    srv = FakeWorkspaceServer(push_url=receiver.url, token_mint_url=mint.url, clock=clock)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _clean(request: pytest.FixtureRequest) -> None:
    if "server" not in request.fixturenames:
        return
    server: FakeWorkspaceServer = request.getfixturevalue("server")
    server.reset()
    clock: Clock = request.getfixturevalue("clock")
    clock.offset = dt.timedelta(0)
    receiver: Receiver = request.getfixturevalue("receiver")
    receiver.pushes.clear()
    receiver.status = 204


def client(server: FakeWorkspaceServer, api: str, version: str, subject: str | None) -> Any:
    credentials: google.auth.credentials.Credentials
    if subject is None:
        credentials = google.auth.credentials.AnonymousCredentials()  # type: ignore[no-untyped-call]
    else:
        credentials = google.oauth2.credentials.Credentials(token=f"local-subject:{subject}")  # type: ignore[no-untyped-call]
    return build(
        api,
        version,
        static_discovery=True,
        credentials=credentials,
        client_options={"api_endpoint": server.url},
    )


@pytest.fixture(scope="module")
def meet(server: FakeWorkspaceServer) -> Any:
    return client(server, "meet", "v2", A)


@pytest.fixture(scope="module")
def meet_b(server: FakeWorkspaceServer) -> Any:
    return client(server, "meet", "v2", B)


@pytest.fixture(scope="module")
def meet_anon(server: FakeWorkspaceServer) -> Any:
    return client(server, "meet", "v2", None)


@pytest.fixture(scope="module")
def events(server: FakeWorkspaceServer) -> Any:
    return client(server, "workspaceevents", "v1", A)


@pytest.fixture(scope="module")
def directory(server: FakeWorkspaceServer) -> Any:
    return client(server, "admin", "directory_v1", A)


def control(server: FakeWorkspaceServer, path: str, body: Any = None) -> requests.Response:
    url = f"{server.url}_fake/meet{path}"
    if body is None:
        return requests.get(url, timeout=30)
    return requests.post(url, json=body, timeout=30)


def http_error(call: Callable[[], Any]) -> tuple[int, dict[str, Any]]:
    with pytest.raises(HttpError) as info:
        call()
    body: dict[str, Any] = json.loads(info.value.content)
    return info.value.resp.status, body


def ts(minutes: float) -> str:
    return format_time(BASE + dt.timedelta(minutes=minutes))


def record(rid: str, space: str = "spaces/S1", start: float = 0, end: float | None = 60) -> Any:
    item: dict[str, Any] = {
        "name": f"conferenceRecords/{rid}",
        "space": space,
        "startTime": ts(start),
    }
    if end is not None:
        item["endTime"] = ts(end)
    return item


def participant(rid: str, pid: str, start: float = 0, end: float | None = 60) -> Any:
    item: dict[str, Any] = {
        "name": f"conferenceRecords/{rid}/participants/{pid}",
        "earliestStartTime": ts(start),
        "signedinUser": {"user": f"users/{pid}", "displayName": pid.upper()},
    }
    if end is not None:
        item["latestEndTime"] = ts(end)
    return item


def session(rid: str, pid: str, sid: str, start: float = 0, end: float | None = 60) -> Any:
    item: dict[str, Any] = {
        "name": f"conferenceRecords/{rid}/participants/{pid}/participantSessions/{sid}",
        "startTime": ts(start),
    }
    if end is not None:
        item["endTime"] = ts(end)
    return item


def spaces() -> list[dict[str, Any]]:
    return [
        {
            "name": "spaces/S1",
            "meetingCode": "abc-mnop-xyz",
            "meetingUri": "https://meet.google.com/abc-mnop-xyz",
        },
        {"name": "spaces/jQCFfuBOdN5z", "meetingCode": "def-ghij-klm"},
    ]


def list_all(request: Any, collection: Any, key: str) -> tuple[list[dict[str, Any]], list[int]]:
    items: list[dict[str, Any]] = []
    sizes: list[int] = []
    while request is not None:
        page = request.execute()
        sizes.append(len(page.get(key, [])))
        items.extend(page.get(key, []))
        request = collection.list_next(request, page)
    return items, sizes


def names(items: list[dict[str, Any]]) -> list[str]:
    return [str(i["name"]).rsplit("/", 1)[-1] for i in items]


def new_subscription(
    events: Any, target: str = "//cloudidentity.googleapis.com/users/111", **extra: Any
) -> dict[str, Any]:
    body = {
        "targetResource": target,
        "eventTypes": [STARTED, ENDED],
        "notificationEndpoint": {"pubsubTopic": TOPIC},
        **extra,
    }
    op: dict[str, Any] = events.subscriptions().create(body=body).execute()
    return op


def close_to(text: str, expected: dt.datetime, tolerance_s: float = 5) -> bool:
    got = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return abs((got - expected).total_seconds()) <= tolerance_s


# --- Meet: conference records --------------------------------------------------------------------


def test_records_page_25_by_default_100_at_most_newest_first(
    server: FakeWorkspaceServer, meet: Any
) -> None:
    server.load(
        spaces=spaces(), conference_records=[record(f"r{i:03d}", start=i) for i in range(130)]
    )
    records = meet.conferenceRecords()
    first = records.list().execute()
    assert len(first["conferenceRecords"]) == 25
    assert names(first["conferenceRecords"])[:2] == ["r129", "r128"]
    assert first["nextPageToken"]
    capped = records.list(pageSize=1000).execute()
    assert len(capped["conferenceRecords"]) == 100
    items, sizes = list_all(records.list(pageSize=40), records, "conferenceRecords")
    assert sizes == [40, 40, 40, 10]
    assert names(items) == [f"r{i:03d}" for i in range(129, -1, -1)]
    tokens = [r["query"].get("pageToken") for r in server.requests()][-4:]
    assert tokens[0] is None
    assert all(tokens[1:])


def test_last_page_has_no_token_and_empty_list_is_empty_object(
    server: FakeWorkspaceServer, meet: Any
) -> None:
    assert meet.conferenceRecords().list().execute() == {}
    server.load(conference_records=[record("r1"), record("r2", start=5)])
    page = meet.conferenceRecords().list(pageSize=2).execute()
    assert names(page["conferenceRecords"]) == ["r2", "r1"]
    assert "nextPageToken" not in page


def test_page_token_is_bound_to_the_filter(server: FakeWorkspaceServer, meet: Any) -> None:
    server.load(spaces=spaces(), conference_records=[record(f"r{i}", start=i) for i in range(5)])
    f1 = 'space.name = "spaces/S1"'
    page = meet.conferenceRecords().list(filter=f1, pageSize=2).execute()
    token = page["nextPageToken"]
    assert meet.conferenceRecords().list(filter=f1, pageSize=2, pageToken=token).execute()
    status, body = http_error(
        lambda: (
            meet.conferenceRecords()
            .list(filter="end_time IS NULL", pageSize=2, pageToken=token)
            .execute()
        )
    )
    assert (status, body["error"]["status"]) == (400, "INVALID_ARGUMENT")
    status, body = http_error(lambda: meet.conferenceRecords().list(pageToken="bm9wZQ").execute())
    assert (status, body["error"]["status"]) == (400, "INVALID_ARGUMENT")


def test_filters_on_meeting_code_and_space_name(server: FakeWorkspaceServer, meet: Any) -> None:
    server.load(
        spaces=spaces(),
        conference_records=[
            record("a1", "spaces/S1", start=0),
            record("b1", "spaces/jQCFfuBOdN5z", start=10),
            record("a2", "spaces/S1", start=20),
        ],
    )

    def listed(text: str) -> list[str]:
        return names(
            meet.conferenceRecords().list(filter=text).execute().get("conferenceRecords", [])
        )

    assert listed('space.meeting_code = "abc-mnop-xyz"') == ["a2", "a1"]
    assert listed('space.meeting_code="ABC-MNOP-XYZ"') == ["a2", "a1"]
    assert listed('space.name = "spaces/jQCFfuBOdN5z"') == ["b1"]
    assert listed('space.name = "spaces/jqcffubodn5z"') == []
    assert listed('space.meeting_code = "zzz-zzzz-zzz"') == []


def test_filters_on_time_ranges_and_is_null(server: FakeWorkspaceServer, meet: Any) -> None:
    server.load(
        spaces=spaces(),
        conference_records=[
            record("early", start=0, end=30),
            record("mid", start=60, end=90),
            record("late", start=120, end=None),
        ],
    )

    def listed(text: str) -> list[str]:
        return names(
            meet.conferenceRecords().list(filter=text).execute().get("conferenceRecords", [])
        )

    assert listed(f'start_time>="{ts(0)}" AND start_time<="{ts(60)}"') == ["mid", "early"]
    assert listed(f'start_time > "{ts(0)}" AND start_time < "{ts(120)}"') == ["mid"]
    assert listed("end_time IS NULL") == ["late"]
    assert listed("end_time IS NOT NULL") == ["mid", "early"]
    assert listed(f'end_time <= "{ts(30)}"') == ["early"]
    assert listed(f'(end_time >= "{ts(30)}") AND space.meeting_code = "abc-mnop-xyz"') == [
        "mid",
        "early",
    ]


@pytest.mark.parametrize(
    "text",
    [
        'foo = "x"',
        'start_time >= "yesterday"',
        "space.name = spaces/S1",
        'space.meeting_code > "abc"',
        f'start_time >= "{format_time(BASE)}" OR end_time IS NULL',
        "(end_time IS NULL",
        "end_time IS",
        "start_time",
        'space.name = "spaces/S1" space.name = "spaces/S2"',
        'space.name != "spaces/S1"',
    ],
)
def test_invalid_filters_are_400(server: FakeWorkspaceServer, meet: Any, text: str) -> None:
    status, body = http_error(lambda: meet.conferenceRecords().list(filter=text).execute())
    assert status == 400
    assert body["error"]["status"] == "INVALID_ARGUMENT"
    assert body["error"]["code"] == 400


def test_record_get_and_google_404_shape(server: FakeWorkspaceServer, meet: Any) -> None:
    server.load(spaces=spaces(), conference_records=[record("r1")])
    got = meet.conferenceRecords().get(name="conferenceRecords/r1").execute()
    assert got == record("r1")
    status, body = http_error(
        lambda: meet.conferenceRecords().get(name="conferenceRecords/nope").execute()
    )
    assert status == 404
    assert body == {
        "error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND"}
    }


def test_unknown_query_parameter_is_400(server: FakeWorkspaceServer) -> None:
    response = requests.get(f"{server.url}v2/conferenceRecords?pageSze=3", timeout=10)
    assert response.status_code == 400
    assert "pageSze" in response.json()["error"]["message"]
    bad_size = requests.get(f"{server.url}v2/conferenceRecords?pageSize=-1", timeout=10)
    assert bad_size.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_fields_selects_a_partial_response(server: FakeWorkspaceServer, meet: Any) -> None:
    server.load(conference_records=[record("r1"), record("r2", start=1)])
    page = meet.conferenceRecords().list(fields="conferenceRecords(name)").execute()
    assert page == {
        "conferenceRecords": [{"name": "conferenceRecords/r2"}, {"name": "conferenceRecords/r1"}]
    }


# --- Meet: participants and sessions -------------------------------------------------------------


def test_participants_page_100_by_default_250_at_most_join_time_descending(
    server: FakeWorkspaceServer, meet: Any
) -> None:
    server.load(
        conference_records=[record("r1")],
        participants=[participant("r1", f"p{i:03d}", start=i / 10) for i in range(300)],
    )
    collection = meet.conferenceRecords().participants()
    first = collection.list(parent="conferenceRecords/r1").execute()
    assert len(first["participants"]) == 100
    assert names(first["participants"])[0] == "p299"
    assert (
        len(collection.list(parent="conferenceRecords/r1", pageSize=999).execute()["participants"])
        == 250
    )
    items, sizes = list_all(
        collection.list(parent="conferenceRecords/r1"), collection, "participants"
    )
    assert sizes == [100, 100, 100]
    assert names(items) == [f"p{i:03d}" for i in range(299, -1, -1)]
    assert collection.get(name="conferenceRecords/r1/participants/p007").execute() == participant(
        "r1", "p007", start=0.7
    )
    status, _ = http_error(
        lambda: collection.get(name="conferenceRecords/r1/participants/zz").execute()
    )
    assert status == 404
    status, _ = http_error(lambda: collection.list(parent="conferenceRecords/zz").execute())
    assert status == 404


def test_sessions_page_100_by_default_250_at_most(server: FakeWorkspaceServer, meet: Any) -> None:
    server.load(
        conference_records=[record("r1")],
        participants=[participant("r1", "p1")],
        participant_sessions=[session("r1", "p1", f"s{i:03d}", start=i / 10) for i in range(260)],
    )
    parent = "conferenceRecords/r1/participants/p1"
    collection = meet.conferenceRecords().participants().participantSessions()
    assert len(collection.list(parent=parent).execute()["participantSessions"]) == 100
    assert len(collection.list(parent=parent, pageSize=260).execute()["participantSessions"]) == 250
    items, sizes = list_all(
        collection.list(parent=parent, pageSize=250), collection, "participantSessions"
    )
    assert sizes == [250, 10]
    assert names(items)[0] == "s259"
    assert len(set(names(items))) == 260
    got = collection.get(name=f"{parent}/participantSessions/s005").execute()
    assert got == session("r1", "p1", "s005", start=0.5)
    status, _ = http_error(
        lambda: collection.get(name=f"{parent}/participantSessions/none").execute()
    )
    assert status == 404


def test_participant_and_session_filters(server: FakeWorkspaceServer, meet: Any) -> None:
    server.load(
        conference_records=[record("r1", end=None)],
        participants=[participant("r1", "gone", 0, 10), participant("r1", "here", 5, None)],
        participant_sessions=[
            session("r1", "here", "s1", 5, 8),
            session("r1", "here", "s2", 9, None),
        ],
    )
    people = meet.conferenceRecords().participants()
    active = people.list(parent="conferenceRecords/r1", filter="latest_end_time IS NULL").execute()
    assert names(active["participants"]) == ["here"]
    early = people.list(
        parent="conferenceRecords/r1", filter=f'earliest_start_time < "{ts(1)}"'
    ).execute()
    assert names(early["participants"]) == ["gone"]
    sessions = people.participantSessions()
    open_now = sessions.list(
        parent="conferenceRecords/r1/participants/here", filter="end_time IS NULL"
    ).execute()
    assert names(open_now["participantSessions"]) == ["s2"]
    status, _ = http_error(
        lambda: people.list(parent="conferenceRecords/r1", filter="start_time IS NULL").execute()
    )
    assert status == 400


# --- Meet: spaces and readers --------------------------------------------------------------------


def test_spaces_get_by_id_and_by_meeting_code_case_insensitively(
    server: FakeWorkspaceServer, meet: Any
) -> None:
    server.load(
        spaces=spaces(), conference_records=[record("live", "spaces/jQCFfuBOdN5z", end=None)]
    )
    s1 = meet.spaces().get(name="spaces/S1").execute()
    assert s1 == spaces()[0]
    assert meet.spaces().get(name="spaces/abc-mnop-xyz").execute() == s1
    assert meet.spaces().get(name="spaces/ABC-Mnop-XYZ").execute() == s1
    other = meet.spaces().get(name="spaces/def-ghij-klm").execute()
    assert other["name"] == "spaces/jQCFfuBOdN5z"
    assert other["activeConference"] == {"conferenceRecord": "conferenceRecords/live"}
    status, body = http_error(lambda: meet.spaces().get(name="spaces/jqcffubodn5z").execute())
    assert (status, body["error"]["status"]) == (404, "NOT_FOUND")
    # A meeting code moved to another space follows it.
    server.load(spaces=[{"name": "spaces/S3", "meetingCode": "abc-mnop-xyz"}])
    assert meet.spaces().get(name="spaces/abc-mnop-xyz").execute()["name"] == "spaces/S3"


def test_readers_restrict_a_space_to_its_readers(
    server: FakeWorkspaceServer, meet: Any, meet_b: Any, meet_anon: Any
) -> None:
    server.load(
        spaces=spaces(),
        conference_records=[
            record("secret", "spaces/S1"),
            record("open", "spaces/jQCFfuBOdN5z", start=5),
        ],
        participants=[participant("secret", "p1"), participant("open", "p1")],
        participant_sessions=[session("secret", "p1", "s1")],
        space_readers={"spaces/S1": ["A@x.test"]},
    )
    denied = {
        "error": {
            "code": 403,
            "status": "PERMISSION_DENIED",
            "message": "The caller does not have permission",
        }
    }

    def calls(svc: Any) -> list[Callable[[], Any]]:
        cr = svc.conferenceRecords()
        p = cr.participants()
        ps = p.participantSessions()
        return [
            lambda: cr.get(name="conferenceRecords/secret").execute(),
            lambda: p.list(parent="conferenceRecords/secret").execute(),
            lambda: p.get(name="conferenceRecords/secret/participants/p1").execute(),
            lambda: p.get(name="conferenceRecords/secret/participants/unknown").execute(),
            lambda: ps.list(parent="conferenceRecords/secret/participants/p1").execute(),
            lambda: ps.get(
                name="conferenceRecords/secret/participants/p1/participantSessions/s1"
            ).execute(),
            lambda: svc.spaces().get(name="spaces/S1").execute(),
            lambda: svc.spaces().get(name="spaces/abc-mnop-xyz").execute(),
        ]

    for call in calls(meet_b) + calls(meet_anon):
        assert http_error(call) == (403, denied)
    for i, call in enumerate(calls(meet)):
        if i == 3:
            assert http_error(call)[0] == 404
        else:
            assert call()
    # Lists leave out what the caller may not read; open spaces are anyone's.
    assert names(meet_b.conferenceRecords().list().execute()["conferenceRecords"]) == ["open"]
    assert names(meet_anon.conferenceRecords().list().execute()["conferenceRecords"]) == ["open"]
    assert names(meet.conferenceRecords().list().execute()["conferenceRecords"]) == [
        "open",
        "secret",
    ]
    assert (
        meet_anon.conferenceRecords().participants().list(parent="conferenceRecords/open").execute()
    )
    subjects = {r["subject"] for r in server.requests()}
    assert subjects == {A, B, None}
    # An empty list lifts the restriction.
    server.load(space_readers={"spaces/S1": []})
    assert meet_anon.conferenceRecords().get(name="conferenceRecords/secret").execute()


# --- control: loading resources ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (
            {"conference_records": [record("ok"), {"space": "spaces/S1", "startTime": ts(0)}]},
            "conference_records[1]",
        ),
        (
            {"conference_records": [{"name": "conferenceRecords/x", "space": "spaces/S1"}]},
            "startTime",
        ),
        ({"conference_records": [{"name": "conferenceRecords/x", "startTime": ts(0)}]}, "space"),
        ({"spaces": [{"meetingCode": "abc"}]}, "spaces[0]"),
        ({"participants": [participant("nope", "p1")]}, "participants[0]"),
        (
            {
                "conference_records": [record("r")],
                "participants": [{**participant("r", "p"), "anonymousUser": {}}],
            },
            "exactly one",
        ),
        ({"participant_sessions": [session("r", "p", "s")]}, "participant_sessions[0]"),
        ({"users": [{"id": "1"}]}, "primaryEmail"),
        ({"groups": [{"members": []}]}, "groups[0]"),
        ({"recordz": []}, "unknown keys"),
        ({"space_readers": {"S1": ["a@x.test"]}}, "spaces/ID"),
    ],
)
def test_load_validates_and_names_the_item(
    server: FakeWorkspaceServer, meet: Any, body: dict[str, Any], named: str
) -> None:
    response = control(server, "", body)
    assert response.status_code == 400
    assert named in response.json()["error"]
    # Nothing of a rejected body is applied.
    assert meet.conferenceRecords().list().execute() == {}


def test_load_replaces_by_name_and_keeps_children(server: FakeWorkspaceServer, meet: Any) -> None:
    assert (
        control(
            server,
            "",
            {
                "conference_records": [record("r1", end=None)],
                "participants": [participant("r1", "p1")],
            },
        ).json()["added"]
        == 2
    )
    server.load(conference_records=[record("r1", end=45)])
    assert meet.conferenceRecords().get(name="conferenceRecords/r1").execute()["endTime"] == ts(45)
    assert (
        meet.conferenceRecords()
        .participants()
        .list(parent="conferenceRecords/r1")
        .execute()["participants"]
    )


# --- Workspace Events: subscriptions -------------------------------------------------------------


def test_create_answers_a_done_operation_with_the_subscription(
    server: FakeWorkspaceServer, events: Any, clock: Clock
) -> None:
    op = new_subscription(events)
    assert op["name"].startswith("operations/")
    assert op["done"] is True
    assert op["metadata"] == {
        "@type": "type.googleapis.com/google.apps.events.subscriptions.v1.CreateSubscriptionMetadata"
    }
    sub = op["response"]
    assert (
        sub.pop("@type") == "type.googleapis.com/google.apps.events.subscriptions.v1.Subscription"
    )
    assert sub["name"].startswith("subscriptions/")
    assert len(sub["name"]) > len("subscriptions/")
    assert sub["targetResource"] == "//cloudidentity.googleapis.com/users/111"
    assert sub["eventTypes"] == [STARTED, ENDED]
    assert sub["notificationEndpoint"] == {"pubsubTopic": TOPIC}
    assert sub["state"] == "ACTIVE"
    assert sub["authority"] == sub["userAuthority"] == "users/111"
    assert sub["reconciling"] is False
    assert sub["uid"]
    assert sub["etag"]
    assert "ttl" not in sub
    assert "suspensionReason" not in sub
    assert sub["createTime"] == sub["updateTime"]
    assert close_to(sub["createTime"], clock())
    assert close_to(sub["expireTime"], clock() + dt.timedelta(days=7))
    assert events.subscriptions().get(name=sub["name"]).execute() == sub
    assert control(server, "/subscriptions").json() == {"subscriptions": [sub]}
    second = new_subscription(events, "//cloudidentity.googleapis.com/users/222")
    assert second["response"]["name"] != sub["name"]


@pytest.mark.parametrize(
    ("ttl", "lifetime"),
    [
        ({}, dt.timedelta(days=7)),
        ({"ttl": "0s"}, dt.timedelta(days=7)),
        ({"ttl": "3600s"}, dt.timedelta(hours=1)),
        ({"ttl": "86400.5s"}, dt.timedelta(days=1, milliseconds=500)),
        ({"ttl": "99999999s"}, dt.timedelta(days=7)),
    ],
)
def test_ttl_sets_expire_time_capped_at_7_days(
    server: FakeWorkspaceServer,
    events: Any,
    clock: Clock,
    ttl: dict[str, str],
    lifetime: dt.timedelta,
) -> None:
    sub = new_subscription(events, **ttl)["response"]
    assert close_to(sub["expireTime"], clock() + lifetime)


def test_space_target_takes_the_authority_of_the_subject(
    server: FakeWorkspaceServer, events: Any
) -> None:
    server.load(users=[{"id": "4242", "primaryEmail": A}])
    sub = new_subscription(events, "//meet.googleapis.com/spaces/jQCFfuBOdN5z")["response"]
    assert sub["authority"] == "users/4242"


@pytest.mark.parametrize(
    "body",
    [
        {"eventTypes": [ENDED], "notificationEndpoint": {"pubsubTopic": TOPIC}},
        {
            "targetResource": "//meet.googleapis.com/conferenceRecords/x",
            "eventTypes": [ENDED],
            "notificationEndpoint": {"pubsubTopic": TOPIC},
        },
        {
            "targetResource": "//chat.googleapis.com/spaces/x",
            "eventTypes": [ENDED],
            "notificationEndpoint": {"pubsubTopic": TOPIC},
        },
        {
            "targetResource": "//cloudidentity.googleapis.com/users/1",
            "notificationEndpoint": {"pubsubTopic": TOPIC},
        },
        {
            "targetResource": "//cloudidentity.googleapis.com/users/1",
            "eventTypes": [],
            "notificationEndpoint": {"pubsubTopic": TOPIC},
        },
        {
            "targetResource": "//cloudidentity.googleapis.com/users/1",
            "eventTypes": ["google.workspace.chat.message.v1.created"],
            "notificationEndpoint": {"pubsubTopic": TOPIC},
        },
        {"targetResource": "//cloudidentity.googleapis.com/users/1", "eventTypes": [ENDED]},
        {
            "targetResource": "//cloudidentity.googleapis.com/users/1",
            "eventTypes": [ENDED],
            "notificationEndpoint": {"pubsubTopic": "workspace-events"},
        },
        {
            "targetResource": "//cloudidentity.googleapis.com/users/1",
            "eventTypes": [ENDED],
            "notificationEndpoint": {"pubsubTopic": TOPIC},
            "ttl": "1 day",
        },
        {
            "targetResource": "//cloudidentity.googleapis.com/users/1",
            "eventTypes": [ENDED],
            "notificationEndpoint": {"pubsubTopic": TOPIC},
            "ttl": "-5s",
        },
    ],
)
def test_invalid_subscriptions_are_400(
    server: FakeWorkspaceServer, events: Any, body: dict[str, Any]
) -> None:
    status, err = http_error(lambda: events.subscriptions().create(body=body).execute())
    assert (status, err["error"]["status"]) == (400, "INVALID_ARGUMENT")
    assert server.subscriptions() == []


def test_second_subscription_for_a_target_is_already_exists(
    server: FakeWorkspaceServer, events: Any
) -> None:
    first = new_subscription(events)["response"]
    status, body = http_error(lambda: new_subscription(events))
    assert status == 409
    assert body == {
        "error": {
            "code": 409,
            "message": "Subscription already exists for the target resource.",
            "status": "ALREADY_EXISTS",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "SUBSCRIPTION_ALREADY_EXISTS",
                    "domain": "workspaceevents.googleapis.com",
                }
            ],
        }
    }
    events.subscriptions().delete(name=first["name"]).execute()
    assert new_subscription(events)["done"] is True


def test_operations_stay_pending_for_the_configured_polls(
    server: FakeWorkspaceServer, events: Any
) -> None:
    assert (
        control(server, "/config", {"operation_polls_before_done": 3}).json()[
            "operation_polls_before_done"
        ]
        == 3
    )
    op = new_subscription(events)
    assert not op.get("done")
    assert "response" not in op
    assert op["metadata"]["@type"].endswith("CreateSubscriptionMetadata")
    polls = [events.operations().get(name=op["name"]).execute() for _ in range(3)]
    assert [bool(p.get("done")) for p in polls] == [False, False, True]
    sub = polls[-1]["response"]
    assert sub["state"] == "ACTIVE"
    deleting = events.subscriptions().delete(name=sub["name"]).execute()
    assert not deleting.get("done")
    assert deleting["metadata"]["@type"].endswith("DeleteSubscriptionMetadata")
    polls = [events.operations().get(name=deleting["name"]).execute() for _ in range(3)]
    assert polls[-1] == {
        **deleting,
        "done": True,
        "response": {"@type": "type.googleapis.com/google.protobuf.Empty"},
    }
    status, _ = http_error(lambda: events.operations().get(name="operations/unknown").execute())
    assert status == 404


def test_list_requires_an_event_type_filter(server: FakeWorkspaceServer, events: Any) -> None:
    for i in range(120):
        new_subscription(
            events,
            f"//cloudidentity.googleapis.com/users/{i}",
            eventTypes=[ENDED if i % 2 else JOINED],
        )
    subs = events.subscriptions()
    for bad in [
        None,
        "",
        'target_resource="//cloudidentity.googleapis.com/users/1"',
        f'event_types="{ENDED}"',
        "event_types:ended",
        f'event_types:"{ENDED}" AND',
        f'state:"{ENDED}"',
    ]:
        status, body = http_error(subs.list(filter=bad).execute)
        assert (status, body["error"]["status"]) == (400, "INVALID_ARGUMENT"), bad
    ended = f'event_types:"{ENDED}"'
    assert len(subs.list(filter=ended).execute()["subscriptions"]) == 50
    either = f'event_types:"{ENDED}" OR event_types:"{JOINED}"'
    assert len(subs.list(filter=either, pageSize=500).execute()["subscriptions"]) == 100
    items, sizes = list_all(subs.list(filter=either), subs, "subscriptions")
    assert sizes == [50, 50, 20]
    assert len({s["name"] for s in items}) == 120
    one = f'{ended} AND target_resource="//cloudidentity.googleapis.com/users/7"'
    assert [s["targetResource"] for s in subs.list(filter=one).execute()["subscriptions"]] == [
        "//cloudidentity.googleapis.com/users/7"
    ]
    grouped = f'(event_types:"{JOINED}" OR {ended}) AND target_resource="//cloudidentity.googleapis.com/users/8"'
    assert len(subs.list(filter=grouped).execute()["subscriptions"]) == 1
    token = subs.list(filter=ended).execute()["nextPageToken"]
    status, _ = http_error(lambda: subs.list(filter=either, pageToken=token).execute())
    assert status == 400


def test_patch_ttl_renews_expire_time_capped_at_7_days(
    server: FakeWorkspaceServer, events: Any, clock: Clock
) -> None:
    sub = new_subscription(events, ttl="3600s")["response"]
    clock.advance(minutes=50)
    subs = events.subscriptions()
    op = subs.patch(name=sub["name"], updateMask="ttl", body={"ttl": "0s"}).execute()
    assert op["done"]
    assert op["metadata"]["@type"].endswith("UpdateSubscriptionMetadata")
    renewed = op["response"]
    assert close_to(renewed["expireTime"], clock() + dt.timedelta(days=7))
    assert renewed["updateTime"] != sub["updateTime"]
    assert renewed["etag"] != sub["etag"]
    assert renewed["createTime"] == sub["createTime"]
    capped = subs.patch(
        name=sub["name"], updateMask="ttl", body={"ttl": f"{30 * 86400}s"}
    ).execute()
    assert close_to(capped["response"]["expireTime"], clock() + dt.timedelta(days=7))
    short = subs.patch(name=sub["name"], updateMask="ttl", body={"ttl": "7200s"}).execute()
    assert close_to(short["response"]["expireTime"], clock() + dt.timedelta(hours=2))
    at = format_time(clock() + dt.timedelta(days=2))
    by_time = subs.patch(
        name=sub["name"], updateMask="expire_time", body={"expireTime": at}
    ).execute()
    assert by_time["response"]["expireTime"] == at
    assert subs.get(name=sub["name"]).execute()["expireTime"] == at
    for mask, body in [
        ("event_types", {"eventTypes": [ENDED]}),
        ("notification_endpoint", {}),
        ("ttl,expire_time", {"ttl": "1s"}),
    ]:
        status, err = http_error(subs.patch(name=sub["name"], updateMask=mask, body=body).execute)
        assert (status, err["error"]["status"]) == (400, "INVALID_ARGUMENT"), mask
    status, _ = http_error(
        lambda: subs.patch(
            name="subscriptions/none", updateMask="ttl", body={"ttl": "0s"}
        ).execute()
    )
    assert status == 404


def test_reactivate_only_a_suspended_subscription(server: FakeWorkspaceServer, events: Any) -> None:
    sub = new_subscription(events)["response"]
    subs = events.subscriptions()
    status, body = http_error(lambda: subs.reactivate(name=sub["name"], body={}).execute())
    assert (status, body["error"]["status"]) == (400, "FAILED_PRECONDITION")
    assert (
        control(
            server, "/subscriptions/suspend", {"name": sub["name"], "reason": "USER_SCOPE_REVOKED"}
        ).status_code
        == 200
    )
    suspended = subs.get(name=sub["name"]).execute()
    assert (suspended["state"], suspended["suspensionReason"]) == (
        "SUSPENDED",
        "USER_SCOPE_REVOKED",
    )
    op = subs.reactivate(name=sub["name"], body={}).execute()
    assert op["done"]
    assert op["metadata"]["@type"].endswith("ReactivateSubscriptionMetadata")
    assert op["response"]["state"] == "ACTIVE"
    assert "suspensionReason" not in op["response"]
    assert subs.get(name=sub["name"]).execute()["state"] == "ACTIVE"
    assert (
        control(
            server, "/subscriptions/suspend", {"name": sub["name"], "reason": "BORED"}
        ).status_code
        == 400
    )
    assert (
        control(server, "/subscriptions/suspend", {"name": "subscriptions/none"}).status_code == 404
    )


def test_delete_and_allow_missing(server: FakeWorkspaceServer, events: Any) -> None:
    sub = new_subscription(events)["response"]
    subs = events.subscriptions()
    op = subs.delete(name=sub["name"]).execute()
    assert op["done"] is True
    assert op["response"] == {"@type": "type.googleapis.com/google.protobuf.Empty"}
    assert op["metadata"]["@type"].endswith("DeleteSubscriptionMetadata")
    status, body = http_error(lambda: subs.get(name=sub["name"]).execute())
    assert (status, body["error"]["status"]) == (404, "NOT_FOUND")
    assert http_error(lambda: subs.delete(name=sub["name"]).execute())[0] == 404
    again = subs.delete(name=sub["name"], allowMissing=True).execute()
    assert again["done"] is True
    assert again["response"]["@type"].endswith("Empty")
    other = new_subscription(events)["response"]
    status, body = http_error(lambda: subs.delete(name=other["name"], etag="stale").execute())
    assert (status, body["error"]["status"]) == (409, "ABORTED")


def test_expiry_follows_the_clock(server: FakeWorkspaceServer, events: Any, clock: Clock) -> None:
    sub = new_subscription(events, ttl="3600s")["response"]
    subs = events.subscriptions()
    clock.advance(minutes=59)
    assert subs.get(name=sub["name"]).execute()["name"] == sub["name"]
    clock.advance(minutes=2)
    assert http_error(lambda: subs.get(name=sub["name"]).execute())[0] == 404
    assert subs.list(filter=f'event_types:"{ENDED}"').execute() == {}
    assert control(server, "/subscriptions").json() == {"subscriptions": []}
    renewed = new_subscription(events)["response"]
    assert renewed["name"] != sub["name"]
    assert control(server, "/subscriptions/expire", {"name": renewed["name"]}).status_code == 200
    assert http_error(lambda: subs.get(name=renewed["name"]).execute())[0] == 404
    assert (
        http_error(lambda: subs.patch(name=renewed["name"], updateMask="ttl", body={}).execute())[0]
        == 404
    )
    assert new_subscription(events)["done"] is True


# --- Directory -----------------------------------------------------------------------------------


def test_users_get_by_id_email_and_alias(server: FakeWorkspaceServer, directory: Any) -> None:
    user = {
        "id": "1001",
        "primaryEmail": "pat@school.example",
        "aliases": ["p@school.example"],
        "name": {"fullName": "Pat"},
    }
    server.load(users=[user])
    users = directory.users()
    by_id = users.get(userKey="1001").execute()
    assert by_id["primaryEmail"] == "pat@school.example"
    assert by_id["kind"] == "admin#directory#user"
    assert users.get(userKey="Pat@School.example").execute()["id"] == "1001"
    assert users.get(userKey="p@school.example").execute()["id"] == "1001"
    status, body = http_error(lambda: users.get(userKey="nobody@school.example").execute())
    assert status == 404
    assert body == {
        "error": {
            "code": 404,
            "message": "Resource Not Found: userKey",
            "errors": [
                {"domain": "global", "reason": "notFound", "message": "Resource Not Found: userKey"}
            ],
        }
    }


def test_members_list_pages_of_200(server: FakeWorkspaceServer, directory: Any) -> None:
    emails = [f"m{i:03d}@school.example" for i in range(450)]
    server.load(
        users=[{"id": "9", "primaryEmail": emails[0]}],
        groups=[
            {
                "email": "class@school.example",
                "id": "g1",
                "aliases": ["c@school.example"],
                "members": [*emails, "sub@school.example"],
            },
            {"email": "sub@school.example", "members": []},
        ],
    )
    members = directory.members()
    items, sizes = list_all(members.list(groupKey="class@school.example"), members, "members")
    assert sizes == [200, 200, 51]
    assert [m["email"] for m in items] == [*emails, "sub@school.example"]
    assert items[0] == {
        "kind": "admin#directory#member",
        "email": emails[0],
        "role": "MEMBER",
        "type": "USER",
        "status": "ACTIVE",
        "id": "9",
        "etag": items[0]["etag"],
    }
    assert items[-1]["type"] == "GROUP"
    assert items[1]["id"]
    assert items[1]["id"] != items[2]["id"]
    assert len(members.list(groupKey="g1", maxResults=50).execute()["members"]) == 50
    assert (
        len(members.list(groupKey="c@school.example", maxResults=500).execute()["members"]) == 200
    )
    assert "members" not in members.list(groupKey="sub@school.example").execute()
    status, body = http_error(lambda: members.list(groupKey="none@school.example").execute())
    assert status == 404
    assert body["error"]["message"] == "Resource Not Found: groupKey"
    assert body["error"]["errors"][0]["reason"] == "notFound"
    assert members.get(groupKey="g1", memberKey=emails[3]).execute()["email"] == emails[3]


# --- faults and the request log ------------------------------------------------------------------


def test_faults_answer_by_prefix_and_count(
    server: FakeWorkspaceServer, meet: Any, events: Any
) -> None:
    server.load(conference_records=[record("r1")])
    response = control(
        server,
        "/faults",
        {"faults": [{"path_prefix": "/v2/", "status": 503, "count": 2, "retry_after_s": 1.5}]},
    )
    assert response.json() == {"added": 1}
    for _ in range(2):
        with pytest.raises(HttpError) as info:
            meet.conferenceRecords().get(name="conferenceRecords/r1").execute()
        assert info.value.resp.status == 503
        assert info.value.resp.get("retry-after") == "2"
        assert json.loads(info.value.content)["error"]["status"] == "UNAVAILABLE"
    assert (
        meet.conferenceRecords().get(name="conferenceRecords/r1").execute()["name"]
        == "conferenceRecords/r1"
    )
    server.add_faults({"path_prefix": "/v1/", "status": 429})
    status, body = http_error(lambda: new_subscription(events))
    assert (status, body["error"]["status"]) == (429, "RESOURCE_EXHAUSTED")
    assert body["error"]["details"][0]["reason"] == "RATE_LIMIT_EXCEEDED"
    assert new_subscription(events)["done"] is True
    assert [r["status"] for r in server.requests()] == [503, 503, 200, 429, 200]


def test_service_disabled_fault(server: FakeWorkspaceServer, meet: Any, directory: Any) -> None:
    server.add_faults(
        {"path_prefix": "/v2/", "status": 403, "reason": "accessNotConfigured"},
        {"path_prefix": "/admin/directory/", "status": 403, "reason": "SERVICE_DISABLED"},
    )
    status, body = http_error(lambda: meet.conferenceRecords().list().execute())
    assert (status, body["error"]["status"]) == (403, "PERMISSION_DENIED")
    message = body["error"]["message"]
    assert message.startswith("Google Meet REST API has not been used in project demo-attendance")
    assert "or it is disabled" in message
    assert body["error"]["errors"][0]["reason"] == "accessNotConfigured"
    info = body["error"]["details"][0]
    assert (info["reason"], info["metadata"]["service"]) == (
        "SERVICE_DISABLED",
        "meet.googleapis.com",
    )
    status, body = http_error(lambda: directory.users().get(userKey="x@y.z").execute())
    assert status == 403
    assert body["error"]["message"].startswith("Admin SDK API has not been used")
    assert (
        control(server, "/faults", {"faults": [{"path_prefix": "v2", "status": 503}]}).status_code
        == 400
    )
    assert (
        control(server, "/faults", {"faults": [{"path_prefix": "/v2/", "status": 200}]}).status_code
        == 400
    )


def test_request_log_records_subject_and_reset_clears(
    server: FakeWorkspaceServer, meet: Any, meet_anon: Any
) -> None:
    meet.conferenceRecords().list(pageSize=5).execute()
    http_error(lambda: meet_anon.spaces().get(name="spaces/none").execute())
    control(server, "/config", {"operation_polls_before_done": 2})
    log = control(server, "/requests").json()
    assert [(r["method"], r["path"], r["status"], r["subject"]) for r in log] == [
        ("GET", "/v2/conferenceRecords", 200, A),
        ("GET", "/v2/spaces/none", 404, None),
    ]
    assert log[0]["query"]["pageSize"] == "5"
    assert control(server, "/reset", {}).json() == {"ok": True}
    assert control(server, "/requests").json() == []
    assert control(server, "/config").json()["operation_polls_before_done"] == 0
    assert control(server, "/health").json() == {"ok": True}


# --- the Pub/Sub push ----------------------------------------------------------------------------


def pushed(receiver: Receiver) -> tuple[dict[str, Any], dict[str, Any]]:
    assert len(receiver.pushes) == 1
    push = receiver.pushes[0]
    return push["headers"], json.loads(push["body"])


def test_meet_event_is_pushed_wrapped_with_an_oidc_token(
    server: FakeWorkspaceServer, receiver: Receiver, mint: Mint, clock: Clock
) -> None:
    server.load(spaces=spaces(), conference_records=[record("abc-123")])
    clock.advance(hours=-3)
    data = {"conferenceRecord": {"name": "conferenceRecords/abc-123"}}
    answer = control(
        server,
        "/events",
        {"type": ENDED, "data": data, "subscription": "subscriptions/s1", "id": "evt-1"},
    )
    assert answer.status_code == 200
    assert answer.json()["status"] == 204
    headers, envelope = pushed(receiver)
    assert receiver.pushes[0]["path"] == "/meet-events"
    assert headers["Content-Type"] == "application/json"
    assert set(envelope) == {"message", "subscription"}
    assert envelope["subscription"].startswith("projects/demo-attendance/subscriptions/")
    message = envelope["message"]
    assert message["attributes"] == {
        "ce-specversion": "1.0",
        "ce-type": ENDED,
        "ce-id": "evt-1",
        "ce-source": "//meet.googleapis.com/spaces/S1",
        "ce-subject": "//meet.googleapis.com/conferenceRecords/abc-123",
        "ce-time": message["attributes"]["ce-time"],
        "ce-datacontenttype": "application/json",
    }
    assert close_to(message["attributes"]["ce-time"], clock())
    assert json.loads(base64.b64decode(message["data"])) == data
    assert message["messageId"] == message["message_id"] == answer.json()["messageId"]
    assert message["publishTime"] == message["publish_time"]
    scheme, token = headers["Authorization"].split(" ", 1)
    assert scheme == "Bearer"
    claims = mint.verify(token, audience=receiver.url)
    assert (claims["email"], claims["email_verified"]) == ("pubsub-push@local.test", True)
    assert mint.asked[-1] == {"audience": receiver.url, "email": "pubsub-push@local.test"}


def test_endpoint_status_is_echoed(server: FakeWorkspaceServer, receiver: Receiver) -> None:
    receiver.status = 500
    data = {"conferenceRecord": {"name": "conferenceRecords/x"}}
    assert server.publish(type=ENDED, data=data)["status"] == 500
    receiver.status = 200
    assert control(server, "/events", {"type": ENDED, "data": data}).json()["status"] == 200
    assert [p["status"] for p in control(server, "/pushes").json()] == [500, 200]


def test_participant_event_names_its_record_and_unknown_records_have_no_space(
    server: FakeWorkspaceServer, receiver: Receiver
) -> None:
    server.load(spaces=spaces(), conference_records=[record("r9", "spaces/jQCFfuBOdN5z")])
    name = "conferenceRecords/r9/participants/p1/participantSessions/s1"
    server.publish(type=LEFT, data={"participantSession": {"name": name}})
    _, envelope = pushed(receiver)
    attributes = envelope["message"]["attributes"]
    assert attributes["ce-source"] == "//meet.googleapis.com/spaces/jQCFfuBOdN5z"
    assert attributes["ce-subject"] == "//meet.googleapis.com/conferenceRecords/r9"
    assert len(attributes["ce-id"]) == 36  # a fresh uuid
    receiver.pushes.clear()
    server.publish(type=STARTED, data={"conferenceRecord": {"name": "conferenceRecords/unknown"}})
    _, envelope = pushed(receiver)
    attributes = envelope["message"]["attributes"]
    assert attributes["ce-subject"] == "//meet.googleapis.com/conferenceRecords/unknown"
    assert attributes["ce-source"] == "//meet.googleapis.com"


def test_lifecycle_event_source_and_subject_are_the_subscription(
    server: FakeWorkspaceServer, receiver: Receiver
) -> None:
    data = {"subscription": {"name": "subscriptions/s7", "suspensionReason": "USER_SCOPE_REVOKED"}}
    server.publish(
        type="google.workspace.events.subscription.v1.suspended",
        data=data,
        subscription="subscriptions/s7",
    )
    _, envelope = pushed(receiver)
    attributes = envelope["message"]["attributes"]
    assert (
        attributes["ce-source"]
        == attributes["ce-subject"]
        == "//workspaceevents.googleapis.com/subscriptions/s7"
    )
    assert json.loads(base64.b64decode(envelope["message"]["data"])) == data
    bad = control(
        server, "/events", {"type": "google.workspace.events.subscription.v1.expired", "data": {}}
    )
    assert bad.status_code == 400


def test_raw_body_no_token_and_another_identity(
    server: FakeWorkspaceServer, receiver: Receiver, mint: Mint
) -> None:
    assert (
        control(
            server, "/events", {"raw": {"message": "not a pubsub message"}, "token": False}
        ).json()["status"]
        == 204
    )
    assert control(server, "/events", {"raw": "{not json", "token": False}).json()["status"] == 204
    data = {"conferenceRecord": {"name": "conferenceRecords/r1"}}
    control(server, "/events", {"type": ENDED, "data": data, "email": "intruder@evil.test"})
    first, second, third = receiver.pushes
    assert json.loads(first["body"]) == {"message": "not a pubsub message"}
    assert "Authorization" not in first["headers"]
    assert second["body"] == b"{not json"
    token = third["headers"]["Authorization"].removeprefix("Bearer ")
    assert mint.verify(token, audience=receiver.url)["email"] == "intruder@evil.test"
    assert control(server, "/events", {"data": data}).status_code == 400


def test_unreachable_endpoint_is_status_0_and_non_loopback_is_refused(
    server: FakeWorkspaceServer, mint: Mint
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/gone"
    assert control(server, "/config", {"push_url": closed}).status_code == 200
    assert server.publish(type=ENDED, data={}, token=False)["status"] == 0
    for url in ["http://example.com/push", "http://10.0.0.8/push", "https://127.0.0.1/x"]:
        assert control(server, "/config", {"push_url": url}).status_code == 400
        with pytest.raises(ValueError, match="loopback"):
            FakeWorkspaceServer(push_url=url)
    with pytest.raises(ValueError, match="loopback"):
        FakeWorkspaceServer(token_mint_url="http://192.168.1.1/token")


def test_push_audience_and_email_of_the_constructor(receiver: Receiver, mint: Mint) -> None:
    receiver.pushes.clear()
    with FakeWorkspaceServer(
        push_url=receiver.url,
        token_mint_url=mint.url,
        push_audience="https://ingest.example/meet-events",
        push_email="push@other.test",
        project="proj-x",
    ) as srv:
        assert srv.url.endswith("/")
        assert srv.url.startswith("http://127.0.0.1:")
        srv.publish(type=ENDED, data={"conferenceRecord": {"name": "conferenceRecords/r"}})
    headers, envelope = pushed(receiver)
    claims = mint.verify(
        headers["Authorization"].removeprefix("Bearer "),
        audience="https://ingest.example/meet-events",
    )
    assert claims["email"] == "push@other.test"
    assert envelope["subscription"].startswith("projects/proj-x/subscriptions/")
    receiver.pushes.clear()


# --- small parts, lifecycle and the CLI ----------------------------------------------------------


def test_format_and_durations() -> None:
    assert format_time(dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)) == "2026-01-02T03:04:05Z"
    assert (
        format_time(dt.datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=dt.UTC))
        == "2026-01-02T03:04:05.120Z"
    )
    assert parse_duration("1.5s") == dt.timedelta(seconds=1.5)
    with pytest.raises(ValueError, match="duration"):
        parse_duration("5m")


def test_stop_is_idempotent_and_url_needs_a_start() -> None:
    srv = FakeWorkspaceServer()
    with pytest.raises(RuntimeError):
        _ = srv.url
    srv.start()
    srv.stop()
    srv.stop()


def test_cli_ready_line_and_clean_sigterm() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "local.fake_workspace",
            "--port",
            "0",
            "--push-url",
            "http://127.0.0.1:9/x",
            "--project",
            "p1",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_GCE_CHECK": "True"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("fake-workspace ready url=http://127.0.0.1:")
        url = line.split("url=", 1)[1]
        assert url.endswith("/")
        assert requests.get(f"{url}_fake/meet/health", timeout=10).json() == {"ok": True}
        config = requests.get(f"{url}_fake/meet/config", timeout=10).json()
        assert (config["push_url"], config["project"]) == ("http://127.0.0.1:9/x", "p1")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    refused = subprocess.run(
        [sys.executable, "-m", "local.fake_workspace", "--push-url", "http://example.com/"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert refused.returncode == 2
    assert "loopback" in refused.stderr
