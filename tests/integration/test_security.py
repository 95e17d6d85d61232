"""Security of the two HTTP functions, through ``main.py`` as functions-framework serves it.

``ingest`` (public, Standard Webhooks signatures) and ``api`` (private, Google-signed ID tokens)
are built with ``functions_framework.create_app`` from the environment (docs/settings.md), on real
stand-ins bound to 127.0.0.1: Google's Firestore emulator, the Cloud Tasks emulator (its RSA key
signs the ID tokens, its ``/oauth2/v1/certs`` serves the certificates, its ``/token`` mints) and the
fake Reports API (its ``GET /_fake/requests`` proves no Reports call was made).

Every refusal is checked three ways: the status, the error body of docs/api.md "Rules every function follows", and that nothing
behind the edge was reached (no store or queue method called, no Reports request, no document).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import inspect
import json
import socket
import time
import types
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import functions_framework
import google.auth.crypt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask.testing import FlaskClient
from google.cloud import firestore
from werkzeug.test import TestResponse

import functions.app
from functions.adapters.cloud_tasks import CloudTasksQueue
from functions.adapters.firestore_store import FirestoreStore
from functions.adapters.reports import GoogleReportsSource
from functions.config import READS
from functions.errors import Unauthorized
from functions.signatures import sign_webhook, verify_webhook_signature
from local.fake_reports import FakeReportsServer
from local.firestore_emulator import FirestoreEmulator
from local.tasks_emulator import TOKEN_MINT_PATH, TasksEmulator
from tests.conftest import TEST_PROJECT

MAIN = str(Path(__file__).resolve().parents[2] / "main.py")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}

SECRET_NEW = "whsec_" + base64.b64encode(b"security-tests-new-secret-32byte").decode()
SECRET_OLD = "whsec_" + base64.b64encode(b"security-tests-old-secret-32byte").decode()
API_URL = "https://api.security.test/"
OPERATOR = "operator@local.test"
INTRUDER = "intruder@local.test"
QUEUE = f"projects/{TEST_PROJECT}/locations/here/queues/collect"
LIMIT = 64 * 1024  # docs/api.md "ingest": "Body (JSON, at most 64 KiB)"
FIXED_NOW = datetime(2026, 1, 15, 10, 45, tzinfo=UTC)


# ------------------------------------------------------------------------------------------------
# Stand-ins, configuration and spies


@dataclass(frozen=True)
class Stack:
    tasks: TasksEmulator
    reports: FakeReportsServer
    http: requests.Session

    def reports_requests(self) -> list[dict[str, Any]]:
        """The Reports requests the fake served, as its control API lists them."""
        answer = self.http.get(f"{self.reports.url}/_fake/requests", timeout=10)
        answer.raise_for_status()
        served: list[dict[str, Any]] = answer.json()
        return served

    def fault(self, kind: str, count: int = 1) -> None:
        answer = self.http.post(
            f"{self.reports.url}/_fake/faults", json={"kind": kind, "count": count}, timeout=10
        )
        answer.raise_for_status()

    def mint(self, *, email: str = OPERATOR, audience: str = API_URL) -> str:
        """A genuine ID token from the emulator's token mint (README "The local stack")."""
        answer = self.http.post(
            self.tasks.control_url + TOKEN_MINT_PATH,
            json={"audience": audience, "email": email},
            timeout=10,
        )
        answer.raise_for_status()
        token: str = answer.json()["id_token"]
        return token

    @property
    def kid(self) -> str:
        (kid,) = self.tasks.certificates()
        return kid

    def sign(self, message: bytes) -> bytes:
        """RS256 with the emulator's own key: the key behind OIDC_CERTS_URL."""
        signature: bytes = self.tasks._signer.sign(message)
        return signature

    def certificate(self) -> bytes:
        return self.tasks.certificates()[self.kid].encode()


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Name resolution of anything but loopback fails, so no test can reach a Google host."""
    real = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name not in LOOPBACK:
            raise OSError(f"test refused a connection to {name!r}")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    tasks = TasksEmulator()
    reports = FakeReportsServer()
    http = requests.Session()
    http.trust_env = False  # a proxy from the environment must never see loopback calls
    try:
        tasks.start()
        tasks.create_queue(QUEUE)
        reports.start()
        yield Stack(tasks, reports, http)
    finally:
        http.close()
        reports.stop()
        tasks.stop()


Configure = Callable[..., None]


@pytest.fixture
def configure(
    monkeypatch: pytest.MonkeyPatch, stack: Stack, firestore_db: FirestoreEmulator
) -> Iterator[Configure]:
    """``configure(NAME=value, ...)``: the environment both functions read (docs/settings.md), with
    overrides (``None`` unsets), and a fresh runtime for it."""
    base: dict[str, str] = {
        "GOOGLE_CLOUD_PROJECT": TEST_PROJECT,
        "TASKS_LOCATION": "here",
        "TASKS_QUEUE": "collect",
        "COLLECT_URL": "http://127.0.0.1:9/collect",
        "TASKS_SERVICE_ACCOUNT": "tasks@local.test",
        "ERASURE_KEY": "e" * 32,
        "FIRESTORE_EMULATOR_HOST": firestore_db.host,
        "CLOUD_TASKS_EMULATOR_HOST": stack.tasks.address,
        "REPORTS_API_ENDPOINT": stack.reports.url,
        "WEBHOOK_SECRET": SECRET_NEW,
        "OIDC_CERTS_URL": stack.tasks.certs_url,
        "API_URL": API_URL,
        "API_PRINCIPALS": OPERATOR,
        "NO_GCE_CHECK": "True",
        "CLOUDSDK_CORE_CHECK_GCE_METADATA": "false",
    }
    known = set().union(*READS.values()) | set(base)

    def apply(**overrides: str | None) -> None:
        values: dict[str, str | None] = {**base, **overrides}
        for name in known:
            value = values.get(name)
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        functions.app.runtime.cache_clear()

    stack.tasks.reset()
    stack.http.post(f"{stack.reports.url}/_fake/reset", timeout=10).raise_for_status()
    apply()
    try:
        yield apply
    finally:
        functions.app.runtime.cache_clear()


@pytest.fixture
def reached(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every call of a store or queue method, by name: a refusal must leave this empty."""
    calls: list[str] = []
    for cls in (FirestoreStore, CloudTasksQueue):
        for name, member in vars(cls).items():
            if name.startswith("_") or not inspect.isfunction(member):
                continue

            def spy(
                *args: Any, _name: str = f"{cls.__name__}.{name}", _real: Any = member, **kw: Any
            ) -> Any:
                calls.append(_name)
                return _real(*args, **kw)

            monkeypatch.setattr(cls, name, spy)
    return calls


def documents() -> list[str]:
    """Every document in the emulator's database, as paths (top-level collections and below)."""
    client = firestore.Client(project=TEST_PROJECT)
    paths: list[str] = []

    def walk(collections: Any) -> None:
        for collection in collections:
            for reference in collection.list_documents():
                paths.append(reference.path)
                walk(reference.collections())

    walk(client.collections())
    return paths


def client(target: str) -> FlaskClient:
    app = functions_framework.create_app(target=target, source=MAIN)  # type: ignore[no-untyped-call]
    test_client: FlaskClient = app.test_client()
    return test_client


@pytest.fixture
def ingest(configure: Configure) -> FlaskClient:
    return client("ingest")


@pytest.fixture
def api(configure: Configure) -> FlaskClient:
    return client("api")


# ------------------------------------------------------------------------------------------------
# Requests and answers


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def meeting_ended(**extra: Any) -> dict[str, Any]:
    ended = datetime.now(UTC) - timedelta(minutes=10)
    return {
        "type": "meeting.ended",
        "meeting_code": "abc-defg-hij",
        "ended_at": iso(ended),
        "started_at": iso(ended - timedelta(minutes=45)),
        "external_id": "security-" + uuid.uuid4().hex,
        **extra,
    }


def encoded(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


def padded(payload: dict[str, Any], size: int) -> bytes:
    """``payload`` with an unknown ``padding`` field, serialised to exactly ``size`` bytes."""
    bare = encoded({**payload, "padding": ""})
    body = encoded({**payload, "padding": "x" * (size - len(bare))})
    assert len(body) == size
    return body


def signed(
    body: bytes,
    *,
    secret: str = SECRET_NEW,
    at: datetime | None = None,
    webhook_id: str | None = None,
) -> dict[str, str]:
    return sign_webhook(
        secret=secret,
        webhook_id=webhook_id or "msg_" + uuid.uuid4().hex,
        timestamp=at or datetime.now(UTC),
        body=body,
    )


def v1(headers: dict[str, str]) -> str:
    """The base64 HMAC of a ``webhook-signature`` made by :func:`signed`."""
    return headers["webhook-signature"].removeprefix("v1,")


def post(
    client: FlaskClient,
    body: bytes,
    headers: dict[str, str],
    *,
    path: str = "/",
    content_type: str | None = "application/json",
) -> TestResponse:
    all_headers = dict(headers)
    if content_type is not None:
        all_headers["Content-Type"] = content_type
    return client.post(path, data=body, headers=all_headers)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def error_of(
    response: TestResponse, status: int, code: str | None = None, *, only: bool = True
) -> dict[str, Any]:
    """The ``{"error": {"code", "message"}}`` body of docs/api.md "Rules every function follows", after checking its shape
    (``only``: and nothing beside it)."""
    text = response.get_data(as_text=True)
    assert response.status_code == status, text
    assert response.mimetype == "application/json", text
    body = json.loads(text)
    assert isinstance(body, dict), text
    assert "error" in body, text
    if only:
        assert set(body) == {"error"}, text
    error = body["error"]
    assert isinstance(error, dict), text
    assert isinstance(error.get("code"), str), text
    assert isinstance(error.get("message"), str), text
    assert error["message"], text
    assert set(error) <= {"code", "message", "field", "allowed"}, text
    if status == 405:
        # The methods the route serves, in the body and in the Allow header alike.
        assert response.headers["Allow"] == ", ".join(error["allowed"]), text
    else:
        assert "allowed" not in error, text
    if code is not None:
        assert error["code"] == code, text
    detail: dict[str, Any] = error
    return detail


def assert_accepted(response: TestResponse) -> str:
    text = response.get_data(as_text=True)
    assert response.status_code in (200, 202), text
    meeting_id: str = response.get_json()["meeting_id"]
    return meeting_id


def declare(ingest: FlaskClient) -> tuple[str, bytes, dict[str, str]]:
    """A meeting declared through ingest: its id and the signed request that declared it."""
    body = encoded(meeting_ended())
    headers = signed(body)
    response = post(ingest, body, headers)
    assert response.status_code == 202, response.get_data(as_text=True)
    return assert_accepted(response), body, headers


# ================================================================================================
# 1. Webhook timestamp tolerance: exactly 5 minutes either way


@pytest.mark.parametrize(
    ("offset_s", "accepted"),
    [(-301, False), (-300, True), (-1, True), (0, True), (1, True), (300, True), (301, False)],
)
def test_the_webhook_timestamp_may_be_exactly_300_seconds_off_either_way(
    offset_s: int, accepted: bool
) -> None:
    body = b'{"type": "meeting.ended"}'
    headers = signed(body, at=FIXED_NOW + timedelta(seconds=offset_s), webhook_id="msg_edge")

    def check() -> str:
        return verify_webhook_signature(
            headers=headers, body=body, secrets=(SECRET_NEW,), now=FIXED_NOW
        )

    if accepted:
        assert check() == "msg_edge"
    else:
        with pytest.raises(Unauthorized, match="more than 5 minutes"):
            check()


@pytest.mark.parametrize(
    ("offset_s", "accepted"), [(-302, False), (-299, True), (299, True), (302, False)]
)
def test_ingest_applies_the_timestamp_tolerance_on_the_real_clock(
    ingest: FlaskClient, reached: list[str], offset_s: int, accepted: bool
) -> None:
    body = encoded(meeting_ended())
    response = post(ingest, body, signed(body, at=datetime.now(UTC) + timedelta(seconds=offset_s)))
    if accepted:
        assert response.status_code == 202, response.get_data(as_text=True)
        assert len([path for path in documents() if path.startswith("meetings/")]) == 1
    else:
        error = error_of(response, 401, "unauthorized")
        assert "5 minutes" in error["message"]
        assert reached == []
        assert documents() == []


# ================================================================================================
# 2. Secret rotation


@pytest.mark.parametrize(
    "configured",
    [f"{SECRET_NEW},{SECRET_OLD}", f"{SECRET_OLD},{SECRET_NEW}", f" {SECRET_NEW} , {SECRET_OLD} "],
)
def test_during_a_rotation_both_secrets_sign(configure: Configure, configured: str) -> None:
    configure(WEBHOOK_SECRET=configured)
    ingest = client("ingest")
    for secret in (SECRET_NEW, SECRET_OLD):
        body = encoded(meeting_ended())
        response = post(ingest, body, signed(body, secret=secret))
        assert response.status_code == 202, (secret, response.get_data(as_text=True))


def test_after_the_rotation_the_retired_secret_is_refused(
    configure: Configure, reached: list[str]
) -> None:
    configure(WEBHOOK_SECRET=f"{SECRET_NEW},{SECRET_OLD}")
    body = encoded(meeting_ended())
    old_headers = signed(body, secret=SECRET_OLD)
    assert post(client("ingest"), body, old_headers).status_code == 202

    configure(WEBHOOK_SECRET=SECRET_NEW)
    ingest = client("ingest")
    reached.clear()
    retired = encoded(meeting_ended())
    error_of(post(ingest, retired, signed(retired, secret=SECRET_OLD)), 401, "unauthorized")
    # The request signed before the rotation does not pass either, even as a replay.
    error_of(post(ingest, body, old_headers), 401, "unauthorized")
    assert reached == []

    fresh = encoded(meeting_ended())
    assert post(ingest, fresh, signed(fresh, secret=SECRET_NEW)).status_code == 202


def test_a_header_signed_with_both_secrets_passes_after_the_rotation(
    configure: Configure,
) -> None:
    configure(WEBHOOK_SECRET=SECRET_NEW)
    body = encoded(meeting_ended())
    webhook_id = "msg_" + uuid.uuid4().hex
    at = datetime.now(UTC)
    old = signed(body, secret=SECRET_OLD, at=at, webhook_id=webhook_id)
    new = signed(body, secret=SECRET_NEW, at=at, webhook_id=webhook_id)
    both = {**new, "webhook-signature": f"v1,{v1(old)} v1,{v1(new)}"}
    assert post(client("ingest"), body, both).status_code == 202


# ================================================================================================
# 3. Several signatures in one header


#: ``{good}``: the right signature's base64; ``{bad}``: a well-formed wrong one; ``{cut}``: the
#: right one with its padding cut (not base64).
BAD = base64.b64encode(hashlib.sha256(b"not the key").digest()).decode()


@pytest.mark.parametrize(
    ("template", "accepted"),
    [
        ("v1a,xxxx v1,{good}", True),
        ("v1,{bad} v1,{good}", True),
        ("v1,{good} v1,{bad}", True),
        ("v1,!!!not-base64!!! v1,{good}", True),
        ("v1,{cut} v1,{good}", True),
        ("v1, v1,{good}", True),
        ("garbage ,,, v1 v1,{good}", True),
        ("v1,\u00e9\u00e9\u00e9 v1,{good}", True),  # not ASCII
        ("v1a,{good}", False),
        ("v2,{good}", False),
        ("{good}", False),
        (",{good}", False),
        ("v1,{bad}", False),
        ("v1,!!!not-base64!!!", False),
        ("v1,{cut}", False),
        ("v1,\u00e9\u00e9\u00e9 v1a,xxxx", False),
    ],
)
def test_any_intact_v1_signature_in_the_header_counts_and_nothing_else_does(
    ingest: FlaskClient, reached: list[str], template: str, accepted: bool
) -> None:
    body = encoded(meeting_ended())
    headers = signed(body)
    good = v1(headers)
    headers["webhook-signature"] = template.format(good=good, bad=BAD, cut=good[:-2])
    response = post(ingest, body, headers)
    if accepted:
        assert response.status_code == 202, response.get_data(as_text=True)
    else:
        error_of(response, 401, "unauthorized")  # never a 500
        assert reached == []
        assert documents() == []


# ================================================================================================
# 4. A captured signed request replayed elsewhere


@pytest.mark.parametrize(
    ("method", "path", "with_body"),
    [
        ("GET", "/meetings/{id}", False),
        ("POST", "/meetings/{id}/sync", False),
        ("POST", "/meetings/{id}/sync", True),
        ("POST", "/meetings/sync", True),
        ("POST", "/erasures", True),
    ],
)
def test_a_webhook_signature_opens_nothing_but_post_slash(
    ingest: FlaskClient,
    api: FlaskClient,
    stack: Stack,
    reached: list[str],
    method: str,
    path: str,
    with_body: bool,
) -> None:
    meeting_id, captured_body, captured_headers = declare(ingest)
    before = documents()
    reached.clear()
    target = path.format(id=meeting_id)
    # The captured request itself, and one freshly and validly signed for exactly this request.
    body = captured_body if with_body else b""
    attempts = [captured_headers, signed(body)]
    for headers in attempts:
        all_headers = {**headers, "Content-Type": "application/json"} if with_body else headers
        on_ingest = ingest.open(target, method=method, data=body, headers=all_headers)
        error_of(on_ingest, 404, "not_found")  # ingest serves POST / only
        on_api = api.open(target, method=method, data=body, headers=all_headers)
        error_of(on_api, 401, "unauthorized")
        # A webhook signature where a token belongs is no token either.
        as_token = {**all_headers, "Authorization": "Bearer " + headers["webhook-signature"]}
        error_of(api.open(target, method=method, data=body, headers=as_token), 401)
    assert stack.reports_requests() == []
    assert reached == []
    assert documents() == before


def test_replaying_the_captured_webhook_declares_nothing_new(
    ingest: FlaskClient, stack: Stack
) -> None:
    meeting_id, body, headers = declare(ingest)
    before = documents()
    again = post(ingest, body, headers)
    assert (again.status_code, assert_accepted(again)) == (200, meeting_id)
    assert documents() == before
    assert stack.reports_requests() == []


# ================================================================================================
# 5. ID tokens on api


def b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def claims(**overrides: Any) -> dict[str, Any]:
    """What the emulator's mint puts in a token for the operator; ``None`` removes a claim."""
    now = int(time.time())
    values: dict[str, Any] = {
        "aud": API_URL,
        "azp": "100000000000000000001",
        "email": OPERATOR,
        "email_verified": True,
        "exp": now + 3600,
        "iat": now,
        "iss": "https://accounts.google.com",
        "sub": "100000000000000000001",
    }
    values.update(overrides)
    return {name: value for name, value in values.items() if value is not None}


def jwt(header: dict[str, Any], payload: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    signing_input = (
        b64url(json.dumps(header).encode()) + b"." + b64url(json.dumps(payload).encode())
    )
    return (signing_input + b"." + b64url(sign(signing_input))).decode()


def foreign_signer() -> Callable[[bytes], bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    signer = google.auth.crypt.RSASigner.from_string(pem)  # type: ignore[no-untyped-call]
    sign: Callable[[bytes], bytes] = signer.sign
    return sign


def rs256(stack: Stack, **overrides: Any) -> str:
    """A token signed by the emulator's key, as its mint would sign it, with other claims."""
    return jwt({"alg": "RS256", "typ": "JWT", "kid": stack.kid}, claims(**overrides), stack.sign)


def _tampered(stack: Stack) -> str:
    header, _, signature = stack.mint(email=INTRUDER).split(".")
    payload = b64url(json.dumps(claims()).encode()).decode()
    return f"{header}.{payload}.{signature}"


UNAUTHENTICATED: dict[str, Callable[[Stack], dict[str, str]]] = {
    "no Authorization": lambda s: {},
    "empty Authorization": lambda s: {"Authorization": ""},
    "Bearer without a token": lambda s: {"Authorization": "Bearer"},
    "Bearer garbage": lambda s: bearer("garbage"),
    "Bearer three garbage segments": lambda s: bearer("a.b.c"),
    "a genuine token without Bearer": lambda s: {"Authorization": s.mint()},
    "a genuine token as Basic": lambda s: {"Authorization": "Basic " + s.mint()},
    "a truncated signature": lambda s: bearer(s.mint()[:-8]),
    "a tampered payload": lambda s: bearer(_tampered(s)),
    "no kid, a foreign key": lambda s: bearer(
        jwt({"alg": "RS256", "typ": "JWT"}, claims(), foreign_signer())
    ),
    "alg none": lambda s: bearer(
        jwt({"alg": "none", "typ": "JWT", "kid": s.kid}, claims(), lambda m: b"")
    ),
    "alg none, no kid": lambda s: bearer(
        jwt({"alg": "none", "typ": "JWT"}, claims(), lambda m: b"")
    ),
    "HS256 keyed with the public certificate": lambda s: bearer(
        jwt(
            {"alg": "HS256", "typ": "JWT", "kid": s.kid},
            claims(),
            lambda m: hmac.new(s.certificate(), m, hashlib.sha256).digest(),
        )
    ),
    "a foreign key with the same kid": lambda s: bearer(
        jwt({"alg": "RS256", "typ": "JWT", "kid": s.kid}, claims(), foreign_signer())
    ),
    "the wrong audience": lambda s: bearer(s.mint(audience="https://other.security.test/")),
    "the collect audience": lambda s: bearer(s.mint(audience="http://127.0.0.1:9/collect")),
    "expired": lambda s: bearer(rs256(s, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)),
    "expired a minute ago": lambda s: bearer(
        rs256(s, iat=int(time.time()) - 3660, exp=int(time.time()) - 60)
    ),
    "no exp": lambda s: bearer(rs256(s, exp=None)),
    "issued in the future": lambda s: bearer(rs256(s, iat=int(time.time()) + 600)),
    "an issuer that is not Google": lambda s: bearer(rs256(s, iss="https://evil.example")),
    "no issuer": lambda s: bearer(rs256(s, iss=None)),
}

FORBIDDEN: dict[str, Callable[[Stack], dict[str, str]]] = {
    "another principal": lambda s: bearer(s.mint(email=INTRUDER)),
    "a principal's look-alike": lambda s: bearer(s.mint(email="operator@local.test.evil")),
    "email_verified false": lambda s: bearer(rs256(s, email_verified=False)),
    "email_verified the string true": lambda s: bearer(rs256(s, email_verified="true")),
    "no email_verified": lambda s: bearer(rs256(s, email_verified=None)),
    "no email": lambda s: bearer(rs256(s, email=None)),
}


def _refused_sync(
    ingest: FlaskClient,
    api: FlaskClient,
    stack: Stack,
    reached: list[str],
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    meeting_id, _, _ = declare(ingest)
    before = documents()
    reached.clear()
    for method, path in (
        ("POST", f"/meetings/{meeting_id}/sync"),
        ("GET", f"/meetings/{meeting_id}"),
    ):
        response = api.open(path, method=method, headers=headers)
        error_of(response, status, code)
        # The token is never echoed (google-auth's own messages quote it).
        token = headers.get("Authorization", "").partition(" ")[2]
        if len(token) > 8:
            assert token not in response.get_data(as_text=True)
            assert meeting_id not in response.get_data(as_text=True)
    assert reached == []
    assert stack.reports_requests() == []
    assert documents() == before


@pytest.mark.parametrize("case", list(UNAUTHENTICATED))
def test_a_token_that_does_not_prove_a_google_identity_is_401_and_reaches_nothing(
    ingest: FlaskClient, api: FlaskClient, stack: Stack, reached: list[str], case: str
) -> None:
    _refused_sync(ingest, api, stack, reached, UNAUTHENTICATED[case](stack), 401, "unauthorized")


@pytest.mark.parametrize("case", list(FORBIDDEN))
def test_a_genuine_token_of_another_or_unverified_principal_is_403_and_reaches_nothing(
    ingest: FlaskClient, api: FlaskClient, stack: Stack, reached: list[str], case: str
) -> None:
    _refused_sync(ingest, api, stack, reached, FORBIDDEN[case](stack), 403, "forbidden")


def test_a_token_without_a_kid_is_401_even_when_signed_by_the_right_key(
    ingest: FlaskClient, api: FlaskClient, stack: Stack, reached: list[str]
) -> None:
    token = jwt({"alg": "RS256", "typ": "JWT"}, claims(), stack.sign)
    _refused_sync(ingest, api, stack, reached, bearer(token), 401, "unauthorized")


@pytest.mark.parametrize(
    "make_token",
    [
        lambda s: s.mint(),
        lambda s: rs256(s),  # the builder the refusals above are variations of
        lambda s: s.mint(email=OPERATOR.upper()),
        lambda s: s.mint(audience=API_URL.rstrip("/")),
    ],
)
def test_the_right_principal_is_served(
    ingest: FlaskClient,
    api: FlaskClient,
    stack: Stack,
    make_token: Callable[[Stack], str],
) -> None:
    meeting_id, _, _ = declare(ingest)
    headers = bearer(make_token(stack))
    synced = api.post(f"/meetings/{meeting_id}/sync", headers=headers)
    assert synced.status_code == 200, synced.get_data(as_text=True)
    assert synced.get_json()["status"] == "success"
    assert len(stack.reports_requests()) >= 1
    shown = api.get(f"/meetings/{meeting_id}", headers=headers)
    assert shown.status_code == 200, shown.get_data(as_text=True)
    assert shown.get_json()["meeting"]["meeting_id"] == meeting_id


def test_an_unknown_meeting_is_404_only_once_authenticated(
    api: FlaskClient, stack: Stack, reached: list[str]
) -> None:
    error_of(api.get("/meetings/unknown-id"), 401, "unauthorized")
    error_of(api.get("/meetings/unknown-id", headers=bearer(stack.mint(email=INTRUDER))), 403)
    assert reached == []
    error_of(api.get("/meetings/unknown-id", headers=bearer(stack.mint())), 404, "not_found")
    assert "FirestoreStore.get" in reached  # the spy sees what an authenticated call reads


# ================================================================================================
# 6. Bodies: size, media type, strict UTF-8 JSON


def _deep() -> bytes:
    return b"[" * 30_000 + b"]" * 30_000


def _invalid_utf8() -> bytes:
    # In a field that takes any printable text, so only the decoding can refuse it.
    return encoded(meeting_ended(external_id="session-INVALID")).replace(
        b"INVALID", b"\xff\xfe\xc3"
    )


def _duplicate_keys() -> bytes:
    body = encoded(meeting_ended())
    return body[:-1] + b', "meeting_code": "xyz-wxyz-xyz"}'


BAD_BODIES: dict[str, tuple[Callable[[], bytes], str | None, int]] = {
    "64 KiB + 1 byte": (lambda: padded(meeting_ended(), LIMIT + 1), "application/json", 413),
    "twice the limit": (lambda: padded(meeting_ended(), 2 * LIMIT), "application/json", 413),
    "text/plain": (lambda: encoded(meeting_ended()), "text/plain", 415),
    "form-urlencoded": (
        lambda: encoded(meeting_ended()),
        "application/x-www-form-urlencoded",
        415,
    ),
    "multipart": (lambda: encoded(meeting_ended()), "multipart/form-data; boundary=x", 415),
    "JSON in latin-1": (lambda: encoded(meeting_ended()), "application/json; charset=latin-1", 415),
    "no media type": (lambda: encoded(meeting_ended()), None, 415),
    "duplicate keys": (_duplicate_keys, "application/json", 400),
    "30,000 nested arrays": (_deep, "application/json", 400),
    "10,000 nested objects": (  # as deep as fits in 64 KiB
        lambda: b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
        "application/json",
        400,
    ),
    "invalid UTF-8": (_invalid_utf8, "application/json", 400),
    "a UTF-8 BOM": (lambda: b"\xef\xbb\xbf" + encoded(meeting_ended()), "application/json", 400),
    "NaN": (lambda: encoded(meeting_ended())[:-1] + b', "x": NaN}', "application/json", 400),
    "a JSON array": (lambda: b"[" + encoded(meeting_ended()) + b"]", "application/json", 400),
}


def _lone_surrogate_in(field: str) -> Callable[[], bytes]:
    """A body whose ``field`` holds the JSON escape ``\\ud800``: valid UTF-8 bytes that decode to
    a string no store can encode."""

    def body() -> bytes:
        text = "kid\\ud800@school.test" if "email" in field or "expected" in field else "a\\ud800"
        value: Any = [text] if field == "expected_participants" else text
        return encoded(meeting_ended(**{field: value})).replace(b"\\\\ud800", b"\\ud800")

    return body


for _field in (
    "meeting_code",
    "external_id",
    "calendar_event_id",
    "organizer_email",
    "expected_participants",
    "ended_at",
    "started_at",
):
    BAD_BODIES[f"a lone surrogate in {_field}"] = (
        _lone_surrogate_in(_field),
        "application/json",
        400,
    )
_CODES = {413: "payload_too_large", 415: "unsupported_media_type", 400: "invalid_payload"}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_ingest_refuses_a_bad_body_signed_properly_and_stores_nothing(
    ingest: FlaskClient, stack: Stack, reached: list[str], case: str
) -> None:
    make_body, content_type, status = BAD_BODIES[case]
    body = make_body()
    response = post(ingest, body, signed(body), content_type=content_type)
    error_of(response, status, _CODES[status])
    assert reached == []
    assert documents() == []
    assert stack.reports_requests() == []


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_api_refuses_a_bad_body_with_a_valid_token_and_stores_nothing(
    api: FlaskClient, stack: Stack, reached: list[str], case: str
) -> None:
    make_body, content_type, status = BAD_BODIES[case]
    body = make_body()
    response = post(
        api, body, bearer(stack.mint()), path="/meetings/sync", content_type=content_type
    )
    error_of(response, status, _CODES[status])
    assert reached == []
    assert documents() == []
    assert stack.reports_requests() == []


def test_exactly_64_kib_is_not_too_large(
    ingest: FlaskClient, api: FlaskClient, stack: Stack
) -> None:
    body = padded(meeting_ended(), LIMIT)
    assert post(ingest, body, signed(body)).status_code == 202
    declared = padded({k: v for k, v in meeting_ended().items() if k != "type"}, LIMIT)
    synced = post(api, declared, bearer(stack.mint()), path="/meetings/sync")
    assert synced.status_code == 200, synced.get_data(as_text=True)


def test_the_erasure_body_is_parsed_as_strictly(
    api: FlaskClient, stack: Stack, reached: list[str]
) -> None:
    body = b'{"participant_key": "a@school.test", "participant_key": "b@school.test"}'
    error_of(post(api, body, bearer(stack.mint()), path="/erasures"), 400, "invalid_payload")
    error_of(post(api, _deep(), bearer(stack.mint()), path="/erasures"), 400, "invalid_payload")
    assert reached == []


# ================================================================================================
# 7. Error bodies: always the §4.4 shape; a 5xx names nothing internal or upstream


@pytest.mark.parametrize(
    ("target", "method", "path", "status"),
    [
        ("ingest", "GET", "/", 405),
        ("ingest", "PUT", "/", 405),
        ("ingest", "DELETE", "/", 405),
        ("ingest", "GET", "/nowhere", 404),
        ("ingest", "POST", "/calendar", 404),
        ("ingest", "GET", "/meetings", 404),
        ("api", "GET", "/", 404),
        ("api", "GET", "/meetings", 404),
        ("api", "GET", "/meetings/../etc", 404),
        ("api", "PUT", "/meetings/some-id", 405),
        ("api", "GET", "/meetings/some-id/sync", 405),
        ("api", "GET", "/erasures", 405),
    ],
)
def test_routing_refusals_answer_the_error_shape(
    configure: Configure, reached: list[str], target: str, method: str, path: str, status: int
) -> None:
    response = client(target).open(path, method=method)
    error_of(response, status)
    assert reached == []


def test_a_configuration_error_is_a_500_that_names_no_setting(
    configure: Configure, reached: list[str]
) -> None:
    configure(WEBHOOK_SECRET=None, ERASURE_KEY=None)
    body = encoded(meeting_ended())
    response = post(client("ingest"), body, signed(body))
    error_of(response, 500)
    text = response.get_data(as_text=True)
    for internal in ("WEBHOOK_SECRET", "ERASURE_KEY", "whsec", "required"):
        assert internal not in text
    assert reached == []


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_unreachable_certificates_are_a_503_that_names_no_internals(
    configure: Configure, stack: Stack, reached: list[str]
) -> None:
    port = _closed_port()
    configure(OIDC_CERTS_URL=f"http://127.0.0.1:{port}/oauth2/v1/certs")
    response = client("api").get("/meetings/unknown-id", headers=bearer(stack.mint()))
    error = error_of(response, 503)
    assert error["code"] == "unavailable"
    text = response.get_data(as_text=True)
    for internal in (str(port), "127.0.0.1", "certs", "OIDC", "refused", "Errno", "Traceback"):
        assert internal not in text
    assert reached == []


UPSTREAM_FAULTS = {
    # kind: texts of the fake's Google error body (message, reason, status)
    "not_authorized": (
        "Not Authorized to access this resource/api",
        "forbidden",
        "PERMISSION_DENIED",
    ),
    "not_admin": ("Access denied", "authError", "UNAUTHENTICATED"),
    "server_error": ("Backend Error", "backendError", "INTERNAL"),
}


#: What the adapter's own ReportsError messages say about the upstream and the set-up.
INTERNALS = ("Reports API", "REPORTS_", "googleapis", "delegation", "attempt(s)", "(401)", "(403)")


def _failed_sync(
    ingest: FlaskClient, api: FlaskClient, stack: Stack, monkeypatch: pytest.MonkeyPatch, kind: str
) -> TestResponse:
    """``POST /meetings/{id}/sync`` while the fake Reports API answers ``kind`` faults."""
    # The adapter retries a 500 six times with backoff; the wait is not what is tested here.
    defaults = cast(types.FunctionType, GoogleReportsSource.__init__).__kwdefaults__
    assert defaults is not None
    monkeypatch.setitem(defaults, "sleep", lambda seconds: None)
    meeting_id, _, _ = declare(ingest)
    stack.fault(kind, count=10)
    response = api.post(f"/meetings/{meeting_id}/sync", headers=bearer(stack.mint()))
    assert len(stack.reports_requests()) >= 1  # the poll did reach Reports, and it failed
    assert response.status_code == 502, response.get_data(as_text=True)
    return response


@pytest.mark.parametrize("kind", list(UPSTREAM_FAULTS))
def test_a_failed_reports_poll_is_a_502_in_the_error_shape(
    ingest: FlaskClient, api: FlaskClient, stack: Stack, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    # The seed's sync fields may stay beside it; the error object must be there.
    error_of(_failed_sync(ingest, api, stack, monkeypatch, kind), 502, only=False)


@pytest.mark.parametrize("kind", list(UPSTREAM_FAULTS))
def test_a_failed_reports_poll_502_carries_no_upstream_text_or_internals(
    ingest: FlaskClient, api: FlaskClient, stack: Stack, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    text = _failed_sync(ingest, api, stack, monkeypatch, kind).get_data(as_text=True)
    for leaked in (*UPSTREAM_FAULTS[kind], *INTERNALS):
        assert leaked not in text
