"""The benchmarks' gRPC call counter (benchmarks/instrumented.py): what it counts at the channels
of the stock Firestore client (against the emulator) and of our Cloud Tasks adapter (against the
Cloud Tasks emulator), how it attributes calls to requests, and the sequential depth."""

from __future__ import annotations

import os

os.environ.setdefault("NO_GCE_CHECK", "True")

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore
from werkzeug.test import Client

from benchmarks.instrumented import (
    FIRESTORE,
    TASKS,
    Record,
    Recorder,
    install,
    middleware,
    sequential_depth,
    summarise_requests,
    unattributed,
)
from functions.adapters.cloud_tasks import CloudTasksQueue
from functions.config import Settings
from functions.ports import CollectTask
from local.firestore_emulator import FirestoreEmulator
from local.tasks_emulator import TasksEmulator
from tests.conftest import TEST_PROJECT


class Lines:
    def __init__(self) -> None:
        self.lines: list[Record] = []
        self._lock = threading.Lock()

    def __call__(self, record: Record) -> None:
        with self._lock:
            self.lines.append(record)

    def calls(self) -> list[Record]:
        return [line for line in self.lines if line["type"] == "call"]


@pytest.fixture
def lines() -> Lines:
    return Lines()


@pytest.fixture
def recorder(lines: Lines) -> Iterator[Recorder]:
    counted = Recorder(lines)
    uninstall = install(counted)
    try:
        yield counted
    finally:
        uninstall()


@pytest.fixture
def client(firestore_db: FirestoreEmulator, recorder: Recorder) -> firestore.Client:
    """A client made after the counter was installed: its transport's channel is counted."""
    return firestore.Client(
        project=TEST_PROJECT,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
    )


def test_one_document_get_is_one_call_and_one_round_trip(
    client: firestore.Client, recorder: Recorder, lines: Lines
) -> None:
    with recorder.request("get"):
        client.collection("bench").document("missing").get()

    calls = lines.calls()
    assert [(c["key"], c["service"], c["kind"]) for c in calls] == [
        ("get", FIRESTORE, "unary_stream")
    ]
    assert calls[0]["method"] == "/google.firestore.v1.Firestore/BatchGetDocuments"
    # A get reads the one response it needs and leaves the stream: the call lasted until then.
    assert calls[0]["start"] < calls[0]["last_read"] == calls[0]["end"]
    summary = summarise_requests(lines.lines)["get"]
    assert (summary.firestore_calls, summary.firestore_sequential) == (1, 1)
    assert (summary.tasks_calls, summary.sequential) == (0, 1)
    assert summary.methods == {"firestore BatchGetDocuments": 1}


def test_a_create_then_a_get_are_two_sequential_round_trips(
    client: firestore.Client, recorder: Recorder, lines: Lines
) -> None:
    document = client.collection("bench").document("one")
    with recorder.request("create-get"):
        document.create({"n": 1})
        document.get()

    summary = summarise_requests(lines.lines)["create-get"]
    assert summary.methods == {"firestore Commit": 1, "firestore BatchGetDocuments": 1}
    assert (summary.firestore_calls, summary.firestore_sequential) == (2, 2)


def test_a_failed_call_is_still_a_round_trip(
    client: firestore.Client, recorder: Recorder, lines: Lines
) -> None:
    document = client.collection("bench").document("twice")
    document.create({"n": 1})
    with recorder.request("again"), pytest.raises(Exception, match="exists"):
        document.create({"n": 2})

    summary = summarise_requests(lines.lines)["again"]
    assert (summary.firestore_calls, summary.firestore_sequential) == (1, 1)


def test_two_streams_open_at_once_count_as_one_sequential_round_trip(
    client: firestore.Client, recorder: Recorder, lines: Lines
) -> None:
    collection = client.collection("bench")
    for name in ("a", "b"):
        collection.document(name).create({"name": name})
    with recorder.request("overlap"):
        first = collection.stream()
        next(first)  # the first query is under way, not finished
        second = collection.stream()
        rest = list(second) + list(first)

    assert len(rest) == 3
    summary = summarise_requests(lines.lines)["overlap"]
    assert summary.methods == {"firestore RunQuery": 2}
    assert (summary.firestore_calls, summary.firestore_sequential) == (2, 1)


def test_calls_on_a_thread_of_the_request_go_to_the_only_request_in_flight(
    client: firestore.Client, recorder: Recorder, lines: Lines
) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        client.collection("bench").document("x").get()
        worker = threading.Thread(target=client.collection("bench").document("y").get)
        worker.start()
        worker.join()
        start_response("201 Created", [("Content-Type", "text/plain")])
        return [b"made"]

    web = Client(middleware(recorder, app))
    answer = web.get("/", headers={"X-Bench-Request": "web-1"})
    plain = web.get("/")  # no header: served, nothing attributed

    assert (answer.status_code, answer.data, plain.status_code) == (201, b"made", 201)
    summary = summarise_requests(lines.lines)
    assert list(summary) == ["web-1"]
    assert summary["web-1"].status == "201 Created"
    assert summary["web-1"].firestore_calls == 2
    assert summary["web-1"].latency_ms is not None
    assert unattributed(lines.lines) == 2  # the plain request's two gets


def test_the_cloud_tasks_adapter_channel_is_counted(recorder: Recorder, lines: Lines) -> None:
    queue_path = "projects/bench/locations/local/queues/counted"
    with TasksEmulator() as tasks:
        tasks.create_queue(queue_path)
        settings = Settings.from_env(
            {
                "GOOGLE_CLOUD_PROJECT": "bench",
                "TASKS_LOCATION": "local",
                "TASKS_QUEUE": "counted",
                "COLLECT_URL": "http://127.0.0.1:9/collect",
                "TASKS_SERVICE_ACCOUNT": "tasks@bench.iam.gserviceaccount.com",
                "WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "REPORTS_API_ENDPOINT": "http://127.0.0.1:9",
                "CLOUD_TASKS_EMULATOR_HOST": tasks.address,
            }
        )
        queue = CloudTasksQueue.from_settings(settings)
        with recorder.request("enqueue"):
            queue.enqueue(
                CollectTask(meeting_id="m-1", attempt=1),
                task_id="t-counted",
                at=datetime.now(UTC) + timedelta(hours=1),
            )

    summary = summarise_requests(lines.lines)["enqueue"]
    assert summary.methods == {"cloudtasks CreateTask": 1}
    assert (summary.tasks_calls, summary.tasks_sequential, summary.firestore_calls) == (1, 1, 0)
    assert lines.calls()[0]["service"] == TASKS


def test_sequential_depth_counts_overlapping_calls_once() -> None:
    assert sequential_depth([]) == 0
    assert sequential_depth([(0.0, 1.0)]) == 1
    assert sequential_depth([(0.0, 1.0), (1.0, 2.0), (2.5, 3.0)]) == 3  # a chain
    assert sequential_depth([(0.0, 2.0), (0.5, 1.5), (1.0, 3.0)]) == 1  # all at once
    # Staggered: the first and the last do not overlap, so at least two trips followed each other.
    assert sequential_depth([(0.0, 2.0), (1.0, 3.0), (2.5, 4.0)]) == 2
    # Two parallel pairs, one after the other.
    assert sequential_depth([(0.0, 1.0), (0.1, 0.9), (1.2, 2.0), (1.3, 2.2)]) == 2
