"""The whole local stack, started once for the end-to-end tests, emptied before each test.

Timings are seconds instead of minutes so whole chains run within a test: the first poll 1 s after
the end, gaps 2 s, 4 s (the cap), settled after 2 s, the deadline 20 s after ``ended_at``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from functions.adapters.firestore_store import FirestoreStore, firestore_client
from functions.config import Settings
from local.client import StackClient
from local.stack import Stack
from tests.firestore_reads import stored_revisions

E2E_TIMINGS = {
    "FIRST_POLL_DELAY_S": "1",
    "MAX_POLL_INTERVAL_S": "4",
    "SETTLE_S": "2",
    "ABSENT_GRACE_S": "3600",
    "COLLECT_DEADLINE_S": "20",
}


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    running = Stack({**os.environ, **E2E_TIMINGS})
    running.plan()
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def client(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> StackClient:
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", stack.env["FIRESTORE_EMULATOR_HOST"])
    assert stack.firestore is not None
    stack_client = StackClient(stack.env)
    # The queue first: what the previous test left in flight answers before the store is emptied.
    stack_client.reset()
    stack.firestore.clear()
    # As the stack's start did: the (empty) database indexed, so declarations read the lookups.
    FirestoreStore(firestore_client(Settings.from_env(stack.env))).index_lookups()
    return stack_client


@pytest.fixture
def store(stack: Stack, client: StackClient) -> FirestoreStore:
    return FirestoreStore(firestore_client(Settings.from_env(stack.env)))


@pytest.fixture
def revisions_of(stack: Stack, client: StackClient) -> Callable[[str], list[dict[str, Any]]]:
    """A meeting's stored revision records, oldest first."""
    db = firestore_client(Settings.from_env(stack.env))
    return lambda meeting_id: stored_revisions(db, meeting_id)


def wait_for(check: Callable[[], Any], *, timeout_s: float = 60.0, what: str = "condition") -> Any:
    """Poll until ``check`` returns something truthy; generous for a loaded 2-core machine."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what} not reached within {timeout_s} s (last: {last!r})")
