"""Keyless domain-wide delegation end to end, offline: IAM signBlob and the token endpoint are local
stand-ins, and the Reports client is the stock one pointed at the fake Reports API."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
from collections.abc import Iterator
from typing import Any

import google.auth
import google.auth.exceptions
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from googleapiclient.discovery import build

from functions.adapters.google_credentials import (
    CLOUD_PLATFORM_SCOPE,
    REPORTS_SCOPE,
    SIGN_BLOB_HELP,
    SUBJECT_HELP,
    UNAUTHORIZED_CLIENT_HELP,
    describe_token_error,
    key_file_delegated_credentials,
    keyless_delegated_credentials,
)
from local.fake_google_auth import (
    DEFAULT_SERVICE_ACCOUNT,
    GOOGLE_TOKEN_AUDIENCE,
    FakeIam,
    FakeSourceCredentials,
    FakeTokenServer,
    RefusedHostError,
    generate_key,
    private_key_pem,
    public_key_pem,
)
from local.fake_reports import FakeReportsServer

os.environ["NO_GCE_CHECK"] = "True"

ADMIN = "reports-admin@school.example"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
DIRECTORY_SCOPE = "https://www.googleapis.com/auth/admin.directory.user.readonly"


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuses name resolution of anything but loopback, and keeps google-auth's experimental
    regional-access-boundary lookup (a call to Google) off."""
    real = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name not in LOOPBACK:
            raise OSError(f"test refused a connection to {name!r}")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)
    monkeypatch.delenv(
        "GOOGLE_SDK_EXPERIMENTAL_PYTHON_REGIONAL_ACCESS_BOUNDARY_LOOKUP_ENABLED", raising=False
    )


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return generate_key()


@pytest.fixture
def iam(key: rsa.RSAPrivateKey) -> FakeIam:
    return FakeIam(key=key)


@pytest.fixture
def token_server(iam: FakeIam) -> Iterator[FakeTokenServer]:
    with FakeTokenServer(expected_subject=ADMIN, expected_scope=REPORTS_SCOPE, iam=iam) as srv:
        yield srv


def delegated(iam: FakeIam, token_server: FakeTokenServer, subject: str = ADMIN) -> Any:
    return keyless_delegated_credentials(
        subject=subject,
        source=FakeSourceCredentials(),
        request=iam,
        token_uri=token_server.token_uri,
    )


def refresh(creds: Any, request: Any) -> None:
    creds.refresh(request)


def test_keyless_refresh_issues_a_delegated_token(
    iam: FakeIam, token_server: FakeTokenServer
) -> None:
    source = FakeSourceCredentials()
    creds = keyless_delegated_credentials(
        subject=ADMIN, source=source, request=iam, token_uri=token_server.token_uri
    )
    # The email is only known after the source's refresh, as on Cloud Run.
    assert source.refresh_count == 1
    assert creds.service_account_email == DEFAULT_SERVICE_ACCOUNT
    refresh(creds, iam)
    assert creds.token in token_server.issued_tokens()
    (grant,) = token_server.requests()
    assert grant["status"] == 200
    claims = grant["claims"]
    assert claims["iss"] == DEFAULT_SERVICE_ACCOUNT
    assert claims["sub"] == ADMIN
    assert claims["scope"] == REPORTS_SCOPE
    # google-auth keeps Google's audience even with a custom token_uri.
    assert claims["aud"] == GOOGLE_TOKEN_AUDIENCE
    (signed,) = iam.sign_requests()
    assert signed["email"] == DEFAULT_SERVICE_ACCOUNT
    assert signed["authorization"] == "Bearer source-token"
    assert signed["status"] == 200


def test_explicit_service_account_email_wins(iam: FakeIam, token_server: FakeTokenServer) -> None:
    other = "someone-else@attendance-test.iam.gserviceaccount.com"
    creds = keyless_delegated_credentials(
        subject=ADMIN,
        source=FakeSourceCredentials(),
        service_account_email=other,
        request=iam,
        token_uri=token_server.token_uri,
    )
    assert creds.service_account_email == other
    # The fake IAM only signs for its own account, as IAM refuses one the caller may not use.
    with pytest.raises(google.auth.exceptions.TransportError) as info:
        refresh(creds, iam)
    assert describe_token_error(info.value).endswith(SIGN_BLOB_HELP)


def test_default_source_asks_for_cloud_platform(
    monkeypatch: pytest.MonkeyPatch, iam: FakeIam, token_server: FakeTokenServer
) -> None:
    asked: list[Any] = []

    def fake_default(scopes: Any = None, **kwargs: Any) -> tuple[Any, str]:
        asked.append(scopes)
        return FakeSourceCredentials(), "attendance-test"

    monkeypatch.setattr(google.auth, "default", fake_default)
    creds = keyless_delegated_credentials(
        subject=ADMIN, request=iam, token_uri=token_server.token_uri
    )
    assert asked == [[CLOUD_PLATFORM_SCOPE]]
    refresh(creds, iam)
    assert creds.token


def test_reports_client_with_delegated_credentials(iam: FakeIam, key: rsa.RSAPrivateKey) -> None:
    token = "fake-token-for-reports"
    with (
        FakeTokenServer(
            expected_subject=ADMIN, expected_scope=REPORTS_SCOPE, iam=iam, access_token=token
        ) as token_server,
        FakeReportsServer(require_token=token) as reports,
    ):
        when = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        reports.add_activities(
            [
                {
                    "id": {
                        "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                        "uniqueQualifier": "42",
                        "applicationName": "meet",
                    },
                    "actor": {"email": "pat@school.example"},
                    "events": [
                        {
                            "type": "call",
                            "name": "call_ended",
                            "parameters": [{"name": "meeting_code", "value": "ABCDEFGHIJ"}],
                        }
                    ],
                }
            ]
        )
        creds = delegated(iam, token_server)
        # googleapiclient wraps the credentials in google_auth_httplib2: its refresh goes over
        # httplib2 to the loopback token server, and signing goes through the FakeIam the
        # signer holds.
        service: Any = build(
            "admin",
            "reports_v1",
            static_discovery=True,
            credentials=creds,
            client_options={"api_endpoint": reports.url},
        )
        page = (
            service.activities()
            .list(
                userKey="all",
                applicationName="meet",
                eventName="call_ended",
                filters="meeting_code==ABCDEFGHIJ",
            )
            .execute()
        )
        assert [i["id"]["uniqueQualifier"] for i in page["items"]] == ["42"]
        assert token_server.issued_tokens() == [token]
        assert [r["status"] for r in reports.requests()] == [200]


def test_wrong_subject_is_described_as_the_subject_setting(
    iam: FakeIam, token_server: FakeTokenServer
) -> None:
    creds = delegated(iam, token_server, subject="ghost@school.example")
    with pytest.raises(google.auth.exceptions.RefreshError) as info:
        refresh(creds, iam)
    message = describe_token_error(info.value)
    assert message.startswith(SUBJECT_HELP)
    assert "Invalid email or User ID" in message
    assert "\n" not in message


def test_wrong_subject_through_the_reports_client(
    iam: FakeIam, token_server: FakeTokenServer
) -> None:
    with FakeReportsServer() as reports:
        service: Any = build(
            "admin",
            "reports_v1",
            static_discovery=True,
            credentials=delegated(iam, token_server, subject="ghost@school.example"),
            client_options={"api_endpoint": reports.url},
        )
        with pytest.raises(google.auth.exceptions.RefreshError) as info:
            service.activities().list(userKey="all", applicationName="meet").execute()
        assert describe_token_error(info.value).startswith(SUBJECT_HELP)
        assert reports.requests() == []


def test_unauthorised_client_is_described_as_the_admin_console_step(iam: FakeIam) -> None:
    with FakeTokenServer(
        expected_subject=ADMIN, expected_scope=DIRECTORY_SCOPE, iam=iam
    ) as token_server:
        creds = delegated(iam, token_server)
        with pytest.raises(google.auth.exceptions.RefreshError) as info:
            refresh(creds, iam)
        (grant,) = token_server.requests()
        assert (grant["status"], grant["error"]) == (401, "unauthorized_client")
    message = describe_token_error(info.value)
    assert UNAUTHORIZED_CLIENT_HELP in message
    assert REPORTS_SCOPE in message


def test_sign_blob_denied_is_described_as_token_creator(
    key: rsa.RSAPrivateKey, token_server: FakeTokenServer
) -> None:
    denying = FakeIam(key=key, deny=True)
    creds = delegated(denying, token_server)
    with pytest.raises(google.auth.exceptions.GoogleAuthError) as info:
        refresh(creds, denying)
    assert describe_token_error(info.value) == (
        f"IAM refused to sign the delegation assertion: {SIGN_BLOB_HELP}"
    )
    assert [r["status"] for r in denying.sign_requests()] == [403]
    assert token_server.requests() == []


def test_assertion_signed_by_another_key_is_rejected(
    key: rsa.RSAPrivateKey, token_server: FakeTokenServer
) -> None:
    impostor = FakeIam(key=generate_key())
    creds = delegated(impostor, token_server)
    with pytest.raises(google.auth.exceptions.RefreshError) as info:
        refresh(creds, impostor)
    assert "Invalid JWT Signature" in describe_token_error(info.value)


def key_info(key: rsa.RSAPrivateKey, token_uri: str) -> dict[str, str]:
    return {
        "type": "service_account",
        "project_id": "attendance-test",
        "private_key_id": "0123456789abcdef",
        "private_key": private_key_pem(key),
        "client_email": "keyed@attendance-test.iam.gserviceaccount.com",
        "client_id": "111111111111111111111",
        "token_uri": token_uri,
    }


def test_key_file_path(iam: FakeIam, token_server: FakeTokenServer) -> None:
    key = generate_key()
    info = key_info(key, token_server.token_uri)
    token_server.add_service_account(info["client_email"], public_key_pem(key))
    creds = key_file_delegated_credentials(key_json=json.dumps(info), subject=ADMIN)
    assert creds.service_account_email == info["client_email"]
    refresh(creds, iam)  # FakeIam only forwards: the token server is on loopback
    (grant,) = token_server.requests()
    assert grant["status"] == 200
    assert grant["header"]["kid"] == info["private_key_id"]
    assert grant["claims"]["sub"] == ADMIN
    assert grant["claims"]["scope"] == REPORTS_SCOPE
    assert creds.token in token_server.issued_tokens()


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda i: "{not json", "not valid JSON"),
        (lambda i: "[]", "must be a JSON object"),
        (lambda i: json.dumps({**i, "type": "authorized_user"}), "type 'authorized_user'"),
        (lambda i: json.dumps({k: v for k, v in i.items() if k != "client_email"}), "client_email"),
        (lambda i: json.dumps({**i, "private_key": "-----BEGIN nonsense\n"}), "unusable"),
    ],
)
def test_invalid_key_json_is_one_line_value_error(
    key: rsa.RSAPrivateKey, mutate: Any, expected: str
) -> None:
    text = mutate(key_info(key, "http://127.0.0.1:9/token"))
    with pytest.raises(ValueError, match=expected) as info:
        key_file_delegated_credentials(key_json=text, subject=ADMIN)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "https://oauth2.googleapis.com/token",
        "https://admin.googleapis.com/admin/reports/v1/activity/users/all/applications/meet",
        "http://169.254.169.254/computeMetadata/v1/",
        "https://iamcredentials.googleapis.com.evil.example/v1/x:signBlob",
    ],
)
def test_fake_iam_refuses_other_hosts(iam: FakeIam, url: str) -> None:
    with pytest.raises(RefusedHostError):
        iam(url=url, method="POST", body=b"{}", headers={})


def test_describe_other_errors_stays_one_line() -> None:
    plain = google.auth.exceptions.RefreshError("something\nodd happened")  # type: ignore[no-untyped-call]
    assert describe_token_error(plain) == "token request failed: something odd happened"
    skew = google.auth.exceptions.RefreshError(  # type: ignore[no-untyped-call]
        "invalid_grant: Invalid JWT: Token must be a short-lived token",
        {"error": "invalid_grant", "error_description": "Invalid JWT: Token must be ..."},
    )
    assert describe_token_error(skew).startswith("delegation assertion rejected")
