"""Google ID tokens, verified by the adapter against a local certificates server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import google.auth.crypt
import google.auth.jwt
import google.auth.transport.requests
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from functions.adapters.id_tokens import GoogleIdTokenVerifier
from functions.errors import AppError, Forbidden, Unauthorized

MISSING = object()
AUDIENCE = "https://collect.example.run.app"
TASKS_SA = "tasks@proj.iam.gserviceaccount.com"
KID = "test-key-1"


@dataclass(frozen=True)
class Keys:
    signer: google.auth.crypt.RSASigner
    other_signer: google.auth.crypt.RSASigner
    certs_url: str


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _signer(key: rsa.RSAPrivateKey) -> google.auth.crypt.RSASigner:
    signer: google.auth.crypt.RSASigner = google.auth.crypt.RSASigner.from_string(  # type: ignore[no-untyped-call]
        _pem_key(key), key_id=KID
    )
    return signer


def _self_signed_cert(key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    issued = datetime.now(UTC) - timedelta(days=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(issued)
        .not_valid_after(issued + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def _serve(status: int, body: bytes) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/certs"


@pytest.fixture(scope="module")
def keys() -> Iterator[Keys]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    server = _serve(200, json.dumps({KID: _self_signed_cert(key).decode()}).encode())
    try:
        yield Keys(
            signer=_signer(key),
            other_signer=_signer(other),
            certs_url=_url(server),
        )
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def transport() -> google.auth.transport.requests.Request:
    session = requests.Session()
    session.trust_env = False  # a proxy from the environment must never see loopback calls
    return google.auth.transport.requests.Request(session=session)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    values: dict[str, Any] = {
        "iss": "https://accounts.google.com",
        "aud": AUDIENCE,
        "sub": "1234567890",
        "email": TASKS_SA,
        "email_verified": True,
        "iat": now,
        "exp": now + 3600,
    }
    for name, value in overrides.items():
        if value is MISSING:
            values.pop(name, None)
        else:
            values[name] = value
    return values


def bearer(signer: google.auth.crypt.RSASigner, **overrides: Any) -> str:
    token: bytes = google.auth.jwt.encode(signer, claims(**overrides))  # type: ignore[no-untyped-call]
    return "Bearer " + token.decode()


def check_token(
    authorization: str | None,
    keys: Keys,
    transport: google.auth.transport.requests.Request,
    *,
    audience: str = AUDIENCE,
    certs_url: str | None = None,
) -> dict[str, Any]:
    verifier = GoogleIdTokenVerifier(certs_url=certs_url or keys.certs_url, request=transport)
    return dict(
        verifier.verify(authorization=authorization, audience=audience, allowed_emails=(TASKS_SA,))
    )


def test_a_valid_token_returns_its_claims(
    keys: Keys, transport: google.auth.transport.requests.Request
) -> None:
    verified = check_token(bearer(keys.signer), keys, transport)
    assert verified["email"] == TASKS_SA
    assert verified["aud"] == AUDIENCE


@pytest.mark.parametrize(
    ("configured", "token_audience", "accepted"),
    [
        (AUDIENCE, AUDIENCE + "/", True),
        (AUDIENCE + "/", AUDIENCE, True),
        (AUDIENCE, AUDIENCE + "//", False),
        (AUDIENCE, AUDIENCE + "/other", False),
        (AUDIENCE, "https://other.example.run.app", False),
        (AUDIENCE, "32555940559.apps.googleusercontent.com", False),
    ],
)
def test_the_audience_must_be_collect_url_give_or_take_a_trailing_slash(
    keys: Keys,
    transport: google.auth.transport.requests.Request,
    configured: str,
    token_audience: str,
    accepted: bool,
) -> None:
    token = bearer(keys.signer, aud=token_audience)
    if accepted:
        assert check_token(token, keys, transport, audience=configured)["aud"] == token_audience
    else:
        with pytest.raises(Unauthorized, match="audience"):
            check_token(token, keys, transport, audience=configured)


@pytest.mark.parametrize(
    ("make_header", "message"),
    [
        (lambda k: None, "missing Authorization"),
        (lambda k: "", "missing Authorization"),
        (lambda k: "Basic dXNlcjpwYXNz", "Bearer"),
        (lambda k: "Bearer", "Bearer"),
        (lambda k: "Bearer    ", "Bearer"),
        (lambda k: bearer(k.signer).removeprefix("Bearer "), "Bearer"),
        (lambda k: "Bearer not-a-jwt", "signature or format"),
        (lambda k: "Bearer a.b.c", "signature or format"),
        (lambda k: "Bearer W10.W10.AAAA", "signature or format"),
        (lambda k: bearer(k.other_signer), "signature or format"),
        (lambda k: bearer(k.signer)[:-6], "signature or format"),
        (lambda k: bearer(k.signer, exp=int(time.time()) - 60), "expired"),
        (lambda k: bearer(k.signer, iat=int(time.time()) + 600), "not valid yet"),
        (lambda k: bearer(k.signer, exp=MISSING), "signature or format"),
        (lambda k: bearer(k.signer, iss="https://evil.example"), "not issued by Google"),
        (lambda k: bearer(k.signer, iss=MISSING), "not issued by Google"),
        (lambda k: bearer(k.signer, iat="soon"), "signature or format"),
    ],
)
def test_a_token_that_does_not_prove_the_caller_is_401(
    keys: Keys, transport: google.auth.transport.requests.Request, make_header: Any, message: str
) -> None:
    with pytest.raises(Unauthorized, match=message) as caught:
        check_token(make_header(keys), keys, transport)
    assert (caught.value.status, caught.value.code) == (401, "unauthorized")


def test_the_bearer_scheme_is_case_insensitive(
    keys: Keys, transport: google.auth.transport.requests.Request
) -> None:
    token = bearer(keys.signer).replace("Bearer ", "bearer ")
    assert check_token(token, keys, transport)["email"] == TASKS_SA


def test_both_google_issuer_spellings_are_accepted(
    keys: Keys, transport: google.auth.transport.requests.Request
) -> None:
    token = bearer(keys.signer, iss="accounts.google.com")
    assert check_token(token, keys, transport)["iss"] == "accounts.google.com"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"email": "someone@proj.iam.gserviceaccount.com"}, "may not call"),
        ({"email": MISSING}, "may not call"),
        ({"email": 42}, "may not call"),
        ({"email_verified": False}, "not verified"),
        ({"email_verified": "true"}, "not verified"),
        ({"email_verified": MISSING}, "not verified"),
    ],
)
def test_a_genuine_token_for_another_identity_is_403(
    keys: Keys,
    transport: google.auth.transport.requests.Request,
    overrides: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(Forbidden, match=message) as caught:
        check_token(bearer(keys.signer, **overrides), keys, transport)
    assert (caught.value.status, caught.value.code) == (403, "forbidden")


def test_allowed_emails_compare_case_insensitively(
    keys: Keys, transport: google.auth.transport.requests.Request
) -> None:
    token = bearer(keys.signer, email=TASKS_SA.upper())
    assert check_token(token, keys, transport)["email"] == TASKS_SA.upper()


@pytest.mark.parametrize("status", [500, 404])
def test_certificates_answering_an_error_is_503_retryable(
    keys: Keys, transport: google.auth.transport.requests.Request, status: int
) -> None:
    server = _serve(status, b"{}")
    try:
        with pytest.raises(AppError) as caught:
            check_token(bearer(keys.signer), keys, transport, certs_url=_url(server))
    finally:
        server.shutdown()
        server.server_close()
    assert (caught.value.status, caught.value.retryable) == (503, True)


def test_a_certificates_server_that_is_down_is_503_retryable(
    keys: Keys, transport: google.auth.transport.requests.Request
) -> None:
    server = _serve(200, b"{}")
    down_url = _url(server)
    server.shutdown()
    server.server_close()
    with pytest.raises(AppError) as caught:
        check_token(bearer(keys.signer), keys, transport, certs_url=down_url)
    assert (caught.value.status, caught.value.retryable) == (503, True)
    assert not isinstance(caught.value, Unauthorized)
