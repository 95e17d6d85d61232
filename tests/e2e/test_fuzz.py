"""1,000 requests generated from openapi.yaml against the local stack (``make fuzz`` sends 10,000):
no answer is a 5xx, every answer is one the description documents, no unauthenticated request
changes a stored document or queues a task, every authenticated push to ``meet_events`` is
acknowledged (200 or 204), and Calendar notifications are accepted for the stack's own channel
only. See ``tests/fuzz/harness.py``.

The seed is fixed, so the same requests (up to the ids and times the stack hands out) are sent on
every run.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from local.client import StackClient
from local.stack import Stack
from tests.fuzz.harness import Queue, Summary, run
from tests.fuzz.snapshot import emulator_client, settled

# Generous: a correctness check, not a latency one, on two shared cores (a slow stretch is
# reported by the progress lines, and an answer that never comes fails as "no answer").
pytestmark = pytest.mark.timeout(900)

REQUESTS = 1000
SEED = 0


@pytest.fixture
def fuzzed(stack: Stack, client: StackClient) -> Iterator[Summary]:
    try:
        yield run(stack.env, requests_count=REQUESTS, seed=SEED, progress=print)
    finally:
        # Chains the run started would keep polling into the next test: drop them, let what is in
        # flight land, then empty the store.
        queue = Queue(stack.env)
        queue.pause()
        try:
            client.reset()
            settled(emulator_client(stack.env), quiet_s=1.0)
            assert stack.firestore is not None
            stack.firestore.clear()
        finally:
            queue.resume()


def test_generated_requests_answer_as_documented_and_unauthenticated_ones_write_nothing(
    fuzzed: Summary,
) -> None:
    print(fuzzed.report())
    assert len(fuzzed.outcomes) == REQUESTS
    assert not fuzzed.server_errors, "\n".join(fuzzed.reproducers)
    assert not fuzzed.no_answer
    assert not fuzzed.unauthenticated_writes, fuzzed.unauthenticated_writes[:20]
    assert not fuzzed.problems, sorted(set(fuzzed.problems))[:20]
    # Both batches reached the handlers, not only the checks in front of them.
    assert {o.status for o in fuzzed.outcomes if o.draft.authenticated} >= {200, 202, 400}
    assert {o.status for o in fuzzed.outcomes if not o.draft.authenticated} >= {401, 403}
    # meet_events too: pushes handled, acknowledged as unusable, and refused without a token.
    assert set(fuzzed.pushes) >= {"204", "unreadable", "unknown subscription", "ignored"}
    refused = {
        o.status
        for o in fuzzed.outcomes
        if o.draft.function == "meet_events" and o.draft.operation and not o.draft.authenticated
    }
    assert refused >= {401, 403}
    # Calendar notifications: the stack's channel accepted (its first message and changes),
    # every forgery refused; calendar_sync tasks reached backfill's handler.
    notified = set(fuzzed.notifications)
    assert {"authenticated sync", "authenticated sync_enqueued", "unauthenticated 401"} <= notified
    syncs = set(fuzzed.calendar_syncs)
    assert 400 in syncs, syncs
    assert syncs & {200, 409}, syncs  # synced (or busy: another sync of the calendar ran)


# Found by `make fuzz` (seed 0): a slice was not cut to the Reports API's 180 days as a run is;
# Reports answered 400, the adapter called that transient, and the task would be retried forever.
OLD_SLICE = (
    b'{"slice": {"since": "2000-01-01T00:00:00Z", "until": "2000-01-01T01:00:00Z",'
    b' "range_since": "2000-01-01T00:00:00Z", "range_until": "2000-01-01T01:00:00Z"}}'
)


def test_a_backfill_slice_older_than_the_reports_retention_does_nothing_and_is_done(
    stack: Stack, client: StackClient
) -> None:
    token = client.mint(
        audience=stack.env["BACKFILL_URL"], email=stack.env["TASKS_SERVICE_ACCOUNT"]
    )
    response = requests.post(
        stack.env["BACKFILL_URL"],
        data=OLD_SLICE,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=60,
    )
    # Nothing Reports still keeps: the slice scans nothing, and answers 2xx so it is not retried.
    assert response.status_code == 200, response.text
    assert client.reports_requests() == []


# Found by `python -m tests.fuzz --requests 2000 --seed 2` once Calendar notifications and
# calendar_sync tasks were generated (each answered 5xx before its fix).


@pytest.mark.parametrize("channel_id", [".", ".."])
def test_a_notification_naming_a_channel_id_the_store_cannot_hold_is_refused(
    stack: Stack, client: StackClient, channel_id: str
) -> None:
    # Public and unauthenticated: one header is enough.
    response = requests.post(
        stack.env["CALENDAR_NOTIFICATIONS_URL"],
        headers={"X-Goog-Channel-ID": channel_id},
        timeout=60,
    )
    assert response.status_code == 401, response.text


def calendar_sync(stack: Stack, client: StackClient, calendar_id: str) -> requests.Response:
    token = client.mint(
        audience=stack.env["BACKFILL_URL"], email=stack.env["TASKS_SERVICE_ACCOUNT"]
    )
    return requests.post(
        stack.env["BACKFILL_URL"],
        json={"calendar_sync": {"calendar_id": calendar_id}},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )


def test_a_calendar_sync_of_an_id_that_is_no_address_is_refused_and_leaves_no_lease(
    stack: Stack, client: StackClient
) -> None:
    first = calendar_sync(stack, client, "x@\u0100")
    assert first.status_code < 500, first.text
    again = calendar_sync(stack, client, "x@\u0100")
    assert again.status_code == first.status_code, again.text


def test_a_calendar_sync_of_a_calendar_that_is_not_ours_is_no_server_error(
    stack: Stack, client: StackClient
) -> None:
    response = calendar_sync(stack, client, "nobody@school.test")
    assert response.status_code < 500, response.text


def test_concurrent_syncs_of_one_calendar_are_busy_not_server_errors(
    stack: Stack, client: StackClient
) -> None:
    organizer = stack.env["ORGANIZERS"].split(",")[0].strip()
    client.put_calendar_events(organizer, [])  # the organizer's calendar exists, empty
    client.run_cli("subscriptions", "--ensure")  # its channel opened: its syncs are real ones
    with ThreadPoolExecutor(16) as pool:
        for _ in range(3):
            answers = list(pool.map(lambda _: calendar_sync(stack, client, organizer), range(16)))
            assert {a.status_code for a in answers} <= {200, 409}, [a.text for a in answers]
