"""Offline stand-ins for keyless domain-wide delegation: IAM signBlob, the OAuth token endpoint and
the runtime identity.

- ``FakeIam`` is a ``google.auth.transport.Request``: it answers IAM Credentials ``signBlob`` itself
  with its own RSA key, forwards loopback URLs to a real transport and refuses every other host, so
  a test that passes it as the transport can never reach Google.
- ``FakeTokenServer`` is an OAuth token endpoint on 127.0.0.1 that verifies the JWT-bearer
  assertion the way Google's does for delegation (signature, audience, issuer, subject, scopes).
- ``FakeSourceCredentials`` mimics metadata-server credentials, whose email reads "default" until
  the first refresh.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import google.auth.credentials
import google.auth.exceptions
import google.auth.transport
import google.auth.transport.requests
import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
IAM_HOST = "iamcredentials.googleapis.com"
SIGN_BLOB_PREFIX = "/v1/projects/-/serviceAccounts/"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
DEFAULT_SERVICE_ACCOUNT = "collector@attendance-test.iam.gserviceaccount.com"
# Google accepts assertions valid for at most an hour, with some clock skew.
MAX_ASSERTION_LIFETIME_S = 3600
CLOCK_SKEW_S = 300


class RefusedHostError(google.auth.exceptions.TransportError):
    """A request to a host other than loopback or the faked IAM endpoint."""

    def __init__(self, message: str) -> None:
        super().__init__(message)  # type: ignore[no-untyped-call]


def generate_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_key_pem(key: rsa.RSAPrivateKey) -> str:
    """PKCS#8 PEM, the format of the ``private_key`` field of a service-account key file."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def public_key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class FakeResponse(google.auth.transport.Response):
    def __init__(self, status: int, headers: Mapping[str, str], data: bytes) -> None:
        self._status = status
        self._headers = dict(headers)
        self._data = data

    @property
    def status(self) -> int:
        return self._status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._headers

    @property
    def data(self) -> bytes:
        return self._data


def _json_response(status: int, payload: Any) -> FakeResponse:
    return FakeResponse(status, {"content-type": "application/json"}, json.dumps(payload).encode())


class FakeIam(google.auth.transport.Request):
    """A transport that plays IAM Credentials ``signBlob`` and keeps everything else on loopback.

    ``deny=True`` answers signBlob with the 403 that a missing
    ``roles/iam.serviceAccountTokenCreator`` produces; ``disabled=True`` with the 403 of a project
    where the IAM Service Account Credentials API is not enabled.
    """

    def __init__(
        self,
        *,
        service_account_email: str = DEFAULT_SERVICE_ACCOUNT,
        key: rsa.RSAPrivateKey | None = None,
        deny: bool = False,
        disabled: bool = False,
    ) -> None:
        self.service_account_email = service_account_email
        self.key = key or generate_key()
        self.key_id = hashlib.sha1(public_key_pem(self.key)).hexdigest()  # noqa: S324 - an id
        self.deny = deny
        self.disabled = disabled
        self._lock = threading.Lock()
        self._sign_requests: list[dict[str, Any]] = []
        session = requests.Session()
        # Proxy variables from the environment must not send loopback traffic elsewhere.
        session.trust_env = False
        self._loopback = google.auth.transport.requests.Request(session=session)

    @property
    def public_key_pem(self) -> bytes:
        return public_key_pem(self.key)

    def sign_requests(self) -> list[dict[str, Any]]:
        """The signBlob calls seen: ``{"email", "authorization", "payload", "status"}``."""
        with self._lock:
            return [dict(r) for r in self._sign_requests]

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> google.auth.transport.Response:
        split = urlsplit(url)
        host = split.hostname or ""
        if host == IAM_HOST:
            return self._iam(method, split.path, body, headers or {})
        if host in LOOPBACK_HOSTS:
            return self._loopback(  # type: ignore[no-any-return]
                url, method=method, body=body, headers=headers, timeout=timeout, **kwargs
            )
        raise RefusedHostError(f"refused a request to {host!r}: tests stay on loopback")

    def _iam(self, method: str, path: str, body: Any, headers: Mapping[str, str]) -> FakeResponse:
        path = unquote(path)
        if method != "POST" or not (
            path.startswith(SIGN_BLOB_PREFIX) and path.endswith(":signBlob")
        ):
            return _json_response(404, _google_error(404, "Not Found", "NOT_FOUND"))
        email = path[len(SIGN_BLOB_PREFIX) : -len(":signBlob")]
        auth = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
        record: dict[str, Any] = {"email": email, "authorization": auth, "payload": None}
        response = self._sign(email, auth, body, record)
        record["status"] = response.status
        with self._lock:
            self._sign_requests.append(record)
        return response

    def _sign(self, email: str, auth: str, body: Any, record: dict[str, Any]) -> FakeResponse:
        if not auth.startswith("Bearer ") or len(auth) <= len("Bearer "):
            return _json_response(
                401,
                _google_error(
                    401,
                    "Request is missing required authentication credential.",
                    "UNAUTHENTICATED",
                ),
            )
        if self.disabled:
            return _json_response(403, _iam_disabled())
        if self.deny or email != self.service_account_email:
            return _json_response(
                403,
                _google_error(
                    403,
                    "Permission 'iam.serviceAccounts.signBlob' denied on resource "
                    "(or it may not exist).",
                    "PERMISSION_DENIED",
                    details=[
                        {
                            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                            "reason": "IAM_PERMISSION_DENIED",
                            "domain": "iam.googleapis.com",
                            "metadata": {"permission": "iam.serviceAccounts.signBlob"},
                        }
                    ],
                ),
            )
        try:
            raw = body if isinstance(body, bytes) else str(body).encode()
            payload = base64.b64decode(json.loads(raw)["payload"], validate=True)
        except (ValueError, KeyError, TypeError):
            return _json_response(400, _google_error(400, "Invalid payload.", "INVALID_ARGUMENT"))
        record["payload"] = payload
        signature = self.key.sign(payload, padding.PKCS1v15(), hashes.SHA256())
        return _json_response(
            200, {"keyId": self.key_id, "signedBlob": base64.b64encode(signature).decode()}
        )


def _iam_disabled(project: str = "123456789012") -> dict[str, Any]:
    service = "iamcredentials.googleapis.com"
    return _google_error(
        403,
        f"IAM Service Account Credentials API has not been used in project {project} before or "
        f"it is disabled. Enable it by visiting https://console.developers.google.com/apis/api/"
        f"{service}/overview?project={project} then retry. If you enabled this API recently, "
        "wait a few minutes for the action to propagate to our systems and retry.",
        "PERMISSION_DENIED",
        details=[
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "SERVICE_DISABLED",
                "domain": "googleapis.com",
                "metadata": {"service": service, "consumer": f"projects/{project}"},
            }
        ],
    )


def _google_error(
    code: int, message: str, status: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return {"error": error}


class FakeSourceCredentials(google.auth.credentials.Credentials):
    """Runtime-identity credentials like the metadata server's: the email is "default" until
    the first refresh. They never touch the network."""

    def __init__(
        self,
        email: str = DEFAULT_SERVICE_ACCOUNT,
        token: str = "source-token",  # noqa: S107 - a fake
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._email = email
        self._issue = token
        self.refresh_count = 0

    @property
    def service_account_email(self) -> str:
        return self._email if self.refresh_count else "default"

    def refresh(self, request: google.auth.transport.Request) -> None:
        del request
        self.refresh_count += 1
        # No expiry: google-auth compares expiries with naive UTC, and these never lapse anyway.
        self.token = self._issue


# --- the OAuth token endpoint --------------------------------------------------------------------


class _TokenError(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.status = status
        self.error = error
        self.description = description


UNAUTHORIZED_CLIENT = (
    "Client is unauthorized to retrieve access tokens using this method, "
    "or client not authorized for any of the scopes requested."
)


class FakeTokenServer:
    """``POST /token`` with a JWT-bearer assertion, checked as Google checks delegation grants.

    Public keys are registered per service-account email (the assertion's ``iss``): the IAM-signed
    assertion carries no key id, so the issuer is what selects the key.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        expected_subject: str,
        expected_scope: str,
        iam: FakeIam | None = None,
        public_keys: Mapping[str, bytes] | None = None,
        access_token: str | None = None,
    ) -> None:
        self.expected_subject = expected_subject
        self.expected_scope = expected_scope
        self._address = (host, port)
        self._keys: dict[str, list[bytes]] = {}
        if iam is not None:
            self.add_service_account(iam.service_account_email, iam.public_key_pem)
        for email, pem in (public_keys or {}).items():
            self.add_service_account(email, pem)
        self._access_token = access_token
        self._lock = threading.Lock()
        self._requests: list[dict[str, Any]] = []
        self._issued: list[str] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def add_service_account(self, email: str, public_key: bytes) -> None:
        self._keys.setdefault(email, []).append(public_key)

    def start(self) -> None:
        if self._server is not None:
            return
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                del format, args

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, payload = owner._handle(urlsplit(self.path).path, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        server = ThreadingHTTPServer(self._address, Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="fake-token", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeTokenServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def token_uri(self) -> str:
        if self._server is None:
            raise RuntimeError("server not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/token"

    def requests(self) -> list[dict[str, Any]]:
        """Grants seen: ``{"grant_type", "header", "claims", "status", "error"}``."""
        with self._lock:
            return [dict(r) for r in self._requests]

    def issued_tokens(self) -> list[str]:
        with self._lock:
            return list(self._issued)

    def _handle(self, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        form = dict(parse_qsl(body.decode(errors="replace")))
        record: dict[str, Any] = {
            "grant_type": form.get("grant_type"),
            "header": None,
            "claims": None,
            "error": None,
        }
        try:
            if path != "/token":
                raise _TokenError(404, "not_found", f"no such endpoint {path}")
            token = self._grant(form, record)
            status, payload = (
                200,
                {
                    "access_token": token,
                    "expires_in": 3600,
                    "token_type": "Bearer",
                },
            )
        except _TokenError as err:
            record["error"] = err.error
            status, payload = (
                err.status,
                {
                    "error": err.error,
                    "error_description": err.description,
                },
            )
        record["status"] = status
        with self._lock:
            self._requests.append(record)
        return status, payload

    def _grant(self, form: Mapping[str, str], record: dict[str, Any]) -> str:
        if form.get("grant_type") != JWT_BEARER:
            raise _TokenError(400, "unsupported_grant_type", "Invalid grant_type: ")
        parts = form.get("assertion", "").split(".")
        if len(parts) != 3:
            raise _TokenError(400, "invalid_request", "Invalid JWT.")
        try:
            header = json.loads(_b64url_decode(parts[0]))
            claims = json.loads(_b64url_decode(parts[1]))
            signature = _b64url_decode(parts[2])
        except ValueError:
            raise _TokenError(400, "invalid_request", "Invalid JWT.") from None
        record["header"], record["claims"] = header, claims
        if header.get("alg") != "RS256":
            raise _TokenError(400, "invalid_grant", "Invalid JWT Signature.")
        signed = f"{parts[0]}.{parts[1]}".encode()
        if not any(
            self._verifies(pem, signed, signature)
            for pem in self._keys.get(claims.get("iss", ""), [])
        ):
            raise _TokenError(400, "invalid_grant", "Invalid JWT Signature.")
        if claims.get("aud") != GOOGLE_TOKEN_AUDIENCE:
            raise _TokenError(400, "invalid_grant", "Invalid JWT: Failed audience check.")
        now = time.time()
        iat, exp = float(claims.get("iat", 0)), float(claims.get("exp", 0))
        if not (
            iat - CLOCK_SKEW_S <= now < exp + CLOCK_SKEW_S and exp - iat <= MAX_ASSERTION_LIFETIME_S
        ):
            raise _TokenError(
                400,
                "invalid_grant",
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable "
                "timeframe. Check your iat and exp values in the JWT claim.",
            )
        # Delegation is authorised per client id for an exact list of scopes: asking for anything
        # beyond it fails the whole grant.
        requested = set(str(claims.get("scope", "")).split())
        if not requested or not requested <= set(self.expected_scope.split()):
            raise _TokenError(401, "unauthorized_client", UNAUTHORIZED_CLIENT)
        if str(claims.get("sub", "")).lower() != self.expected_subject.lower():
            raise _TokenError(400, "invalid_grant", "Invalid email or User ID")
        token = self._access_token or f"fake-token-{secrets.token_urlsafe(16)}"
        with self._lock:
            self._issued.append(token)
        return token

    @staticmethod
    def _verifies(pem: bytes, signed: bytes, signature: bytes) -> bool:
        key = serialization.load_pem_public_key(pem)
        if not isinstance(key, rsa.RSAPublicKey):
            return False
        try:
            key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return False
        return True
