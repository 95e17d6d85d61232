"""CloudTasksQueue, built from Settings as production builds it, against the Cloud Tasks emulator,
with a real HTTP target on loopback playing the collect function."""

from __future__ import annotations

import os

os.environ.setdefault("NO_GCE_CHECK", "True")

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import google.auth.transport.requests
import pytest
import requests
from google.oauth2 import id_token

from functions.adapters.cloud_tasks import CloudTasksQueue, tasks_client
from functions.config import Settings
from functions.payloads import collect_task_body
from functions.ports import CollectTask
from local.tasks_emulator import TasksEmulator

PROJECT = "attendance-test"
LOCATION = "europe-west1"
QUEUE = "collect"
QUEUE_PATH = f"projects/{PROJECT}/locations/{LOCATION}/queues/{QUEUE}"
SERVICE_ACCOUNT = "tasks-invoker@attendance-test.iam.gserviceaccount.com"
WAIT_S = 20.0  # generous: the machine may be loaded


@dataclass(frozen=True)
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


class Target:
    """The collect endpoint: records every request and answers 200."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.hits: list[Hit] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                del format, args

            def do_POST(self) -> None:
                at = time.time()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with owner.cond:
                    owner.hits.append(Hit(self.path, dict(self.headers.items()), body, at))
                    owner.cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/collect"

    def wait(self, count: int, timeout: float = WAIT_S) -> list[Hit]:
        with self.cond:
            self.cond.wait_for(lambda: len(self.hits) >= count, timeout)
            return list(self.hits)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(scope="module")
def emulator() -> Iterator[TasksEmulator]:
    with TasksEmulator() as running:
        running.create_queue(QUEUE_PATH)
        yield running


@pytest.fixture(scope="module")
def module_target() -> Iterator[Target]:
    target = Target()
    try:
        yield target
    finally:
        target.stop()


@pytest.fixture
def target(module_target: Target, emulator: TasksEmulator) -> Target:
    emulator.reset()
    with module_target.cond:
        module_target.hits.clear()
    return module_target


def settings_for(emulator: TasksEmulator, target: Target) -> Settings:
    return Settings.from_env(
        {
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            "TASKS_LOCATION": LOCATION,
            "TASKS_QUEUE": QUEUE,
            "COLLECT_URL": target.url,
            "TASKS_SERVICE_ACCOUNT": SERVICE_ACCOUNT,
            "WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "REPORTS_API_ENDPOINT": "http://127.0.0.1:9",
            "CLOUD_TASKS_EMULATOR_HOST": emulator.address,
        }
    )


@pytest.fixture
def queue(emulator: TasksEmulator, target: Target) -> CloudTasksQueue:
    return CloudTasksQueue.from_settings(settings_for(emulator, target))


def task_id() -> str:
    return "t-" + uuid.uuid4().hex


def test_tasks_client_talks_to_the_emulator_when_its_host_is_set(
    emulator: TasksEmulator, target: Target
) -> None:
    client = tasks_client(settings_for(emulator, target))
    queue = client.get_queue(name=QUEUE_PATH, timeout=WAIT_S)
    assert queue.name == QUEUE_PATH


def test_enqueue_delivers_a_json_post_with_an_oidc_token_for_the_collect_url(
    emulator: TasksEmulator, target: Target, queue: CloudTasksQueue
) -> None:
    task = CollectTask(meeting_id="x-0123abcd", attempt=3, reason="neighbour")
    name = task_id()

    assert queue.enqueue(task, task_id=name, at=datetime.now(UTC)) is True

    (hit,) = target.wait(1)
    headers = {k.lower(): v for k, v in hit.headers.items()}
    assert hit.path == "/collect"
    assert json.loads(hit.body) == {"meeting_id": "x-0123abcd", "attempt": 3, "reason": "neighbour"}
    assert hit.body == collect_task_body(task)
    assert headers["content-type"] == "application/json"
    assert headers["x-cloudtasks-taskname"] == name
    assert headers["x-cloudtasks-queuename"] == QUEUE
    scheme, _, token = headers["authorization"].partition(" ")
    assert scheme == "Bearer"
    session = requests.Session()
    session.trust_env = False
    claims = id_token.verify_token(
        token,
        google.auth.transport.requests.Request(session=session),
        audience=target.url,
        certs_url=emulator.certs_url,
    )
    assert claims["aud"] == target.url
    assert claims["email"] == SERVICE_ACCOUNT
    assert claims["email_verified"] is True


def test_schedule_time_is_honoured(target: Target, queue: CloudTasksQueue) -> None:
    at = datetime.now(UTC) + timedelta(seconds=2)

    assert queue.enqueue(CollectTask("x-later", 1), task_id=task_id(), at=at) is True

    (hit,) = target.wait(1)
    assert hit.at >= at.timestamp()
    assert json.loads(hit.body)["meeting_id"] == "x-later"


def test_the_same_task_id_twice_is_refused_the_second_time(
    emulator: TasksEmulator, target: Target, queue: CloudTasksQueue
) -> None:
    name = task_id()
    later = datetime.now(UTC) + timedelta(hours=1)
    first = CollectTask("x-dup", 2)

    assert queue.enqueue(first, task_id=name, at=later) is True
    assert queue.enqueue(CollectTask("x-dup", 2, reason="restart"), task_id=name, at=later) is False

    client = tasks_client(settings_for(emulator, target))
    (stored,) = list(client.list_tasks(parent=QUEUE_PATH, timeout=WAIT_S))
    assert stored.name == f"{QUEUE_PATH}/tasks/{name}"
    assert stored.schedule_time.timestamp() == pytest.approx(later.timestamp(), abs=1e-3)


def test_a_task_id_that_already_ran_is_refused(target: Target, queue: CloudTasksQueue) -> None:
    name = task_id()
    assert queue.enqueue(CollectTask("x-ran", 1), task_id=name, at=datetime.now(UTC)) is True
    target.wait(1)

    assert queue.enqueue(CollectTask("x-ran", 1), task_id=name, at=datetime.now(UTC)) is False
