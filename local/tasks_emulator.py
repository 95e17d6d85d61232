"""A Cloud Tasks v2 emulator that the stock ``google-cloud-tasks`` client talks to over gRPC.

It keeps queues and tasks in memory, dispatches HTTP tasks as real HTTP requests with the headers,
OIDC tokens, retry schedule and rate limits of the real service, and serves the token-signing
certificates plus a small control API over HTTP on a second port.

Timeline of one task (wall-clock seconds since the epoch throughout)::

    create ──▶ due = schedule_time ──▶ attempt 1 ──non-2xx──▶ due = now + backoff(0) ──▶ attempt 2
                                           └──2xx──▶ deleted; name remembered for the dedup window

Deliberate differences from production are listed in ``FIDELITY_NOTES``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import heapq
import http.client
import itertools
import json
import re
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import urlsplit

import google.auth.crypt
import google.auth.jwt
import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.cloud import tasks_v2

FIDELITY_NOTES = """\
- Backoff durations keep fractions of a second (production truncates them to whole seconds), so
  tests can use 0.1 s backoffs.
- Only http_request tasks are dispatched; app_engine_http_request is rejected (INVALID_ARGUMENT).
- oauth_token is accepted but sends no Authorization header (no Google API to call locally).
- A deleted queue's name can be reused at once (production blocks it for up to 7 days).
- X-CloudTasks-TaskRetryReason is one of HTTP_ERROR, DEADLINE_EXCEEDED, UNAVAILABLE.
- run_immediately ignores the schedule_time a task was created with, never a retry backoff.
- At create time max_attempts 0 and max_doublings 0 mean "unspecified" (proto3 has no presence);
  an UpdateQueue mask naming the field sets 0 explicitly.
- A HTTP dispatch is limited to 256 concurrent requests across all queues (thread pool size).
"""

SERVICE = "google.cloud.tasks.v2.CloudTasks"
MAX_SCHEDULE_AHEAD_S = 30 * 24 * 3600.0
DEFAULT_DEADLINE_S = 600.0
MIN_DEADLINE_S = 15.0
MAX_DEADLINE_S = 1800.0
MAX_TASK_BYTES = 1024 * 1024
ISSUER = "https://accounts.google.com"
#: The token mint of README "The local stack" (TOKEN_MINT_URL is the control URL plus this path).
TOKEN_MINT_PATH = "/token"  # noqa: S105 - a path, not a secret
#: What Google sends with its certificates (their lifetime varies; hours, not minutes).
CERTS_CACHE_CONTROL = "public, max-age=19000, must-revalidate, no-transform"

_PROJECT = r"[A-Za-z0-9\-:.]+"
_LOCATION = r"[A-Za-z0-9\-]+"
_LOCATION_RE = re.compile(rf"^projects/{_PROJECT}/locations/{_LOCATION}$")
_QUEUE_RE = re.compile(
    rf"^projects/{_PROJECT}/locations/{_LOCATION}/queues/[A-Za-z0-9\-]{{1,100}}$"
)
_TASK_ID_RE = re.compile(r"^[A-Za-z0-9_\-]{1,500}$")

_T = TypeVar("_T")


class _RpcError(Exception):
    def __init__(self, code: Any, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _invalid(message: str) -> _RpcError:
    return _RpcError(grpc.StatusCode.INVALID_ARGUMENT, message)


def _not_found(message: str) -> _RpcError:
    return _RpcError(grpc.StatusCode.NOT_FOUND, message)


def _utc(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC)


def _rfc3339(epoch: float) -> str:
    return _utc(epoch).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class RetrySettings:
    max_attempts: int = 100
    max_retry_duration_s: float = 0.0
    min_backoff_s: float = 0.1
    max_backoff_s: float = 3600.0
    max_doublings: int = 16

    def backoff(self, retry_index: int) -> float:
        """Delay before retry number ``retry_index`` (0 for the first retry).

        As the RetryConfig docs state: start at min_backoff, double max_doublings times, then grow
        linearly by the last doubled interval, never above max_backoff. With 10 s / 300 s / 3
        doublings that is 10, 20, 40, 80, 160, 240, 300, 300, ...
        """
        if retry_index <= self.max_doublings:
            delay = self.min_backoff_s * 2.0**retry_index
        else:
            step = self.min_backoff_s * 2.0**self.max_doublings
            delay = step * (retry_index - self.max_doublings + 1)
        return min(self.max_backoff_s, delay)

    def exhausted(self, *, attempts: int, since_first_s: float) -> bool:
        # Production stops only when BOTH limits are met; an unlimited limit is met trivially,
        # except that two unlimited limits retry forever.
        if self.max_attempts == -1 and self.max_retry_duration_s == 0:
            return False
        attempts_met = self.max_attempts == -1 or attempts >= self.max_attempts
        duration_met = self.max_retry_duration_s == 0 or since_first_s >= self.max_retry_duration_s
        return attempts_met and duration_met

    def to_proto(self) -> tasks_v2.RetryConfig:
        return tasks_v2.RetryConfig(
            max_attempts=self.max_attempts,
            max_retry_duration=dt.timedelta(seconds=self.max_retry_duration_s),
            min_backoff=dt.timedelta(seconds=self.min_backoff_s),
            max_backoff=dt.timedelta(seconds=self.max_backoff_s),
            max_doublings=self.max_doublings,
        )


@dataclass(frozen=True)
class RateSettings:
    max_dispatches_per_second: float = 500.0
    max_concurrent_dispatches: int = 1000

    @property
    def max_burst_size(self) -> int:
        return max(1, min(100, int(self.max_dispatches_per_second)))

    def to_proto(self) -> tasks_v2.RateLimits:
        return tasks_v2.RateLimits(
            max_dispatches_per_second=self.max_dispatches_per_second,
            max_burst_size=self.max_burst_size,
            max_concurrent_dispatches=self.max_concurrent_dispatches,
        )


def _seconds(msg: Any, name: str) -> float | None:
    if name not in msg:
        return None
    value: dt.timedelta = getattr(msg, name)
    return value.total_seconds()


def _merge_retry(
    base: RetrySettings, rc: tasks_v2.RetryConfig, paths: set[str] | None
) -> RetrySettings:
    """Apply the fields of ``rc``: those named in ``paths`` or, without a mask, those set."""

    def wanted(name: str, is_set: bool) -> bool:
        return name in paths if paths is not None else is_set

    out = base
    if wanted("max_attempts", rc.max_attempts != 0):
        out = replace(out, max_attempts=rc.max_attempts or RetrySettings.max_attempts)
    if wanted("max_doublings", rc.max_doublings != 0):
        out = replace(out, max_doublings=rc.max_doublings)
    seconds = _seconds(rc, "max_retry_duration")
    if wanted("max_retry_duration", seconds is not None):
        out = replace(out, max_retry_duration_s=seconds or 0.0)
    seconds = _seconds(rc, "min_backoff")
    if wanted("min_backoff", seconds is not None):
        out = replace(out, min_backoff_s=seconds or 0.0)
    seconds = _seconds(rc, "max_backoff")
    if wanted("max_backoff", seconds is not None):
        out = replace(out, max_backoff_s=seconds or 0.0)
    if out.max_attempts < -1:
        raise _invalid("retry_config.max_attempts must be >= -1")
    if out.max_doublings < 0:
        raise _invalid("retry_config.max_doublings must be >= 0")
    if min(out.max_retry_duration_s, out.min_backoff_s, out.max_backoff_s) < 0:
        raise _invalid("retry_config durations must not be negative")
    if out.min_backoff_s > out.max_backoff_s:
        raise _invalid("retry_config.min_backoff must not exceed max_backoff")
    return out


def _merge_rate(
    base: RateSettings, rl: tasks_v2.RateLimits, paths: set[str] | None
) -> RateSettings:
    def wanted(name: str, is_set: bool) -> bool:
        return name in paths if paths is not None else is_set

    out = base
    if wanted("max_dispatches_per_second", rl.max_dispatches_per_second != 0):
        rate = rl.max_dispatches_per_second or RateSettings.max_dispatches_per_second
        out = replace(out, max_dispatches_per_second=rate)
    if wanted("max_concurrent_dispatches", rl.max_concurrent_dispatches != 0):
        limit = rl.max_concurrent_dispatches or RateSettings.max_concurrent_dispatches
        out = replace(out, max_concurrent_dispatches=limit)
    if not 0 < out.max_dispatches_per_second <= 500:
        raise _invalid("rate_limits.max_dispatches_per_second must be in (0, 500]")
    if not 0 < out.max_concurrent_dispatches <= 5000:
        raise _invalid("rate_limits.max_concurrent_dispatches must be in [1, 5000]")
    return out


@dataclass
class _Queue:
    name: str
    retry: RetrySettings
    rate: RateSettings
    paused: bool = False
    purge_time: float | None = None
    tokens: float = 0.0
    refilled_at: float = 0.0
    in_flight: int = 0
    parked: set[str] = field(default_factory=set)

    def refill(self, now: float) -> None:
        burst = float(self.rate.max_burst_size)
        elapsed = max(0.0, now - self.refilled_at)
        self.tokens = min(burst, self.tokens + elapsed * self.rate.max_dispatches_per_second)
        self.refilled_at = now

    def to_proto(self) -> tasks_v2.Queue:
        state = tasks_v2.Queue.State.PAUSED if self.paused else tasks_v2.Queue.State.RUNNING
        q = tasks_v2.Queue(
            name=self.name,
            rate_limits=self.rate.to_proto(),
            retry_config=self.retry.to_proto(),
            state=state,
        )
        if self.purge_time is not None:
            q.purge_time = _utc(self.purge_time)
        return q


@dataclass
class _Attempt:
    schedule_time: float
    dispatch_time: float
    response_time: float | None = None
    status: tuple[int, str] | None = None


@dataclass
class _Task:
    name: str
    queue: str
    url: str
    method: str
    headers: dict[str, str]
    body: bytes
    oidc: tuple[str, str] | None  # (service account email, audience)
    oauth: tasks_v2.OAuthToken | None
    schedule_time: float
    create_time: float
    deadline_s: float
    retry: RetrySettings | None
    gen: int = 0
    in_flight: int = 0
    dispatch_count: int = 0
    response_count: int = 0
    first_dispatch: float | None = None
    last_attempt: _Attempt | None = None
    retry_scheduled: bool = False
    previous_status: int | None = None
    previous_reason: str | None = None

    def to_proto(self, view: tasks_v2.Task.View) -> tasks_v2.Task:
        full = view == tasks_v2.Task.View.FULL
        req = tasks_v2.HttpRequest(
            url=self.url,
            http_method=getattr(tasks_v2.HttpMethod, self.method),
            headers=self.headers if full else {},
            body=self.body if full else b"",
        )
        if self.oidc is not None:
            req.oidc_token = tasks_v2.OidcToken(
                service_account_email=self.oidc[0], audience=self.oidc[1]
            )
        elif self.oauth is not None:
            req.oauth_token = self.oauth
        task = tasks_v2.Task(
            name=self.name,
            http_request=req,
            schedule_time=_utc(self.schedule_time),
            # The real service truncates create_time to the second.
            create_time=_utc(float(int(self.create_time))),
            dispatch_deadline=dt.timedelta(seconds=self.deadline_s),
            dispatch_count=self.dispatch_count,
            response_count=self.response_count,
            view=tasks_v2.Task.View.FULL if full else tasks_v2.Task.View.BASIC,
        )
        if self.retry is not None:
            task.retry_config = self.retry.to_proto()
        if self.first_dispatch is not None:
            task.first_attempt = tasks_v2.Attempt(dispatch_time=_utc(self.first_dispatch))
        if self.last_attempt is not None:
            a = self.last_attempt
            last = tasks_v2.Attempt(
                schedule_time=_utc(a.schedule_time), dispatch_time=_utc(a.dispatch_time)
            )
            if a.response_time is not None:
                last.response_time = _utc(a.response_time)
            if a.status is not None:
                last.response_status = {"code": a.status[0], "message": a.status[1]}
            task.last_attempt = last
        return task


@dataclass(frozen=True)
class _Request:
    """One HTTP delivery, computed under the lock so the worker needs no shared state."""

    task: _Task
    url: str
    method: str
    headers: dict[str, str]
    body: bytes
    deadline_s: float
    attempt: int
    retry_count: int
    duplicate: bool = False


_DROPPED_HEADERS = (
    "host",
    "content-length",
    "user-agent",
    "x-google-",
    "x-appengine-",
    "x-cloudtasks-",
)

_HTTP_TO_RPC = {400: 3, 401: 16, 403: 7, 404: 5, 409: 10, 429: 8, 499: 1, 501: 12, 503: 14, 504: 4}


def _rpc_status(http_status: int | None, reason: str | None) -> tuple[int, str]:
    """google.rpc.Code and message for Attempt.response_status."""
    if http_status is None:
        return (4 if reason == "DEADLINE_EXCEEDED" else 14), reason or ""
    if 200 <= http_status < 300:
        return 0, "OK"
    code = _HTTP_TO_RPC.get(http_status, 9 if http_status < 500 else 13)
    return code, f"HTTP status {http_status}"


def _retry_after_s(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _make_key_and_cert() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tasks-emulator.local")])
    now = dt.datetime.now(tz=dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def _subject_id(email: str) -> str:
    # Google subjects are 21-digit numbers, stable per service account.
    digest = int.from_bytes(hashlib.sha256(email.encode()).digest()[:8], "big")
    return "1" + str(digest).zfill(20)[:20]


class TasksEmulator:
    """In-memory Cloud Tasks v2: a gRPC API on ``address``, certs and control on ``control_url``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        http_port: int = 0,
        dedup_window_s: float = 3600.0,
        deliver_twice: bool = False,
        run_immediately: bool = False,
    ) -> None:
        self._host = host
        self._port = port
        self._http_port = http_port
        self.dedup_window_s = dedup_window_s
        self._deliver_twice = deliver_twice
        self._run_immediately = run_immediately
        self._cond = threading.Condition()
        self._queues: dict[str, _Queue] = {}
        self._tasks: dict[str, _Task] = {}
        self._tombstones: dict[str, float] = {}  # task name -> monotonic expiry
        self._heap: list[tuple[float, int, str, int]] = []  # (due, seq, task name, task gen)
        self._seq = itertools.count()
        self._log: list[dict[str, object]] = []
        self._conns: set[http.client.HTTPConnection] = set()
        self._stopping = False
        self._started = False
        self._stopped = False
        key_pem, cert_pem = _make_key_and_cert()
        self._kid = secrets.token_hex(20)
        self._signer = google.auth.crypt.RSASigner.from_string(  # type: ignore[no-untyped-call]
            key_pem, key_id=self._kid
        )
        self._cert_pem = cert_pem.decode()
        self._pool: ThreadPoolExecutor | None = None
        self._dispatcher: threading.Thread | None = None
        self._grpc_server: Any = None
        self._http_server: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle and properties

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._pool = ThreadPoolExecutor(max_workers=256, thread_name_prefix="tasks-dispatch")
        server = grpc.server(ThreadPoolExecutor(max_workers=16, thread_name_prefix="tasks-grpc"))
        server.add_generic_rpc_handlers((self._grpc_handler(),))
        self._port = server.add_insecure_port(f"{self._host}:{self._port}")
        if self._port == 0:
            raise OSError(f"cannot bind the gRPC port on {self._host}")
        server.start()
        self._grpc_server = server
        try:
            self._http_server = _ControlServer((self._host, self._http_port), self)
        except OSError:
            server.stop(grace=None)
            raise
        self._http_port = self._http_server.server_address[1]
        self._http_thread = threading.Thread(
            target=self._http_server.serve_forever, name="tasks-http", daemon=True
        )
        self._http_thread.start()
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="tasks-dispatcher")
        self._dispatcher.start()

    def stop(self) -> None:
        if not self._started or self._stopped:
            return
        self._stopped = True
        with self._cond:
            self._stopping = True
            conns = list(self._conns)
            self._cond.notify_all()
        # In-flight requests may wait up to their 30-minute deadline; cut them off instead.
        for conn in conns:
            sock = conn.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        if self._dispatcher is not None:
            self._dispatcher.join()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._grpc_server is not None:
            self._grpc_server.stop(grace=0.5).wait()
        if self._http_server is not None:
            self._http_server.shutdown()
            self._http_server.server_close()
        if self._http_thread is not None:
            self._http_thread.join()

    def __enter__(self) -> TasksEmulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def address(self) -> str:
        return f"{self._host}:{self._port}"

    @property
    def control_url(self) -> str:
        return f"http://{self._host}:{self._http_port}"

    @property
    def certs_url(self) -> str:
        return f"{self.control_url}/oauth2/v1/certs"

    @property
    def deliver_twice(self) -> bool:
        with self._cond:
            return self._deliver_twice

    @deliver_twice.setter
    def deliver_twice(self, value: bool) -> None:
        with self._cond:
            self._deliver_twice = value

    @property
    def run_immediately(self) -> bool:
        with self._cond:
            return self._run_immediately

    @run_immediately.setter
    def run_immediately(self, value: bool) -> None:
        with self._cond:
            self._run_immediately = value
            if value:
                for task in self._tasks.values():
                    if not task.retry_scheduled:
                        self._push(task, 0.0)
            self._cond.notify_all()

    def dispatches(self) -> list[dict[str, object]]:
        with self._cond:
            return [dict(entry) for entry in self._log]

    def certificates(self) -> dict[str, str]:
        return {self._kid: self._cert_pem}

    def reset(self, *, drain_s: float = 0.0) -> int:
        """Forget every task, the dispatch log and the dedup memory; keep the queues.

        With ``drain_s``, also wait up to that long for the dispatches already sent to answer, and
        forget what they queued meanwhile: a test that starts after a reset sees nothing of the one
        before, not even a chain that was mid-request. Returns the dispatches still in flight.
        """
        deadline = time.monotonic() + drain_s
        with self._cond:
            while True:
                self._tasks.clear()
                self._tombstones.clear()
                self._heap.clear()
                self._log.clear()
                for queue in self._queues.values():
                    queue.parked.clear()
                self._cond.notify_all()
                in_flight = sum(queue.in_flight for queue in self._queues.values())
                remaining = deadline - time.monotonic()
                if not in_flight or remaining <= 0:
                    return in_flight
                self._cond.wait(remaining)

    def drain(self, *, timeout_s: float) -> int:
        """Wait up to ``timeout_s`` for the dispatches already sent to answer, forgetting nothing.

        With the queues paused nothing new is sent, so once this returns 0 the handlers are idle:
        a snapshot taken then is not overtaken by a request still running. Returns the dispatches
        still in flight.
        """
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                in_flight = sum(queue.in_flight for queue in self._queues.values())
                remaining = deadline - time.monotonic()
                if not in_flight or remaining <= 0:
                    return in_flight
                self._cond.wait(remaining)

    def create_queue(
        self,
        name: str,
        *,
        retry_config: tasks_v2.RetryConfig | None = None,
        rate_limits: tasks_v2.RateLimits | None = None,
    ) -> None:
        queue = tasks_v2.Queue(name=name)
        if retry_config is not None:
            queue.retry_config = retry_config
        if rate_limits is not None:
            queue.rate_limits = rate_limits
        parent = name.rsplit("/queues/", 1)[0]
        self._create_queue(tasks_v2.CreateQueueRequest(parent=parent, queue=queue))

    # ----------------------------------------------------------------- gRPC surface

    def _grpc_handler(self) -> Any:
        def unary(
            fn: Callable[[Any], Any], req_type: Any, serialize: Callable[[Any], bytes]
        ) -> Any:
            def call(request: Any, context: Any) -> Any:
                try:
                    return fn(request)
                except _RpcError as err:
                    context.abort(err.code, err.message)
                    raise  # unreachable: abort raises

            return grpc.unary_unary_rpc_method_handler(
                call, request_deserializer=req_type.deserialize, response_serializer=serialize
            )

        queue_out = tasks_v2.Queue.serialize
        task_out = tasks_v2.Task.serialize

        def empty_out(_: None) -> bytes:
            return b""  # google.protobuf.Empty serializes to no bytes

        handlers = {
            "ListQueues": unary(
                self._list_queues, tasks_v2.ListQueuesRequest, tasks_v2.ListQueuesResponse.serialize
            ),
            "GetQueue": unary(self._get_queue, tasks_v2.GetQueueRequest, queue_out),
            "CreateQueue": unary(self._create_queue, tasks_v2.CreateQueueRequest, queue_out),
            "UpdateQueue": unary(self._update_queue, tasks_v2.UpdateQueueRequest, queue_out),
            "DeleteQueue": unary(self._delete_queue, tasks_v2.DeleteQueueRequest, empty_out),
            "PurgeQueue": unary(self._purge_queue, tasks_v2.PurgeQueueRequest, queue_out),
            "PauseQueue": unary(self._pause_queue, tasks_v2.PauseQueueRequest, queue_out),
            "ResumeQueue": unary(self._resume_queue, tasks_v2.ResumeQueueRequest, queue_out),
            "ListTasks": unary(
                self._list_tasks, tasks_v2.ListTasksRequest, tasks_v2.ListTasksResponse.serialize
            ),
            "GetTask": unary(self._get_task, tasks_v2.GetTaskRequest, task_out),
            "CreateTask": unary(self._create_task, tasks_v2.CreateTaskRequest, task_out),
            "DeleteTask": unary(self._delete_task, tasks_v2.DeleteTaskRequest, empty_out),
            "RunTask": unary(self._run_task, tasks_v2.RunTaskRequest, task_out),
        }
        return grpc.method_handlers_generic_handler(SERVICE, handlers)

    def _queue_or_404(self, name: str) -> _Queue:
        if not _QUEUE_RE.match(name):
            raise _invalid(f"invalid queue name: {name!r}")
        queue = self._queues.get(name)
        if queue is None:
            raise _not_found(f"queue does not exist: {name}")
        return queue

    def _task_or_404(self, name: str) -> _Task:
        queue_name, _, task_id = name.partition("/tasks/")
        if not _QUEUE_RE.match(queue_name) or not _TASK_ID_RE.match(task_id):
            raise _invalid(f"invalid task name: {name!r}")
        task = self._tasks.get(name)
        if task is None:
            raise _not_found(f"task does not exist: {name}")
        return task

    def _list_queues(self, req: tasks_v2.ListQueuesRequest) -> tasks_v2.ListQueuesResponse:
        if not _LOCATION_RE.match(req.parent):
            raise _invalid(f"invalid parent: {req.parent!r}")
        with self._cond:
            names = sorted(n for n in self._queues if n.startswith(req.parent + "/queues/"))
            page, token = _page(names, req.page_size, req.page_token)
            return tasks_v2.ListQueuesResponse(
                queues=[self._queues[n].to_proto() for n in page], next_page_token=token
            )

    def _get_queue(self, req: tasks_v2.GetQueueRequest) -> tasks_v2.Queue:
        with self._cond:
            return self._queue_or_404(req.name).to_proto()

    def _create_queue(self, req: tasks_v2.CreateQueueRequest) -> tasks_v2.Queue:
        name = req.queue.name
        if not _LOCATION_RE.match(req.parent):
            raise _invalid(f"invalid parent: {req.parent!r}")
        if not _QUEUE_RE.match(name) or not name.startswith(req.parent + "/queues/"):
            raise _invalid(f"invalid queue name {name!r} for parent {req.parent!r}")
        retry = _merge_retry(RetrySettings(), req.queue.retry_config, None)
        rate = _merge_rate(RateSettings(), req.queue.rate_limits, None)
        with self._cond:
            if name in self._queues:
                raise _RpcError(grpc.StatusCode.ALREADY_EXISTS, f"queue exists: {name}")
            queue = _Queue(name=name, retry=retry, rate=rate, refilled_at=time.time())
            queue.tokens = float(rate.max_burst_size)
            self._queues[name] = queue
            return queue.to_proto()

    def _update_queue(self, req: tasks_v2.UpdateQueueRequest) -> tasks_v2.Queue:
        name = req.queue.name
        if not _QUEUE_RE.match(name):
            raise _invalid(f"invalid queue name: {name!r}")
        paths: list[str] | None = list(req.update_mask.paths) if "update_mask" in req else None
        if paths is not None and not paths:
            paths = None
        retry_paths: set[str] | None = None
        rate_paths: set[str] | None = None
        if paths is not None:
            retry_paths, rate_paths = set(), set()
            for path in paths:
                top, _, sub = path.partition(".")
                if top == "retry_config":
                    retry_paths |= {sub} if sub else _RETRY_FIELDS
                elif top == "rate_limits":
                    rate_paths |= {sub} if sub else _RATE_FIELDS
                elif top not in (
                    "stackdriver_logging_config",
                    "http_target",
                    "app_engine_routing_override",
                ):
                    raise _invalid(f"cannot update field {path!r}")
        with self._cond:
            queue = self._queues.get(name)
            if queue is None:
                # Production's UpdateQueue creates a missing queue.
                parent = name.rsplit("/queues/", 1)[0]
                return self._create_queue(
                    tasks_v2.CreateQueueRequest(parent=parent, queue=req.queue)
                )
            if retry_paths is None or retry_paths:
                queue.retry = _merge_retry(queue.retry, req.queue.retry_config, retry_paths)
            if rate_paths is None or rate_paths:
                queue.rate = _merge_rate(queue.rate, req.queue.rate_limits, rate_paths)
                queue.tokens = min(queue.tokens, float(queue.rate.max_burst_size))
            self._release_parked(queue)
            return queue.to_proto()

    def _delete_queue(self, req: tasks_v2.DeleteQueueRequest) -> None:
        with self._cond:
            queue = self._queue_or_404(req.name)
            for name in [n for n, t in self._tasks.items() if t.queue == queue.name]:
                del self._tasks[name]
            del self._queues[queue.name]

    def _purge_queue(self, req: tasks_v2.PurgeQueueRequest) -> tasks_v2.Queue:
        with self._cond:
            queue = self._queue_or_404(req.name)
            for name in [n for n, t in self._tasks.items() if t.queue == queue.name]:
                self._forget(name)
            queue.purge_time = time.time()
            queue.parked.clear()
            return queue.to_proto()

    def _pause_queue(self, req: tasks_v2.PauseQueueRequest) -> tasks_v2.Queue:
        with self._cond:
            queue = self._queue_or_404(req.name)
            queue.paused = True
            return queue.to_proto()

    def _resume_queue(self, req: tasks_v2.ResumeQueueRequest) -> tasks_v2.Queue:
        with self._cond:
            queue = self._queue_or_404(req.name)
            queue.paused = False
            self._release_parked(queue)
            return queue.to_proto()

    def _list_tasks(self, req: tasks_v2.ListTasksRequest) -> tasks_v2.ListTasksResponse:
        with self._cond:
            queue = self._queue_or_404(req.parent)
            tasks = sorted(
                (t for t in self._tasks.values() if t.queue == queue.name),
                key=lambda t: (t.schedule_time, t.name),
            )
            page, token = _page(tasks, req.page_size, req.page_token)
            view = req.response_view
            return tasks_v2.ListTasksResponse(
                tasks=[t.to_proto(view) for t in page], next_page_token=token
            )

    def _get_task(self, req: tasks_v2.GetTaskRequest) -> tasks_v2.Task:
        with self._cond:
            return self._task_or_404(req.name).to_proto(req.response_view)

    def _delete_task(self, req: tasks_v2.DeleteTaskRequest) -> None:
        with self._cond:
            self._forget(self._task_or_404(req.name).name)

    def _run_task(self, req: tasks_v2.RunTaskRequest) -> tasks_v2.Task:
        with self._cond:
            task = self._task_or_404(req.name)
            queue = self._queues[task.queue]
            # RunTask bypasses pause, rate limits and concurrency, as in production.
            self._start_dispatch(task, queue, time.time(), take_token=False)
            return task.to_proto(req.response_view)

    def _create_task(self, req: tasks_v2.CreateTaskRequest) -> tasks_v2.Task:
        if not _QUEUE_RE.match(req.parent):
            raise _invalid(f"invalid parent queue name: {req.parent!r}")
        src = req.task
        if "app_engine_http_request" in src:
            raise _invalid("this emulator dispatches only http_request tasks")
        if "http_request" not in src:
            raise _invalid("task.http_request is required")
        http = src.http_request
        url_parts = urlsplit(http.url)
        if url_parts.scheme not in ("http", "https") or not url_parts.hostname:
            raise _invalid(f"http_request.url must be an absolute http(s) URL: {http.url!r}")
        if len(http.url) > 2083:
            raise _invalid("http_request.url is longer than 2083 characters")
        method = tasks_v2.HttpMethod(http.http_method).name
        if method == "HTTP_METHOD_UNSPECIFIED":
            method = "POST"
        if http.body and method not in ("POST", "PUT", "PATCH"):
            raise _invalid(f"a body is not allowed with HTTP method {method}")
        if len(http.body) + sum(len(k) + len(v) for k, v in http.headers.items()) > MAX_TASK_BYTES:
            raise _invalid("task is larger than 1 MB")
        oidc: tuple[str, str] | None = None
        if "oidc_token" in http:
            if not http.oidc_token.service_account_email:
                raise _invalid("oidc_token.service_account_email is required")
            oidc = (http.oidc_token.service_account_email, http.oidc_token.audience or http.url)
        oauth = http.oauth_token if "oauth_token" in http else None
        now = time.time()
        schedule = src.schedule_time.timestamp() if "schedule_time" in src else now
        if schedule > now + MAX_SCHEDULE_AHEAD_S:
            raise _invalid("schedule_time is more than 30 days in the future")
        deadline = _seconds(src, "dispatch_deadline")
        if deadline is None:
            deadline = DEFAULT_DEADLINE_S
        elif not MIN_DEADLINE_S <= deadline <= MAX_DEADLINE_S:
            raise _invalid("dispatch_deadline must be between 15 seconds and 30 minutes")
        task_retry = None
        if "retry_config" in src:
            task_retry = _merge_retry(RetrySettings(), src.retry_config, None)

        with self._cond:
            queue = self._queues.get(req.parent)
            if queue is None:
                raise _not_found(f"queue does not exist: {req.parent}")
            if src.name:
                queue_name, sep, task_id = src.name.partition("/tasks/")
                if not sep or queue_name != req.parent or not _TASK_ID_RE.match(task_id):
                    raise _invalid(
                        f"task name {src.name!r} must be {req.parent}/tasks/ID with ID made of "
                        "letters, digits, hyphens and underscores (at most 500)"
                    )
                name = src.name
                self._check_duplicate(name)
            else:
                name = f"{req.parent}/tasks/{secrets.randbelow(10**19) + 10**19}"
            task = _Task(
                name=name,
                queue=queue.name,
                url=http.url,
                method=method,
                headers=dict(http.headers),
                body=bytes(http.body),
                oidc=oidc,
                oauth=oauth,
                schedule_time=schedule,
                create_time=now,
                deadline_s=deadline,
                retry=task_retry,
            )
            self._tasks[name] = task
            self._push(task, schedule)
            if self._run_immediately:
                self._push(task, 0.0)
            self._cond.notify_all()
            return task.to_proto(req.response_view)

    def _check_duplicate(self, name: str) -> None:
        # Tombstones are kept in expiry order (see _forget), so expired ones form a prefix.
        now = time.monotonic()
        expired = []
        for tomb, until in self._tombstones.items():
            if until > now:
                break
            expired.append(tomb)
        for tomb in expired:
            del self._tombstones[tomb]
        if name in self._tasks or name in self._tombstones:
            raise _RpcError(
                grpc.StatusCode.ALREADY_EXISTS,
                f"task {name} exists or existed recently (de-duplication window)",
            )

    def _forget(self, name: str) -> None:
        """Remove a task and remember its name for the de-duplication window."""
        self._tasks.pop(name, None)
        self._tombstones.pop(name, None)
        self._tombstones[name] = time.monotonic() + self.dedup_window_s

    # ----------------------------------------------------------------- dispatching

    def _push(self, task: _Task, due: float) -> None:
        heapq.heappush(self._heap, (due, next(self._seq), task.name, task.gen))

    def _release_parked(self, queue: _Queue) -> None:
        for name in queue.parked:
            task = self._tasks.get(name)
            if task is not None:
                self._push(task, task.schedule_time)
        queue.parked.clear()
        self._cond.notify_all()

    def _dispatch_loop(self) -> None:
        with self._cond:
            while not self._stopping:
                timeout = self._dispatch_due(time.time())
                self._cond.wait(timeout)

    def _dispatch_due(self, now: float) -> float | None:
        """Start every due task that its queue allows; return seconds until the next one."""
        while self._heap:
            due, _, name, gen = self._heap[0]
            if due > now:
                return due - now
            heapq.heappop(self._heap)
            task = self._tasks.get(name)
            if task is None or task.gen != gen or task.in_flight:
                continue
            immediate = self._run_immediately and not task.retry_scheduled
            if task.schedule_time > now and not immediate:
                continue  # a stale early entry; the task's own entry is still queued
            queue = self._queues[task.queue]
            if queue.paused or queue.in_flight >= queue.rate.max_concurrent_dispatches:
                queue.parked.add(name)
                continue
            queue.refill(now)
            if queue.tokens < 1.0:
                wait = (1.0 - queue.tokens) / queue.rate.max_dispatches_per_second
                self._push(task, now + wait)
                continue
            self._start_dispatch(task, queue, now, take_token=True)
        return None

    def _start_dispatch(self, task: _Task, queue: _Queue, now: float, *, take_token: bool) -> None:
        if take_token:
            queue.tokens -= 1.0
        queue.in_flight += 1
        task.in_flight += 1
        retry_count = task.dispatch_count
        execution_count = task.response_count
        task.dispatch_count += 1
        if task.first_dispatch is None:
            task.first_dispatch = now
        task.last_attempt = _Attempt(schedule_time=task.schedule_time, dispatch_time=now)
        headers = {
            k: v for k, v in task.headers.items() if not k.lower().startswith(_DROPPED_HEADERS)
        }
        headers.update(
            {
                "User-Agent": "Google-Cloud-Tasks",
                "X-CloudTasks-QueueName": queue.name.rsplit("/", 1)[1],
                "X-CloudTasks-TaskName": task.name.rsplit("/", 1)[1],
                "X-CloudTasks-TaskRetryCount": str(retry_count),
                "X-CloudTasks-TaskExecutionCount": str(execution_count),
                "X-CloudTasks-TaskETA": f"{task.schedule_time:.6f}",
            }
        )
        if task.previous_reason is not None:
            if task.previous_status is not None:
                headers["X-CloudTasks-TaskPreviousResponse"] = str(task.previous_status)
            headers["X-CloudTasks-TaskRetryReason"] = task.previous_reason
        if task.oidc is not None:
            headers["Authorization"] = f"Bearer {self.id_token(*task.oidc)}"
        request = _Request(
            task=task,
            url=task.url,
            method=task.method,
            headers=headers,
            body=task.body,
            deadline_s=task.deadline_s,
            attempt=task.dispatch_count,
            retry_count=retry_count,
        )
        assert self._pool is not None
        self._pool.submit(self._deliver, request, queue)

    def id_token(self, email: str, audience: str) -> str:
        iat = int(time.time())
        sub = _subject_id(email)
        payload = {
            "aud": audience,
            "azp": sub,
            "email": email,
            "email_verified": True,
            "exp": iat + 3600,
            "iat": iat,
            "iss": ISSUER,
            "sub": sub,
        }
        token: bytes = google.auth.jwt.encode(self._signer, payload)  # type: ignore[no-untyped-call]
        return token.decode()

    def _send(self, req: _Request) -> tuple[int | None, str | None, float | None]:
        """Deliver one request: (HTTP status or None, failure reason, Retry-After seconds)."""
        parts = urlsplit(req.url)
        conn_type = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        deadline_at = time.monotonic() + req.deadline_s
        conn = conn_type(parts.hostname or "", parts.port, timeout=req.deadline_s)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            conn.connect()
            # Registered only once the socket exists, so stop() can always cut it off.
            with self._cond:
                if self._stopping:
                    return None, "UNAVAILABLE", None
                self._conns.add(conn)
            conn.request(req.method, path, body=req.body, headers=req.headers)
            # The socket timeout applies per read; re-arm it so the exchange obeys the deadline.
            if conn.sock is not None:
                conn.sock.settimeout(max(0.001, deadline_at - time.monotonic()))
            resp = conn.getresponse()
            resp.read()
            retry_after = None
            if resp.status in (429, 503):
                retry_after = _retry_after_s(resp.getheader("Retry-After"))
            return resp.status, None if 200 <= resp.status < 300 else "HTTP_ERROR", retry_after
        except TimeoutError:
            return None, "DEADLINE_EXCEEDED", None
        except (OSError, http.client.HTTPException):
            return None, "UNAVAILABLE", None
        finally:
            conn.close()
            with self._cond:
                self._conns.discard(conn)

    def _record(self, req: _Request, status: int | None, started: float, finished: float) -> None:
        self._log.append(
            {
                "queue": req.task.queue,
                "task": req.task.name,
                "url": req.url,
                "method": req.method,
                "status": status,
                "started_at": _rfc3339(started),
                "finished_at": _rfc3339(finished),
                "attempt": req.attempt,
                "retry_count": req.retry_count,
            }
        )

    def _deliver(self, req: _Request, queue: _Queue) -> None:
        started = time.time()
        status, reason, retry_after = self._send(req)
        finished = time.time()
        duplicate: _Request | None = None
        with self._cond:
            task = req.task
            task.in_flight -= 1
            queue.in_flight -= 1
            self._cond.notify_all()  # a draining reset waits for in_flight to reach 0
            current = self._tasks.get(task.name) is task
            if current or self._log_allowed(task):
                self._record(req, status, started, finished)
            if not current or self._stopping:
                self._release_parked(queue)
                return
            if status is not None:
                task.response_count += 1
            if task.last_attempt is not None:
                task.last_attempt.response_time = finished if status is not None else None
                task.last_attempt.status = _rpc_status(status, reason)
            if reason is None:
                self._forget(task.name)
                if self._deliver_twice:
                    headers = dict(req.headers)
                    headers["X-CloudTasks-TaskExecutionCount"] = str(task.response_count)
                    duplicate = replace(
                        req, headers=headers, attempt=req.attempt + 1, duplicate=True
                    )
            else:
                self._after_failure(task, status, reason, retry_after, finished)
            self._release_parked(queue)
        if duplicate is not None:
            started = time.time()
            status, _, _ = self._send(duplicate)
            with self._cond:
                self._record(duplicate, status, started, time.time())

    def _log_allowed(self, task: _Task) -> bool:
        # Attempts of a task deleted mid-flight are still attempts; only a reset wipes history.
        return task.name in self._tombstones

    def _after_failure(
        self,
        task: _Task,
        status: int | None,
        reason: str,
        retry_after: float | None,
        now: float,
    ) -> None:
        task.previous_status = status
        task.previous_reason = reason
        if task.in_flight:
            return  # a RunTask attempt is still out; its outcome decides
        retry = task.retry or self._queues[task.queue].retry
        since_first = now - (task.first_dispatch or now)
        if retry.exhausted(attempts=task.dispatch_count, since_first_s=since_first):
            self._forget(task.name)
            return
        delay = retry.backoff(task.dispatch_count - 1)
        if retry_after is not None:
            delay = max(delay, retry_after)
        task.schedule_time = now + delay
        task.retry_scheduled = True
        task.gen += 1
        self._push(task, task.schedule_time)


_RETRY_FIELDS = frozenset(
    {"max_attempts", "max_retry_duration", "min_backoff", "max_backoff", "max_doublings"}
)
_RATE_FIELDS = frozenset({"max_dispatches_per_second", "max_concurrent_dispatches"})


def _page(items: list[_T], page_size: int, page_token: str) -> tuple[list[_T], str]:
    try:
        start = int(page_token) if page_token else 0
    except ValueError:
        raise _invalid(f"invalid page_token: {page_token!r}") from None
    size = page_size if page_size > 0 else 1000
    end = start + size
    return items[start:end], str(end) if end < len(items) else ""


class _ControlServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog is 5: sixteen callers minting tokens at once (as a test of
    # concurrent calendar syncs does) had connections reset before they were accepted.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], emulator: TasksEmulator) -> None:
        self.emulator = emulator
        super().__init__(address, _ControlHandler)


class _ControlHandler(BaseHTTPRequestHandler):
    server: _ControlServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _seconds_asked(self, raw: bytes, name: str, *, default: float) -> float | None:
        """``{name?: seconds from 0 to 600}`` of a control request; None once refused with 400."""
        try:
            asked = json.loads(raw or b"{}")
            seconds = float(asked.get(name, default)) if isinstance(asked, dict) else -1.0
        except (ValueError, TypeError):
            seconds = -1.0
        if not 0.0 <= seconds <= 600.0:
            self._json(400, {"error": f'expected {{"{name}"?: seconds from 0 to 600}}'})
            return None
        return seconds

    def _json(self, status: int, payload: object, *, cache_control: str | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if cache_control is not None:
            self.send_header("Cache-Control", cache_control)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _mint(self, raw: bytes) -> None:
        """The token mint: ``{"audience", "email"}`` → ``{"id_token"}``."""
        try:
            asked = json.loads(raw or b"{}")
        except ValueError:
            asked = None
        if (
            not isinstance(asked, dict)
            or not isinstance(asked.get("audience"), str)
            or not isinstance(asked.get("email"), str)
            or not asked["audience"]
            or "@" not in asked["email"]
        ):
            self._json(400, {"error": 'expected {"audience": URL, "email": EMAIL}'})
            return
        token = self.server.emulator.id_token(asked["email"], asked["audience"])
        self._json(200, {"id_token": token})

    def do_GET(self) -> None:
        emulator = self.server.emulator
        path = urlsplit(self.path).path
        if path == "/oauth2/v1/certs":
            # As Google serves its certificates: reusable for hours, so verifiers cache them.
            self._json(200, emulator.certificates(), cache_control=CERTS_CACHE_CONTROL)
        elif path == "/_emulator/dispatches":
            self._json(200, emulator.dispatches())
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:
        emulator = self.server.emulator
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if path == "/_emulator/reset":
            drain_s = self._seconds_asked(raw, "drain_s", default=0.0)
            if drain_s is not None:
                self._json(200, {"ok": True, "in_flight": emulator.reset(drain_s=drain_s)})
        elif path == "/_emulator/drain":
            timeout_s = self._seconds_asked(raw, "timeout_s", default=60.0)
            if timeout_s is not None:
                self._json(200, {"in_flight": emulator.drain(timeout_s=timeout_s)})
        elif path == TOKEN_MINT_PATH:
            self._mint(raw)
        elif path == "/_emulator/config":
            try:
                config = json.loads(raw or b"{}")
            except ValueError:
                self._json(400, {"error": "body must be JSON"})
                return
            if not isinstance(config, dict) or any(
                not isinstance(config.get(k, False), bool)
                for k in ("deliver_twice", "run_immediately")
            ):
                self._json(
                    400, {"error": "expected {deliver_twice?: bool, run_immediately?: bool}"}
                )
                return
            if "deliver_twice" in config:
                emulator.deliver_twice = config["deliver_twice"]
            if "run_immediately" in config:
                emulator.run_immediately = config["run_immediately"]
            self._json(
                200,
                {
                    "deliver_twice": emulator.deliver_twice,
                    "run_immediately": emulator.run_immediately,
                },
            )
        else:
            self._json(404, {"error": "not found"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.tasks_emulator", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="gRPC port (0: any free port)")
    parser.add_argument("--http-port", type=int, default=0, help="certs/control HTTP port")
    parser.add_argument("--dedup-window-s", type=float, default=3600.0)
    parser.add_argument("--deliver-twice", action="store_true")
    parser.add_argument("--run-immediately", action="store_true")
    parser.add_argument(
        "--queue", action="append", default=[], help="projects/P/locations/L/queues/Q to create"
    )
    args = parser.parse_args(argv)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    emulator = TasksEmulator(
        port=args.port,
        http_port=args.http_port,
        dedup_window_s=args.dedup_window_s,
        deliver_twice=args.deliver_twice,
        run_immediately=args.run_immediately,
    )
    emulator.start()
    try:
        for name in args.queue:
            emulator.create_queue(name)
        print(
            f"tasks-emulator ready grpc={emulator.address} http={emulator.control_url[7:]}",
            flush=True,
        )
        done.wait()
    except _RpcError as err:
        print(f"tasks-emulator: {err.message}", file=sys.stderr, flush=True)
        return 2
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
