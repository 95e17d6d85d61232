"""Faults end to end on the local stack: what Firestore holds once the dust settles.

Each test drives the real functions (functions-framework), the Firestore emulator, the Cloud Tasks
emulator and the fake Reports API through HTTP, injects a fault (Reports errors mid-pagination,
rate limits, a broken delegation, slow answers, duplicate deliveries, parallel webhooks, poison
events), and then asserts the final stored state — participants, attended seconds, status,
revisions — and that nothing answered 5xx where the input, not a dependency, was at fault.

Timings are the conftest's seconds-scale ones: first poll 1 s after the end, gaps of 2 s and 4 s,
settled after 2 s, the deadline 20 s after ``ended_at``.

Known and tolerated (not bad input, and retried to success): twenty declarations of one meeting at
once make some of them, in about a third of runs, answer ``503 contention`` (the meeting document's
optimistic updates ran out of attempts), and a poll fenced out by four of them in a row answers 503
to the queue. The test retries such a webhook as a Standard Webhooks sender would and checks
nothing else ever answers 5xx.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.adapters.cloud_tasks import tasks_client
from functions.adapters.firestore_queries import MEETINGS
from functions.adapters.firestore_store import FirestoreStore, firestore_client
from functions.chain import chain_task_id
from functions.config import Settings
from functions.model import MeetingRecord
from functions.schedule import Status
from local.client import Answer, StackClient
from local.simulate import Stay, activities_for, call_ended, rfc3339
from local.stack import Stack
from tests.e2e.conftest import wait_for
from tests.firestore_reads import ALL_TIME

pytestmark = pytest.mark.timeout(240)

CODE = "flt-abcd-efg"
CONFERENCE = "conference-faults"
TEACHER = "teacher@school.example"
STUDENT = "student@school.example"
LATE = "late@school.example"
M = timedelta(minutes=1)
#: What ``class_stays`` attends: the teacher 2 min early to the end, the student leaves 5 min early.
TEACHER_S = 47 * 60
STUDENT_S = 40 * 60
#: The declared class length, an expected participant's estimate.
CLASS_S = 45 * 60
FINAL = (Status.COMPLETE, Status.NO_DATA, Status.FAILED, Status.MERGED)

Revisions = Callable[[str], list[dict[str, Any]]]


# ------------------------------------------------------------------------------------------------
# helpers


def ms(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def class_times(ended_ago: timedelta = timedelta(0)) -> tuple[datetime, datetime]:
    end = ms(datetime.now(UTC) - ended_ago)
    return end - 45 * M, end


def payload(start: datetime | None, end: datetime, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "meeting.ended", "meeting_code": CODE, "ended_at": rfc3339(end)}
    if start is not None:
        body["started_at"] = rfc3339(start)
    body.update(extra)
    return body


def class_stays(start: datetime, end: datetime) -> list[Stay]:
    return [Stay(TEACHER, start - 2 * M, end), Stay(STUDENT, start, end - 5 * M)]


def add_class(
    client: StackClient, stays: list[Stay], *, conference_id: str = CONFERENCE, **kwargs: Any
) -> None:
    client.add_activities(
        activities_for(stays, meeting_code=CODE, conference_id=conference_id), **kwargs
    )


def accepted(answer: Answer) -> str:
    assert answer.status in (200, 202), answer
    meeting_id: str = answer.body["meeting_id"]
    return meeting_id


def until(
    store: FirestoreStore,
    meeting_id: str,
    check: Callable[[MeetingRecord], bool],
    *,
    timeout_s: float = 60,
    what: str = "condition",
) -> MeetingRecord:
    def probe() -> MeetingRecord | None:
        meeting = store.get(meeting_id)
        return meeting if meeting is not None and check(meeting) else None

    found: MeetingRecord = wait_for(probe, timeout_s=timeout_s, what=f"{meeting_id}: {what}")
    return found


def until_final(store: FirestoreStore, meeting_id: str, timeout_s: float = 60) -> MeetingRecord:
    return until(store, meeting_id, lambda m: m.status in FINAL, timeout_s=timeout_s, what="final")


def queue_empty(client: StackClient) -> bool:
    settings = Settings.from_env(client.env)
    return not list(tasks_client(settings).list_tasks(parent=settings.queue_path))


def quiet(client: StackClient, *, timeout_s: float = 90) -> None:
    """Wait until no task is queued and no delivery finished for a second (a duplicate delivery
    goes out after its task left the queue)."""
    deadline = time.monotonic() + timeout_s
    seen = -1
    while time.monotonic() < deadline:
        wait_for(lambda: queue_empty(client), timeout_s=timeout_s, what="queue empty")
        count = len(client.dispatches())
        if count == seen:
            return
        seen = count
        time.sleep(1.0)
    raise AssertionError(f"deliveries still going after {timeout_s} s")


def no_server_errors(client: StackClient, answers: Iterable[Answer] = ()) -> None:
    """No answer of ours and no task delivery was a 5xx (409 "busy" is a retry, not an error)."""
    bad = [a for a in answers if a.status >= 500]
    assert bad == [], bad
    failed = [
        (d["task"].rsplit("/", 1)[-1], d["attempt"], d["status"])
        for d in client.dispatches()
        if d["status"] is None or d["status"] >= 500
    ]
    assert failed == [], failed


def documents(store: FirestoreStore, meeting_id: str) -> dict[str, dict[str, Any]]:
    return {str(d["participant_key"]): d for d in store.participants(meeting_id)}


def attended(store: FirestoreStore, meeting_id: str) -> dict[str, int]:
    """Attended seconds of each participant with real sessions (estimates and absences left out)."""
    return {
        key: int(d["attended_seconds"])
        for key, d in documents(store, meeting_id).items()
        if not d.get("estimated") and not d.get("absent")
    }


def assert_whole(store: FirestoreStore, meeting: MeetingRecord) -> None:
    """The meeting's totals add up to its participant documents, which all mirror its status."""
    docs = documents(store, meeting.meeting_id)
    real = [d for d in docs.values() if not d.get("estimated") and not d.get("absent")]
    assert meeting.participant_count == len(real)
    assert meeting.total_attended_seconds == sum(int(d["attended_seconds"]) for d in real)
    assert {d["meeting_status"] for d in docs.values()} <= {str(meeting.status)}
    assert all(int(d["revision"]) <= meeting.revision for d in docs.values())
    assert not meeting.multi_commit
    assert meeting.lease_owner is None


def assert_revision_chain(
    store: FirestoreStore,
    revisions: Sequence[Mapping[str, Any]],
    meeting: MeetingRecord,
    *,
    estimates: Collection[int] = (),
) -> None:
    """Revisions 1…n; each change's ``before`` is the previous ``after`` of that participant (the
    first one is None, or an estimate written at revision 0, which has no record); the last
    ``after`` of each is what its document holds."""
    assert [int(r["revision"]) for r in revisions] == list(range(1, meeting.revision + 1))
    shown: dict[str, int | None] = {}
    for record in revisions:
        for change in record["changes"]:
            key, before = change["participant_key"], change["before"]
            if key in shown:
                assert before == shown[key], (record["revision"], change, revisions)
            else:
                assert before is None or before in estimates, (record["revision"], revisions)
            shown[key] = change["after"]
    docs = documents(store, meeting.meeting_id)
    for key, document in docs.items():
        seconds = int(document["attended_seconds"])
        if key in shown:
            assert shown[key] == seconds, (key, document, revisions)
        else:  # an estimate untouched since revision 0
            assert document["estimated"], (key, document, revisions)
            assert seconds in estimates, (key, document)
    assert all(after is None for key, after in shown.items() if key not in docs), revisions


def dispatch_seconds(dispatch: Mapping[str, Any]) -> float:
    started = datetime.fromisoformat(str(dispatch["started_at"]))
    finished = datetime.fromisoformat(str(dispatch["finished_at"]))
    return (finished - started).total_seconds()


def in_background(call: Callable[[], Answer]) -> tuple[threading.Thread, list[Answer]]:
    answers: list[Answer] = []
    thread = threading.Thread(target=lambda: answers.append(call()), daemon=True)
    thread.start()
    return thread, answers


def polling_now(store: FirestoreStore, meeting_id: str) -> MeetingRecord:
    """The meeting while some delivery holds its lease (inside a slow Reports request)."""
    return until(
        store, meeting_id, lambda m: m.lease_owner is not None, timeout_s=30, what="lease taken"
    )


# ------------------------------------------------------------------------------------------------
# 1. a Reports failure mid-pagination


def paged_class(client: StackClient, start: datetime, end: datetime) -> dict[str, int]:
    """Five participants served two a page: three pages. Returns their attended seconds."""
    client.reports_config(max_page_size=2)
    extra = [Stay(f"pupil{i}@school.example", start + i * M, end) for i in range(3)]
    add_class(client, class_stays(start, end) + extra)
    return {TEACHER: TEACHER_S, STUDENT: STUDENT_S} | {
        stay.who: round((stay.leave - stay.join).total_seconds()) for stay in extra
    }


def test_a_500_after_the_first_page_is_retried_within_the_poll(
    client: StackClient, store: FirestoreStore, revisions_of: Revisions
) -> None:
    start, end = class_times()
    expected = paged_class(client, start, end)
    client.add_fault("server_error", after_pages=1)
    answer = client.meeting_ended(payload(start, end, expected_participants=[TEACHER, STUDENT]))
    meeting_id = accepted(answer)
    meeting = until_final(store, meeting_id)

    assert meeting.status is Status.COMPLETE
    assert meeting.last_error is None
    assert attended(store, meeting_id) == expected
    assert_whole(store, meeting)
    pages = [(r["status"], "pageToken" in r["query"]) for r in client.reports_requests()]
    assert pages[:4] == [(200, False), (500, True), (200, True), (200, True)]
    # One revision holding all five: the page that failed was fetched again, nothing was lost.
    (revision,) = revisions_of(meeting_id)
    assert len(revision["changes"]) == 5
    assert_revision_chain(store, revisions_of(meeting_id), meeting, estimates=(CLASS_S,))
    no_server_errors(client, [answer])


def test_a_500_after_the_first_page_that_outlasts_the_poll_stores_nothing_of_it(
    client: StackClient, store: FirestoreStore, revisions_of: Revisions
) -> None:
    start, end = class_times()
    expected = paged_class(client, start, end)
    # Retry-After beyond the adapter's two minutes of patience: the poll gives up at once.
    client.add_fault("server_error", after_pages=1, retry_after_s=600)
    answer = client.meeting_ended(payload(start, end, expected_participants=[TEACHER, STUDENT]))
    meeting_id = accepted(answer)

    failed = until(store, meeting_id, lambda m: m.last_error is not None, what="last_error")
    assert failed.last_error is not None
    assert failed.last_error.code == "transient"
    # The first page was read, and none of it stored: the meeting is as the declaration left it.
    assert (failed.revision, failed.participant_count, failed.status) == (0, 0, Status.SCHEDULED)
    assert failed.attendance_source == "estimated"

    meeting = until_final(store, meeting_id)
    assert meeting.status is Status.COMPLETE
    assert meeting.last_error is None
    assert attended(store, meeting_id) == expected
    assert_whole(store, meeting)
    pages = [(r["status"], "pageToken" in r["query"]) for r in client.reports_requests()]
    assert pages[:3] == [(200, False), (500, True), (200, False)]  # the next poll starts over
    (revision,) = revisions_of(meeting_id)
    assert len(revision["changes"]) == 5
    assert_revision_chain(store, revisions_of(meeting_id), meeting, estimates=(CLASS_S,))
    no_server_errors(client, [answer])


# ------------------------------------------------------------------------------------------------
# 2. rate limits with Retry-After


def test_429_and_503_with_retry_after_are_waited_out_within_the_poll(
    client: StackClient, store: FirestoreStore, revisions_of: Revisions
) -> None:
    start, end = class_times()
    add_class(client, class_stays(start, end))
    client.add_fault("rate_limit_429", retry_after_s=1)
    client.add_fault("quota", retry_after_s=2)
    answer = client.meeting_ended(payload(start, end))
    meeting_id = accepted(answer)
    meeting = until_final(store, meeting_id)

    assert meeting.status is Status.COMPLETE
    assert meeting.last_error is None
    assert attended(store, meeting_id) == {TEACHER: TEACHER_S, STUDENT: STUDENT_S}
    assert_whole(store, meeting)
    assert_revision_chain(store, revisions_of(meeting_id), meeting)
    statuses = [r["status"] for r in client.reports_requests()]
    assert statuses[:3] == [429, 503, 200]
    assert statuses.count(200) == meeting.attempts  # no poll failed
    # The first poll waited what each Retry-After asked (1 s, then 2 s) before it asked again.
    first = min(client.dispatches(), key=lambda d: str(d["started_at"]))
    assert first["status"] == 200
    assert dispatch_seconds(first) >= 2.9
    no_server_errors(client, [answer])


def test_a_retry_after_beyond_the_polls_patience_leaves_it_to_the_next_link(
    client: StackClient, store: FirestoreStore, revisions_of: Revisions
) -> None:
    start, end = class_times()
    add_class(client, class_stays(start, end))
    client.add_fault("rate_limit_429", retry_after_s=900)
    answer = client.meeting_ended(payload(start, end))
    meeting_id = accepted(answer)

    limited = until(store, meeting_id, lambda m: m.last_error is not None, what="last_error")
    assert limited.last_error is not None
    assert limited.last_error.code == "quota"
    assert limited.status is Status.SCHEDULED
    assert limited.next_poll_at is not None  # the schedule goes on

    meeting = until_final(store, meeting_id)
    assert meeting.status is Status.COMPLETE
    assert meeting.last_error is None
    assert attended(store, meeting_id) == {TEACHER: TEACHER_S, STUDENT: STUDENT_S}
    assert_whole(store, meeting)
    assert_revision_chain(store, revisions_of(meeting_id), meeting)
    assert [r["status"] for r in client.reports_requests()][:2] == [429, 200]
    no_server_errors(client, [answer])


# ------------------------------------------------------------------------------------------------
# 3. a broken delegation until the deadline, then fixed


def test_a_delegation_error_until_the_deadline_fails_then_a_manual_sync_completes(
    client: StackClient, store: FirestoreStore, revisions_of: Revisions
) -> None:
    # Ended 14 s ago: the 20 s deadline comes after three polls, in about 6 s.
    start, end = class_times(ended_ago=timedelta(seconds=14))
    add_class(client, class_stays(start, end))
    client.add_fault("not_admin", count=1000)
    answer = client.meeting_ended(payload(start, end, expected_participants=[TEACHER, STUDENT]))
    meeting_id = accepted(answer)

    failed = until_final(store, meeting_id)
    assert failed.status is Status.FAILED
    assert failed.last_error is not None
    assert failed.last_error.code == "permission"
    assert "Workspace admin" in failed.last_error.message
    assert failed.next_poll_at is None
    assert failed.attempts >= 2
    assert (failed.revision, failed.participant_count, failed.total_attended_seconds) == (0, 0, 0)
    estimates = documents(store, meeting_id)
    assert set(estimates) == {TEACHER, STUDENT}
    assert {d["estimated"] for d in estimates.values()} == {True}
    assert {d["meeting_status"] for d in estimates.values()} == {"failed"}
    assert {r["status"] for r in client.reports_requests()} == {401}
    no_server_errors(client, [answer])

    client.clear_faults()  # the admin fixed the delegation
    synced = client.sync(meeting_id)
    assert synced.status == 200, synced
    assert synced.body["status"] == "success"
    assert synced.body["message"] == "Synced 2 participants"
    meeting = store.get(meeting_id)
    assert meeting is not None
    assert meeting.status is Status.COMPLETE
    assert meeting.last_error is None
    assert meeting.revision == 1
    assert attended(store, meeting_id) == {TEACHER: TEACHER_S, STUDENT: STUDENT_S}
    assert {d["estimated"] for d in documents(store, meeting_id).values()} == {False}
    assert_whole(store, meeting)
    revisions = revisions_of(meeting_id)
    assert [r["reason"] for r in revisions] == ["manual"]
    assert_revision_chain(store, revisions, meeting, estimates=(CLASS_S,))
    no_server_errors(client, [synced])


# ------------------------------------------------------------------------------------------------
# 4. every task delivered twice


#: Fields that legitimately differ between two runs of one meeting: when things happened (runs
#: are compared relative to their own ``ended_at``), the lease, hashes of times, and event ids
#: (they carry the Reports ``uniqueQualifier``, built from the absolute times).
VOLATILE = frozenset(
    {
        "created_at",
        "updated_at",
        "last_polled_at",
        "completed_at",
        "fingerprint_seen_since",
        "lease_owner",
        "lease_until",
        "fingerprint",
        "sessions_fingerprint",
        "participant_fingerprints",
        "neighbours_told_of",
        "staged_commit",
        "staging_progress",
        "event_id",
        "at",
    }
)


def normalised(value: Any, origin: datetime) -> Any:
    if isinstance(value, datetime):
        return round((value - origin).total_seconds(), 3)
    if isinstance(value, Mapping):
        return {k: normalised(v, origin) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list | tuple):
        return [normalised(v, origin) for v in value]
    return value


def differences(one: Any, other: Any, path: str = "") -> list[str]:
    """Where two normalised states differ, as ``path: one != other`` lines."""
    if isinstance(one, dict) and isinstance(other, dict):
        return [
            line
            for key in sorted(set(one) | set(other), key=str)
            for line in differences(one.get(key), other.get(key), f"{path}.{key}")
        ]
    if isinstance(one, list) and isinstance(other, list) and len(one) == len(other):
        return [
            line
            for index, (a, b) in enumerate(zip(one, other, strict=True))
            for line in differences(a, b, f"{path}[{index}]")
        ]
    return [] if one == other else [f"{path}: {one!r} != {other!r}"]


def late_class_snapshot(
    stack: Stack, client: StackClient, store: FirestoreStore, revisions_of: Revisions
) -> dict[str, Any]:
    """One run of a class whose late student shows up in the third poll: four links, two
    revisions. Returns the stored state relative to its ``ended_at``."""
    start, end = class_times()
    add_class(client, class_stays(start, end))
    late = call_ended(
        meeting_code=CODE,
        conference_id=CONFERENCE,
        leave=end,
        duration_s=30 * 60,
        identifier=LATE,
        endpoint_id="spaces/late/devices/1",
    )
    client.add_activities([late], visible_after_s=5)
    answer = client.meeting_ended(
        payload(start, end, external_id="twice", expected_participants=[TEACHER, LATE])
    )
    meeting_id = accepted(answer)
    meeting = until(
        store, meeting_id, lambda m: m.status is Status.COMPLETE, timeout_s=90, what="complete"
    )
    quiet(client)
    meeting = store.get(meeting_id) or meeting
    assert_whole(store, meeting)
    assert_revision_chain(store, revisions_of(meeting_id), meeting, estimates=(CLASS_S,))
    no_server_errors(client, [answer])
    document = firestore_client(Settings.from_env(stack.env)).collection(MEETINGS)
    raw = document.document(meeting_id).get().to_dict() or {}
    return {
        "meeting": normalised(raw, end),
        "participants": normalised(
            sorted(store.participants(meeting_id), key=lambda d: str(d["participant_key"])), end
        ),
        "revisions": normalised(revisions_of(meeting_id), end),
    }


def test_every_task_delivered_twice_ends_as_one_clean_run(
    stack: Stack, client: StackClient, store: FirestoreStore, revisions_of: Revisions
) -> None:
    clean = late_class_snapshot(stack, client, store, revisions_of)
    assert clean["meeting"]["revision"] == 2
    assert clean["meeting"]["status"] == "complete"

    assert stack.firestore is not None
    stack.firestore.clear()
    client.reset()
    client.tasks_config(deliver_twice=True)
    twice = late_class_snapshot(stack, client, store, revisions_of)

    assert differences(twice, clean) == []
    dispatched = client.dispatches()
    names = {d["task"].rsplit("/", 1)[-1] for d in dispatched}
    meeting_id = twice["meeting"]["meeting_id"]
    assert len(dispatched) == 2 * len(names)  # each link delivered twice
    chain = {chain_task_id(meeting_id, seq) for seq in range(1, twice["meeting"]["chain_seq"])}
    assert names == chain  # one link per poll, never a fork
    assert len(names) == twice["meeting"]["attempts"]


# ------------------------------------------------------------------------------------------------
# 5. twenty webhooks at once


def test_twenty_parallel_webhooks_make_one_meeting_with_one_chain(
    client: StackClient, store: FirestoreStore, revisions_of: Revisions
) -> None:
    start, end = class_times()
    add_class(client, class_stays(start, end))
    base = payload(start, end, external_id="parallel-1")
    earlier = rfc3339(start - 5 * M)
    bodies: list[tuple[dict[str, Any], str | None]] = (
        [(base, None)] * 5
        + [(base, "msg_replayed")] * 3  # the same delivery replayed
        + [({**base, "expected_participants": [TEACHER]}, None)] * 4
        + [({**base, "expected_participants": [TEACHER, STUDENT]}, None)] * 4
        + [({**base, "organizer_email": TEACHER}, None)] * 2
        + [({**base, "started_at": earlier}, None)] * 2  # a resend with a new start
    )
    assert len(bodies) == 20
    barrier = threading.Barrier(len(bodies))
    answers: list[Answer] = []  # the last answer of each sender
    refused: list[Answer] = []  # 5xx answers a sender retried
    lock = threading.Lock()

    def send(body: dict[str, Any], webhook_id: str | None) -> None:
        sender = StackClient(client.env)  # a session per thread
        delivery = webhook_id or f"msg_{uuid.uuid4().hex}"
        barrier.wait()
        # A Standard Webhooks sender retries a 5xx with the same webhook-id.
        for attempt in range(5):
            answer = sender.meeting_ended(body, webhook_id=delivery)
            if answer.status < 500:
                break
            with lock:
                refused.append(answer)
            time.sleep(0.3 * (attempt + 1))
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=send, args=pair) for pair in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(answers) == 20
    assert [a for a in answers if a.status >= 500] == []
    # Known (see the module docstring): under this storm a declaration may answer 503
    # "contention" (retry later), never anything else; its retry then succeeds.
    assert {(a.status, a.body["error"]["code"]) for a in refused} <= {(503, "contention")}
    statuses = sorted(a.status for a in answers)
    assert statuses in ([200] * 19 + [202], [200] * 20), answers
    assert len({a.body["meeting_id"] for a in answers}) == 1
    meeting_id = answers[0].body["meeting_id"]

    meeting = until(
        store, meeting_id, lambda m: m.status is Status.COMPLETE, timeout_s=90, what="complete"
    )
    quiet(client)
    meeting = store.get(meeting_id) or meeting
    assert [m.meeting_id for m in store.with_code(CODE, ended=ALL_TIME)] == [meeting_id]
    assert meeting.status is Status.COMPLETE
    assert rfc3339(meeting.started_at or end) in (rfc3339(start), earlier)
    assert set(meeting.expected_participants) <= {TEACHER, STUDENT}
    assert meeting.missing_participants == ()
    assert attended(store, meeting_id) == {TEACHER: TEACHER_S, STUDENT: STUDENT_S}
    assert set(documents(store, meeting_id)) == {TEACHER, STUDENT}  # no estimate, no absence
    assert_whole(store, meeting)
    # Estimates follow the declared length: 45 min, or 50 with the earlier start.
    estimates = (CLASS_S, CLASS_S + 5 * 60)
    assert_revision_chain(store, revisions_of(meeting_id), meeting, estimates=estimates)
    # One chain: every task was a link of this meeting's chain, each link polled at most once.
    dispatched = client.dispatches()
    links = {chain_task_id(meeting_id, seq) for seq in range(1, meeting.chain_seq)}
    assert {d["task"].rsplit("/", 1)[-1] for d in dispatched} <= links
    succeeded = [d["task"] for d in dispatched if d["status"] == 200]
    assert len(succeeded) == len(set(succeeded))
    assert meeting.attempts <= len(set(succeeded))
    # A poll fenced out by four declarations in a row answers 503 (documented; the queue
    # retries it): the only 5xx a delivery may answer here, and its retry succeeds.
    failed = [d for d in dispatched if d["status"] is None or d["status"] >= 500]
    assert {d["status"] for d in failed} <= {503}, failed
    assert {d["task"] for d in failed} <= set(succeeded), failed


# ------------------------------------------------------------------------------------------------
# 6. a slow poll and a sync


def test_a_sync_during_a_slow_poll_waits_its_turn_and_nothing_is_counted_twice(
    client: StackClient, store: FirestoreStore, revisions_of: Revisions
) -> None:
    start, end = class_times()
    add_class(client, class_stays(start, end))
    client.add_fault("slow", delay_s=4)
    answer = client.meeting_ended(payload(start, end, expected_participants=[TEACHER, STUDENT]))
    meeting_id = accepted(answer)

    # The first link is inside its slow Reports request: a sync now would overtake it.
    polling_now(store, meeting_id)
    during = client.sync(meeting_id)
    assert during.status == 409, during
    assert during.body["error"]["code"] == "busy"
    meeting = until(store, meeting_id, lambda m: m.status is Status.COMPLETE, what="complete")
    assert meeting.revision == 1

    # Late data, fetched by a slow sync; a second sync meanwhile is turned away too.
    late = call_ended(
        meeting_code=CODE,
        conference_id=CONFERENCE,
        leave=end,
        duration_s=20 * 60,
        identifier=LATE,
        endpoint_id="spaces/late/devices/2",
    )
    client.add_activities([late])
    client.add_fault("slow", delay_s=3)
    thread, slow = in_background(lambda: StackClient(client.env).sync(meeting_id))
    polling_now(store, meeting_id)
    second = client.sync(meeting_id)
    thread.join(timeout=60)
    assert second.status == 409, second
    (synced,) = slow
    assert synced.status == 200, synced
    assert (synced.body["created"], synced.body["updated"]) == (1, 0)
    again = client.sync(meeting_id)
    assert again.status == 200, again
    assert (again.body["created"], again.body["updated"]) == (0, 0)

    quiet(client)
    meeting = store.get(meeting_id) or meeting
    assert meeting.status is Status.COMPLETE
    assert meeting.revision == 2
    assert attended(store, meeting_id) == {TEACHER: TEACHER_S, STUDENT: STUDENT_S, LATE: 20 * 60}
    assert meeting.total_attended_seconds == TEACHER_S + STUDENT_S + 20 * 60
    assert_whole(store, meeting)
    revisions = revisions_of(meeting_id)
    assert [r["reason"] for r in revisions] == ["poll", "manual"]
    assert_revision_chain(store, revisions, meeting, estimates=(CLASS_S,))
    no_server_errors(client, [answer, during, synced, second, again])


# ------------------------------------------------------------------------------------------------
# 7. a declaration that absorbs a backfill meeting during its slow poll


def run_backfill(client: StackClient) -> None:
    """A daily run as the scheduler starts it; waits until it and every task it caused ran."""
    name = client.trigger_backfill({})
    wait_for(
        lambda: any(d["task"] == name and d["status"] == 200 for d in client.dispatches()),
        timeout_s=120,
        what="backfill dispatched",
    )
    quiet(client)


#: A three-hour conference (from ``t0``) nobody announced: attended seconds of each.
FOUND_SECONDS = {
    "tutor@school.example": 180 * 60,
    "early@school.example": 60 * 60,
    "later@school.example": 60 * 60,
}


def found_conference(client: StackClient, store: FirestoreStore) -> tuple[datetime, MeetingRecord]:
    """The conference, ended two hours ago, and the backfill meeting the daily run made of it."""
    t0 = ms(datetime.now(UTC) - timedelta(hours=5)).replace(second=0, microsecond=0)
    stays = [
        Stay("tutor@school.example", t0, t0 + 180 * M),
        Stay("early@school.example", t0, t0 + 60 * M),
        Stay("later@school.example", t0 + 120 * M, t0 + 180 * M),
    ]
    add_class(client, stays, conference_id="conference-found")
    run_backfill(client)
    (found,) = store.with_code(CODE, ended=ALL_TIME)
    assert (found.source, found.status) == ("backfill", Status.COMPLETE)
    assert attended(store, found.meeting_id) == FOUND_SECONDS
    return t0, found


def both_settled(client: StackClient, store: FirestoreStore) -> dict[str, MeetingRecord]:
    def settled() -> dict[str, MeetingRecord] | None:
        meetings = {m.meeting_id: m for m in store.with_code(CODE, ended=ALL_TIME)}
        done = all(m.status in FINAL and m.lease_owner is None for m in meetings.values())
        return meetings if done and len(meetings) == 2 else None

    wait_for(settled, timeout_s=90, what="both meetings final")
    quiet(client)
    return {m.meeting_id: m for m in store.with_code(CODE, ended=ALL_TIME)}


@pytest.mark.parametrize("part", ["whole", "part"])
def test_a_declaration_during_a_slow_poll_of_a_backfill_meeting_bills_once(
    client: StackClient, store: FirestoreStore, revisions_of: Revisions, part: str
) -> None:
    # "whole": a class is then declared over all of the conference; "part": over its last hour
    # only (its window opens 15 min before), so the early pupil stays with the backfill meeting.
    t0, found = found_conference(client, store)

    # The found meeting's poll (an operator's sync) is slow; the declaration arrives meanwhile.
    client.add_fault("slow", delay_s=4)
    thread, slow = in_background(lambda: StackClient(client.env).sync(found.meeting_id))
    polling_now(store, found.meeting_id)
    declared_start = t0 if part == "whole" else t0 + 120 * M
    answer = client.meeting_ended(
        payload(declared_start, t0 + 165 * M, external_id=f"declared-{part}")
    )
    declared_id = accepted(answer)
    thread.join(timeout=60)
    (synced,) = slow
    assert synced.status == 200, synced

    meetings = both_settled(client, store)
    declared, absorbed = meetings[declared_id], meetings[found.meeting_id]
    assert declared.status is Status.COMPLETE
    billed = [m for m in meetings.values() if m.status is not Status.MERGED]
    # Billed once: the live meetings add up to the real session time.
    assert sum(m.total_attended_seconds for m in billed) == sum(FOUND_SECONDS.values())
    if part == "whole":
        assert absorbed.status is Status.MERGED
        assert absorbed.merged_into == declared_id
        assert {d["meeting_status"] for d in store.participants(absorbed.meeting_id)} == {"merged"}
        assert attended(store, declared_id) == FOUND_SECONDS
    else:
        assert absorbed.status is Status.COMPLETE
        assert absorbed.partly_merged_into == (declared_id,)
        early = "early@school.example"
        assert attended(store, declared_id) == {
            k: FOUND_SECONDS[k] for k in FOUND_SECONDS if k != early
        }
        assert attended(store, absorbed.meeting_id) == {early: FOUND_SECONDS[early]}
        assert_whole(store, absorbed)
        assert_revision_chain(store, revisions_of(absorbed.meeting_id), absorbed)
    assert_whole(store, declared)
    assert_revision_chain(store, revisions_of(declared_id), declared)
    no_server_errors(client, [answer, *slow])


def test_a_partly_absorbed_backfill_meeting_shrinks_to_what_it_keeps(
    client: StackClient, store: FirestoreStore
) -> None:
    t0, found = found_conference(client, store)
    answer = client.meeting_ended(payload(t0 + 120 * M, t0 + 165 * M, external_id="shrink"))
    declared_id = accepted(answer)
    absorbed = both_settled(client, store)[found.meeting_id]
    assert absorbed.partly_merged_into == (declared_id,)
    assert attended(store, found.meeting_id) == {"early@school.example": 60 * 60}
    assert (absorbed.sessions_start, absorbed.sessions_end) == (t0, t0 + 60 * M)
    no_server_errors(client, [answer])
    assert (absorbed.started_at, absorbed.ended_at) == (t0, t0 + 60 * M)


# ------------------------------------------------------------------------------------------------
# 8. a reschedule during a poll


def test_a_reschedule_during_a_poll_ends_with_the_new_times_selection(
    client: StackClient, store: FirestoreStore, revisions_of: Revisions
) -> None:
    now = ms(datetime.now(UTC))
    old_start, old_end = now - 180 * M, now - 135 * M
    new_start, new_end = now - 45 * M, now
    add_class(
        client,
        [
            Stay("old-teacher@school.example", old_start, old_end),
            Stay("old-student@school.example", old_start, old_end - 10 * M),
        ],
        conference_id="conference-old",
    )
    add_class(client, class_stays(new_start, new_end), conference_id="conference-new")
    client.add_fault("slow", delay_s=4)
    # Declared at the old times (past their deadline: polled at once, and only once)…
    answer = client.meeting_ended(payload(old_start, old_end, external_id="moved"))
    meeting_id = accepted(answer)
    polling_now(store, meeting_id)
    # …and, while that poll waits for Reports, moved to the new times.
    moved = client.meeting_ended(payload(new_start, new_end, external_id="moved"))
    assert (moved.status, moved.body["meeting_id"]) == (200, meeting_id)

    meeting = until(
        store,
        meeting_id,
        lambda m: m.status in FINAL and m.lease_owner is None,
        timeout_s=90,
        what="final",
    )
    quiet(client)
    meeting = store.get(meeting_id) or meeting
    assert meeting.status is Status.COMPLETE
    assert (meeting.started_at, meeting.ended_at) == (new_start, new_end)
    assert meeting.window_start == new_start - timedelta(seconds=900)
    assert meeting.conference_ids == ("conference-new",)
    assert attended(store, meeting_id) == {TEACHER: TEACHER_S, STUDENT: STUDENT_S}
    assert meeting.total_attended_seconds == TEACHER_S + STUDENT_S
    assert_whole(store, meeting)
    revisions = revisions_of(meeting_id)
    assert_revision_chain(store, revisions, meeting)
    # The poll that read the old times stored nothing: no revision ever named their people.
    named = {c["participant_key"] for r in revisions for c in r["changes"]}
    assert named == {TEACHER, STUDENT}
    no_server_errors(client, [answer, moved])


# ------------------------------------------------------------------------------------------------
# 9. poison events next to good ones


def poison_events(start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Good sessions (one with a lone surrogate in its display name) and unusable events."""

    def event(who: str, duration: object, **kwargs: Any) -> dict[str, Any]:
        item = call_ended(
            meeting_code=CODE,
            conference_id=CONFERENCE,
            leave=end - 10 * M,
            duration_s=600,
            identifier=who,
            endpoint_id=f"spaces/poison/devices/{who}",
            **kwargs,
        )
        for parameter in item["events"][0]["parameters"]:
            if parameter["name"] == "duration_seconds":
                parameter["intValue"] = str(duration)
        return item

    good = activities_for(class_stays(start, end), meeting_code=CODE, conference_id=CONFERENCE)
    surrogate = event("odd@school.example", 600, display_name="Odd \ud800 Name")
    huge = event("huge@school.example", 99_999_999_999)
    int64_max = event("max@school.example", 2**63 - 1)
    negative = event("negative@school.example", -60)
    timeless = event("timeless@school.example", 600)
    listed = timeless["id"].pop("time")
    timeless["list_time"] = listed  # the fake still serves it, in order
    return [*good, surrogate, huge, int64_max, negative, timeless]


def test_poison_events_are_skipped_with_a_warning_and_the_good_ones_stored(
    client: StackClient, store: FirestoreStore, revisions_of: Revisions
) -> None:
    start, end = class_times()
    client.add_activities(poison_events(start, end))
    answer = client.meeting_ended(payload(start, end, expected_participants=[TEACHER]))
    meeting_id = accepted(answer)
    meeting = until_final(store, meeting_id)

    assert meeting.status is Status.COMPLETE
    assert meeting.last_error is None
    assert meeting.last_warning is not None
    assert meeting.last_warning.code == "unusable_events"
    message = meeting.last_warning.message
    skipped = [int(n) for n in re.findall(r"(\d+) events? skipped", message)]
    assert sum(skipped) == 4, message  # huge, int64 max, negative, no id.time
    assert "repaired" in message, message  # the lone surrogate
    assert attended(store, meeting_id) == {
        TEACHER: TEACHER_S,
        STUDENT: STUDENT_S,
        "odd@school.example": 600,
    }
    odd = documents(store, meeting_id)["odd@school.example"]
    assert odd["display_name"] == "Odd \ufffd Name"  # repaired, not dropped
    assert_whole(store, meeting)
    assert_revision_chain(store, revisions_of(meeting_id), meeting, estimates=(CLASS_S,))
    view = client.meeting(meeting_id)
    assert view.status == 200
    assert len(view.body["participants"]) == 3
    synced = client.sync(meeting_id)
    assert synced.status == 200, synced
    assert synced.body["message"] == "Synced 3 participants"
    no_server_errors(client, [answer, view, synced])
