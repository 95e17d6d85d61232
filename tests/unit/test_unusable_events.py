"""Bad Reports events are contained (docs/firestore.md and §2): unusable ``call_ended`` events are
skipped and counted, descriptive texts that are not valid Unicode are repaired and counted, one bad
event never stops the others, and no dump makes ``summarize`` end in a traceback."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.attendance import Session, meetings_by_conference
from functions.cli import cli
from functions.dumps import Summary, summarize_dumps, write_summary_json
from functions.errors import InvalidInput
from functions.reports_events import SessionCollector, TextRepairs, parse_activity
from tests.unit.factories import activity, at

ROOT = Path(__file__).resolve().parents[2]
MAX_DURATION = 2_592_000
BAD = "\ud800"  # a lone surrogate: what json.loads makes of the escape "\\ud800"
PAGE_KIND = "admin#reports#activities"
STRING_PARAMETERS = (
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
IDS = ("conference_id", "meeting_code", "identifier", "endpoint_id")
DESCRIPTIVE = tuple(name for name in STRING_PARAMETERS if name not in IDS)


def through_json(value: Any) -> Any:
    """What a dump holding ``value`` decodes to: lone surrogates travel as ``\\ud800`` escapes."""
    return json.loads(json.dumps(value))


def summarize_text(text: str) -> Summary:
    return summarize_dumps(["-"], stdin=io.BytesIO(text.encode()))


def run(args: list[str], stdin: str | bytes | None = None) -> Any:
    return CliRunner().invoke(cli, args, input=stdin)


def activity_with(**fields: Any) -> dict[str, Any]:
    """:func:`activity` with parameters given by name (any of its keywords)."""
    return activity(**fields)


def with_param(item: dict[str, Any], name: str, **value: object) -> dict[str, Any]:
    """``item`` with the parameter ``name`` replaced by ``{"name": name, **value}``."""
    event = item["events"][0]
    event["parameters"] = [p for p in event["parameters"] if p.get("name") != name]
    event["parameters"].append({"name": name, **value})
    return item


# --- unusable call_ended events: each skipped with exactly one reason --------------------------


UNUSABLE: list[tuple[str, Callable[[], dict[str, Any]], str]] = [
    ("no id", lambda: {**activity(), "id": None}, "call_ended without id"),
    ("no conference_id", lambda: activity(conference_id=None), "call_ended without conference_id"),
    (
        "conference_id not a string",
        lambda: with_param(activity(), "conference_id", value=7),
        "call_ended without conference_id",
    ),
    (
        "duration as a float",
        lambda: with_param(activity(), "duration_seconds", intValue=60.0),
        "call_ended without an integer duration_seconds",
    ),
    (
        "duration as a bool",
        lambda: with_param(activity(), "duration_seconds", intValue=True),
        "call_ended without an integer duration_seconds",
    ),
    (
        "duration of 5,000 digits",
        lambda: activity(duration="9" * 5000),
        "call_ended without an integer duration_seconds",
    ),
    (
        "negative duration",
        lambda: activity(duration=-1),
        "call_ended with a negative duration_seconds",
    ),
    (
        "duration one second over 30 days",
        lambda: activity(duration=MAX_DURATION + 1),
        "call_ended with duration_seconds outside 0…2592000",
    ),
    (
        "duration 99999999999",
        lambda: activity(duration="99999999999"),
        "call_ended with duration_seconds outside 0…2592000",
    ),
    (
        "duration int64 max",
        lambda: activity(duration=str(2**63 - 1)),
        "call_ended with duration_seconds outside 0…2592000",
    ),
    (
        "duration as a JSON integer beyond int64",
        lambda: with_param(activity(), "duration_seconds", intValue=2**70),
        "call_ended with duration_seconds outside 0…2592000",
    ),
    (
        "id.time in year 1",
        lambda: activity(leave="0001-01-01T00:00:00.000Z", duration=0),
        "call_ended with an id.time outside 2000-2100",
    ),
    (
        "id.time in year 9999",
        lambda: activity(leave="9999-12-31T23:59:59.999Z"),
        "call_ended with an id.time outside 2000-2100",
    ),
    (
        "id.time just before 2000",
        lambda: activity(leave="1999-12-31T23:59:59.999Z", duration=0),
        "call_ended with an id.time outside 2000-2100",
    ),
    (
        "id.time in 2000 by its offset, 1999 in UTC",
        lambda: activity(leave="2000-01-01T00:30:00+01:00", duration=0),
        "call_ended with an id.time outside 2000-2100",
    ),
    (
        "id.time in 2101",
        lambda: activity(leave="2101-01-01T00:00:00.000Z"),
        "call_ended with an id.time outside 2000-2100",
    ),
    (
        "id.time of year 1 moved before year 1 by its offset",
        lambda: activity(leave="0001-01-01T00:30:00+01:00"),
        "call_ended with an unparseable or offset-less id.time",
    ),
    (
        "id.time of 9999 moved past 9999 by its offset",
        lambda: activity(leave="9999-12-31T23:30:00-01:00"),
        "call_ended with an unparseable or offset-less id.time",
    ),
    (
        "join time before 2000",
        lambda: activity(leave="2000-01-01T00:00:30.000Z", duration=31),
        "call_ended with a join time (id.time - duration_seconds) before 2000",
    ),
    *(
        (
            f"{name} not valid Unicode",
            (lambda name=name: through_json(activity_with(**{name: f"x{BAD}"}))),
            f"call_ended with a{'n' if name[0] in 'aeiou' else ''} {name} that is not valid Unicode",
        )
        for name in IDS
    ),
]


@pytest.mark.parametrize(
    ("make", "reason"), [(m, r) for _, m, r in UNUSABLE], ids=[n for n, _, _ in UNUSABLE]
)
def test_unusable_call_ended_is_skipped_with_one_reason(
    make: Callable[[], dict[str, Any]], reason: str
) -> None:
    item = make()
    assert parse_activity(item) == ([], [reason], 1)
    collector = SessionCollector()
    collector.add_activity(item)
    assert (collector.events_read, collector.events_used, collector.events_skipped) == (1, 0, 1)
    assert collector.warnings() == [f"1 event skipped: {reason}"]


@pytest.mark.parametrize(
    ("leave", "duration"),
    [
        ("2000-01-01T00:00:00.000Z", 0),
        ("2000-01-01T00:00:30.000Z", 30),
        ("2100-12-31T23:59:59.999Z", MAX_DURATION),
        ("2101-01-01T00:59:59.999+01:00", 0),
        ("2026-01-15T10:00:00.000Z", MAX_DURATION),
    ],
)
def test_the_bounds_themselves_are_usable(leave: str, duration: int) -> None:
    (got,), reasons, _ = parse_activity(activity(leave=leave, duration=duration))
    assert reasons == []
    assert got.duration_seconds == duration
    assert got.join_time == got.leave_time - timedelta(seconds=duration)


def test_reason_order_decides_which_one_reason_an_event_gets() -> None:
    """Several faults, one reason: the first rule that fails (time, ids, then duration)."""
    item = through_json(activity(leave="1990-01-01T00:00:00.000Z", conference_id=BAD, duration=-1))
    assert parse_activity(item)[1] == ["call_ended with an id.time outside 2000-2100"]
    item = through_json(activity(conference_id=BAD, identifier=BAD, duration=-1))
    assert parse_activity(item)[1] == ["call_ended with a conference_id that is not valid Unicode"]
    item = through_json(activity(identifier=BAD, duration="x"))
    assert parse_activity(item)[1] == ["call_ended with an identifier that is not valid Unicode"]


# --- descriptive texts: repaired and counted ---------------------------------------------------


@pytest.mark.parametrize("name", DESCRIPTIVE)
@pytest.mark.parametrize(
    ("raw", "repaired"),
    [
        (f"a{BAD}b", "a\ufffdb"),
        (f"{BAD}x\udfff", "\ufffdx\ufffd"),  # each bad code point becomes one U+FFFD
        ("\udfff\ud800", "\ufffd\ufffd"),  # a reversed pair is two bad code points
        (f"Zoë {BAD}", "Zoë \ufffd"),
    ],
)
def test_descriptive_text_that_is_not_valid_unicode_is_repaired_and_counted(
    name: str, raw: str, repaired: str
) -> None:
    item = through_json(activity_with(**{name: raw}))
    repairs = TextRepairs()
    (got,), reasons, _ = parse_activity(item, repairs=repairs)
    assert reasons == []
    assert getattr(got, name) == repaired
    assert repairs.count == 1
    collector = SessionCollector()
    collector.add_activity(item)
    assert collector.texts_repaired == 1
    assert collector.warnings() == ["1 descriptive text(s) repaired: not valid Unicode"]


def test_valid_non_ascii_text_is_kept_as_is_and_not_counted() -> None:
    texts: dict[str, Any] = {name: f"Zoë ☃ 😀 {name}" for name in STRING_PARAMETERS}
    texts["meeting_code"] = "Zoë-Code"
    collector = SessionCollector()
    collector.add_activity(through_json(activity(**texts)))
    (got,) = collector.sessions()
    assert got.display_name == "Zoë ☃ 😀 display_name"
    assert got.conference_id == "Zoë ☃ 😀 conference_id"
    assert (collector.texts_repaired, collector.warnings()) == (0, [])


def test_every_repaired_text_of_every_used_event_counts() -> None:
    items = [
        through_json(activity(endpoint_id="e1", display_name=BAD, device_type=BAD)),
        through_json(activity(endpoint_id="e2", location_region=f"B{BAD}rlin")),
        # Skipped events are counted as skipped; their texts are not counted as repaired.
        through_json(activity(endpoint_id="e3", display_name=BAD, duration="x")),
    ]
    collector = SessionCollector()
    collector.add_activities(items)
    assert (collector.events_used, collector.events_skipped, collector.texts_repaired) == (2, 1, 3)
    assert collector.warnings() == [
        "1 event skipped: call_ended without an integer duration_seconds",
        "3 descriptive text(s) repaired: not valid Unicode",
    ]


def test_a_lone_surrogate_in_the_unique_qualifier_leaves_a_valid_event_id() -> None:
    (got,), _, _ = parse_activity(through_json(activity(qualifier=f"q{BAD}")))
    assert got.event_id == "2026-01-15T10:00:00.000Z/q\\ud800"
    got.event_id.encode("utf-8")
    (other,), _, _ = parse_activity(through_json(activity(qualifier="q\udfff")))
    assert other.event_id != got.event_id


def test_summarize_warns_of_repaired_texts_and_writes_them_as_u_fffd() -> None:
    text = json.dumps([activity(display_name=f"Ann{BAD}", device_type=BAD)])
    summary = summarize_text(text)
    assert summary.warnings == ["2 descriptive text(s) repaired: not valid Unicode"]
    result = run(["summarize", "--json", "-"], stdin=text)
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    (participant,) = got["meetings"][0]["participants"]
    assert participant["display_name"] == "Ann\ufffd"
    assert participant["sessions"][0]["device_type"] == "\ufffd"
    assert got["warnings"] == ["2 descriptive text(s) repaired: not valid Unicode"]
    table = run(["summarize", "-"], stdin=text)
    assert table.exit_code == 0, table.output
    assert "Ann\ufffd" in table.stdout
    assert "warning: 2 descriptive text(s) repaired: not valid Unicode" in table.stderr


# --- one bad event never stops the others -------------------------------------------------------


def test_an_event_that_raises_while_decoded_is_skipped_and_named() -> None:
    class Hostile(dict[str, Any]):
        def get(self, key: str, default: Any = None) -> Any:
            raise RuntimeError("boom")

    item = activity(endpoint_id="ep-1")
    hostile = activity(endpoint_id="ep-2")["events"][0]
    hostile["parameters"] = [Hostile(name="conference_id", value="c")]
    item["events"] = [hostile, *item["events"]]
    sessions, reasons, events = parse_activity(item)
    assert [s.endpoint_id for s in sessions] == ["ep-1"]
    assert (reasons, events) == (["call_ended that could not be decoded (RuntimeError)"], 2)


def test_bad_events_of_a_page_never_stop_the_good_ones() -> None:
    good = [activity(endpoint_id=f"e{n}", qualifier=str(n), leave=at(n)) for n in range(3)]
    bad = [
        activity(endpoint_id="b1", duration="99999999999"),
        activity(endpoint_id="b2", duration=str(2**63 - 1)),
        activity(endpoint_id="b3", leave="0001-01-01T00:00:00.000Z"),
        activity(endpoint_id="b4", conference_id=BAD),
        activity(endpoint_id="b5", display_name=BAD),  # repaired, used
    ]
    mixed = [good[0], bad[0], bad[1], good[1], bad[2], bad[3], bad[4], good[2]]
    page = {"kind": PAGE_KIND, "items": mixed}
    summary = summarize_text(json.dumps(page))
    assert (summary.events_read, summary.events_used, summary.events_skipped) == (8, 4, 4)
    assert summary.warnings == [
        "1 event skipped: call_ended with a conference_id that is not valid Unicode",
        "1 event skipped: call_ended with an id.time outside 2000-2100",
        "2 events skipped: call_ended with duration_seconds outside 0…2592000",
        "1 descriptive text(s) repaired: not valid Unicode",
    ]
    # Several events in one activity item: the same (its one id.time is usable, so b3 is too).
    one_item = activity(endpoint_id="e0")
    one_item["events"] = [i["events"][0] for i in mixed]
    sessions, reasons, events = parse_activity(through_json(one_item))
    assert (len(sessions), len(reasons), events) == (5, 3, 8)


# --- events as one object ----------------------------------------------------------------------


def test_events_as_a_single_object_is_a_list_of_that_one_event() -> None:
    item = activity()
    item["events"] = item["events"][0]
    (got,), reasons, events = parse_activity(item)
    assert (got.endpoint_id, reasons, events) == ("ep-1", [], 1)
    collector = SessionCollector()
    collector.add_activity(item)
    assert (collector.events_read, collector.events_used) == (1, 1)
    summary = summarize_text("\n".join(json.dumps(i) for i in (item, activity(endpoint_id="e2"))))
    assert (summary.events_read, summary.events_used) == (2, 2)


@pytest.mark.parametrize("events", ["call_ended", 5, None, True, [[]], {"name": "other"}])
def test_other_events_values_are_nothing_to_read(events: object) -> None:
    sessions, reasons, _ = parse_activity({**activity(), "events": events})
    assert (sessions, reasons) == ([], [])


# --- summarize: what is a Reports page (docs/cli.md "summarize" v2) -----------------------------------------


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('{"foo": 1}', 'the object has neither "items" nor "kind": "admin#reports#activities"'),
        ("{}", 'the object has neither "items" nor "kind"'),
        ('{"kind": "admin#reports#activity", "id": {}}', "the object has neither"),
        ('{"events": []}', "the object has neither"),
        ('{"kind": "something#else", "etag": "x"}', "the object has neither"),
        ('{"items": 5}', '"items" of the object is not an array'),
        ('{"items": {"id": {}}}', '"items" of the object is not an array'),
        ('{"items": []}\n{"foo": 1}', "JSON value 2 has neither"),
        ('{"items": []}\n7', "JSON value 2 is a JSON number"),
        ('{"items": []} [1]', "JSON value 2 is a JSON array"),
        ('[{"items": []}, {"foo": 1}]', "element 2 of the array of pages has neither"),
        ('[{"items": []}, 3]', "element 2 of the array of pages is a JSON number"),
        ('[{"items": []}, null]', "element 2 of the array of pages is JSON null"),
        ('[{"kind": "admin#reports#activities"}, {"items": "x"}]', '"items" of element 2'),
        ('{"foo": 1}\n{"id": {}, "events": []}', "the object has neither"),
        ('{"id": {}, "x": 1, "items": 3}', '"items" of the object is not an array'),
    ],
)
def test_objects_that_are_not_reports_pages_exit_2_naming_the_file(
    text: str, fragment: str, tmp_path: Path
) -> None:
    path = tmp_path / "f.json"
    path.write_text(text)
    with pytest.raises(InvalidInput) as caught:
        summarize_dumps([str(path)])
    message = caught.value.message
    assert message.startswith(f"{path}: not a Reports page: "), message
    assert fragment in message
    assert "\n" not in message
    result = run(["summarize", "--json", "-"], stdin=text)
    assert result.exit_code == 2
    assert result.stderr.startswith("summarize: <stdin>: not a Reports page: ")
    assert result.stderr.count("\n") == 1
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("text", "used"),
    [
        ('{"kind": "admin#reports#activities"}', 0),  # a real empty page
        ('{"kind": "admin#reports#activities", "etag": "x", "items": null}', 0),
        ('{"etag": "x", "items": []}', 0),
        (json.dumps(activity()), 1),  # one activity item: JSON Lines of one line
        (json.dumps({"etag": "x", **activity()}), 1),
        ('[{"kind": "admin#reports#activities"}, {"items": []}]', 0),
        (
            json.dumps({"kind": PAGE_KIND, "items": [activity()]})
            + json.dumps(activity(endpoint_id="e2")),
            2,
        ),
        (json.dumps([{"items": [activity()]}, activity(endpoint_id="e2")]), 2),
        # Arrays of activities and JSON Lines after their first line stay lenient: what is not an
        # activity there is an item with no events (or, not an object, an item ignored).
        ('[{"foo": 1}]', 0),
        (json.dumps([activity(), {"foo": 1}, 5]), 1),
        (json.dumps(activity()) + '\n{"foo": 1}\n', 1),
        ("[]", 0),
    ],
)
def test_pages_and_activity_items_are_read(text: str, used: int) -> None:
    result = run(["summarize", "--json", "-"], stdin=text)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["events_used"] == used


def test_a_page_whose_keys_come_after_a_long_value_is_still_checked(tmp_path: Path) -> None:
    filler = "e" * 100_000  # beyond the prefix the shape is told from
    path = tmp_path / "f.json"
    path.write_text(json.dumps({"etag": filler, "foo": 1}))
    with pytest.raises(InvalidInput, match="not a Reports page"):
        summarize_dumps([str(path)])
    path.write_text(json.dumps({"etag": filler, **activity()}))
    assert summarize_dumps([str(path)]).events_used == 1
    path.write_text(json.dumps({"etag": filler, "kind": PAGE_KIND}))
    assert summarize_dumps([str(path)]).events_used == 0


# --- summarize: no input ends in a traceback ----------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "[" + "9" * 5000 + "]",  # ijson's C backend crashed on integers over 4,300 digits
        '{"a": ' + "9" * 5000 + "}",
        '{"items": [{"n": ' + "9" * 5000 + "}]}",
        json.dumps(activity()) + '\n{"n": ' + "9" * 5000 + "}",
        '{"items": [' + "[" * 100_000 + "]" * 100_000 + "]}",
        '{"a":' * 50_000 + "1" + "}" * 50_000,
        "[" * 100_000,
        '{"items": [1e999, -1e999]}',
    ],
    ids=[
        "big-int-array",
        "big-int-object",
        "big-int-item",
        "big-int-line",
        "deep-item",
        "deep-object",
        "deep-open",
        "inf",
    ],
)
def test_huge_numbers_and_deep_nesting_exit_0_or_2_with_one_line(text: str, tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    path.write_text(text)
    for args, stdin in ((["summarize", "--json", str(path)], None), (["summarize", "-"], text)):
        result = run(args, stdin)
        assert result.exit_code in (0, 2), repr(result.exception)
        assert "Traceback" not in result.stderr
        if result.exit_code == 2:
            assert result.stderr.count("\n") == 1, result.stderr


def test_a_huge_integer_does_not_crash_a_real_process(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_text('{"a": ' + "9" * 5000 + "}")
    done = subprocess.run(
        [sys.executable, "-m", "functions", "summarize", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"summarize: {path}: not JSON")
    assert done.stderr.count("\n") == 1


def test_markup_like_names_in_the_table_do_not_end_in_a_traceback() -> None:
    result = run(["summarize", "-"], stdin=json.dumps([activity(display_name="[/]")]))
    assert result.exit_code == 0


# --- properties over hostile activities ---------------------------------------------------------

settings.register_profile(
    "hostile", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

_ODD_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(),
        st.sampled_from(
            ["\ud800", "\udbff", "\udc00", "\udfff", "\x00", "\x1b", "\u2028", "\ufffd"]
        ),
        st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
    ),
    max_size=6,
)
_JUNK = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(min_value=-(2**80), max_value=2**80),
        st.floats(allow_nan=False),
        _ODD_TEXT,
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(_ODD_TEXT, inner, max_size=3)
    ),
    max_leaves=8,
)
_DURATIONS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, MAX_DURATION, MAX_DURATION + 1, 99999999999, 2**63 - 1, -(2**63)]),
    st.builds(str, st.integers(-(2**70), 2**70)),
    st.sampled_from(["", " 7 ", "1_000", "٣", "1e3", "0x10", "9" * 5000, "-0", "+5"]),
    st.floats(allow_nan=False),
    st.booleans(),
    _JUNK,
)
_OFFSETS = st.sampled_from(["Z", "z", "+00:00", "+01:00", "-01:00", "+23:59", "-23:59", ""])
_ID_TIMES = st.one_of(
    st.builds(
        lambda moment, fraction, offset: moment.isoformat(timespec="seconds") + fraction + offset,
        st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),  # noqa: DTZ001
        st.sampled_from(["", ".0", ".123", ".999999999"]),
        _OFFSETS,
    ),
    st.sampled_from(
        [
            "0001-01-01T00:00:00.000Z",
            "0001-01-01T00:30:00+01:00",
            "9999-12-31T23:59:59.999Z",
            "9999-12-31T23:30:00-01:00",
            "1999-12-31T23:59:59.999Z",
            "2000-01-01T00:00:00.000Z",
            "2100-12-31T23:59:59.999Z",
            "2101-01-01T00:00:00.000Z",
            "2026-02-31T10:00:00.000Z",
            "2026-01-15T10:00:00.000Z",
        ]
    ),
    _ODD_TEXT,
    _JUNK,
)
_NAMES = st.one_of(
    st.sampled_from([*STRING_PARAMETERS, "duration_seconds", "is_external", "product_type"]),
    _ODD_TEXT,
    _JUNK,
)
_VALUE_KEYS = st.sampled_from(
    [
        "value",
        "intValue",
        "boolValue",
        "multiValue",
        "multiIntValue",
        "messageValue",
        "multiMessageValue",
    ]
)
_PARAMETERS = st.one_of(
    st.builds(lambda n, v: {"name": n, "value": v}, st.sampled_from(STRING_PARAMETERS), _ODD_TEXT),
    st.builds(lambda d: {"name": "duration_seconds", "intValue": d}, _DURATIONS),
    st.builds(lambda n, k, v: {"name": n, k: v}, _NAMES, _VALUE_KEYS, _JUNK),
    _JUNK,
)


@st.composite
def _events(draw: st.DrawFn) -> Any:
    params: list[Any] = []
    for name in STRING_PARAMETERS:
        if draw(st.integers(0, 3)):
            params.append({"name": name, "value": draw(st.one_of(st.just("x"), _ODD_TEXT))})
    if draw(st.integers(0, 3)):
        params.append({"name": "duration_seconds", "intValue": draw(_DURATIONS)})
    params += draw(st.lists(_PARAMETERS, max_size=5))
    params = draw(st.permutations(params))
    event = {
        "name": draw(st.sampled_from(["call_ended", "call_ended", "other"])),
        "parameters": params,
    }
    return draw(st.one_of(st.just(event), st.just({**event, "parameters": draw(_JUNK)}), _JUNK))


@st.composite
def hostile_activities(draw: st.DrawFn) -> Any:
    id_block = draw(
        st.one_of(
            st.builds(
                lambda t, q: {"time": t, "uniqueQualifier": q},
                _ID_TIMES,
                st.one_of(st.none(), st.builds(str, st.integers()), _JUNK),
            ),
            _JUNK,
        )
    )
    events = draw(st.one_of(st.lists(_events(), max_size=4), _events(), _JUNK))
    item = {"id": id_block, "events": events}
    return draw(st.one_of(st.just(item), st.builds(lambda e: {**item, "extra": e}, _JUNK), _JUNK))


def _call_ended_count(item: Any) -> int:
    if not isinstance(item, dict):
        return 0
    events = item.get("events")
    if isinstance(events, dict):
        events = [events]
    if not isinstance(events, list):
        return 0
    return sum(1 for e in events if isinstance(e, dict) and e.get("name") == "call_ended")


def _assert_within_the_contract(session: Session) -> None:
    assert type(session) is Session
    assert 0 <= session.duration_seconds <= MAX_DURATION
    assert session.join_time == session.leave_time - timedelta(seconds=session.duration_seconds)
    assert datetime(2000, 1, 1, tzinfo=UTC) <= session.join_time
    assert session.leave_time < datetime(2101, 1, 1, tzinfo=UTC)
    assert session.leave_time.tzinfo is UTC
    assert isinstance(session.conference_id, str)
    assert session.conference_id
    for name in (*STRING_PARAMETERS, "event_id"):
        value = getattr(session, name)
        assert value is None or (type(value) is str and value), (name, value)
        if value is not None:
            value.encode("utf-8")


@settings(settings.get_profile("hostile"))
@given(hostile_activities(), st.booleans(), st.booleans())
def test_parse_activity_never_raises_and_accounts_for_every_call_ended(
    item: Any, keep_extra: bool, share_strings: bool
) -> None:
    repairs = TextRepairs()
    sessions, reasons, seen = parse_activity(
        item, keep_extra=keep_extra, share_strings=share_strings, repairs=repairs
    )
    assert len(sessions) + len(reasons) == _call_ended_count(item)
    assert all(type(r) is str and r.startswith("call_ended ") for r in reasons)
    assert seen >= len(sessions) + len(reasons)
    assert repairs.count >= 0
    for session in sessions:
        _assert_within_the_contract(session)


@settings(settings.get_profile("hostile"))
@given(st.lists(hostile_activities(), max_size=6))
def test_collected_hostile_activities_summarize_and_write(items: list[Any]) -> None:
    collector = SessionCollector()
    collector.add_activities(items)
    assert collector.events_skipped + len(collector.sessions()) <= sum(
        map(_call_ended_count, items)
    )
    summary = Summary(
        meetings=meetings_by_conference(collector.sessions()),
        events_read=collector.events_read,
        events_used=collector.events_used,
        events_skipped=collector.events_skipped,
        warnings=collector.warnings(),
    )
    out = io.StringIO()
    write_summary_json(summary, out)
    assert json.loads(out.getvalue()) == summary.to_json()
    out.getvalue().encode("utf-8")
    json.dumps(summary.to_json(), ensure_ascii=False).encode("utf-8")


def _dump_shapes(items: list[Any]) -> st.SearchStrategy[str]:
    return st.sampled_from(
        [
            json.dumps({"kind": PAGE_KIND, "items": items}),
            json.dumps([{"kind": PAGE_KIND, "items": items}, {"items": items}]),
            json.dumps(items),
            "\n".join(json.dumps(i) for i in items),
            json.dumps(items[0]) if items else "{}",
        ]
    )


_DUMPS = st.one_of(
    st.lists(hostile_activities(), max_size=4).flatmap(_dump_shapes).map(str.encode),
    _JUNK.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=40),
    st.lists(
        st.sampled_from(
            [
                '{"items": [',
                "[",
                "]",
                "{",
                "}",
                ",",
                ":",
                '"x"',
                "1e999",
                "9" * 4400,
                "\\ud800",
                '"\\ud800"',
                "null",
                '"events"',
                '"id"',
                "\n",
            ]
        ),
        max_size=12,
    ).map(lambda parts: "".join(parts).encode()),
)


@settings(settings.get_profile("hostile"))
@given(_DUMPS)
def test_summarize_cli_exits_0_or_2_on_any_input(data: bytes) -> None:
    result = CliRunner().invoke(cli, ["summarize", "--json", "-"], input=data)
    assert result.exit_code in (0, 2), repr(result.exception)
    assert "Traceback" not in result.stderr
    if result.exit_code == 0:
        assert isinstance(json.loads(result.stdout), dict)
        result.stdout.encode("utf-8")
    else:
        assert result.stderr.startswith("summarize: <stdin>: ")
        assert result.stderr.count("\n") == 1
        assert result.stdout == ""
