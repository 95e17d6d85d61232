"""CertificateCache: repeated GETs of the signing certificates come from memory until the answer's
HTTP expiry, on an injected clock; nothing else is ever cached. No network: the origin is a
scripted transport."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from typing import Any

import google.auth.crypt
import google.auth.jwt
import google.auth.transport
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from functions.adapters.id_tokens import CertificateCache, GoogleIdTokenVerifier

URL = "https://certs.example/oauth2/v1/certs"
OTHER_URL = "https://certs.example/oauth2/v3/certs"
T0 = 1_800_000_000.0  # whole seconds: HTTP dates have no fractions


class Canned(google.auth.transport.Response):
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


class Origin(google.auth.transport.Request):
    """Answers every request with ``answer(url, method)`` and remembers what it was asked."""

    def __init__(
        self,
        headers: Mapping[str, str] | None = None,
        *,
        status: int = 200,
        delay_s: float = 0.0,
    ) -> None:
        self.headers = dict(headers or {})
        self.status = status
        self.delay_s = delay_s
        self.calls: list[tuple[str, str, bytes | None]] = []
        self._lock = threading.Lock()
        self._served = 0

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> google.auth.transport.Response:
        with self._lock:
            self.calls.append((url, method, body))
            self._served += 1
            served = self._served
        if self.delay_s:
            time.sleep(self.delay_s)
        data = json.dumps({"url": url, "method": method, "served": served}).encode()
        return Canned(self.status, self.headers, data)

    def count(self, url: str = URL, method: str = "GET") -> int:
        with self._lock:
            return sum(1 for called, verb, _ in self.calls if (called, verb) == (url, method))


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def http_date(epoch: float) -> str:
    return formatdate(epoch, usegmt=True)


def cache_for(origin: Origin, clock: Clock | None = None) -> tuple[CertificateCache, Clock]:
    clock = clock or Clock()
    return CertificateCache(origin, clock=clock), clock


def served(response: google.auth.transport.Response) -> int:
    """Which answer of the origin this is (1 for its first)."""
    number: int = json.loads(response.data)["served"]
    return number


# ------------------------------------------------------------------------------------------------
# Freshness from Cache-Control max-age (less Age) and Expires


def test_repeated_gets_come_from_memory_until_max_age_passes() -> None:
    origin = Origin({"Cache-Control": "public, max-age=300, must-revalidate, no-transform"})
    cache, clock = cache_for(origin)

    first = cache(URL)
    assert (first.status, served(first)) == (200, 1)
    for at in (0.0, 1.0, 150.0, 299.999):
        clock.now = T0 + at
        again = cache(URL)
        assert (again.status, served(again), again.data) == (200, 1, first.data)
    assert origin.count() == 1
    assert cache.fetches == 1

    clock.now = T0 + 300  # an answer as old as its max-age is stale
    assert served(cache(URL)) == 2
    clock.now = T0 + 599.999  # the new answer is fresh for max-age from its own fetch
    assert served(cache(URL)) == 2
    clock.now = T0 + 600
    assert served(cache(URL)) == 3
    assert origin.count() == 3


def test_the_cached_answer_keeps_the_origins_status_headers_and_bytes() -> None:
    origin = Origin({"Cache-Control": "max-age=60", "Content-Type": "application/json"})
    cache, _ = cache_for(origin)
    fetched = cache(URL)
    kept = cache(URL)
    assert (kept.status, kept.data) == (fetched.status, fetched.data)
    assert kept.headers["Content-Type"] == "application/json"


def test_age_is_subtracted_from_max_age() -> None:
    origin = Origin({"Cache-Control": "max-age=300", "Age": "100"})
    cache, clock = cache_for(origin)
    cache(URL)
    clock.now = T0 + 199.999
    assert served(cache(URL)) == 1
    clock.now = T0 + 200
    assert served(cache(URL)) == 2


@pytest.mark.parametrize("age", ["300", "301", "100000"])
def test_an_answer_already_as_old_as_its_max_age_is_not_kept(age: str) -> None:
    origin = Origin({"Cache-Control": "max-age=300", "Age": age})
    cache, _ = cache_for(origin)
    assert [served(cache(URL)) for _ in range(3)] == [1, 2, 3]


def test_expires_is_used_without_max_age() -> None:
    origin = Origin({"Expires": http_date(T0 + 120)})
    cache, clock = cache_for(origin)
    cache(URL)
    clock.now = T0 + 119.999
    assert served(cache(URL)) == 1
    clock.now = T0 + 120
    assert served(cache(URL)) == 2


@pytest.mark.parametrize(
    "expires", [http_date(T0), http_date(T0 - 3600), "0", "-1", "not a date", ""]
)
def test_an_expires_that_has_passed_or_cannot_be_read_keeps_nothing(expires: str) -> None:
    origin = Origin({"Expires": expires})
    cache, _ = cache_for(origin)
    assert [served(cache(URL)) for _ in range(3)] == [1, 2, 3]


@pytest.mark.parametrize(
    ("max_age", "expires_in", "stale_at"),
    [(60, 3600, 60), (3600, 60, 3600)],
)
def test_max_age_takes_precedence_over_expires(
    max_age: int, expires_in: int, stale_at: int
) -> None:
    origin = Origin({"Cache-Control": f"max-age={max_age}", "Expires": http_date(T0 + expires_in)})
    cache, clock = cache_for(origin)
    cache(URL)
    clock.now = T0 + stale_at - 0.001
    assert served(cache(URL)) == 1
    clock.now = T0 + stale_at
    assert served(cache(URL)) == 2


def test_header_names_and_directives_are_case_insensitive() -> None:
    origin = Origin({"cache-control": "Public, MAX-AGE=300"})
    cache, clock = cache_for(origin)
    cache(URL)
    clock.now = T0 + 299
    assert served(cache(URL)) == 1


# ------------------------------------------------------------------------------------------------
# What is never cached


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Cache-Control": "public"},
        {"Cache-Control": "max-age=0"},
        {"Cache-Control": "max-age=soon"},
        {"Cache-Control": "max-age=-5"},
        {"Cache-Control": "no-store"},
        {"Cache-Control": "no-cache"},
        {"Cache-Control": "max-age=3600, no-store"},
        {"Cache-Control": "no-cache, max-age=3600"},
        {"Cache-Control": "public, NO-CACHE, max-age=3600"},
        {"Cache-Control": "no-store", "Expires": http_date(T0 + 3600)},
        {"Cache-Control": "no-cache", "Expires": http_date(T0 + 3600)},
    ],
    ids=lambda headers: "; ".join(f"{k}: {v}" for k, v in headers.items()) or "no headers",
)
def test_an_answer_without_freshness_or_that_forbids_reuse_is_never_served_again(
    headers: dict[str, str],
) -> None:
    origin = Origin(headers)
    cache, clock = cache_for(origin)
    answers = []
    for step in range(4):
        clock.now = T0 + step * 0.001
        answers.append(served(cache(URL)))
    assert answers == [1, 2, 3, 4]
    assert origin.count() == 4


@pytest.mark.parametrize("status", [201, 203, 204, 301, 304, 400, 404, 429, 500, 503])
def test_an_answer_other_than_200_is_never_kept(status: int) -> None:
    origin = Origin({"Cache-Control": "max-age=3600"}, status=status)
    cache, _ = cache_for(origin)
    for _ in range(3):
        assert cache(URL).status == status
    assert origin.count() == 3

    origin.status = 200  # the certificates are back: that answer is kept
    assert [served(cache(URL)) for _ in range(3)] == [4, 4, 4]


@pytest.mark.parametrize("method", ["POST", "PUT", "HEAD", "DELETE", "post"])
def test_a_request_other_than_get_is_never_cached_nor_served_from_the_get_cache(
    method: str,
) -> None:
    origin = Origin({"Cache-Control": "max-age=3600"})
    cache, _ = cache_for(origin)
    for _ in range(3):
        cache(URL, method=method)
    assert origin.count(method=method) == 3
    assert origin.count() == 0  # ... and it left nothing a GET would be answered with

    cached = served(cache(URL))  # a GET is cached ...
    for _ in range(2):
        assert served(cache(URL, method=method)) > cached  # ... and never answers another verb
    assert served(cache(URL)) == cached


def test_a_get_with_a_body_is_never_cached() -> None:
    origin = Origin({"Cache-Control": "max-age=3600"})
    cache, _ = cache_for(origin)
    assert [served(cache(URL, body=b"{}")) for _ in range(3)] == [1, 2, 3]
    assert served(cache(URL)) == 4
    assert served(cache(URL, body=b"{}")) == 5  # not answered from the GET cache either


def test_get_is_recognised_in_any_case() -> None:
    origin = Origin({"Cache-Control": "max-age=3600"})
    cache, _ = cache_for(origin)
    assert [served(cache(URL, method="get")) for _ in range(2)] == [1, 1]


def test_urls_are_cached_apart() -> None:
    origin = Origin({"Cache-Control": "max-age=3600"})
    cache, _ = cache_for(origin)
    first, other = cache(URL), cache(OTHER_URL)
    assert json.loads(first.data)["url"] == URL
    assert json.loads(other.data)["url"] == OTHER_URL
    assert json.loads(cache(URL).data)["url"] == URL
    assert json.loads(cache(OTHER_URL).data)["url"] == OTHER_URL
    assert (origin.count(URL), origin.count(OTHER_URL)) == (1, 1)


def test_a_refetch_that_forbids_reuse_drops_the_stale_entry() -> None:
    origin = Origin({"Cache-Control": "max-age=60"})
    cache, clock = cache_for(origin)
    cache(URL)
    clock.now = T0 + 60
    origin.headers = {"Cache-Control": "no-store"}
    assert served(cache(URL)) == 2
    assert served(cache(URL)) == 3  # nothing of the first answer is served again
    origin.headers = {"Cache-Control": "max-age=60"}
    assert [served(cache(URL)) for _ in range(2)] == [4, 4]


def test_a_failed_refetch_is_not_answered_from_the_stale_entry() -> None:
    origin = Origin({"Cache-Control": "max-age=60"})
    cache, clock = cache_for(origin)
    cache(URL)
    clock.now = T0 + 61
    origin.status = 503
    assert cache(URL).status == 503
    assert cache(URL).status == 503


# ------------------------------------------------------------------------------------------------
# Threads


def test_concurrent_gets_are_answered_correctly_and_fill_the_cache_once_each() -> None:
    origin = Origin({"Cache-Control": "max-age=300"}, delay_s=0.002)
    clock = Clock()
    cache = CertificateCache(origin, clock=clock)
    urls = [f"https://certs.example/{n}" for n in range(4)]
    threads_n, rounds = 16, 200
    start = threading.Barrier(threads_n)
    failures: list[BaseException] = []
    seen: dict[str, set[int]] = {url: set() for url in urls}
    seen_lock = threading.Lock()

    def worker(index: int) -> None:
        try:
            start.wait()
            for step in range(rounds):
                url = urls[(index + step) % len(urls)]
                answer = cache(url)
                assert answer.status == 200
                assert json.loads(answer.data)["url"] == url
                with seen_lock:
                    seen[url].add(served(answer))
                if index == 0 and step == rounds // 2:
                    clock.now = T0 + 300  # every entry expires while the others read
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []
    # At most one miss per thread per URL before and after the expiry, far fewer than the reads.
    total_reads = threads_n * rounds
    assert len(origin.calls) <= 2 * threads_n * len(urls) < total_reads
    # Once the storm is over, each URL is answered from memory.
    before = len(origin.calls)
    for url in urls:
        cache(url)
    assert len(origin.calls) == before


# ------------------------------------------------------------------------------------------------
# The verifier fetches through the cache


def _certificate_and_signer() -> tuple[str, google.auth.crypt.RSASigner]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cache-test")])
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
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    signer: google.auth.crypt.RSASigner = google.auth.crypt.RSASigner.from_string(  # type: ignore[no-untyped-call]
        pem, key_id="kid-1"
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), signer


class CertsOrigin(Origin):
    def __init__(self, certificate: str, headers: Mapping[str, str]) -> None:
        super().__init__(headers)
        self.body = json.dumps({"kid-1": certificate}).encode()

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> google.auth.transport.Response:
        super().__call__(url, method, body, headers, timeout)
        return Canned(200, self.headers, self.body)


@pytest.mark.parametrize(
    ("cache_control", "fetches"), [("public, max-age=19000", 1), ("no-store", 3)]
)
def test_the_verifier_fetches_the_certificates_once_while_they_are_fresh(
    cache_control: str, fetches: int
) -> None:
    certificate, signer = _certificate_and_signer()
    origin = CertsOrigin(certificate, {"Cache-Control": cache_control})
    verifier = GoogleIdTokenVerifier(certs_url=URL, request=origin)
    now = int(time.time())
    sign: Callable[[dict[str, Any]], bytes] = lambda claims: google.auth.jwt.encode(  # type: ignore[no-untyped-call]  # noqa: E731
        signer, claims
    )
    for n in range(3):
        token = sign(
            {
                "iss": "https://accounts.google.com",
                "aud": "https://api.example/",
                "sub": str(n),
                "email": "operator@example.test",
                "email_verified": True,
                "iat": now,
                "exp": now + 3600,
            }
        ).decode()
        claims = verifier.verify(
            authorization=f"Bearer {token}",
            audience="https://api.example/",
            allowed_emails=("operator@example.test",),
        )
        assert claims["sub"] == str(n)
    assert origin.count() == fetches
