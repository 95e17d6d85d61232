"""Generated requests against the local stack, from ``openapi.yaml``: sent, judged, summed up.

``tests.fuzz.drafts`` draws the requests from schemathesis' strategies; this module applies
their credentials and sends each to the function that serves it (every function has its own URL,
which schemathesis' single base URL cannot express), drawing and sending at once.

Two batches:

1. **Authenticated**: webhooks signed with the stack's ``WEBHOOK_SECRET``, ID tokens from its
   token mint for the api (``operator@local.test``, audience ``API_URL``), collect
   (``TASKS_SERVICE_ACCOUNT``, ``COLLECT_URL``), backfill (``SCHEDULER_SERVICE_ACCOUNT`` or
   the tasks identity, ``BACKFILL_URL``) and meet_events (``PUBSUB_PUSH_SERVICE_ACCOUNT``,
   ``MEET_EVENTS_URL``), and Calendar notifications of the channel a daily run opened on the
   organizer's calendar (its id, resource id and token, which the fake Calendar lists). Every
   answer must be below 500 and one the description documents. A push to meet_events must
   moreover be acknowledged, ``200`` or ``204`` (Pub/Sub redelivers anything else), unless its
   size or media type is refused (413, 415); a push that says how it must end
   (``Draft.outcomes``) must end so.
2. **Unauthenticated**: no credential, a garbled one, a webhook signed with another secret or
   over other bytes or outside the 5-minute window, a token for another audience or another
   identity, a tampered token, Basic auth, a webhook signature where a token is due; for
   Calendar notifications a forged token, another resource id, an unknown channel id (some the
   store cannot name), no token, a channel never opened. With the task queue paused and the
   store settled, every Firestore document and every queued task is read before and after the
   batch: nothing may differ, and no answer may be a 2xx. A push to meet_events must be
   answered 401 or 403 (or 413, 415 for its size or media type).

A Calendar notification, in either batch, must end as its draft says: ``sync`` or
``sync_enqueued`` for the stack's channel, ``401`` for any other, ``413`` for a body over 4096
bytes, or the HTTP server's own ``400``/``431`` for headers it refuses.

Off-route requests (another method, an unknown path) must answer 404 or 405. A request answered
5xx is kept with a reproducer, its JSON body shrunk to the smallest that still answers 5xx.
"""

from __future__ import annotations

import base64
import json
import queue as queue_module
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import requests
from google.cloud import tasks_v2

from functions.adapters.cloud_tasks import tasks_client
from functions.config import Settings
from functions.limits import MAX_BODY_BYTES
from functions.signatures import sign_webhook
from local.client import OPERATOR, StackClient
from tests.fuzz import snapshot as snapshots
from tests.fuzz.drafts import NOTIFICATIONS, Channel, Draft, Generator, seed_world
from tests.fuzz.spec import URL_SETTINGS, answer_problems

_AUTH_HEADERS: Final = frozenset(
    {"authorization", "webhook-id", "webhook-timestamp", "webhook-signature"}
)
STRANGER = "student@local.test"  # a genuine identity that is no principal of anything


# ------------------------------------------------------------------------------------------------
# Credentials, applied when a draft is sent (signatures carry the time)


class Credentials:
    def __init__(self, client: StackClient, env: Mapping[str, str]) -> None:
        self._client = client
        self._env = env
        self._tokens: dict[tuple[str, str], tuple[float, str]] = {}
        self.secret = env["WEBHOOK_SECRET"].split(",")[0]
        self._other_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        self.tasks = env["TASKS_SERVICE_ACCOUNT"]
        self.scheduler = env.get("SCHEDULER_SERVICE_ACCOUNT") or self.tasks
        self.push = env["PUBSUB_PUSH_SERVICE_ACCOUNT"]

    def token(self, function: str, email: str) -> str:
        audience = self._env[URL_SETTINGS[function]]
        cached = self._tokens.get((audience, email))
        if cached is None or time.monotonic() - cached[0] > 1800:  # they last an hour
            cached = (time.monotonic(), self._client.mint(audience=audience, email=email))
            self._tokens[(audience, email)] = cached
        return cached[1]

    def _identity(self, function: str, credential: str) -> str:
        if function == "api":
            return OPERATOR
        if function == "meet_events":
            return self.push
        if function == "collect" or credential == "tasks":
            return self.tasks
        return self.scheduler

    def _signed(self, draft: Draft, body: bytes, *, secret: str, at: datetime) -> dict[str, str]:
        webhook_id = draft.webhook_id or f"fuzz_{uuid.uuid4().hex}"
        return sign_webhook(secret=secret, webhook_id=webhook_id, timestamp=at, body=body)

    def headers(self, draft: Draft) -> dict[str, str | bytes]:
        """The draft's headers with its credential applied (a notification's identity headers
        are the draft's own)."""
        credential, function, body = draft.credential, draft.function, draft.body
        headers = dict(draft.headers)
        if credential != "garbled":
            headers = {k: v for k, v in headers.items() if k.lower() not in _AUTH_HEADERS}
        now = datetime.now(UTC)
        seven_minutes = timedelta(minutes=7)
        if credential == "webhook":  # where a token is due: no credential at all
            headers.update(self._signed(draft, body, secret=self.secret, at=now))
        elif credential in ("api", "tasks", "scheduler", "push"):
            email = self._identity(function, credential)
            headers["Authorization"] = f"Bearer {self.token(function, email)}"
        elif credential == "wrong-secret":
            headers.update(self._signed(draft, body, secret=self._other_secret, at=now))
        elif credential == "stale":
            headers.update(self._signed(draft, body, secret=self.secret, at=now - seven_minutes))
        elif credential == "future":
            headers.update(self._signed(draft, body, secret=self.secret, at=now + seven_minutes))
        elif credential == "other-body":
            headers.update(self._signed(draft, body + b" ", secret=self.secret, at=now))
        elif credential == "bearer":
            headers["Authorization"] = f"Bearer {self.token('api', OPERATOR)}"
        elif credential == "other-audience":
            other = {
                "api": "collect",
                "collect": "api",
                "backfill": "collect",
                "meet_events": "collect",
            }[function]
            email = self._identity(function, "tasks")
            headers["Authorization"] = f"Bearer {self.token(other, email)}"
        elif credential == "other-identity":
            # A genuine identity of the stack, of another caller.
            email = {
                "api": STRANGER,
                "collect": self.scheduler,
                "backfill": OPERATOR,
                "meet_events": self.tasks,
            }[function]
            if function == "collect" and email == self.tasks:  # scheduler = tasks identity
                email = OPERATOR
            headers["Authorization"] = f"Bearer {self.token(function, email)}"
        elif credential == "tampered":
            token = self.token(function, self._identity(function, "tasks"))
            head, _, signature = token.rpartition(".")
            flipped = ("B" if signature[:1] == "A" else "A") + signature[1:]
            headers["Authorization"] = f"Bearer {head}.{flipped}"
        elif credential == "basic":
            user = base64.b64encode(f"{OPERATOR}:password".encode()).decode()
            headers["Authorization"] = f"Basic {user}"
        if draft.content_type is not None:
            headers["Content-Type"] = draft.content_type
        return headers

    def describe(self, draft: Draft) -> str:
        """The credential of a reproducer, without the secret itself."""
        audience = URL_SETTINGS[draft.function]
        names = {
            "webhook": "webhook-* headers signed with WEBHOOK_SECRET (sign_webhook, now)",
            "api": f"Authorization: Bearer <minted: {OPERATOR}, audience API_URL>",
            "tasks": f"Authorization: Bearer <minted: {self.tasks}, audience {audience}>",
            "scheduler": f"Authorization: Bearer <minted: {self.scheduler}, audience {audience}>",
            "push": f"Authorization: Bearer <minted: {self.push}, audience {audience}>",
            "channel": "the X-Goog-* headers of the stack's channel (as shown)",
        }
        return names.get(draft.credential, draft.credential)


# ------------------------------------------------------------------------------------------------
# Sending and judging


@dataclass(frozen=True, slots=True)
class Outcome:
    draft: Draft
    status: int  # 0: no answer (refused connection, timeout)
    body: bytes
    seconds: float
    problems: tuple[str, ...] = ()


class Sender:
    def __init__(self, env: Mapping[str, str], credentials: Credentials) -> None:
        for name in (*URL_SETTINGS.values(), "TOKEN_MINT_URL"):
            if not env[name].startswith("http://127.0.0.1:"):
                raise ValueError(f"{name} must be a loopback URL of the local stack")
        self._env = env
        self.credentials = credentials

    def url(self, draft: Draft) -> str:
        return self._env[URL_SETTINGS[draft.function]].rstrip("/") + draft.path

    def send(self, draft: Draft) -> Outcome:
        started = time.monotonic()
        try:
            # A connection per request: drawing the next draft can outlast gunicorn's keep-alive,
            # and a request written as the server closes an idle connection was seen to wait
            # forever (the server's side gone, the client's still open).
            response = requests.request(
                draft.method,
                self.url(draft),
                data=draft.body,
                headers=self.credentials.headers(draft),
                timeout=60,
                allow_redirects=False,
            )
        except requests.RequestException as error:
            elapsed = time.monotonic() - started
            return Outcome(draft, 0, type(error).__name__.encode(), elapsed, ("no answer",))
        elapsed = time.monotonic() - started
        return Outcome(
            draft, response.status_code, response.content, elapsed, judge(draft, response)
        )


def judge(draft: Draft, response: requests.Response) -> tuple[str, ...]:
    """Whether an answer is one the description documents for what was sent."""
    status = response.status_code
    problems: list[str] = []
    if draft.operation is None:
        if status not in (404, 405):
            problems.append(f"off-route {draft.method} {draft.path} on {draft.function}: {status}")
    elif draft.method != "HEAD":
        problems.extend(answer_problems(draft.operation, status, response.content))
        if draft.function == "meet_events" and status < 500:
            problems.extend(push_problems(draft, status, response.content))
        if draft.operation.operation_id == NOTIFICATIONS and status < 500:
            problems.extend(notification_problems(draft, status, response.content))
    if not draft.authenticated and 200 <= status < 300:
        problems.append(f"unauthenticated ({draft.credential}) request answered {status}")
    return tuple(problems)


def _is_json_media_type(content_type: str | None) -> bool:
    """``application/json``, with no charset but UTF-8 (docs/api.md "Rules every function follows", the description)."""
    media_type, *parameters = (content_type or "").split(";")
    if media_type.strip().lower() != "application/json":
        return False
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            return False
    return True


def edge_refusal(draft: Draft) -> int | None:
    """What the edge answers a POST before its credential is looked at: 413, 415 or nothing."""
    if len(draft.body) > MAX_BODY_BYTES:
        return 413
    if draft.body and not _is_json_media_type(draft.content_type):
        return 415
    return None


def push_outcome(status: int, body: bytes) -> str | None:
    """A push's outcome: "204", the word a 200 says it was handled with, else None."""
    if status == 204:
        return "204"
    if status != 200:
        return None
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    handled = answer.get("handled") if isinstance(answer, dict) else None
    return handled if isinstance(handled, str) else None


def push_problems(draft: Draft, status: int, body: bytes) -> list[str]:
    """docs/api.md "meet_events": an authenticated push is acknowledged (Pub/Sub redelivers anything but a
    2xx for days), an unauthenticated one refused 401/403; size and media type come first."""
    edge = edge_refusal(draft)
    if edge is not None:
        allowed = {edge}
    elif draft.authenticated:
        allowed = {200, 204}
    else:
        allowed = {401, 403}
    if status not in allowed:
        return [f"meet_events push ({draft.credential}) answered {status}, not {sorted(allowed)}"]
    outcome = push_outcome(status, body)
    if draft.authenticated and draft.outcomes is not None and outcome not in draft.outcomes:
        return [f"meet_events push ended {outcome!r}, not one of {sorted(draft.outcomes)}"]
    return []


def notification_outcome(status: int, body: bytes) -> str:
    """A notification's outcome: the word a 200 says it was accepted with, else the status."""
    if status != 200:
        return str(status)
    try:
        answer = json.loads(body)
    except ValueError:
        return "200"
    accepted = answer.get("accepted") if isinstance(answer, dict) else None
    return accepted if isinstance(accepted, str) else "200"


def notification_problems(draft: Draft, status: int, body: bytes) -> list[str]:
    """docs/api.md "ingest": only the stack's channel is accepted, nothing else; a body over 4096
    bytes is refused first (and headers the HTTP server refuses, before the function)."""
    outcome = notification_outcome(status, body)
    if draft.outcomes is not None and outcome not in draft.outcomes:
        return [
            f"calendar notification ({draft.credential}) ended {outcome!r}, "
            f"not one of {sorted(draft.outcomes)}"
        ]
    return []


def is_calendar_sync(draft: Draft) -> bool:
    """Whether a draft is a ``calendar_sync`` task for backfill."""
    if draft.function != "backfill" or b"calendar_sync" not in draft.body:
        return False
    try:
        body = json.loads(draft.body)
    except (ValueError, RecursionError):
        return False
    return isinstance(body, dict) and body.get("calendar_sync") is not None


def _shrunk_bodies(value: Any) -> list[Any]:
    """Smaller variants of a JSON value: one member or item left out, or a string halved."""
    if isinstance(value, dict):
        return [{k: v for k, v in value.items() if k != key} for key in value] + [
            {**value, key: smaller} for key in value for smaller in _shrunk_bodies(value[key])
        ]
    if isinstance(value, list):
        return [value[:i] + value[i + 1 :] for i in range(len(value))]
    if isinstance(value, str) and len(value) > 1:
        return [value[: len(value) // 2]]
    return []


def shrink(sender: Sender, outcome: Outcome, *, budget: int = 60) -> Outcome:
    """The smallest JSON body (greedily) for which the same request still answers 5xx."""
    try:
        current = json.loads(outcome.draft.body)
    except (ValueError, RecursionError):  # RecursionError: nested too deeply
        return outcome
    best = outcome
    for _ in range(budget):
        for smaller in _shrunk_bodies(current):
            again = sender.send(replace(best.draft, body=json.dumps(smaller).encode()))
            if again.status >= 500:
                best, current = again, smaller
                break
        else:
            return best
    return best


def _shown(value: str | bytes) -> str:
    """A header value as a reproducer shows it: bytes as their repr, long ones cut."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 200 else f"{text[:200]}… ({len(text)} characters)"


def reproducer(sender: Sender, outcome: Outcome) -> str:
    draft = outcome.draft
    headers = {
        k: _shown(v)
        for k, v in sender.credentials.headers(draft).items()
        if k.lower() not in _AUTH_HEADERS or draft.credential == "garbled"
    }
    return (
        f"{draft.method} {draft.path} on {draft.function} ({URL_SETTINGS[draft.function]}) "
        f"→ {outcome.status}\n    credential: {sender.credentials.describe(draft)}\n"
        f"    headers: {json.dumps(headers)}\n    body: {draft.body[:600]!r}\n"
        f"    answer: {outcome.body[:300]!r}"
    )


# ------------------------------------------------------------------------------------------------
# The queue, paused while the unauthenticated batch runs


class Queue:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._settings = Settings.from_env(env)
        self._client: tasks_v2.CloudTasksClient = tasks_client(self._settings)

    def pause(self) -> None:
        self._client.pause_queue(name=self._settings.queue_path)

    def resume(self) -> None:
        self._client.resume_queue(name=self._settings.queue_path)

    def task_names(self) -> set[str]:
        return {task.name for task in self._client.list_tasks(parent=self._settings.queue_path)}


# ------------------------------------------------------------------------------------------------
# The stack's Calendar channel


def stack_channel(env: Mapping[str, str], credentials: Credentials) -> Channel | None:
    """The channel on the organizer's calendar, as a daily run (run here first) leaves it: one
    the fake Calendar lists (with its token) and the store knows (with its resource id). None
    when the stack opens no channels (no ``ORGANIZERS`` or no notification address)."""
    endpoint, address = env.get("CALENDAR_API_ENDPOINT"), env.get("CALENDAR_NOTIFICATIONS_URL")
    if not (endpoint and address and env.get("ORGANIZERS", "").strip()):
        return None
    if not endpoint.startswith("http://127.0.0.1:"):
        raise ValueError("CALENDAR_API_ENDPOINT must be a loopback URL of the local stack")
    token = credentials.token("backfill", credentials.scheduler)
    ran = requests.post(
        env["BACKFILL_URL"], headers={"Authorization": f"Bearer {token}"}, timeout=120
    )
    if ran.status_code != 200:
        raise RuntimeError(f"the daily run answered {ran.status_code}: {ran.text[:300]}")
    listed = requests.get(
        endpoint.removesuffix("calendar/v3/") + "_fake/calendar/channels", timeout=30
    )
    listed.raise_for_status()
    database = snapshots.emulator_client(env)
    for channel in listed.json()["channels"]:
        if channel.get("address") != address or not channel.get("token"):
            continue
        stored = database.collection("calendar_channels").document(channel["id"]).get()
        if stored.exists and (stored.to_dict() or {}).get("resource_id") == channel["resourceId"]:
            return Channel(
                id=channel["id"],
                resource_id=channel["resourceId"],
                token=channel["token"],
                calendar_id=channel["calendar_id"],
            )
    return None


# ------------------------------------------------------------------------------------------------
# A run


@dataclass
class Summary:
    outcomes: list[Outcome]
    unauthenticated_writes: list[str]
    dispatches: Sequence[Mapping[str, Any]]
    reproducers: list[str]
    seconds: float
    erasures: bool

    @property
    def server_errors(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status >= 500]

    @property
    def no_answer(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == 0]

    @property
    def problems(self) -> list[str]:
        return [p for o in self.outcomes if 0 < o.status < 500 for p in o.problems]

    @property
    def background_failures(self) -> list[Mapping[str, Any]]:
        return [
            d for d in self.dispatches if not isinstance(d.get("status"), int) or d["status"] >= 500
        ]

    @property
    def notifications(self) -> Counter[str]:
        """How Calendar notifications ended, by batch: ``authenticated sync_enqueued`` and the
        like (an ``accepted`` word or a status)."""
        return Counter(
            ("authenticated " if o.draft.authenticated else "unauthenticated ")
            + notification_outcome(o.status, o.body)
            for o in self.outcomes
            if o.draft.operation and o.draft.operation.operation_id == NOTIFICATIONS
        )

    @property
    def calendar_syncs(self) -> Counter[int]:
        """The statuses of the authenticated ``calendar_sync`` tasks sent to backfill."""
        return Counter(
            o.status for o in self.outcomes if o.draft.authenticated and is_calendar_sync(o.draft)
        )

    @property
    def pushes(self) -> Counter[str]:
        """How the authenticated pushes to meet_events ended (a handled word, 204, a status)."""
        return Counter(
            push_outcome(o.status, o.body) or str(o.status)
            for o in self.outcomes
            if o.draft.authenticated and o.draft.operation and o.draft.function == "meet_events"
        )

    @property
    def ok(self) -> bool:
        return not (
            self.server_errors or self.unauthenticated_writes or self.problems or self.no_answer
        )

    def headline(self) -> str:
        return (
            f"fuzz: {len(self.outcomes)} requests, {len(self.server_errors)} answers 5xx, "
            f"unauthenticated writes: {len(self.unauthenticated_writes)}"
        )

    def report(self) -> str:
        authenticated = [o for o in self.outcomes if o.draft.authenticated]
        modes = Counter(o.draft.mode for o in authenticated)
        statuses: dict[str, Counter[int]] = {}
        for o in self.outcomes:
            where = str(o.draft.operation) if o.draft.operation else "off-route"
            statuses.setdefault(where, Counter())[o.status] += 1
        mix = ", ".join(f"{mode} {n}" for mode, n in sorted(modes.items()))
        unauthenticated_2xx = sum("unauthenticated (" in p for p in self.problems)
        slowest = max((o.seconds for o in self.outcomes), default=0.0)
        lines = [
            self.headline(),
            f"  authenticated {len(authenticated)} ({mix}), "
            f"unauthenticated {len(self.outcomes) - len(authenticated)}; "
            f"no answer: {len(self.no_answer)}; not as documented: {len(self.problems)}; "
            f"unauthenticated 2xx: {unauthenticated_2xx}",
            f"  background task dispatches: {len(self.dispatches)}, "
            f"5xx or no answer: {len(self.background_failures)}; "
            f"{self.seconds:.1f} s in all, slowest answer {slowest:.2f} s",
        ]
        pushes = ", ".join(f"{outcome} {n}" for outcome, n in sorted(self.pushes.items()))
        lines.append(f"  meet_events pushes (authenticated): {pushes or 'none'}")
        notified = ", ".join(f"{outcome} {n}" for outcome, n in sorted(self.notifications.items()))
        lines.append(f"  calendar notifications: {notified or 'none'}")
        syncs = " ".join(f"{status}:{n}" for status, n in sorted(self.calendar_syncs.items()))
        lines.append(f"  backfill calendar_sync tasks (authenticated): {syncs or 'none'}")
        if not self.erasures:
            lines.append(
                "  POST /erasures: unauthenticated only (functions/erasure.py does not exist yet)"
            )
        for where, counter in sorted(statuses.items()):
            spread = " ".join(f"{status}:{n}" for status, n in sorted(counter.items()))
            lines.append(f"  {where}: {spread}")
        lines += [f"  not as documented: {p}" for p in sorted(set(self.problems))[:20]]
        lines += [f"  unauthenticated write: {w}" for w in self.unauthenticated_writes[:20]]
        lines += [f"  reproducer: {r}" for r in self.reproducers]
        for d in self.background_failures[:10]:
            lines.append(f"  background: {d.get('url')} {d.get('status')} task {d.get('task')}")
        return "\n".join(lines)


def run(
    env: Mapping[str, str],
    *,
    requests_count: int,
    seed: int = 0,
    progress: Callable[[str], None] = lambda line: None,
    authenticated_share: float = 0.6,
) -> Summary:
    """``requests_count`` generated requests against the stack ``env`` describes, whose stores
    are expected empty (seeding adds three classes)."""
    started = time.monotonic()
    client = StackClient(env)
    world = seed_world(client)
    sender = Sender(env, Credentials(client, env))
    world.organizers = [
        email.strip().lower() for email in env.get("ORGANIZERS", "").split(",") if email.strip()
    ]
    world.channel = stack_channel(env, sender.credentials)
    progress(f"calendar channel: {'open' if world.channel else 'none'}")
    generator = Generator(world)
    authenticated_count = round(requests_count * authenticated_share)

    def elapsed() -> str:
        return f"{time.monotonic() - started:.1f} s"

    progress(f"{authenticated_count} authenticated requests ({elapsed()})")
    outcomes = _generate_and_send(
        generator, sender, authenticated_count, authenticated=True, seed=seed, progress=progress
    )

    queue = Queue(env)
    database = snapshots.emulator_client(env)
    queue.pause()
    try:
        progress(f"waiting for the store to settle, the queue paused ({elapsed()})")
        # A quiet store is not an idle stack: a dispatch sent before the pause (a Calendar sync
        # waiting on its lease, a poll) can land after seconds of quiet and be counted as the
        # unauthenticated batch's write. So the dispatches in flight answer first.
        still_running = client.drain_tasks(timeout_s=120.0)
        if still_running:
            raise TimeoutError(f"{still_running} task dispatches still running after 120 s")
        before = snapshots.settled(database)
        tasks_before = queue.task_names()
        stored = sorted({path.split("/")[1] for path in before if path.startswith("meetings/")})
        world.meeting_ids = stored or world.meeting_ids
        count = requests_count - authenticated_count
        progress(f"{count} unauthenticated requests, {len(before)} documents stored ({elapsed()})")
        outcomes += _generate_and_send(
            generator, sender, count, authenticated=False, seed=seed + 1, progress=progress
        )
        after = snapshots.settled(database)
        tasks_after = queue.task_names()
    finally:
        queue.resume()
    progress(f"done ({elapsed()})")
    writes = snapshots.differences(before, after, limit=1_000_000)
    writes += [f"task queued {name}" for name in sorted(tasks_after - tasks_before)]
    writes += [f"task gone {name}" for name in sorted(tasks_before - tasks_after)]

    reproducers: list[str] = []
    seen: set[tuple[str, str, str, int, frozenset[str] | None]] = set()
    for outcome in outcomes:
        draft = outcome.draft
        route = draft.operation.path if draft.operation else draft.path
        # Pushes of different kinds (what they may end with) fail for different reasons.
        where = (draft.function, draft.method, route, outcome.status, draft.outcomes)
        wrong = outcome.status >= 500 or bool(outcome.problems)
        if wrong and where not in seen and len(reproducers) < 10:
            seen.add(where)
            # An undocumented answer is shown as sent (shrinking looks for 5xx answers).
            shown = shrink(sender, outcome) if outcome.status >= 500 else outcome
            reproducers.append(reproducer(sender, shown))
    return Summary(
        outcomes=outcomes,
        unauthenticated_writes=writes,
        dispatches=client.dispatches(),
        reproducers=reproducers,
        seconds=time.monotonic() - started,
        erasures=world.erasures,
    )


def _generate_and_send(
    generator: Generator,
    sender: Sender,
    count: int,
    *,
    authenticated: bool,
    seed: int,
    progress: Callable[[str], None],
) -> list[Outcome]:
    """Draw ``count`` drafts in a thread while sending them here, one at a time: drawing costs
    about as much as the stack's answer, and overlapping the two halves the run."""
    drafts: queue_module.Queue[Draft | None] = queue_module.Queue()
    failed: list[BaseException] = []

    def produce() -> None:
        try:
            generator.generate(count, authenticated=authenticated, seed=seed, sink=drafts.put)
        except BaseException as error:  # handed to the sending thread, which raises it
            failed.append(error)
        finally:
            drafts.put(None)

    producer = threading.Thread(target=produce, name="fuzz-drafts", daemon=True)
    producer.start()
    outcomes: list[Outcome] = []
    while (draft := drafts.get()) is not None:
        outcome = sender.send(draft)
        outcomes.append(outcome)
        if authenticated:
            generator.learn(outcome.status, outcome.body)
        if len(outcomes) % 100 == 0:
            # Where a slow stretch was, and what it was sending, if a run ever stalls.
            failures = sum(o.status >= 500 or o.status == 0 for o in outcomes)
            recent = outcomes[-100:]
            slowest = max(recent, key=lambda o: o.seconds)
            progress(
                f"  {len(outcomes)}/{count} sent, {failures} answers 5xx or none; last 100 in "
                f"{sum(o.seconds for o in recent):.1f} s, slowest {slowest.seconds:.1f} s "
                f"({slowest.draft.function} {slowest.draft.method} {slowest.draft.path[:60]})"
            )
    producer.join()
    if failed:
        raise failed[0]
    return outcomes
