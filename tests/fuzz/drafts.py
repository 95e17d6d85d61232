"""What the fuzzer sends: drafts of requests drawn from ``openapi.yaml``.

Schemathesis turns each documented operation into Hypothesis strategies (positive: bodies,
headers and path parameters the description allows; negative: ones it does not). A share of the
positive cases is made realistic (recent times, meeting codes the fake Reports API knows,
meetings that exist), about one draft in twenty leaves the documented routes (another method, an
unknown path), and each draft names the credential it is to be sent with (``harness`` applies
it when sending: signatures carry the time).

Pushes to ``meet_events`` get a realistic share of their own: well-formed Workspace Events
(conference ended, subscription lifecycle, other types) naming conference records and
subscriptions that do not exist, some with a replayed ``ce-id``, and hostile envelopes (not
JSON, nested too deeply, attributes that are not strings, data that is not base64 of an object,
ids too long or not encodable, structured mode, names that are not Google's). Each says which
outcomes it may have (``Draft.outcomes``: a ``handled`` word, or ``204``).

So do Calendar notifications to ``ingest`` (``POST /calendar/notifications``), whose credential
is a channel's id, resource id and token together: the authenticated batch sends the stack's own
channel (``World.channel``, opened by a daily run before drafting) as Google would, the other
batch forgeries of it (another token, resource or channel id; no token; a webhook signature or
an ID token instead) and notifications of channels never opened. Either may carry hostile
extras: headers left out, odd or huge values (lone surrogates as UTF-8 writes them, NUL,
Latin-1), a hundred more headers, a body. Each says which outcomes it may have: the ``accepted``
word, ``401``, ``413`` for a body over 4096 bytes, and the HTTP server's own ``400``/``431`` for
headers it refuses. Backfill's realistic share includes ``calendar_sync`` tasks, of the
organizer's calendar and of hostile calendar ids.

Weighted choices (which operation, how realistic, which credential) come from a
``random.Random`` seeded with the run's seed, not from Hypothesis: its draws lean towards small
and repeated values (good for finding edge cases, bad for a mix), so the same few choices would
recur, and a strategy chosen outside Hypothesis' own draws makes its data generation "flaky". So
the choices are planned first and Hypothesis, seeded too, draws only the schemathesis cases: a
chunk of drafts at a time, once per (operation, mode) the chunk needs. A run is reproducible up
to the ids and times the stack hands out.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import quote

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.core import NotSet
from schemathesis.core.result import Err

from functions.app import MAX_NOTIFICATION_BODY
from functions.meet_records import (
    CONFERENCE_ENDED,
    SUBSCRIPTION_EXPIRATION_REMINDER,
    SUBSCRIPTION_EXPIRED,
    SUBSCRIPTION_SUSPENDED,
)
from local.client import StackClient
from local.simulate import Stay, activities_for, rfc3339
from tests.fuzz.spec import ROOT, Operation, load_spec, operations

#: Who may call what (docs/api.md, §6): the credential kinds of the authenticated batch.
GOOD: Final[Mapping[str, tuple[str, ...]]] = {
    "ingest": ("webhook",),
    "api": ("api",),
    "collect": ("tasks",),
    "backfill": ("scheduler", "tasks"),
    "meet_events": ("push",),
}
_BAD_TOKENS: Final = (
    "none",
    "garbled",
    "other-audience",
    "other-identity",
    "tampered",
    "basic",
    "webhook",
)
#: The unauthenticated batch's credential kinds ("garbled": what schemathesis generated).
BAD: Final[Mapping[str, tuple[str, ...]]] = {
    "ingest": ("none", "garbled", "wrong-secret", "stale", "future", "other-body", "bearer"),
    "api": _BAD_TOKENS,
    "collect": _BAD_TOKENS,
    "backfill": _BAD_TOKENS,
    "meet_events": _BAD_TOKENS,
}
#: The Calendar notifications of ingest (docs/api.md "ingest"): no body, a channel's headers.
NOTIFICATIONS: Final = "ingestCalendarNotification"
#: Their credential: the id, resource id and token of a channel the stack opened ...
NOTIFICATION_GOOD: Final = ("channel",)
#: ... or not: a forged token, another resource, an unknown channel id, no token (with or
#: without another function's credential), or a channel never opened ("garbled").
NOTIFICATION_BAD: Final = (
    "none",
    "garbled",
    "forged-token",
    "other-resource",
    "unknown-channel",
    "webhook",
    "bearer",
)
CHANNEL_ID: Final = "X-Goog-Channel-ID"
CHANNEL_TOKEN: Final = "X-Goog-Channel-Token"
RESOURCE_ID: Final = "X-Goog-Resource-ID"
RESOURCE_STATE: Final = "X-Goog-Resource-State"
_IDENTITY: Final = (CHANNEL_ID, CHANNEL_TOKEN, RESOURCE_ID)
_REASONS: Final = ("poll", "neighbour", "backfill", "manual", "restart", "erasure")
_EXTERNAL_IDS: Final = tuple(f"fuzz-class-{n}" for n in range(6))
_CALENDAR_IDS: Final = tuple(f"fuzz-event-{n}" for n in range(4))
_REPLAYED_IDS: Final = tuple(f"fuzz_replayed_{n}" for n in range(4))
_OTHER_METHODS: Final = ("GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE")
_UNKNOWN_PATHS: Final = (
    "/x",
    "/meetings",
    "/meetings/a%2Fb/c",
    "/meetings/__x__",
    "/meetings/m-1/sync/x",
    "/Meetings/sync",
    "/erasures/x",
    "/robots.txt",
    "/favicon.ico",
    "/%2e%2e/etc/passwd",
    "/calendar",
    "/calendar/notification",
    "/calendar/notifications/x",
)
#: Drafts planned together: each chunk runs Hypothesis once per (operation, mode) it needs.
_CHUNK: Final = 250


def erasures_implemented() -> bool:
    """``POST /erasures`` answers 500 with a valid token until ``functions/erasure.py`` exists
    (it was being written alongside): until then authenticated erasures are not generated."""
    return (ROOT / "functions" / "erasure.py").exists()


def credentials_for(
    function: str, operation: Operation | None, *, authenticated: bool
) -> tuple[str, ...]:
    """The credential kinds of a batch for an operation (its function's, but notifications')."""
    if operation is not None and operation.operation_id == NOTIFICATIONS:
        return NOTIFICATION_GOOD if authenticated else NOTIFICATION_BAD
    return (GOOD if authenticated else BAD)[function]


# ------------------------------------------------------------------------------------------------
# What the stack knows: the seed of the realistic share


@dataclass(frozen=True, slots=True)
class Channel:
    """A Calendar channel the stack opened (its fake Calendar lists it, token included)."""

    id: str
    resource_id: str
    token: str
    calendar_id: str


@dataclass
class World:
    now: datetime
    codes: list[str]
    emails: list[str]
    meeting_ids: list[str] = field(default_factory=list)
    erasures: bool = True
    #: The stack's ``ORGANIZERS``: their calendars are the ones it syncs.
    organizers: list[str] = field(default_factory=list)
    #: The channel on the organizer's calendar, once a daily run opened it.
    channel: Channel | None = None


_CODES: Final = ("fzz-aaaa-bbb", "fzz-cccc-ddd", "fzz-eeee-fff")
_EMAILS: Final = (
    "teacher@school.example",
    "ana@school.example",
    "ben@school.example",
    "guest@partner.example",
)


def seed_world(client: StackClient) -> World:
    """Attendance in the fake Reports API for three rooms, and a class declared in each."""
    now = datetime.now(UTC).replace(microsecond=0)
    world = World(
        now=now,
        codes=[*_CODES, "abc-defg-hij", "room 42", "qqqqqqqqqq"],
        emails=list(_EMAILS),
        erasures=erasures_implemented(),
    )
    for index, code in enumerate(_CODES):
        end = now - timedelta(hours=index + 1)
        start = end - timedelta(minutes=50)
        minute = timedelta(minutes=1)
        stays = [
            Stay(_EMAILS[0], start, end, display_name="Teacher"),
            Stay(_EMAILS[1], start + 5 * minute, end - 10 * minute),
            Stay(_EMAILS[2], start + minute, start + 20 * minute),
            Stay(_EMAILS[2], start + 25 * minute, end, device_type="android"),
            Stay("", start, start + 9 * minute, identifier_type=None, display_name="Guest"),
        ]
        client.add_activities(
            activities_for(stays, meeting_code=code, conference_id=f"fuzz-conference-{index}")
        )
        answer = client.meeting_ended(
            {
                "type": "meeting.ended",
                "meeting_code": code,
                "started_at": rfc3339(start),
                "ended_at": rfc3339(end),
                "external_id": f"fuzz-seed-{index}",
                "expected_participants": list(_EMAILS[:3]),
            }
        )
        if answer.status not in (200, 202):
            raise RuntimeError(f"seeding the stack: webhook answered {answer.status}")
        world.meeting_ids.append(answer.body["meeting_id"])
    return world


# ------------------------------------------------------------------------------------------------
# Drafts

#: A header as sent: bytes for values that are not text (a lone surrogate as UTF-8 writes it).
Header = tuple[str, str | bytes]


@dataclass(frozen=True, slots=True)
class Draft:
    function: str
    method: str
    path: str  # as the function serves it, parameters filled in
    headers: tuple[Header, ...]
    body: bytes
    content_type: str | None
    credential: str
    operation: Operation | None  # None: off the documented routes
    mode: str  # positive | negative | off-route
    webhook_id: str | None = None  # None: a fresh one when signed
    #: A push's possible outcomes, authenticated: ``handled`` words or "204"; a notification's,
    #: in both batches: ``accepted`` words or statuses (None: any).
    outcomes: frozenset[str] | None = None

    @property
    def authenticated(self) -> bool:
        return self.credential in credentials_for(self.function, self.operation, authenticated=True)


def _header_value(value: object) -> str:
    """A value ``requests`` will send: visible ASCII and inner spaces (garbage stays garbage)."""
    return "".join(c for c in str(value) if " " <= c <= "~").strip()


def _encode(rnd: random.Random, body: object, *, negative: bool) -> tuple[bytes, str | None]:
    if isinstance(body, NotSet):
        return b"", None
    if isinstance(body, bytes):
        data = body
    else:
        try:
            data = json.dumps(body, ensure_ascii=rnd.random() < 0.5).encode()
        except UnicodeEncodeError:  # a lone surrogate: only its escape can be sent
            data = json.dumps(body).encode()
    content_type: str | None = "application/json"
    if negative and rnd.random() < 0.1:
        content_type = rnd.choice(
            [
                None,
                "text/plain",
                "application/json; charset=latin-1",
                "application/x-www-form-urlencoded",
                "application/json; charset=UTF-8",
            ]
        )
    if negative and rnd.random() < 0.02:
        data += b" " * 66_000  # still JSON, but over the 64 KiB limit
    return data, content_type


def _before(rnd: random.Random, moment: datetime, max_s: int, min_s: int = 0) -> datetime:
    return moment - timedelta(seconds=rnd.randint(min_s, max_s))


def _maybe(rnd: random.Random, choices: Sequence[str]) -> str | None:
    return None if rnd.random() < 0.4 else rnd.choice(choices)


def _realistic_declaration(
    rnd: random.Random, body: dict[str, Any], world: World, *, typed: bool
) -> dict[str, Any]:
    body = dict(body)
    ended = _before(rnd, world.now, 6 * 3600)
    body["ended_at"] = rfc3339(ended)
    if rnd.random() < 0.7:
        body["started_at"] = rfc3339(_before(rnd, ended, 3 * 3600))
    else:
        body.pop("started_at", None)
    body["meeting_code"] = rnd.choice(world.codes)
    if rnd.random() < 0.5:
        count = rnd.randint(0, min(3, len(world.emails)))
        body["expected_participants"] = rnd.sample(world.emails, count)
    # A few shared ids re-declare (200) and clash (409); most classes are new (202).
    identity = rnd.random()
    if identity < 0.25:
        body["external_id"] = rnd.choice(_EXTERNAL_IDS)
    elif identity < 0.6:
        body["external_id"] = f"fuzz-{rnd.getrandbits(48):012x}"
    else:
        body.pop("external_id", None)
    body["calendar_event_id"] = rnd.choice(_CALENDAR_IDS) if rnd.random() < 0.15 else None
    body["organizer_email"] = _maybe(rnd, world.emails)
    if typed or rnd.random() < 0.5:
        body["type"] = "meeting.ended"
    else:
        body.pop("type", None)
    return body


#: Calendar ids of ``calendar_sync`` tasks that no notification would queue: not a calendar's
#: address (400), or the address of a calendar that is no organizer's.
_HOSTILE_CALENDAR_IDS: Final[tuple[object, ...]] = (
    "",
    "a",
    "@",
    "ab",
    "no-at-sign",
    "x" * 255 + "@y",
    "a\n@b",
    "a@b\u0000",
    "\u0085@school.test",
    "\ud800@school.test",  # a lone surrogate (its JSON escape is sent)
    "@\udfff",
    5,
    None,
    [],
    {},
    True,
    "nobody@school.test",
    "@@@",
    " @ ",
    "../..@x",
    "a@b/c?d#e",
    "primary@school.test",
    "%40@x",
    "x" * 250 + "@y",
    "\u00e9l\u00e8ve@\u00e9cole.test",
    "\U0001f600@school.test",
)


def _calendar_sync(rnd: random.Random, world: World) -> object:
    """A ``calendar_sync`` task: the organizer's calendar as a notification queues it (a
    concurrent one is busy, 409), or a hostile calendar id, or no object at all."""
    roll = rnd.random()
    if roll < 0.4 and world.organizers:
        calendar_id = rnd.choice(world.organizers)
        if rnd.random() < 0.2:
            calendar_id = calendar_id.upper()
        return {"calendar_sync": {"calendar_id": calendar_id}}
    if roll < 0.9:
        return {"calendar_sync": {"calendar_id": rnd.choice(_HOSTILE_CALENDAR_IDS)}}
    return {"calendar_sync": rnd.choice(("teacher@school.example", 5, [], True, None))}


def _realistic_backfill(rnd: random.Random, world: World) -> object:
    choice = rnd.randrange(6)
    if choice == 0:
        return NotSet()
    if choice == 1:
        return {}
    if choice >= 4:
        return _calendar_sync(rnd, world)
    until = _before(rnd, world.now, 3600)
    since = _before(rnd, until, 6 * 3600, 60)
    if choice == 2:
        return {"since": rfc3339(since), "until": rfc3339(until)}
    range_since = _before(rnd, since, 3600)
    range_until = min(until + timedelta(seconds=rnd.randint(0, 600)), world.now)
    bounds = (since, until, range_since, range_until)
    names = ("since", "until", "range_since", "range_until")
    return {"slice": {name: rfc3339(moment) for name, moment in zip(names, bounds, strict=True)}}


def _realise(
    rnd: random.Random, op: Operation, parameters: dict[str, Any], body: object, world: World
) -> tuple[dict[str, Any], object]:
    """The realistic share: times near now, codes with attendance, meetings that exist."""
    if "meeting_id" in parameters and world.meeting_ids and rnd.random() < 0.8:
        parameters["meeting_id"] = rnd.choice(world.meeting_ids)
    name = op.operation_id
    if name in ("ingestMeetingEnded", "apiDeclareAndSync") and isinstance(body, dict):
        body = _realistic_declaration(rnd, body, world, typed=name == "ingestMeetingEnded")
    elif name == "collectPoll" and isinstance(body, dict):
        body = {
            "meeting_id": rnd.choice(world.meeting_ids or [str(body.get("meeting_id"))]),
            "attempt": rnd.randint(1, 6),
            "reason": _maybe(rnd, _REASONS),
        }
    elif name == "backfillRun":
        body = _realistic_backfill(rnd, world)
    elif name == "apiErase" and isinstance(body, dict):
        keys = [*world.emails, "phone:+44 20 7946 0000", "anon:Guest", "Ben@School.example"]
        body = {"participant_key": rnd.choice(keys)}
    return parameters, body


# ------------------------------------------------------------------------------------------------
# Pushes to meet_events: well-formed events naming what does not exist, and hostile envelopes

Push = tuple[object, frozenset[str]]  # a body (JSON value or bytes as sent) and its outcomes

_LIFECYCLE: Final = (SUBSCRIPTION_EXPIRATION_REMINDER, SUBSCRIPTION_EXPIRED, SUBSCRIPTION_SUSPENDED)
_OTHER_EVENT_TYPES: Final = (
    "google.workspace.meet.conference.v2.started",
    "google.workspace.meet.participant.v2.joined",
    "google.workspace.meet.participant.v2.left",
    "google.workspace.meet.recording.v2.fileGenerated",
    "google.workspace.chat.message.v1.created",
    "com.example.fuzz",
)
#: ce-ids shared by a few well-formed pushes: the later ones are redeliveries (``duplicate``).
_REPLAYED_EVENT_IDS: Final = tuple(f"fuzz-replayed-event-{n}" for n in range(4))
_MEET: Final = "//meet.googleapis.com/"
_EVENTS_API: Final = "//workspaceevents.googleapis.com/"
_UNUSABLE: Final = frozenset({"204"})


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _data(value: object) -> str:
    return _b64(json.dumps(value).encode())


def _hex(rnd: random.Random) -> str:
    return f"{rnd.getrandbits(64):016x}"


def push_envelope(
    rnd: random.Random,
    attributes: object,
    data: object,
    *,
    now: datetime,
) -> dict[str, Any]:
    """A wrapped Pub/Sub push of one message, with Pub/Sub's fields in its usual variations."""
    message_id = str(rnd.getrandbits(53))
    published = rfc3339(now)
    message: dict[str, Any] = {"attributes": attributes, "data": data}
    if rnd.random() < 0.9:
        message.update(messageId=message_id, publishTime=published)
    if rnd.random() < 0.7:
        message.update(message_id=message_id, publish_time=published)
    if rnd.random() < 0.1:
        message["orderingKey"] = ""
    envelope: dict[str, Any] = {
        "message": message,
        "subscription": "projects/demo-attendance/subscriptions/workspace-events-push",
    }
    if rnd.random() < 0.3:
        envelope["deliveryAttempt"] = rnd.randint(1, 5)
    return envelope


def _attributes(
    event_type: str, event_id: str, source: str, subject: str | None, now: datetime
) -> dict[str, str]:
    attributes = {
        "ce-specversion": "1.0",
        "ce-type": event_type,
        "ce-id": event_id,
        "ce-source": source,
        "ce-time": rfc3339(now),
        "ce-datacontenttype": "application/json",
    }
    if subject is not None:
        attributes["ce-subject"] = subject
    return attributes


def _well_formed_push(rnd: random.Random, world: World) -> Push:
    """A Workspace Event as Google sends it, about a record or subscription that does not exist
    (or of a type not handled): always handled, ``200``."""
    replayed = rnd.random() < 0.15
    event_id = rnd.choice(_REPLAYED_EVENT_IDS) if replayed else f"fuzz-event-{_hex(rnd)}"
    kind = rnd.random()
    if kind < 0.45:
        record = f"conferenceRecords/fuzz-{_hex(rnd)}"
        space = rnd.choice(("", f"spaces/fuzz-{_hex(rnd)}"))
        attributes = _attributes(
            CONFERENCE_ENDED, event_id, _MEET + space, _MEET + record, world.now
        )
        data: dict[str, Any] = {"conferenceRecord": {"name": record}}
        word = "unreadable"  # nobody can read a record that does not exist
    elif kind < 0.75:
        name = f"subscriptions/fuzz-{_hex(rnd)}"
        source = _EVENTS_API + name
        attributes = _attributes(rnd.choice(_LIFECYCLE), event_id, source, source, world.now)
        # The data names the subscription; without it, the source does.
        data = {"subscription": {"name": name, "state": "ACTIVE"}} if rnd.random() < 0.7 else {}
        word = "unknown subscription"
    else:
        attributes = _attributes(rnd.choice(_OTHER_EVENT_TYPES), event_id, _MEET, None, world.now)
        data = {"participantSession": {"name": f"conferenceRecords/x/participants/{_hex(rnd)}"}}
        word = "ignored"
    envelope = push_envelope(rnd, attributes, _data(data), now=world.now)
    return envelope, frozenset({word, "duplicate"} if replayed else {word})


#: Bodies that are no push at all.
_NOT_PUSHES: Final = (b"{", b"\xff\xfe{}", b"null", b"[]", b'"message"', b"0", b"{}", b"[" * 60_000)
_NOT_MESSAGES: Final[tuple[object, ...]] = (None, "x", [], 5, True)
_NOT_ATTRIBUTE_MAPS: Final[tuple[object, ...]] = ([], "ce-id", 5)
_NOT_STRINGS: Final[tuple[object, ...]] = (1, None, [], {}, True)
_BLANK: Final = ("", "   ", "\t\n")
#: ``data`` that is not base64 of a JSON object.
_NOT_DATA: Final[tuple[object, ...]] = (
    5,
    [],
    {},
    True,
    1.5,
    "%%%",
    "abc",
    "=",
    "eyJ",
    "YQ",
    "\u00e9",
)
_DEEP: Final = 5_000
_NOT_OBJECTS: Final = (
    b"\xff\xfe",
    b"[1]",
    b"null",
    b"{",
    b'"x"',
    b'{"n": ' + b"9" * 5000 + b"}",  # an integer too long to convert
    b'{"a":' * _DEEP + b"1" + b"}" * _DEEP,  # nested too deeply
)
#: Odd but usable parts of ids and types (a fresh id follows, so none is a redelivery).
_ODD_IDS: Final = ("../../x", "a/b", "__x__", ".", "\u0000", "\U0001f600", "id " * 300)
_BAD_RECORDS: Final[tuple[object, ...]] = (
    None,
    "conferenceRecords/x",
    {},
    {"name": 5},
    {"name": "conferenceRecords/../x"},
    {"name": "conferenceRecords/"},
    {"name": "spaces/x"},
    {"name": "conferenceRecords/" + "a" * 129},
    {"name": "conferenceRecords/a b"},
)
_BAD_SUBSCRIPTIONS: Final[tuple[object, ...]] = (
    None,
    {},
    {"name": "subscriptions/"},
    {"name": "subscriptions/../x"},
    {"name": "projects/p/subscriptions/s"},
    {"name": 7},
)
_STRUCTURED: Final = {"content-type": "application/cloudevents+json"}


def _hostile_push(rnd: random.Random, world: World) -> Push:
    """An envelope Pub/Sub would not send, or an event that cannot be used: acknowledged all the
    same, ``204`` (unusable) or ``200``."""
    fresh = f"fuzz-hostile-{_hex(rnd)}"
    ended = _attributes(CONFERENCE_ENDED, fresh, _MEET, None, world.now)
    other = _attributes(rnd.choice(_OTHER_EVENT_TYPES), fresh, _MEET, None, world.now)
    lifecycle = _attributes(rnd.choice(_LIFECYCLE), fresh, _MEET, None, world.now)
    structured = {"specversion": "1.0", "id": fresh, "type": rnd.choice(_OTHER_EVENT_TYPES)}
    unknown_record = {"conferenceRecord": {"name": f"conferenceRecords/fuzz-{_hex(rnd)}"}}
    ignored, unusable = frozenset({"ignored"}), frozenset({"unusable"})

    def wrapped(attributes: object, data: object = "") -> dict[str, Any]:
        return push_envelope(rnd, attributes, data, now=world.now)

    def without(name: str) -> dict[str, str]:
        return {k: v for k, v in rnd.choice((ended, other)).items() if k != name}

    def lone_surrogate() -> bytes:
        # JSON can carry a lone surrogate (an escape); Python's str holds it, UTF-8 cannot.
        body = json.dumps(wrapped(other), ensure_ascii=True).encode()
        return body.replace(fresh.encode(), b"\\ud800" + fresh.encode())

    choices: tuple[Callable[[], Push], ...] = (
        lambda: (rnd.choice(_NOT_PUSHES), _UNUSABLE),
        lambda: ({"message": rnd.choice(_NOT_MESSAGES)}, _UNUSABLE),
        lambda: ({"subscription": "projects/x/subscriptions/y"}, _UNUSABLE),
        lambda: (wrapped(rnd.choice(_NOT_ATTRIBUTE_MAPS)), _UNUSABLE),
        lambda: (wrapped({**ended, "ce-id": rnd.choice(_NOT_STRINGS)}), _UNUSABLE),
        lambda: (wrapped({**other, "ce-type": rnd.choice(_NOT_STRINGS)}), _UNUSABLE),
        lambda: (wrapped(without(rnd.choice(("ce-id", "ce-type")))), _UNUSABLE),
        lambda: (
            wrapped({**ended, rnd.choice(("ce-id", "ce-type")): rnd.choice(_BLANK)}),
            _UNUSABLE,
        ),
        lambda: (wrapped({**other, rnd.choice(("ce-id", "ce-type")): "x" * 1025}), _UNUSABLE),
        lambda: (wrapped({}), _UNUSABLE),
        lambda: (wrapped(other, rnd.choice(_NOT_DATA)), _UNUSABLE),
        lambda: (wrapped(other, _b64(rnd.choice(_NOT_OBJECTS))), _UNUSABLE),
        lambda: (lone_surrogate(), frozenset({"ignored", "204"})),
        lambda: (wrapped({**other, "ce-id": rnd.choice(_ODD_IDS) + fresh}), ignored),
        lambda: (wrapped({**other, "ce-type": CONFERENCE_ENDED + rnd.choice(_ODD_IDS)}), ignored),
        lambda: (
            wrapped({**other, "ce-source": "s" * 5000, "ce-subject": "\ud83d\ude00"}),
            ignored,
        ),
        # Well-formed, but naming no conference record or subscription it can use.
        lambda: (wrapped(ended, _data({"conferenceRecord": rnd.choice(_BAD_RECORDS)})), unusable),
        lambda: (wrapped(ended, rnd.choice(("", _data({})))), unusable),
        lambda: (
            wrapped(lifecycle, _data({"subscription": rnd.choice(_BAD_SUBSCRIPTIONS)})),
            unusable,
        ),
        # Structured mode: the CloudEvent itself in the data.
        lambda: (wrapped(_STRUCTURED, _data(structured)), ignored),
        lambda: (wrapped({}, _data({**structured, "data": {"x": 1}})), ignored),
        lambda: (
            wrapped({}, _data({**structured, "type": CONFERENCE_ENDED, "data": unknown_record})),
            frozenset({"unreadable"}),
        ),
        lambda: (
            wrapped({}, _data({**structured, "data_base64": rnd.choice(_NOT_DATA[5:])})),
            _UNUSABLE,
        ),
        lambda: (wrapped({}, _data({**structured, "data": rnd.choice(([], "x", 5))})), _UNUSABLE),
        lambda: (wrapped({}, _data({**structured, "id": rnd.choice((None, 5, ""))})), _UNUSABLE),
        lambda: (wrapped(_STRUCTURED, _data({"x": 1})), _UNUSABLE),
    )
    return rnd.choice(choices)()


def _realistic_push(rnd: random.Random, world: World) -> Push:
    return _hostile_push(rnd, world) if rnd.random() < 0.4 else _well_formed_push(rnd, world)


# ------------------------------------------------------------------------------------------------
# Calendar notifications to ingest: the stack's channel, forgeries of it, hostile extras

_STATES: Final = ("exists", "not_exists")
#: States Google does not send: all but ``sync`` itself are changes.
_ODD_STATES: Final = ("SYNC", "Sync", "unknown", "exists,sync", "0", "deleted", "")
#: Odd header values; bytes are sent as they are (not text: Latin-1, a lone surrogate as UTF-8
#: would write it, NUL, which the HTTP server refuses).
_ODD_VALUES: Final[tuple[str | bytes, ...]] = (
    "",
    "x",
    ".",
    "..",
    "__x__",
    "a/b",
    "%2e%2e",
    "../../x",
    "null",
    "-1",
    "1e9",
    "99999999999999999999999",
    "'; DROP TABLE x; --",
    "${jndi:ldap://127.0.0.1/x}",
    "x" * 64,
    "x" * 65,
    "x" * 257,
    "\u00e9".encode(),
    "\U0001f600".encode(),
    b"\xed\xa0\x80",
    b"\xff\xfe",
    b"\xe9t\xe9",
    b"a\x00b",
    b"a\x7fb",
)
#: Channel ids of channels never opened, some of which the store cannot name.
_ODD_CHANNEL_IDS: Final[tuple[str | bytes, ...]] = (
    ".",
    "..",
    "__x__",
    "__x",
    "a/b",
    "/",
    "x" * 64,
    "x" * 65,
    "x" * 5000,
    "*",
    "%2F",
    "\u00e9".encode(),
    b"\xed\xa0\x80",
    b"\xff",
    b"\x00",
)
#: Bodies Google never sends (it sends none): ignored up to 4096 bytes, 413 beyond.
_NOTIFICATION_BODIES: Final[tuple[bytes, ...]] = (
    b"{}",
    b"null",
    b'{"kind": "api#channel", "resourceState": "exists"}',
    b'{"a": "\\ud800"}',
    b"\xff\xfe\x00",
    b"<xml/>",
    b"x" * MAX_NOTIFICATION_BODY,
    b"x" * (MAX_NOTIFICATION_BODY + 1),
    b" " * 66_000,
)
_BODY_TYPES: Final = (
    None,
    "application/json",
    "text/plain",
    "application/x-www-form-urlencoded",
    "application/json; charset=latin-1",
)
#: Beyond these the HTTP server in front of the function refuses the headers itself (431):
#: gunicorn's 8190 bytes a header line and 100 headers (requests adds about six).
_HEADER_LINE_LIMIT: Final = 8000
_HEADER_COUNT_LIMIT: Final = 90


def _get(headers: Mapping[str, str | bytes], name: str) -> str | bytes | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


def _set(headers: dict[str, str | bytes], name: str, value: str | bytes | None) -> None:
    """Set (None: remove) a header whatever the case of its name."""
    for key in [k for k in headers if k.lower() == name.lower()]:
        del headers[key]
    if value is not None:
        headers[name] = value


def _google_notification(
    rnd: random.Random, world: World, *, opened: bool
) -> dict[str, str | bytes]:
    """A notification as Google sends it, of the stack's channel (``opened``, when there is
    one) or of a channel never opened."""
    channel = (world.channel if opened else None) or Channel(
        id=_hex(rnd) * 2,
        resource_id=f"fuzz-resource-{_hex(rnd)}",
        token=base64.urlsafe_b64encode(rnd.randbytes(32)).decode().rstrip("="),
        calendar_id=(world.organizers or ["teacher@school.example"])[0],
    )
    roll = rnd.random()
    state = (
        "sync" if roll < 0.15 else rnd.choice(_STATES) if roll < 0.9 else rnd.choice(_ODD_STATES)
    )
    expires = world.now + timedelta(days=rnd.randint(1, 7))
    return {
        CHANNEL_ID: channel.id,
        CHANNEL_TOKEN: channel.token,
        "X-Goog-Channel-Expiration": expires.strftime("%a, %d %b %Y %H:%M:%S GMT"),
        RESOURCE_ID: channel.resource_id,
        "X-Goog-Resource-URI": (
            "https://www.googleapis.com/calendar/v3/calendars/"
            f"{quote(channel.calendar_id, safe='')}/events?alt=json"
        ),
        RESOURCE_STATE: state,
        "X-Goog-Message-Number": "1" if state == "sync" else str(rnd.randint(2, 10**12)),
    }


def _hostile_extras(rnd: random.Random, headers: dict[str, str | bytes]) -> None:
    """One or two things Google would not send, to the headers that are no credential."""
    others = [k for k in headers if k not in _IDENTITY]
    for _ in range(rnd.randint(1, 2)):
        roll = rnd.random()
        if roll < 0.3 and others:
            _set(headers, rnd.choice(others), None)
        elif roll < 0.6 and others:
            _set(headers, rnd.choice(others), rnd.choice(_ODD_VALUES))
        elif roll < 0.75:
            name = rnd.choice([*others, "X-Goog-Changed", "X-Fuzz-Huge"])
            headers[name] = "x" * rnd.choice((2000, 7000, 8100, 9000, 20_000))
        elif roll < 0.85:
            for index in range(rnd.choice((20, 95, 120))):
                headers[f"X-Fuzz-{index}"] = "v"
        else:
            headers[rnd.choice(("X-Goog-Changed", "X-Goog-Channel-Ids", "Forwarded"))] = rnd.choice(
                ("properties,time", "content", "for=127.0.0.1", "x")
            )


def _forged(rnd: random.Random, genuine: str) -> str | bytes | None:
    """Something close to a genuine value that is not it (None: the header left out)."""
    variants: list[str | bytes | None] = [
        genuine + "x",
        genuine[:-1],
        genuine.upper(),
        genuine.lower(),
        genuine[::-1],
        ("A" if genuine[:1] != "A" else "B") + genuine[1:],
        genuine * 2,
        "",
        None,
        hashlib.sha256(genuine.encode()).hexdigest(),  # what is stored of a token
        genuine.encode() + b"\xe9",
        genuine.encode() + b"\xed\xa0\x80",
        "x" * rnd.choice((64, 257, 7000, 9000)),
        rnd.choice(_ODD_VALUES),
    ]
    forged = rnd.choice(variants)
    return forged if forged != genuine else genuine + "x"


def _with_credential(
    rnd: random.Random, headers: dict[str, str | bytes], world: World, credential: str
) -> None:
    """The identity headers as ``credential`` says: the stack's channel, or a forgery of it.
    ``garbled`` keeps what the draft has (a channel never opened); ``webhook`` and ``bearer``
    (no token, another credential instead) get theirs when sent."""
    channel = world.channel
    if credential == "garbled" or channel is None:
        return
    genuine = {
        CHANNEL_ID: channel.id,
        CHANNEL_TOKEN: channel.token,
        RESOURCE_ID: channel.resource_id,
    }
    for name, value in genuine.items():
        _set(headers, name, value)
    if credential == "forged-token":
        _set(headers, CHANNEL_TOKEN, _forged(rnd, channel.token))
    elif credential == "other-resource":
        _set(headers, RESOURCE_ID, _forged(rnd, channel.resource_id))
    elif credential == "unknown-channel":
        forged = _forged(rnd, channel.id) if rnd.random() < 0.4 else rnd.choice(_ODD_CHANNEL_IDS)
        _set(headers, CHANNEL_ID, forged)
    elif credential in ("none", "webhook", "bearer"):
        _set(headers, CHANNEL_TOKEN, None)


def _server_refuses(value: str | bytes) -> bool:
    """Whether the HTTP server refuses a header value itself (400): control characters."""
    raw = value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")
    return any((byte < 0x20 and byte != 0x09) or byte == 0x7F for byte in raw)


def notification_outcomes(
    headers: Mapping[str, str | bytes], body: bytes, *, genuine: bool
) -> frozenset[str]:
    """What a notification may end with: the ``accepted`` word of a genuine one, else ``401``;
    ``413`` for a body over 4096 bytes; the HTTP server's ``400``/``431`` for headers it
    refuses."""
    if len(body) > MAX_NOTIFICATION_BODY:
        outcome = "413"
    elif genuine:
        outcome = "sync" if _get(headers, RESOURCE_STATE) == "sync" else "sync_enqueued"
    else:
        outcome = "401"
    possible = {outcome}
    if any(_server_refuses(value) for value in headers.values()):
        possible.add("400")
    lines = (len(name) + 2 + len(value) for name, value in headers.items())
    if len(headers) > _HEADER_COUNT_LIMIT or max(lines, default=0) > _HEADER_LINE_LIMIT:
        possible.add("431")
    return frozenset(possible)


def _notification_body(rnd: random.Random) -> tuple[bytes, str | None]:
    roll = rnd.random()
    if roll < 0.8:
        return b"", None
    return rnd.choice(_NOTIFICATION_BODIES), rnd.choice(_BODY_TYPES)


def _off_route(rnd: random.Random, *, authenticated: bool) -> Draft:
    """Another method on a documented path, or a path no function documents."""
    function = rnd.choice(("ingest", "api", "collect", "backfill", "meet_events"))
    if function in ("collect", "backfill"):
        # They serve POST at every path (documented): only another method is off the route.
        method = rnd.choice(_OTHER_METHODS)
        path = rnd.choice(("/", "/x", "/meetings/sync"))
    elif function in ("ingest", "meet_events"):
        # They serve POST / only (and ingest POST /calendar/notifications).
        served = ("/", "/calendar/notifications") if function == "ingest" else ("/",)
        if rnd.random() < 0.5:
            method, path = rnd.choice(_OTHER_METHODS), rnd.choice(served)
        else:
            method = rnd.choice(("POST", "GET"))
            paths = ["/meetings/sync", "/meetings/m-1", "/erasures", *_UNKNOWN_PATHS]
            if function == "meet_events":
                paths.append("/calendar/notifications")
            path = rnd.choice(paths)
    else:
        documented = {"/erasures": "POST", "/meetings/m-1": "GET", "/meetings/m-1/sync": "POST"}
        if rnd.random() < 0.5:
            path = rnd.choice(sorted(documented))
            method = rnd.choice([m for m in (*_OTHER_METHODS, "POST") if m != documented[path]])
        else:
            method = rnd.choice(("POST", "GET"))
            path = rnd.choice((*_UNKNOWN_PATHS, "/calendar/notifications"))
    body = b'{"type":"meeting.ended"}' if method in ("POST", "PUT", "PATCH") else b""
    return Draft(
        function=function,
        method=method,
        path=path,
        headers=(),
        body=body,
        content_type="application/json" if body else None,
        credential=rnd.choice(GOOD[function] if authenticated else BAD[function]),
        operation=None,
        mode="off-route",
    )


def _mode(rnd: random.Random) -> str:
    return GenerationMode.POSITIVE.value if rnd.random() < 0.7 else GenerationMode.NEGATIVE.value


class Generator:
    """Drafts for a batch, drawn with Hypothesis from schemathesis' strategies."""

    def __init__(self, world: World) -> None:
        self.world = world
        schema = schemathesis.openapi.from_dict(load_spec())
        by_route = {(op.key, op.method): op for op in operations()}
        self._strategies: dict[tuple[str, str], st.SearchStrategy[Any]] = {}
        self._operations: list[Operation] = []
        for result in schema.get_all_operations():
            if isinstance(result, Err):
                raise result.err()  # openapi.yaml is checked by tests/unit/test_openapi.py
            found = result.ok()
            op = by_route[(found.path, found.method.upper())]
            self._operations.append(op)
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                self._strategies[(op.operation_id, mode.value)] = found.as_strategy(
                    generation_mode=mode
                )

    def learn(self, status: int, body: bytes) -> None:
        """A meeting the stack answered with becomes a target of the drafts still to be drawn."""
        if not 200 <= status < 300:
            return
        try:
            answer = json.loads(body)
        except ValueError:
            return
        meeting_id = answer.get("meeting_id") if isinstance(answer, dict) else None
        if isinstance(meeting_id, str) and meeting_id not in self.world.meeting_ids:
            self.world.meeting_ids.append(meeting_id)

    def operations_for(self, *, authenticated: bool) -> list[Operation]:
        if authenticated and not self.world.erasures:
            return [op for op in self._operations if op.operation_id != "apiErase"]
        return list(self._operations)

    def cases(self, operation_id: str, mode: str, count: int, *, seed: int) -> list[Case[Any]]:
        """``count`` schemathesis cases of one operation in one mode (Hypothesis, seeded)."""
        found: list[Case[Any]] = []
        attempt = 0
        while len(found) < count:

            @hypothesis_seed(seed + 7919 * attempt)
            @settings(
                max_examples=count - len(found),
                database=None,
                phases=[Phase.generate],
                deadline=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(self._strategies[(operation_id, mode)])
            def collect(case: Case[Any]) -> None:
                found.append(case)

            collect()
            attempt += 1
        return found[:count]

    def generate(
        self,
        count: int,
        *,
        authenticated: bool,
        seed: int,
        sink: Callable[[Draft], None] | None = None,
    ) -> list[Draft]:
        """``count`` drafts, each also handed to ``sink`` as soon as its chunk is drawn."""
        plan = random.Random(seed)
        ops = self.operations_for(authenticated=authenticated)
        slots = [random.Random(plan.getrandbits(64)) for _ in range(count)]
        found: list[Draft] = []
        for start in range(0, count, _CHUNK):
            chunk = slots[start : start + _CHUNK]
            wanted: list[tuple[Operation, str] | None] = []
            for rnd in chunk:
                off_route = rnd.random() < 0.05
                op = rnd.choice(ops)
                wanted.append(None if off_route else (op, _mode(rnd)))
            groups: dict[tuple[str, str], list[int]] = {}
            for index, want in enumerate(wanted):
                if want is not None:
                    groups.setdefault((want[0].operation_id, want[1]), []).append(index)
            cases: dict[int, Case[Any]] = {}
            for (operation_id, mode), indices in sorted(groups.items()):
                key = f"{seed}/{authenticated}/{start}/{operation_id}/{mode}".encode()
                drawn = self.cases(operation_id, mode, len(indices), seed=zlib.crc32(key))
                cases.update(zip(indices, drawn, strict=True))
            for index, (rnd, want) in enumerate(zip(chunk, wanted, strict=True)):
                if want is None:
                    draft = _off_route(rnd, authenticated=authenticated)
                else:
                    draft = self._draft(rnd, want[0], want[1], cases[index], authenticated)
                found.append(draft)
                if sink is not None:
                    sink(draft)
        return found

    def _draft(
        self, rnd: random.Random, op: Operation, mode: str, case: Case[Any], authenticated: bool
    ) -> Draft:
        if op.operation_id == NOTIFICATIONS:
            return self._notification(rnd, op, mode, case, authenticated)
        parameters = dict(case.path_parameters or {})
        body: object = case.body
        outcomes: frozenset[str] | None = None
        push = op.operation_id == "meetEventsPush"
        # The unauthenticated batch is mostly realistic: those are the requests that would
        # change something if a credential check were missing. So are pushes: schemathesis'
        # own are almost all unusable (204).
        if mode == "positive" and rnd.random() < (0.6 if authenticated and not push else 0.8):
            if push:
                body, outcomes = _realistic_push(rnd, self.world)
            else:
                parameters, body = _realise(rnd, op, parameters, body, self.world)
        data, content_type = _encode(rnd, body, negative=mode == "negative")
        headers = tuple(
            (str(name), _header_value(value))
            for name, value in (case.headers or {}).items()
            if str(name).lower() != "content-type"
        )
        return Draft(
            function=op.function,
            method=op.method,
            path=op.local_path(parameters),
            headers=headers,
            body=data,
            content_type=content_type,
            credential=rnd.choice(GOOD[op.function] if authenticated else BAD[op.function]),
            operation=op,
            mode=mode,
            webhook_id=rnd.choice(_REPLAYED_IDS) if rnd.random() < 0.1 else None,
            outcomes=outcomes,
        )

    def _notification(
        self, rnd: random.Random, op: Operation, mode: str, case: Case[Any], authenticated: bool
    ) -> Draft:
        """A Calendar notification: mostly as Google sends it (some with hostile extras), else
        schemathesis' headers; then the credential's identity headers."""
        credential = rnd.choice(credentials_for(op.function, op, authenticated=authenticated))
        body, content_type = b"", None
        if mode == "positive" and rnd.random() < 0.8:
            # "garbled" keeps the identity drawn here: a channel never opened.
            headers = _google_notification(rnd, self.world, opened=credential != "garbled")
            if rnd.random() < 0.4:
                _hostile_extras(rnd, headers)
            body, content_type = _notification_body(rnd)
        else:
            headers = {
                str(name): _header_value(value)
                for name, value in (case.headers or {}).items()
                if str(name).lower() != "content-type"
            }
        _with_credential(rnd, headers, self.world, credential)
        genuine = credential in NOTIFICATION_GOOD and self.world.channel is not None
        return Draft(
            function=op.function,
            method=op.method,
            path=op.local_path({}),
            headers=tuple(headers.items()),
            body=body,
            content_type=content_type,
            credential=credential,
            operation=op,
            mode=mode,
            outcomes=notification_outcomes(headers, body, genuine=genuine),
        )
