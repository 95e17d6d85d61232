"""The Reports wire format at its corners (functions/reports_events.py).

- ``decode_parameter`` gives each value key's Python value, and a value of the wrong JSON type
  as text (or an empty tuple for a list that is not one), so that the rule that needs an integer
  or a flag refuses it by name instead of taking it;
- a flag is ``true``/``false`` in any case and padding, anything else is no flag;
- the collector counts every skipped event, per reason, and says so in its warnings.
"""

from __future__ import annotations

from typing import Any

import pytest

from functions.attendance import ParamValue
from functions.reports_events import SessionCollector, decode_parameter, parse_activity
from tests.unit.factories import activity


@pytest.mark.parametrize(
    ("param", "expected"),
    [
        ({"value": 5}, "5"),
        ({"value": True}, "True"),
        ({"value": None}, None),
        ({"value": "web"}, "web"),
        ({"intValue": True}, "True"),  # a JSON true is not the integer 1
        ({"intValue": 1.5}, "1.5"),
        ({"intValue": [1]}, "[1]"),
        ({"intValue": None}, None),
        ({"intValue": " 42 "}, 42),
        ({"boolValue": "false"}, False),
        ({"boolValue": " FALSE "}, False),
        ({"boolValue": "True"}, True),
        ({"boolValue": "yes"}, None),
        ({"boolValue": 1}, None),
        ({"multiValue": "abc"}, ()),
        ({"multiValue": None}, ()),
        ({"multiValue": [1, "b"]}, ("1", "b")),
        ({"multiIntValue": "12"}, ()),
        ({"multiIntValue": ["1", "x", True, 2]}, (1, 2)),
        ({"messageValue": [1]}, {}),
        ({"messageValue": {"parameter": "x"}}, {}),
        ({"multiMessageValue": {"parameter": []}}, ()),
        ({"multiMessageValue": None}, ()),
        ({"multiMessageValue": [{"parameter": []}, 7]}, ({}, {})),
    ],
)
def test_each_value_key_decodes_and_a_wrong_json_type_is_refused_by_name(
    param: dict[str, Any], expected: ParamValue
) -> None:
    assert decode_parameter({"name": "x", **param}) == expected


@pytest.mark.parametrize(
    ("duration", "used"),
    [
        ({"intValue": True}, False),
        ({"intValue": 60.0}, False),
        ({"intValue": "60"}, True),
        ({"intValue": 60}, True),
    ],
)
def test_a_duration_that_is_not_an_integer_is_skipped(duration: dict[str, Any], used: bool) -> None:
    item = activity(duration=None)
    item["events"][0]["parameters"].append({"name": "duration_seconds", **duration})
    sessions, reasons, _ = parse_activity(item)
    assert len(sessions) == int(used)
    assert reasons == ([] if used else ["call_ended without an integer duration_seconds"])


def test_a_duration_with_a_value_key_as_well_is_what_decode_parameter_says() -> None:
    """``value`` is read first (decode_parameter): a text, so not an integer, even when an
    ``intValue`` is there too; the fast path for ASCII digits must not say otherwise."""
    item = activity(duration=None)
    item["events"][0]["parameters"].append(
        {"name": "duration_seconds", "value": "60", "intValue": "60"}
    )
    sessions, reasons, _ = parse_activity(item)
    assert sessions == []
    assert reasons == ["call_ended without an integer duration_seconds"]


@pytest.mark.parametrize("flag", [True, "true", " TRUE "])
def test_is_external_given_as_text_is_a_flag(flag: object) -> None:
    item = activity(is_external=None)
    item["events"][0]["parameters"].append({"name": "is_external", "boolValue": flag})
    (session,), _, _ = parse_activity(item)
    assert session.is_external is True


@pytest.mark.parametrize("flag", [False, "false", "yes", 1, None])
def test_anything_but_a_true_flag_is_not_external(flag: object) -> None:
    item = activity(is_external=None)
    item["events"][0]["parameters"].append({"name": "is_external", "boolValue": flag})
    (session,), _, _ = parse_activity(item)
    assert session.is_external is False


@pytest.mark.parametrize(
    ("code", "canonical"),
    [
        (5, None),  # not text: copied as absent, never a reason to skip the event
        (["ABCDEFGHIJ"], None),
        ({"x": 1}, None),
        ("- -", None),  # nothing but separators: no code
        ("ABC-defg hij", "abc-defg-hij"),
    ],
)
def test_a_meeting_code_that_is_no_code_is_none_and_the_event_is_used(
    code: object, canonical: str | None
) -> None:
    item = activity(meeting_code=None)
    item["events"][0]["parameters"].append({"name": "meeting_code", "value": code})
    sessions, reasons, _ = parse_activity(item)
    assert reasons == []
    assert [s.meeting_code for s in sessions] == [canonical]


@pytest.mark.parametrize("item", ["not an object", 7, None, [activity()]])
def test_an_item_that_is_not_an_object_has_no_events(item: object) -> None:
    assert parse_activity(item) == ([], [], 0)


@pytest.mark.parametrize("events", ["call_ended", 7, None])
def test_events_that_are_neither_a_list_nor_an_object_are_none(events: object) -> None:
    item = {**activity(), "events": events}
    assert parse_activity(item) == ([], [], 0)
    collector = SessionCollector()
    collector.add_activities([item, activity(qualifier="2")])
    assert (collector.events_read, collector.events_used, collector.events_skipped) == (1, 1, 0)


def test_several_skipped_events_are_counted_per_reason() -> None:
    collector = SessionCollector()
    collector.add_activities(
        [
            activity(qualifier="1", duration=None),
            activity(qualifier="2", duration=None),
            activity(qualifier="3", duration=None),
            activity(qualifier="4", conference_id=None),
            activity(qualifier="5"),
            "not an object",
        ]
    )
    assert collector.events_read == 5
    assert collector.events_skipped == 4
    assert collector.events_used == 1
    assert collector.skip_reasons == {
        "call_ended without an integer duration_seconds": 3,
        "call_ended without conference_id": 1,
    }
    assert collector.warnings() == [
        "3 events skipped: call_ended without an integer duration_seconds",
        "1 event skipped: call_ended without conference_id",
        "1 activity item(s) ignored: not a JSON object",
    ]
