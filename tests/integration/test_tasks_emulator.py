"""The Cloud Tasks emulator, driven through the stock google-cloud-tasks client and real HTTP."""

from __future__ import annotations

import os

os.environ.setdefault("NO_GCE_CHECK", "True")

import datetime as dt
import itertools
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import google.auth.jwt
import google.auth.transport.requests
import grpc
import pytest
from google.api_core import exceptions
from google.cloud import tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport
from google.oauth2 import id_token
from google.protobuf import field_mask_pb2  # type: ignore[import-untyped]

from local.tasks_emulator import RetrySettings, TasksEmulator

LOCATION = "projects/test-project/locations/europe-west1"
SERVICE_ACCOUNT = "tasks-invoker@test-project.iam.gserviceaccount.com"
REPO_ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 15.0  # generous: the machine may be loaded


# ----------------------------------------------------------------------------- HTTP target


@dataclass
class Hit:
    path: str
    method: str
    headers: dict[str, str]
    body: bytes
    at: float
    done_at: float | None = None


@dataclass
class Target:
    """Records every request. Query parameters script the answer for the first ``times`` hits:
    ``status`` (default 200), ``sleep`` seconds, ``retry_after`` header value."""

    server: ThreadingHTTPServer
    cond: threading.Condition = field(default_factory=threading.Condition)
    hits: list[Hit] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str, **params: object) -> str:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        port = self.server.server_address[1]
        return f"http://127.0.0.1:{port}{path}" + (f"?{query}" if query else "")

    def wait(self, path: str, count: int, timeout: float = WAIT_S) -> list[Hit]:
        with self.cond:
            self.cond.wait_for(lambda: len(self.of(path)) >= count, timeout)
            return self.of(path)

    def of(self, path: str) -> list[Hit]:
        with self.cond:
            return [h for h in self.hits if h.path == path]


def _target_handler(target_ref: list[Target]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _handle(self) -> None:
            target = target_ref[0]
            parts = urlsplit(self.path)
            params = {k: v[0] for k, v in parse_qs(parts.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            hit = Hit(
                path=parts.path,
                method=self.command,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=self.rfile.read(length) if length else b"",
                at=time.time(),
            )
            with target.cond:
                target.hits.append(hit)
                seen = len([h for h in target.hits if h.path == parts.path])
                target.cond.notify_all()
            scripted = seen <= int(params.get("times", "1000000"))
            status = int(params.get("status", "200")) if scripted else 200
            if scripted and "sleep" in params:
                target.stopping.wait(float(params["sleep"]))
            hit.done_at = time.time()
            try:
                self.send_response(status)
                if scripted and "retry_after" in params:
                    self.send_header("Retry-After", params["retry_after"])
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:
                pass  # the emulator gave up on this request (dispatch deadline)

        def do_GET(self) -> None:
            self._handle()

        def do_POST(self) -> None:
            self._handle()

        def do_PUT(self) -> None:
            self._handle()

        def do_PATCH(self) -> None:
            self._handle()

        def do_DELETE(self) -> None:
            self._handle()

    return Handler


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    ref: list[Target] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _target_handler(ref))
    server.daemon_threads = True
    ref.append(Target(server=server))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield ref[0]
    ref[0].stopping.set()
    server.shutdown()
    server.server_close()
    thread.join()


# ----------------------------------------------------------------------------- emulator + client


def _client(address: str) -> tasks_v2.CloudTasksClient:
    channel = grpc.insecure_channel(address)
    return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))


@pytest.fixture(scope="module")
def emulator() -> Iterator[TasksEmulator]:
    emu = TasksEmulator()
    emu.start()
    yield emu
    emu.stop()


@pytest.fixture(scope="module")
def client(emulator: TasksEmulator) -> tasks_v2.CloudTasksClient:
    return _client(emulator.address)


@pytest.fixture
def switches(emulator: TasksEmulator) -> Iterator[TasksEmulator]:
    yield emulator
    emulator.deliver_twice = False
    emulator.run_immediately = False


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _queue(
    client: tasks_v2.CloudTasksClient,
    *,
    max_attempts: int = 5,
    min_backoff_s: float = 0.1,
    max_backoff_s: float = 1.0,
    max_doublings: int = 16,
    max_concurrent: int = 0,
    rate: float = 0.0,
) -> str:
    name = f"{LOCATION}/queues/{_unique('q')}"
    queue = tasks_v2.Queue(
        name=name,
        retry_config=tasks_v2.RetryConfig(
            max_attempts=max_attempts,
            min_backoff=dt.timedelta(seconds=min_backoff_s),
            max_backoff=dt.timedelta(seconds=max_backoff_s),
            max_doublings=max_doublings,
        ),
        rate_limits=tasks_v2.RateLimits(
            max_concurrent_dispatches=max_concurrent, max_dispatches_per_second=rate
        ),
    )
    client.create_queue(parent=LOCATION, queue=queue)
    return name


def _task(
    client: tasks_v2.CloudTasksClient,
    queue: str,
    url: str,
    *,
    task_id: str | None = None,
    delay_s: float | None = None,
    **http: Any,
) -> tasks_v2.Task:
    task = tasks_v2.Task(http_request=tasks_v2.HttpRequest(url=url, **http))
    if task_id is not None:
        task.name = f"{queue}/tasks/{task_id}"
    if delay_s is not None:
        task.schedule_time = dt.datetime.now(tz=dt.UTC) + dt.timedelta(seconds=delay_s)
    return client.create_task(parent=queue, task=task)


def _wait_gone(client: tasks_v2.CloudTasksClient, name: str, timeout: float = WAIT_S) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            client.get_task(name=name)
        except exceptions.NotFound:
            return
        time.sleep(0.05)
    raise AssertionError(f"{name} still exists after {timeout} s")


def _short(name: str) -> str:
    return name.rsplit("/", 1)[1]


# ----------------------------------------------------------------------------- queues


def test_queue_crud_round_trips_retry_config_and_rate_limits(
    client: tasks_v2.CloudTasksClient,
) -> None:
    name = f"{LOCATION}/queues/{_unique('crud')}"
    retry = tasks_v2.RetryConfig(
        max_attempts=7,
        max_retry_duration=dt.timedelta(seconds=60),
        min_backoff=dt.timedelta(seconds=0.5),
        max_backoff=dt.timedelta(seconds=30),
        max_doublings=3,
    )
    rate = tasks_v2.RateLimits(max_dispatches_per_second=20, max_concurrent_dispatches=5)
    created = client.create_queue(
        parent=LOCATION, queue=tasks_v2.Queue(name=name, retry_config=retry, rate_limits=rate)
    )
    got = client.get_queue(name=name)
    assert got == created
    assert got.retry_config == retry
    assert got.rate_limits.max_dispatches_per_second == 20
    assert got.rate_limits.max_concurrent_dispatches == 5
    assert got.state == tasks_v2.Queue.State.RUNNING
    assert name in [q.name for q in client.list_queues(parent=LOCATION)]

    with pytest.raises(exceptions.AlreadyExists):
        client.create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=name))

    updated = client.update_queue(
        queue=tasks_v2.Queue(
            name=name,
            retry_config=tasks_v2.RetryConfig(max_attempts=9),
            rate_limits=tasks_v2.RateLimits(max_concurrent_dispatches=2),
        ),
        update_mask=field_mask_pb2.FieldMask(
            paths=["retry_config.max_attempts", "rate_limits.max_concurrent_dispatches"]
        ),
    )
    assert updated.retry_config.max_attempts == 9
    assert updated.retry_config.max_doublings == 3
    assert updated.rate_limits.max_concurrent_dispatches == 2
    assert updated.rate_limits.max_dispatches_per_second == 20
    assert client.get_queue(name=name) == updated

    assert client.pause_queue(name=name).state == tasks_v2.Queue.State.PAUSED
    assert client.resume_queue(name=name).state == tasks_v2.Queue.State.RUNNING
    _task(client, name, "http://127.0.0.1:9/never", delay_s=3600)
    purged = client.purge_queue(name=name)
    assert purged.purge_time is not None
    assert list(client.list_tasks(parent=name)) == []

    client.delete_queue(name=name)
    with pytest.raises(exceptions.NotFound):
        client.get_queue(name=name)
    with pytest.raises(exceptions.NotFound):
        client.delete_queue(name=name)


def test_queue_defaults_match_cloud_tasks(client: tasks_v2.CloudTasksClient) -> None:
    name = f"{LOCATION}/queues/{_unique('defaults')}"
    queue = client.create_queue(parent=LOCATION, queue=tasks_v2.Queue(name=name))
    assert queue.retry_config.max_attempts == 100
    assert queue.retry_config.min_backoff == dt.timedelta(seconds=0.1)
    assert queue.retry_config.max_backoff == dt.timedelta(seconds=3600)
    assert queue.retry_config.max_doublings == 16
    assert queue.rate_limits.max_dispatches_per_second == 500
    assert queue.rate_limits.max_concurrent_dispatches == 1000


def test_backoff_follows_the_documented_doubling_then_linear_rule() -> None:
    # The RetryConfig.max_doublings docstring example.
    rule = RetrySettings(min_backoff_s=10, max_backoff_s=300, max_doublings=3)
    assert [rule.backoff(i) for i in range(8)] == [10, 20, 40, 80, 160, 240, 300, 300]


# ----------------------------------------------------------------------------- tasks


def test_list_get_delete_task(client: tasks_v2.CloudTasksClient) -> None:
    queue = _queue(client)
    body = b'{"meeting": "abc"}'
    named = _task(
        client,
        queue,
        "http://127.0.0.1:9/x",
        task_id="named_task-1",
        delay_s=3600,
        body=body,
        headers={"Content-Type": "application/json"},
    )
    unnamed = _task(client, queue, "http://127.0.0.1:9/y", delay_s=3600)
    assert re.fullmatch(re.escape(queue) + r"/tasks/[A-Za-z0-9_-]+", unnamed.name)
    assert named.dispatch_deadline == dt.timedelta(minutes=10)
    assert named.create_time is not None
    assert named.dispatch_count == 0
    assert named.view == tasks_v2.Task.View.BASIC
    assert named.http_request.body == b""

    assert {t.name for t in client.list_tasks(parent=queue)} == {named.name, unnamed.name}
    full = client.get_task(
        request=tasks_v2.GetTaskRequest(name=named.name, response_view=tasks_v2.Task.View.FULL)
    )
    assert full.http_request.body == body
    assert full.http_request.headers["Content-Type"] == "application/json"
    assert full.http_request.http_method == tasks_v2.HttpMethod.POST
    assert client.get_task(name=named.name).http_request.body == b""

    client.delete_task(name=named.name)
    with pytest.raises(exceptions.NotFound):
        client.get_task(name=named.name)
    with pytest.raises(exceptions.NotFound):
        client.delete_task(name=named.name)
    assert [t.name for t in client.list_tasks(parent=queue)] == [unnamed.name]


def test_same_named_task_twice_is_already_exists(client: tasks_v2.CloudTasksClient) -> None:
    queue = _queue(client)
    _task(client, queue, "http://127.0.0.1:9/x", task_id="dup", delay_s=3600)
    with pytest.raises(exceptions.AlreadyExists):
        _task(client, queue, "http://127.0.0.1:9/x", task_id="dup", delay_s=3600)


def test_deleted_name_is_blocked_for_the_dedup_window_only() -> None:
    with TasksEmulator(dedup_window_s=0.5) as emu:
        client = _client(emu.address)
        queue = _queue(client)
        task = _task(client, queue, "http://127.0.0.1:9/x", task_id="again", delay_s=3600)
        deleted_at = time.monotonic()  # before the server's clock starts: a lower bound
        client.delete_task(name=task.name)
        with pytest.raises(exceptions.AlreadyExists):
            _task(client, queue, "http://127.0.0.1:9/x", task_id="again", delay_s=3600)
        end = deleted_at + WAIT_S
        while True:
            try:
                _task(client, queue, "http://127.0.0.1:9/x", task_id="again", delay_s=3600)
                break
            except exceptions.AlreadyExists:
                assert time.monotonic() < end, "name never became reusable"
                time.sleep(0.05)
        assert time.monotonic() - deleted_at >= 0.49


def test_executed_task_name_is_already_exists(
    client: tasks_v2.CloudTasksClient, target: Target
) -> None:
    queue = _queue(client)
    path = f"/{_unique('executed')}"
    task = _task(client, queue, target.url(path), task_id="ran-once")
    assert len(target.wait(path, 1)) == 1
    _wait_gone(client, task.name)
    with pytest.raises(exceptions.AlreadyExists):
        _task(client, queue, target.url(path), task_id="ran-once")


def test_schedule_time_is_never_early(client: tasks_v2.CloudTasksClient, target: Target) -> None:
    queue = _queue(client)
    path = f"/{_unique('scheduled')}"
    task = _task(client, queue, target.url(path), delay_s=2.0)
    eta = task.schedule_time.timestamp()
    hits = target.wait(path, 1)
    assert len(hits) == 1
    assert hits[0].at >= eta - 0.001
    assert float(hits[0].headers["x-cloudtasks-tasketa"]) == pytest.approx(eta, abs=1e-5)


def test_request_method_body_and_cloud_tasks_headers(
    client: tasks_v2.CloudTasksClient, target: Target
) -> None:
    queue = _queue(client)
    path = f"/{_unique('headers')}"
    task = _task(
        client,
        queue,
        target.url(path, flavour="x"),
        task_id="hdr_1",
        http_method=tasks_v2.HttpMethod.PUT,
        body=b"payload \x00\xff",
        headers={
            "Content-Type": "application/octet-stream",
            "X-Custom": "yes",
            "User-Agent": "mine",
        },
    )
    (hit,) = target.wait(path, 1)
    assert hit.method == "PUT"
    assert hit.body == b"payload \x00\xff"
    h = hit.headers
    assert h["content-type"] == "application/octet-stream"
    assert h["x-custom"] == "yes"
    assert h["user-agent"] == "Google-Cloud-Tasks"
    assert h["x-cloudtasks-queuename"] == _short(queue)
    assert h["x-cloudtasks-taskname"] == "hdr_1"
    assert h["x-cloudtasks-taskretrycount"] == "0"
    assert h["x-cloudtasks-taskexecutioncount"] == "0"
    assert float(h["x-cloudtasks-tasketa"]) == pytest.approx(task.schedule_time.timestamp())
    assert "x-cloudtasks-taskpreviousresponse" not in h
    assert "x-cloudtasks-taskretryreason" not in h
    assert "authorization" not in h


def test_oidc_token_verifies_against_certs_url(
    client: tasks_v2.CloudTasksClient, target: Target, emulator: TasksEmulator
) -> None:
    queue = _queue(client)
    path = f"/{_unique('oidc')}"
    url = target.url(path)
    _task(
        client,
        queue,
        url,
        oidc_token=tasks_v2.OidcToken(service_account_email=SERVICE_ACCOUNT),
    )
    (hit,) = target.wait(path, 1)
    scheme, _, token = hit.headers["authorization"].partition(" ")
    assert scheme == "Bearer"
    request = google.auth.transport.requests.Request()
    claims = id_token.verify_token(token, request, audience=url, certs_url=emulator.certs_url)
    assert claims["aud"] == url
    assert claims["email"] == SERVICE_ACCOUNT
    assert claims["email_verified"] is True
    assert claims["iss"] == "https://accounts.google.com"
    assert claims["sub"].isdigit()
    assert claims["exp"] - claims["iat"] == 3600
    header = google.auth.jwt.decode_header(token)  # type: ignore[no-untyped-call]
    assert header["alg"] == "RS256"
    with urllib.request.urlopen(emulator.certs_url, timeout=10) as resp:
        assert header["kid"] in json.load(resp)
    with pytest.raises(ValueError, match="audience"):
        id_token.verify_token(
            token, request, audience="https://elsewhere.example", certs_url=emulator.certs_url
        )


def test_oidc_custom_audience(
    client: tasks_v2.CloudTasksClient, target: Target, emulator: TasksEmulator
) -> None:
    queue = _queue(client)
    path = f"/{_unique('aud')}"
    audience = "https://collect-abc123-ew.a.run.app"
    oidc = tasks_v2.OidcToken(service_account_email=SERVICE_ACCOUNT, audience=audience)
    _task(client, queue, target.url(path), oidc_token=oidc)
    (hit,) = target.wait(path, 1)
    token = hit.headers["authorization"].removeprefix("Bearer ")
    claims = id_token.verify_token(
        token,
        google.auth.transport.requests.Request(),
        audience=audience,
        certs_url=emulator.certs_url,
    )
    assert claims["aud"] == audience


# ----------------------------------------------------------------------------- retries


def _gaps(hits: list[Hit]) -> list[float]:
    return [b.at - a.at for a, b in itertools.pairwise(hits)]


def test_500_is_retried_with_growing_backoff(
    client: tasks_v2.CloudTasksClient, target: Target
) -> None:
    queue = _queue(client, max_attempts=6, min_backoff_s=0.1, max_backoff_s=1.0)
    path = f"/{_unique('backoff')}"
    task = _task(client, queue, target.url(path, status=500))
    hits = target.wait(path, 6)
    assert len(hits) == 6
    gaps = _gaps(hits)
    for gap, expected in zip(gaps, [0.1, 0.2, 0.4, 0.8, 1.0], strict=True):
        assert gap >= expected - 0.005, gaps  # never early
        assert gap < expected + 1.5, gaps
    assert gaps[3] > gaps[0] + 0.3, gaps
    assert gaps[4] > gaps[1] + 0.3, gaps
    second = hits[1].headers
    assert second["x-cloudtasks-taskretrycount"] == "1"
    assert second["x-cloudtasks-taskexecutioncount"] == "1"
    assert second["x-cloudtasks-taskpreviousresponse"] == "500"
    assert second["x-cloudtasks-taskretryreason"] == "HTTP_ERROR"
    assert hits[5].headers["x-cloudtasks-taskretrycount"] == "5"
    _wait_gone(client, task.name)


def test_max_attempts_is_respected(
    client: tasks_v2.CloudTasksClient, target: Target, emulator: TasksEmulator
) -> None:
    queue = _queue(client, max_attempts=3, min_backoff_s=0.05, max_backoff_s=0.1)
    path = f"/{_unique('attempts')}"
    task = _task(client, queue, target.url(path, status=500))
    target.wait(path, 3)
    _wait_gone(client, task.name)  # deleted once attempts are exhausted
    assert len(target.of(path)) == 3
    log = [d for d in emulator.dispatches() if d["task"] == task.name]
    assert [d["attempt"] for d in log] == [1, 2, 3]
    assert [d["retry_count"] for d in log] == [0, 1, 2]
    assert {d["status"] for d in log} == {500}
    assert all(d["queue"] == queue and d["method"] == "POST" for d in log)
    with pytest.raises(exceptions.AlreadyExists):  # exhausted names stay reserved too
        _task(client, queue, target.url(path), task_id=_short(task.name))


def test_retry_after_is_honoured_on_503(client: tasks_v2.CloudTasksClient, target: Target) -> None:
    queue = _queue(client, min_backoff_s=0.1, max_backoff_s=0.2)
    path = f"/{_unique('retry-after')}"
    _task(client, queue, target.url(path, status=503, times=1, retry_after=1))
    hits = target.wait(path, 2)
    assert len(hits) == 2
    assert hits[1].at - hits[0].at >= 1.0
    assert hits[1].headers["x-cloudtasks-taskpreviousresponse"] == "503"


def test_dispatch_deadline_cancels_a_slow_handler_and_retries(
    client: tasks_v2.CloudTasksClient, target: Target, emulator: TasksEmulator
) -> None:
    queue = _queue(client, min_backoff_s=0.1)
    path = f"/{_unique('deadline')}"
    task = tasks_v2.Task(
        name=f"{queue}/tasks/slow",
        http_request=tasks_v2.HttpRequest(url=target.url(path, sleep=60, times=1)),
        dispatch_deadline=dt.timedelta(seconds=15),  # the shortest Cloud Tasks allows
    )
    created = client.create_task(parent=queue, task=task)
    assert created.dispatch_deadline == dt.timedelta(seconds=15)
    hits = target.wait(path, 2, timeout=45)
    assert len(hits) == 2
    # The deadline runs from the dispatch, a few ms before the handler saw the request.
    assert 14.9 <= hits[1].at - hits[0].at < 30.0
    assert hits[1].headers["x-cloudtasks-taskretryreason"] == "DEADLINE_EXCEEDED"
    assert "x-cloudtasks-taskpreviousresponse" not in hits[1].headers
    first = next(d for d in emulator.dispatches() if d["task"] == created.name)
    assert first["status"] is None


# ----------------------------------------------------------------------------- concurrency


def test_slow_handler_does_not_delay_another_task(
    client: tasks_v2.CloudTasksClient, target: Target
) -> None:
    queue = _queue(client)
    slow, fast = f"/{_unique('slow')}", f"/{_unique('fast')}"
    _task(client, queue, target.url(slow, sleep=3))
    (slow_hit,) = target.wait(slow, 1)
    _task(client, queue, target.url(fast))
    (fast_hit,) = target.wait(fast, 1)
    assert slow_hit.done_at is None or fast_hit.at < slow_hit.done_at
    assert fast_hit.at - slow_hit.at < 2.5


def test_max_concurrent_dispatches_one_serialises(
    client: tasks_v2.CloudTasksClient, target: Target
) -> None:
    queue = _queue(client, max_concurrent=1)
    path = f"/{_unique('serial')}"
    for _ in range(3):
        _task(client, queue, target.url(path, sleep=0.3))
    hits = target.wait(path, 3)
    assert len(hits) == 3
    end = time.monotonic() + WAIT_S
    while any(h.done_at is None for h in hits) and time.monotonic() < end:
        time.sleep(0.02)
    for before, after in itertools.pairwise(hits):
        assert before.done_at is not None
        assert after.at >= before.done_at


def test_rate_limit_spreads_dispatches(client: tasks_v2.CloudTasksClient, target: Target) -> None:
    queue = _queue(client, rate=5.0)  # burst of 5, then one every 0.2 s
    client.pause_queue(name=queue)  # so slow task creation cannot refill the bucket meanwhile
    path = f"/{_unique('rate')}"
    for _ in range(10):
        _task(client, queue, target.url(path))
    client.resume_queue(name=queue)
    hits = target.wait(path, 10)
    assert len(hits) == 10
    assert hits[-1].at - hits[0].at >= 0.7


def test_paused_queue_dispatches_nothing_until_resumed(
    client: tasks_v2.CloudTasksClient, target: Target
) -> None:
    queue = _queue(client)
    client.pause_queue(name=queue)
    path = f"/{_unique('paused')}"
    _task(client, queue, target.url(path))
    assert target.wait(path, 1, timeout=1.0) == []
    client.resume_queue(name=queue)
    assert len(target.wait(path, 1)) == 1


def test_run_task_forces_dispatch_even_when_paused(
    client: tasks_v2.CloudTasksClient, target: Target
) -> None:
    queue = _queue(client)
    client.pause_queue(name=queue)
    path = f"/{_unique('run')}"
    task = _task(client, queue, target.url(path), delay_s=3600)
    ran = client.run_task(name=task.name)
    assert ran.dispatch_count == 1
    assert len(target.wait(path, 1)) == 1
    _wait_gone(client, task.name)


# ----------------------------------------------------------------------------- switches


def test_deliver_twice_sends_two_identical_requests(
    client: tasks_v2.CloudTasksClient, target: Target, switches: TasksEmulator
) -> None:
    switches.deliver_twice = True
    queue = _queue(client)
    path = f"/{_unique('twice')}"
    task = _task(client, queue, target.url(path), task_id="twice", body=b"same")
    first, second = target.wait(path, 2)
    assert first.body == second.body == b"same"
    assert first.method == second.method == "POST"
    assert first.headers["x-cloudtasks-taskname"] == second.headers["x-cloudtasks-taskname"]
    assert first.headers["x-cloudtasks-taskexecutioncount"] == "0"
    assert second.headers["x-cloudtasks-taskexecutioncount"] == "1"
    _wait_gone(client, task.name)
    assert len(target.of(path)) == 2


def test_run_immediately_ignores_a_far_future_schedule_time(
    client: tasks_v2.CloudTasksClient, target: Target, switches: TasksEmulator
) -> None:
    queue = _queue(client)
    path = f"/{_unique('now')}"
    task = _task(client, queue, target.url(path), delay_s=20 * 24 * 3600)
    req = urllib.request.Request(
        f"{switches.control_url}/_emulator/config",
        data=json.dumps({"run_immediately": True}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert json.load(resp)["run_immediately"] is True
    assert switches.run_immediately is True
    (hit,) = target.wait(path, 1)
    assert float(hit.headers["x-cloudtasks-tasketa"]) == pytest.approx(
        task.schedule_time.timestamp()
    )


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "task_id",
    ["has space", "dot.ted", "x" * 501, "slash/inside"],
)
def test_invalid_task_names_are_rejected(client: tasks_v2.CloudTasksClient, task_id: str) -> None:
    queue = _queue(client)
    with pytest.raises(exceptions.InvalidArgument):
        _task(client, queue, "http://127.0.0.1:9/x", task_id=task_id)


def test_request_validation(client: tasks_v2.CloudTasksClient) -> None:
    queue = _queue(client)
    other = _queue(client)
    url = "http://127.0.0.1:9/x"
    with pytest.raises(exceptions.InvalidArgument):  # belongs to another queue
        client.create_task(
            parent=queue,
            task=tasks_v2.Task(
                name=f"{other}/tasks/t1", http_request=tasks_v2.HttpRequest(url=url)
            ),
        )
    with pytest.raises(exceptions.InvalidArgument):
        _task(client, queue, url, delay_s=31 * 24 * 3600)
    _task(client, queue, url, delay_s=29 * 24 * 3600)
    for seconds in (10, 31 * 60):
        with pytest.raises(exceptions.InvalidArgument):
            client.create_task(
                parent=queue,
                task=tasks_v2.Task(
                    http_request=tasks_v2.HttpRequest(url=url),
                    dispatch_deadline=dt.timedelta(seconds=seconds),
                ),
            )
    with pytest.raises(exceptions.InvalidArgument):
        _task(client, queue, url, http_method=tasks_v2.HttpMethod.GET, body=b"no")
    with pytest.raises(exceptions.InvalidArgument):
        _task(client, queue, "ftp://127.0.0.1/x")
    with pytest.raises(exceptions.NotFound):
        _task(client, f"{LOCATION}/queues/{_unique('missing')}", url)
    with pytest.raises(exceptions.NotFound):
        client.get_task(name=f"{queue}/tasks/nope")


# ----------------------------------------------------------------------------- control + CLI


def test_control_endpoints_list_dispatches_and_reset(
    client: tasks_v2.CloudTasksClient, target: Target, emulator: TasksEmulator
) -> None:
    queue = _queue(client)
    path = f"/{_unique('control')}"
    task = _task(client, queue, target.url(path), task_id="ctl")
    target.wait(path, 1)
    _wait_gone(client, task.name)
    with urllib.request.urlopen(f"{emulator.control_url}/_emulator/dispatches", timeout=10) as r:
        log = json.load(r)
    (entry,) = [d for d in log if d["task"] == task.name]
    assert entry["status"] == 200
    assert entry["url"] == target.url(path)
    assert entry["attempt"] == 1
    started = dt.datetime.fromisoformat(entry["started_at"])
    assert started.tzinfo is not None
    assert dt.datetime.fromisoformat(entry["finished_at"]) >= started

    pending = _task(client, queue, target.url(path), delay_s=3600)
    reset = urllib.request.Request(f"{emulator.control_url}/_emulator/reset", method="POST")
    with urllib.request.urlopen(reset, timeout=10) as r:
        assert r.status == 200
    assert emulator.dispatches() == []
    with pytest.raises(exceptions.NotFound):
        client.get_task(name=pending.name)
    client.get_queue(name=queue)
    _task(client, queue, target.url(path), task_id="ctl", delay_s=3600)  # dedup memory gone


def _drain(emulator: TasksEmulator, timeout_s: float) -> int:
    request = urllib.request.Request(
        f"{emulator.control_url}/_emulator/drain",
        data=json.dumps({"timeout_s": timeout_s}).encode(),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout_s + 10) as r:
        in_flight: int = json.load(r)["in_flight"]
        return in_flight


def test_drain_waits_for_the_dispatch_in_flight_and_forgets_nothing(
    client: tasks_v2.CloudTasksClient, target: Target, emulator: TasksEmulator
) -> None:
    # The emulator is shared by the module: what earlier tests sent answers first, so that the
    # dispatches in flight below are this test's alone (a slower machine once counted two).
    assert _drain(emulator, WAIT_S) == 0
    queue = _queue(client)
    slow, later = f"/{_unique('slow')}", f"/{_unique('later')}"
    running = _task(client, queue, target.url(slow, sleep=2, times=1))
    (hit,) = target.wait(slow, 1)
    client.pause_queue(name=queue)
    waiting = _task(client, queue, target.url(later))
    assert _drain(emulator, 0) == 1  # still answering
    assert _drain(emulator, WAIT_S) == 0
    assert hit.done_at is not None  # the answer came before the drain returned
    _wait_gone(client, running.name)
    assert client.get_task(name=waiting.name).name == waiting.name  # paused, kept, not sent
    assert target.of(later) == []
    bad = urllib.request.Request(
        f"{emulator.control_url}/_emulator/drain", data=b'{"timeout_s": -1}', method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(bad, timeout=10)
    assert refused.value.code == 400
    client.resume_queue(name=queue)
    target.wait(later, 1)


def test_cli_prints_ready_line_and_exits_cleanly_on_sigterm(target: Target) -> None:
    queue = f"{LOCATION}/queues/{_unique('cli')}"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "local.tasks_emulator", "--port", "0", "--http-port", "0"),
            *("--queue", queue, "--run-immediately"),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "NO_GCE_CHECK": "True"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.fullmatch(
            r"tasks-emulator ready grpc=(127\.0\.0\.1:\d+) http=(127\.0\.0\.1:\d+)\n", line
        )
        assert match, line
        cli_client = _client(match.group(1))
        assert cli_client.get_queue(name=queue).state == tasks_v2.Queue.State.RUNNING
        path = f"/{_unique('cli')}"
        _task(cli_client, queue, target.url(path), delay_s=3600)
        assert len(target.wait(path, 1)) == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)  # nothing of its process group survives
