"""Credentials for the Reports API through domain-wide delegation.

The production path is keyless: the function's service account signs the delegation assertion as
the delegation identity (``DELEGATION_SERVICE_ACCOUNT``; by default itself) with the IAM
Credentials ``signBlob`` API, so no key file exists anywhere. The key-file path is kept for local
runs against a real Workspace only.
"""

from __future__ import annotations

import json
from typing import Any

import google.auth
import google.auth.credentials
import google.auth.exceptions
import google.auth.iam
import google.auth.transport
import google.auth.transport.requests
from google.oauth2 import service_account

REPORTS_SCOPE = "https://www.googleapis.com/auth/admin.reports.audit.readonly"
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL, not a secret

UNAUTHORIZED_CLIENT_HELP = (
    "authorise the service account's client id for "
    f"{REPORTS_SCOPE} in the Workspace Admin console "
    "(Security → API controls → Domain-wide delegation)"
)
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
) -> service_account.Credentials:
    """Delegated Reports credentials for ``subject``, signed by the runtime identity through IAM.

    ``source`` defaults to the runtime's Application Default Credentials; ``request`` is the
    transport used for the source refresh and for every ``signBlob`` call.
    """
    if not subject or "@" not in subject:
        raise ValueError(f"subject must be an admin user's email address, got {subject!r}")
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
        signer, email, token_uri, scopes=[REPORTS_SCOPE], subject=subject
    )


def key_file_delegated_credentials(*, key_json: str, subject: str) -> service_account.Credentials:
    """Delegated Reports credentials from a service-account key (JSON text).

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
        creds = load(info, scopes=[REPORTS_SCOPE])  # type: ignore[no-untyped-call]
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise ValueError(f"service account key is unusable: {_one_line(exc)}") from None
    delegated: service_account.Credentials = creds.with_subject(subject)
    return delegated


def describe_token_error(exc: google.auth.exceptions.GoogleAuthError) -> str:
    """One line telling an operator which setup step a delegation failure points to.

    Accepts the RefreshError of the token exchange and the TransportError that google-auth raises
    when IAM refuses signBlob.
    """
    code, description = _oauth_error(exc)
    text = _one_line(exc)
    if code == "unauthorized_client":
        return f"domain-wide delegation refused (unauthorized_client): {UNAUTHORIZED_CLIENT_HELP}"
    if code == "invalid_grant":
        lowered = description.lower()
        if any(word in lowered for word in ("email", "user id", "subject", "user not found")):
            return f"{SUBJECT_HELP} (token endpoint said: invalid_grant: {description})"
        return f"delegation assertion rejected (invalid_grant: {description})"
    if "signblob" in text.lower():
        if any(s in text for s in ("403", "PERMISSION_DENIED", "SERVICE_DISABLED")):
            return f"IAM refused to sign the delegation assertion: {SIGN_BLOB_HELP}"
        return f"IAM signBlob failed: {text}"
    return f"token request failed: {text}"


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
