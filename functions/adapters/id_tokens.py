"""The IdTokenVerifier port on google-auth: Google-signed ID tokens in ``Authorization: Bearer``
headers (Cloud Tasks' and Cloud Scheduler's OIDC tokens for the private functions).

The audience matches with or without one trailing slash: Cloud Tasks sends exactly the audience it
was configured with, but the Scheduler job's audience and the setting are typed by operators, and a
slash of difference would otherwise silently reject every call. Both forms name the same endpoint,
so nothing is weakened.
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any, Final

import google.auth.exceptions
import google.auth.jwt
import google.auth.transport
import google.auth.transport.requests
from google.oauth2 import id_token

from functions.errors import Forbidden, Unauthorized, Unavailable

__all__ = ["GOOGLE_CERTS_URL", "GOOGLE_ISSUERS", "CertificateCache", "GoogleIdTokenVerifier"]

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


def _max_age_s(headers: Mapping[str, str], now: float) -> float:
    """How long a certificates answer may be reused: ``Cache-Control: max-age`` less ``Age``,
    else ``Expires``; 0 when neither says (or ``no-store``/``no-cache`` forbids reuse)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    directives = [part.strip().lower() for part in lowered.get("cache-control", "").split(",")]
    if "no-store" in directives or "no-cache" in directives:
        return 0.0
    for directive in directives:
        name, _, value = directive.partition("=")
        if name.strip() == "max-age" and value.strip().isdigit():
            age = lowered.get("age", "0").strip()
            return max(0.0, int(value) - (int(age) if age.isdigit() else 0))
    expires = lowered.get("expires")
    if expires:
        try:
            return max(0.0, email.utils.parsedate_to_datetime(expires).timestamp() - now)
        except (TypeError, ValueError):
            return 0.0
    return 0.0


class CertificateCache(google.auth.transport.Request):
    """A transport that answers repeated GETs of one URL from memory until the answer's HTTP
    expiry (Google serves its certificates with ``Cache-Control: max-age`` of several hours).

    google-auth fetches the certificates on every verification; without this each private call
    would cost a round trip to Google and fail whenever that fetch does. Only successful GETs
    without a body are cached; anything else goes to the inner transport every time.
    """

    def __init__(
        self,
        inner: google.auth.transport.Request,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._inner = inner
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: dict[str, tuple[float, google.auth.transport.Response]] = {}
        self.fetches = 0  # how many requests reached the inner transport (for tests)

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> google.auth.transport.Response:
        cacheable = method.upper() == "GET" and body is None
        now = self._clock()
        if cacheable:
            with self._lock:
                hit = self._cached.get(url)
            if hit is not None and hit[0] > now:
                return hit[1]
        self.fetches += 1
        response: google.auth.transport.Response = self._inner(
            url, method=method, body=body, headers=headers, timeout=timeout
        )
        if cacheable and response.status == 200:
            # The transport's answers keep their body: the same one is read again.
            lifetime = _max_age_s(response.headers, now)
            with self._lock:
                if lifetime > 0:
                    self._cached[url] = (now + lifetime, response)
                else:
                    self._cached.pop(url, None)
        return response


class GoogleIdTokenVerifier:
    """Verifies tokens against Google's signing certificates (or ``certs_url``, a stand-in's),
    fetched again only when their HTTP expiry has passed."""

    def __init__(
        self,
        *,
        certs_url: str | None = None,
        request: google.auth.transport.Request | None = None,
    ) -> None:
        self._certs_url = certs_url or GOOGLE_CERTS_URL
        self._request = CertificateCache(request or google.auth.transport.requests.Request())

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
            header = google.auth.jwt.decode_header(token)  # type: ignore[no-untyped-call]
        except (ValueError, TypeError, KeyError, UnicodeDecodeError):
            raise Unauthorized("invalid OIDC token: token signature or format is invalid") from None
        # Google names the key of every token it signs. Without a kid google-auth tries each
        # certificate in turn and accepts any that verifies: refused, as Google would never send it.
        if not isinstance(header, Mapping) or not isinstance(header.get("kid"), str):
            raise Unauthorized("invalid OIDC token: token has no key id")
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
