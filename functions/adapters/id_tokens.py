"""The IdTokenVerifier port on google-auth: Google-signed ID tokens in ``Authorization: Bearer``
headers (Cloud Tasks' and Cloud Scheduler's OIDC tokens for the private functions).

The audience matches with or without one trailing slash: Cloud Tasks sends exactly the audience it
was configured with, but the Scheduler job's audience and the setting are typed by operators, and a
slash of difference would otherwise silently reject every call. Both forms name the same endpoint,
so nothing is weakened.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Final

import google.auth.exceptions
import google.auth.transport
import google.auth.transport.requests
from google.oauth2 import id_token

from functions.errors import Forbidden, Unauthorized, Unavailable

__all__ = ["GOOGLE_CERTS_URL", "GOOGLE_ISSUERS", "GoogleIdTokenVerifier"]

GOOGLE_ISSUERS: Final = ("https://accounts.google.com", "accounts.google.com")
GOOGLE_CERTS_URL: Final = "https://www.googleapis.com/oauth2/v1/certs"


def _audiences(audience: str) -> list[str]:
    bare = audience.rstrip("/")
    return sorted({audience, bare, bare + "/"})


def _token_problem(exc: Exception) -> str:
    # google-auth's messages quote the token and the expected audience; answer with the kind only.
    text = str(exc).lower()
    if "expired" in text:
        return "token expired"
    if "too early" in text:
        return "token not valid yet"
    if "audience" in text:
        return "token audience does not match"
    return "token signature or format is invalid"


class GoogleIdTokenVerifier:
    """Verifies tokens against Google's signing certificates (or ``certs_url``, a stand-in's)."""

    def __init__(
        self,
        *,
        certs_url: str | None = None,
        request: google.auth.transport.Request | None = None,
    ) -> None:
        self._certs_url = certs_url or GOOGLE_CERTS_URL
        self._request = request or google.auth.transport.requests.Request()

    def verify(
        self, *, authorization: str | None, audience: str, allowed_emails: Collection[str]
    ) -> Mapping[str, Any]:
        """The token's claims.

        401 (:class:`Unauthorized`) when the token is missing, malformed, badly signed, expired,
        not from Google or for another audience; 403 (:class:`Forbidden`) when it is genuine but
        its ``email`` is not allowed or not verified; 503 (retryable) when the signing
        certificates cannot be fetched.
        """
        scheme, _, token = (authorization or "").strip().partition(" ")
        if not scheme:
            raise Unauthorized("missing Authorization header")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("Authorization must be 'Bearer <OIDC token>'")
        claims = self._claims(token, audience)
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise Unauthorized("invalid OIDC token: not issued by Google")
        email = claims.get("email")
        allowed = {allowed_email.lower() for allowed_email in allowed_emails}
        if not isinstance(email, str) or email.lower() not in allowed:
            raise Forbidden("this identity may not call this function")
        if claims.get("email_verified") is not True:
            raise Forbidden("the token's email is not verified")
        return claims

    def _claims(self, token: str, audience: str) -> dict[str, Any]:
        try:
            return dict(
                id_token.verify_token(
                    token,
                    self._request,
                    audience=_audiences(audience),
                    certs_url=self._certs_url,
                    # Google's token server and this instance may disagree by a few seconds.
                    clock_skew_in_seconds=10,
                )
            )
        except google.auth.exceptions.TransportError as exc:
            raise Unavailable("could not fetch the OIDC signing certificates") from exc
        except (google.auth.exceptions.GoogleAuthError, ValueError, TypeError, KeyError) as exc:
            # TypeError/KeyError: google-auth trusts claim types once the signature checks out.
            raise Unauthorized(f"invalid OIDC token: {_token_problem(exc)}") from exc
