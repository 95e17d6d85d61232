"""Duplicates (docs/firestore.md) at their corners: which events are one session, and which copy wins.

- A session without an ``endpoint_id`` is told apart by its event id alone; it is never a
  duplicate of a session that has an endpoint, whatever the conference id and endpoint id hold
  (a usable event always has a non-empty ``conference_id``).
- Two copies that tie on leave time, length and event id but differ otherwise (corrupt data) still
  give one winner whatever order they arrive in.
"""

from __future__ import annotations

from typing import Any

import pytest

from functions.attendance import Session
from functions.reports_events import SessionCollector
from tests.unit.factories import T0, activity

EVENT_ID = "2026-01-15T10:00:00.000Z/1"  # the event id of activity(leave=T0, qualifier="1")


@pytest.mark.parametrize("conference_id", ["conf-A", "XXXX", "X", "0", " ", "été"])
def test_a_session_without_endpoint_is_never_one_with_a_session_with_an_endpoint(
    conference_id: str,
) -> None:
    with_endpoint = activity(conference_id=conference_id, endpoint_id=EVENT_ID, qualifier="2")
    without = activity(conference_id=conference_id, endpoint_id=None, leave=T0, qualifier="1")
    collector = SessionCollector()
    collector.add_activities([with_endpoint, without])
    assert collector.events_used == 2
    assert {s.endpoint_id for s in collector.sessions()} == {EVENT_ID, None}
    assert EVENT_ID in {s.event_id for s in collector.sessions()}


def collected(items: list[dict[str, Any]]) -> list[Session]:
    collector = SessionCollector()
    collector.add_activities(items)
    return collector.sessions()


@pytest.mark.parametrize("endpoint_id", [None, "ep-1"])
def test_copies_that_tie_on_every_rank_give_one_winner_in_any_order(
    endpoint_id: str | None,
) -> None:
    first = activity(endpoint_id=endpoint_id, display_name="Alice", device_type="web")
    second = activity(endpoint_id=endpoint_id, display_name="Alicia", device_type="ios")
    forward = collected([first, second])
    backward = collected([second, first])
    assert len(forward) == 1
    assert forward == backward
    # Three copies: the winner is the same whichever copy arrives first or last.
    third = activity(endpoint_id=endpoint_id, display_name="A.", device_type="android")
    orders = [[first, second, third], [third, second, first], [second, third, first]]
    assert len({repr(collected(order)) for order in orders}) == 1
