"""Properties of the attendance rules and the partition, over generated inputs."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.attendance import (
    Participant,
    Session,
    _one_session_participant,
    _participant,
    build_participants,
    meeting_to_json,
    meetings_by_conference,
)
from functions.intervals import Span, attended_seconds
from functions.meeting_codes import canonical_meeting_code
from functions.participant_keys import participant_key
from functions.reports_events import (
    SessionCollector,
    TextRepairs,
    decode_parameter,
    parse_activity,
)
from functions.selection import MeetingSpec, credited_spans, select_meetings
from functions.timestamps import format_timestamp, parse_timestamp
from tests.unit.factories import activity, at, session

settings.register_profile(
    "unit", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("unit")

PEOPLE = ["a@s.example", "B@S.example", "b@s.example", "+1415", None]


@st.composite
def activities(draw: st.DrawFn) -> list[dict[str, Any]]:
    count = draw(st.integers(min_value=1, max_value=12))
    items = []
    for index in range(count):
        person = draw(st.sampled_from(PEOPLE))
        items.append(
            activity(
                leave=at(draw(st.integers(0, 240_000)) / 1000),
                qualifier=str(draw(st.integers(-(2**63), 2**63 - 1))),
                duration=draw(st.integers(0, 3600)),
                conference_id=draw(st.sampled_from(["c1", "c2"])),
                endpoint_id=draw(st.sampled_from([f"e{index}", "e0", None])),
                identifier=person,
                identifier_type="phone_number" if person == "+1415" else "email_address",
                display_name=draw(st.sampled_from(["Ann", "", None])),
            )
        )
    return items


def summary(items: list[Any]) -> Any:
    collector = SessionCollector()
    collector.add_activities(items)
    return [meeting_to_json(m) for m in meetings_by_conference(collector.sessions())]


@given(activities())
def test_union_is_at_most_the_sum_and_at_least_the_longest_session(items: list[Any]) -> None:
    collector = SessionCollector()
    collector.add_activities(items)
    for participant in build_participants(collector.sessions()):
        longest = max(s.duration_seconds for s in participant.sessions)
        assert longest <= participant.attended_seconds <= participant.total_session_seconds


@given(activities(), st.randoms(use_true_random=False), st.integers(1, 4))
def test_results_ignore_order_page_splits_and_duplicates(
    items: list[Any], rng: random.Random, pages: int
) -> None:
    expected = summary(items)
    copies = [json.loads(json.dumps(item)) for item in items]
    shuffled = items + rng.sample(copies, k=rng.randint(0, len(copies)))
    rng.shuffle(shuffled)
    size = max(1, len(shuffled) // pages)
    paged = [shuffled[i : i + size] for i in range(0, len(shuffled), size)]
    collector = SessionCollector()
    for page in paged:
        collector.add_activities(page)
    got = [meeting_to_json(m) for m in meetings_by_conference(collector.sessions())]
    assert got == expected


@given(activities())
def test_meeting_total_is_the_sum_of_its_participants(items: list[Any]) -> None:
    collector = SessionCollector()
    collector.add_activities(items)
    for meeting in meetings_by_conference(collector.sessions()):
        assert meeting.total_attended_seconds == sum(
            p.attended_seconds for p in meeting.participants
        )
        assert meeting.participant_count == len({p.participant_key for p in meeting.participants})


@st.composite
def meeting_specs(draw: st.DrawFn) -> list[MeetingSpec]:
    count = draw(st.integers(1, 5))
    specs = []
    for index in range(count):
        ended = draw(st.integers(0, 600))
        length = draw(st.integers(0, 120))
        specs.append(
            MeetingSpec(
                meeting_id=f"m{index}",
                meeting_code="abc-defg-hij",
                started_at=draw(st.sampled_from([at(ended - length), None])),
                ended_at=at(ended),
                merged=draw(st.booleans()) and count > 1,
                window_before_s=draw(st.sampled_from([0, 900])),
                window_after_s=draw(st.sampled_from([0, 3600])),
            )
        )
    return specs


@given(meeting_specs(), st.lists(st.tuples(st.integers(-300, 900), st.integers(0, 400))))
def test_credited_spans_are_disjoint_and_nobody_is_credited_twice(
    specs: list[MeetingSpec], raw_sessions: list[tuple[int, int]]
) -> None:
    spans = list(credited_spans(specs).values())
    for i, first in enumerate(spans):
        for second in spans[i + 1 :]:
            overlap = first.intersection(second)
            assert overlap.is_empty(), (first, second)
    sessions = [
        session(
            at(start),
            at(start) + timedelta(minutes=length),
            key="a@s.example" if n % 2 else "b@s.example",
            endpoint_id=f"e{n}",
        )
        for n, (start, length) in enumerate(raw_sessions)
    ]
    result = select_meetings(specs, sessions)
    for key in ("a@s.example", "b@s.example"):
        mine = [s for s in sessions if participant_key(s) == key]
        union = attended_seconds([(s.join_time, s.leave_time) for s in mine])
        credited = sum(
            p.attended_seconds
            for r in result.values()
            for p in r.meeting.participants
            if p.participant_key == key
        )
        assert credited <= union + len(result)


# ------------------------------------------------------------------------------
# The fast paths of parse_activity and build_participants against the plain rules.

_STRING_PARAMETERS = (
    "conference_id",
    "meeting_code",
    "identifier",
    "identifier_type",
    "display_name",
    "device_type",
    "location_country",
    "location_region",
    "calendar_event_id",
    "organizer_email",
    "endpoint_id",
    "ip_address",
)


#: Rejected when not valid Unicode; the other string parameters are repaired (docs/firestore.md).
_IDENTITIES = ("conference_id", "meeting_code", "identifier", "endpoint_id")
_MAX_DURATION = 30 * 24 * 3600


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _plain_repair(text: str) -> str:
    return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)


def _escaped(text: str) -> str:
    return "".join(f"\\u{ord(c):04x}" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)


def _reference_session(
    id_block: object, event: dict[str, Any], keep_extra: bool, repairs: list[int] | None = None
) -> Any:
    """``call_ended`` event → Session or skip reason, written the plain way: one loop over the
    parameters, the dataclass constructor. The descriptive texts it repaired are appended to
    ``repairs`` when the event yields a session."""
    try:
        return _plain_rules(id_block, event, keep_extra, repairs)
    except Exception as error:
        return f"call_ended that could not be decoded ({type(error).__name__})"


def _plain_rules(
    id_block: object, event: dict[str, Any], keep_extra: bool, repairs: list[int] | None
) -> Any:
    if not isinstance(id_block, dict):
        return "call_ended without id"
    raw_time = id_block.get("time")
    leave_time = parse_timestamp(raw_time)
    if leave_time is None:
        return "call_ended with an unparseable or offset-less id.time"
    if not 2000 <= leave_time.year <= 2100:
        return "call_ended with an id.time outside 2000-2100"
    qualifier = id_block.get("uniqueQualifier")
    time_text = format_timestamp(leave_time)
    if isinstance(raw_time, str) and len(raw_time) == 24 and raw_time[19] + raw_time[23] == ".Z":
        time_text = raw_time
    params = event.get("parameters")
    well_formed = [
        p
        for p in (params if isinstance(params, list) else [])
        if isinstance(p, dict) and isinstance(p.get("name"), str)
    ]
    by_name = {p["name"]: p for p in well_formed}
    strings: dict[str, str | None] = {}
    for name in _STRING_PARAMETERS:
        value = by_name.get(name, {}).get("value")
        strings[name] = value if isinstance(value, str) and value else None
    if strings["conference_id"] is None:
        return "call_ended without conference_id"
    repaired = 0
    for name in _STRING_PARAMETERS:
        value = strings[name]
        if value is None or _is_unicode(value):
            continue
        if name in _IDENTITIES:
            return f"call_ended with a{'n' if name[0] in 'aeiou' else ''} {name} that is not valid Unicode"
        strings[name] = _plain_repair(value)
        repaired += 1
    duration = (
        decode_parameter(by_name["duration_seconds"]) if "duration_seconds" in by_name else None
    )
    if type(duration) is not int:
        return "call_ended without an integer duration_seconds"
    if duration < 0:
        return "call_ended with a negative duration_seconds"
    if duration > _MAX_DURATION:
        return "call_ended with duration_seconds outside 0…2592000"
    join_time = leave_time - timedelta(seconds=duration)
    if join_time.year < 2000:
        return "call_ended with a join time (id.time - duration_seconds) before 2000"
    known = {*_STRING_PARAMETERS, "duration_seconds", "is_external"}
    extra = (
        {name: decode_parameter(p) for name, p in by_name.items() if name not in known}
        if keep_extra
        else None
    )
    code = strings.pop("meeting_code")
    if repairs is not None:
        repairs.append(repaired)
    return Session(
        event_id=_escaped(f"{time_text}/{'' if qualifier is None else qualifier}"),
        join_time=join_time,
        leave_time=leave_time,
        duration_seconds=duration,
        meeting_code=None if code is None else canonical_meeting_code(code) or None,
        is_external="is_external" in by_name and decode_parameter(by_name["is_external"]) is True,
        extra=extra,
        **strings,  # type: ignore[arg-type]
    )


_NAMES = st.sampled_from([*_STRING_PARAMETERS, "duration_seconds", "is_external", "product_type"])
_VALUES = st.one_of(
    st.sampled_from(["", " ", "x", "ABCDEFGHIJ", "abc-defg-hij", "a@b.example", "Zoë"]),
    # Not valid Unicode (what json.loads makes of "\\ud800"), and control characters.
    st.sampled_from(["\ud800", "a\udfffb", "Zoë\udbff", "\udc00\ud800", "\x00", "\x1b[0m"]),
    st.integers(-5, 5),
    st.booleans(),
    st.none(),
)
_PARAMETER = st.one_of(
    st.builds(lambda n, v: {"name": n, "value": v}, _NAMES, _VALUES),
    st.builds(
        lambda n, v: {"name": n, "intValue": v},
        _NAMES,
        st.one_of(
            st.sampled_from(["0", "60", " 7 ", "-3", "1.5", "x", "2592000", "2592001"]),
            st.sampled_from(["99999999999", str(2**63 - 1), "9" * 5000, "1_000", "٣"]),
            st.integers(-3, 9),
            st.integers(-(2**70), 2**70),
            st.floats(allow_nan=False),
        ),
    ),
    st.builds(
        lambda n, v: {"name": n, "boolValue": v},
        _NAMES,
        st.one_of(st.booleans(), st.sampled_from(["true", "False", "yes"])),
    ),
    st.builds(lambda n: {"name": n, "multiValue": ["a"]}, _NAMES),
    # Malformed entries: dropped by both.
    st.sampled_from([5, "x", None, [], {}, {"value": "x"}, {"name": 5, "value": "x"}]),
    st.just({"name": ["unhashable"], "value": "x"}),
)
_TIMES = st.one_of(
    st.builds(lambda ms: format_timestamp(at(ms / 1000)), st.integers(-(10**6), 10**6)),
    st.builds(
        lambda ms: format_timestamp(at(ms / 1000)), st.integers(-(10**6), 10**6)
    ),  # canonical
    st.sampled_from(
        [
            "2026-01-15T10:00:00Z",
            "2026-01-15T11:00:00.123456+01:00",
            "2026-01-15 10:00:00.000Z",
            "2026-01-15T10:00:00",
            "not a time",
            "",
            # The years 2000-2100, their edges, and years 1 and 9999 moved by offsets.
            "0001-01-01T00:00:00.000Z",
            "0001-01-01T00:30:00+01:00",
            "9999-12-31T23:59:59.999Z",
            "9999-12-31T23:30:00-01:00",
            "1999-12-31T23:59:59.999Z",
            "2000-01-01T00:00:00.000Z",
            "2000-01-01T00:30:00+01:00",
            "2000-01-01T01:00:00.000Z",
            "2100-12-31T23:59:59.999Z",
            "2101-01-01T00:00:00.000Z",
            "2101-01-01T00:30:00+01:00",
        ]
    ),
    st.builds(
        lambda moment, offset: moment.isoformat(timespec="milliseconds") + offset,
        st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),  # noqa: DTZ001
        st.sampled_from(["Z", "+01:00", "-01:00", "+14:00"]),
    ),
    st.none(),
    st.integers(),
)
_TEXT = st.text(
    alphabet=st.one_of(st.characters(), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)),
    max_size=3,
)


@st.composite
def raw_parameters(draw: st.DrawFn) -> list[Any]:
    """Mostly usable parameters with distinct values, then noise, in any order."""
    params: list[Any] = []
    for name in draw(st.permutations(_STRING_PARAMETERS)):
        if draw(st.integers(0, 5)):
            params.append({"name": name, "value": draw(st.text(max_size=3) | _TEXT)})
    if draw(st.integers(0, 5)):
        duration = st.integers(0, 9999) | st.integers(-(2**64), 2**64) | st.just(2_592_000)
        params.append({"name": "duration_seconds", "intValue": str(draw(duration))})
    if draw(st.booleans()):
        params.append({"name": "is_external", "boolValue": draw(st.booleans())})
    params += draw(st.lists(_PARAMETER, max_size=6))
    return draw(st.permutations(params))


@st.composite
def raw_activities(draw: st.DrawFn) -> Any:
    event = st.one_of(
        st.builds(
            lambda params, name: {"name": name, "parameters": params},
            raw_parameters(),
            st.sampled_from(["call_ended", "call_ended", "call_ended", "other"]),
        ),
        st.just({"name": "call_ended", "parameters": "none"}),
        st.just("not an event"),
    )
    # events: a list, or (as log pipelines store them) one event object.
    events = draw(st.lists(event, max_size=3) | event.filter(lambda e: isinstance(e, dict)))
    id_block = draw(
        st.one_of(
            st.builds(
                lambda t, q: {"time": t, "uniqueQualifier": q},
                _TIMES,
                st.one_of(
                    st.none(), st.sampled_from(["1", "-9", "\ud800", "q\udfff"]), st.integers()
                ),
            ),
            st.just("no id"),
        )
    )
    return {"id": id_block, "events": events}


@settings(max_examples=400)
@given(raw_activities(), st.booleans(), st.booleans())
def test_parse_activity_equals_the_plain_rules(
    item: dict[str, Any], keep_extra: bool, share_strings: bool
) -> None:
    counted = TextRepairs()
    sessions, reasons, seen = parse_activity(
        item, keep_extra=keep_extra, share_strings=share_strings, repairs=counted
    )
    events = item["events"] if isinstance(item["events"], list) else [item["events"]]
    repaired: list[int] = []
    expected = [
        _reference_session(item["id"], event, keep_extra, repaired)
        for event in events
        if isinstance(event, dict) and event.get("name") == "call_ended"
    ]
    assert seen == len(events)
    assert counted.count == sum(repaired)
    assert reasons == [e for e in expected if isinstance(e, str)]
    wanted = [e for e in expected if not isinstance(e, str)]
    assert sessions == wanted
    assert [(repr(s), hash(s), s.extra) for s in sessions] == [
        (repr(s), hash(s), s.extra) for s in wanted
    ]
    assert all(type(s) is Session for s in sessions)


_CLIPS = st.one_of(
    st.none(),
    st.builds(
        lambda a, b: Span(None if a is None else at(a), None if b is None else at(b)),
        st.one_of(st.none(), st.integers(-30, 90)),
        st.one_of(st.none(), st.integers(-30, 90)),
    ),
)


@given(
    st.integers(-60, 120),
    st.integers(0, 7200),
    st.sampled_from([None, "", "a@s.example", "+1415"]),
    st.sampled_from([None, "", "email_address", "phone_number"]),
    st.sampled_from([None, "", "Ann"]),
    st.booleans(),
    _CLIPS,
    st.booleans(),
)
def test_one_session_participant_equals_the_general_rules(
    leave_minutes: int,
    duration: int,
    identifier: str | None,
    identifier_type: str | None,
    display_name: str | None,
    is_external: bool,
    clip: Span | None,
    email_rule: bool,
) -> None:
    leave = at(leave_minutes, seconds=0.25)
    one = Session(
        event_id=f"{format_timestamp(leave)}/1",
        conference_id="c1",
        endpoint_id="e1",
        join_time=leave - timedelta(seconds=duration),
        leave_time=leave,
        duration_seconds=duration,
        identifier=identifier,
        identifier_type=identifier_type,
        display_name=display_name,
        is_external=is_external,
    )
    fast = _one_session_participant("k", email_rule, one, clip)
    general = _participant("k", email_rule, [one], clip)
    assert type(fast) is Participant
    assert fast == general
    assert repr(fast) == repr(general)
    assert hash(fast) == hash(general)
