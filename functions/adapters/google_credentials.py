"""Credentials for Google's Workspace APIs through domain-wide delegation.

The production path is keyless: the function's service account signs the delegation assertion as
the delegation identity (``DELEGATION_SERVICE_ACCOUNT``; by default itself) with the IAM
Credentials ``signBlob`` API, so no key file exists anywhere. The key-file path is kept for local
runs against a real Workspace only. :class:`SubjectConnections` serves adapters that impersonate
many users (each Meet organizer): credentials per subject, connections per thread and subject.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from typing import Any

import google.auth
import google.auth.credentials
import google.auth.exceptions
import google.auth.iam
import google.auth.transport
import google.auth.transport.requests
import google.oauth2.credentials
import google_auth_httplib2
import httplib2
from google.oauth2 import service_account

#: The bearer token prefix of a stand-in's static credentials; the fakes read the subject from it.
LOCAL_SUBJECT_PREFIX = "local-subject:"
REPORTS_SCOPE = "https://www.googleapis.com/auth/admin.reports.audit.readonly"
#: Meet REST conference records and spaces, and Workspace Events subscriptions on Meet targets.
MEET_SCOPE = "https://www.googleapis.com/auth/meetings.space.readonly"
DIRECTORY_USER_SCOPE = "https://www.googleapis.com/auth/admin.directory.user.readonly"
DIRECTORY_GROUP_MEMBER_SCOPE = (
    "https://www.googleapis.com/auth/admin.directory.group.member.readonly"
)
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL, not a secret


def unauthorized_client_help(scopes: Sequence[str]) -> str:
    """The admin-console step that authorises the delegation client id for ``scopes``."""
    return (
        f"authorise the service account's client id for {', '.join(scopes)} in the Workspace "
        "Admin console (Security → API controls → Domain-wide delegation)"
    )


UNAUTHORIZED_CLIENT_HELP = unauthorized_client_help([REPORTS_SCOPE])
SUBJECT_HELP = "REPORTS_ADMIN_SUBJECT must be an existing admin user"
SIGN_BLOB_HELP = (
    "grant the function's service account roles/iam.serviceAccountTokenCreator on the "
    "delegation service account (DELEGATION_SERVICE_ACCOUNT) and enable the IAM Credentials API"
)


def keyless_delegated_credentials(
    *,
    subject: str,
    source: google.auth.credentials.Credentials | None = None,
    service_account_email: str | None = None,
    request: google.auth.transport.Request | None = None,
    token_uri: str = DEFAULT_TOKEN_URI,
    scopes: Sequence[str] = (REPORTS_SCOPE,),
) -> service_account.Credentials:
    """Delegated credentials for ``subject`` and ``scopes`` (by default the Reports scope), the
    assertion signed by the runtime identity through IAM.

    ``source`` defaults to the runtime's Application Default Credentials; ``request`` is the
    transport used for the source refresh and for every ``signBlob`` call.
    """
    if not subject or "@" not in subject:
        raise ValueError(f"subject must be a user's email address, got {subject!r}")
    if request is None:
        request = google.auth.transport.requests.Request()
    if source is None:
        source, _ = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
    # On Cloud Run and Cloud Functions the metadata-server credentials report the email "default"
    # until their first refresh; refreshing also gives signBlob a token to start with.
    source.refresh(request)  # type: ignore[no-untyped-call]
    email = service_account_email or getattr(source, "service_account_email", None)
    if not isinstance(email, str) or not email or email == "default":
        raise ValueError(
            "the runtime identity is not a service account with a known email; "
            "pass service_account_email"
        )
    signer = google.auth.iam.Signer(request, source, email)  # type: ignore[no-untyped-call]
    return service_account.Credentials(  # type: ignore[no-untyped-call]
        signer, email, token_uri, scopes=list(scopes), subject=subject
    )


def key_file_delegated_credentials(
    *, key_json: str, subject: str, scopes: Sequence[str] = (REPORTS_SCOPE,)
) -> service_account.Credentials:
    """Delegated credentials for ``subject`` and ``scopes`` from a service-account key (JSON text).

    Raises ValueError with a one-line message naming what is wrong with the key.
    """
    try:
        info = json.loads(key_json)
    except ValueError as exc:
        raise ValueError(f"service account key is not valid JSON: {_one_line(exc)}") from None
    if not isinstance(info, dict):
        raise ValueError("service account key must be a JSON object")
    if info.get("type", "service_account") != "service_account":
        raise ValueError(f"service account key has type {info.get('type')!r}, not service_account")
    missing = [k for k in ("client_email", "private_key", "token_uri") if not info.get(k)]
    if missing:
        raise ValueError(f"service account key is missing {', '.join(missing)}")
    try:
        load = service_account.Credentials.from_service_account_info
        creds = load(info, scopes=list(scopes))  # type: ignore[no-untyped-call]
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise ValueError(f"service account key is unusable: {_one_line(exc)}") from None
    delegated: service_account.Credentials = creds.with_subject(subject)
    return delegated


def describe_token_error(
    exc: google.auth.exceptions.GoogleAuthError,
    *,
    scopes: Sequence[str] = (REPORTS_SCOPE,),
    subject_help: str = SUBJECT_HELP,
) -> str:
    """One line telling an operator which setup step a delegation failure points to.

    Accepts the RefreshError of the token exchange and the TransportError that google-auth raises
    when IAM refuses signBlob. ``scopes`` are the ones the credentials asked for (named by the
    ``unauthorized_client`` help); ``subject_help`` says who the impersonated subject must be.
    """
    code, description = _oauth_error(exc)
    text = _one_line(exc)
    if code == "unauthorized_client":
        help_text = unauthorized_client_help(scopes)
        return f"domain-wide delegation refused (unauthorized_client): {help_text}"
    if code == "invalid_grant":
        lowered = description.lower()
        if any(word in lowered for word in ("email", "user id", "subject", "user not found")):
            return f"{subject_help} (token endpoint said: invalid_grant: {description})"
        return f"delegation assertion rejected (invalid_grant: {description})"
    if "signblob" in text.lower():
        if any(s in text for s in ("403", "PERMISSION_DENIED", "SERVICE_DISABLED")):
            return f"IAM refused to sign the delegation assertion: {SIGN_BLOB_HELP}"
        return f"IAM signBlob failed: {text}"
    return f"token request failed: {text}"


CredentialsFor = Callable[[str], google.auth.credentials.Credentials]


class CredentialsUnavailable(ValueError):
    """Credentials for a subject could not be made (no subject, no usable identity or key)."""


def subject_credentials(
    *,
    scopes: Sequence[str],
    stand_in: bool,
    key_json: str | None = None,
    service_account_email: str | None = None,
) -> CredentialsFor:
    """How credentials for a subject are made: against a stand-in, a static token naming the
    subject (``local-subject:<email>``, what the local fakes read; no Google credentials are
    looked up); else delegation with ``key_json`` when given, keyless otherwise."""
    if stand_in:
        return lambda subject: google.oauth2.credentials.Credentials(  # type: ignore[no-untyped-call]
            token=LOCAL_SUBJECT_PREFIX + subject
        )
    if key_json is not None:
        key = key_json
        return lambda subject: key_file_delegated_credentials(
            key_json=key, subject=subject, scopes=scopes
        )
    return lambda subject: keyless_delegated_credentials(
        subject=subject, service_account_email=service_account_email, scopes=scopes
    )


class SubjectConnections:
    """Credentials per impersonated subject, made once (thread-safe), and one authorised
    httplib2 connection per thread and subject: httplib2 is not thread-safe."""

    def __init__(self, credentials_for: CredentialsFor, *, timeout_s: float = 60.0) -> None:
        self._credentials_for = credentials_for
        self._timeout_s = timeout_s
        self._credentials: dict[str, google.auth.credentials.Credentials] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    def credentials(self, subject: str) -> google.auth.credentials.Credentials:
        """CredentialsUnavailable naming the subject when they cannot be made."""
        with self._lock:
            found = self._credentials.get(subject)
            if found is None:
                try:
                    found = self._credentials_for(subject)
                except ValueError as error:
                    raise CredentialsUnavailable(
                        f"delegated credentials for {subject!r} unavailable: {error}"
                    ) from None
                self._credentials[subject] = found
            return found

    def http(self, subject: str) -> Any:
        connections: dict[str, Any] | None = getattr(self._local, "connections", None)
        if connections is None:
            connections = self._local.connections = {}
        http = connections.get(subject)
        if http is None:
            credentials = self.credentials(subject)
            # A static stand-in token cannot refresh; delegated credentials refresh once on a
            # 401 (a token revoked in flight), never in a loop: a 401 no refresh cures is common.
            static = isinstance(credentials, google.oauth2.credentials.Credentials)
            http = connections[subject] = google_auth_httplib2.AuthorizedHttp(
                credentials,
                http=httplib2.Http(timeout=self._timeout_s),
                refresh_status_codes=() if static else (401,),
                max_refresh_attempts=1,
            )
        return http


def _oauth_error(exc: BaseException) -> tuple[str, str]:
    """The OAuth ``error`` code and description carried by a RefreshError, if any."""
    args: tuple[Any, ...] = exc.args
    for arg in args[1:]:
        if isinstance(arg, dict) and isinstance(arg.get("error"), str):
            return arg["error"], str(arg.get("error_description") or "")
    if args and isinstance(args[0], str) and ":" in args[0]:
        code, _, description = args[0].partition(":")
        if code and " " not in code:
            return code, description.strip()
    return "", ""


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
