"""Half-open spans at their edges (functions/intervals.py): an empty span holds nothing.

An empty span (end at or before start) is what a credited span becomes when declarations
contradict each other (a later class declared to start before an earlier one); it must select no
session at all, not every session that crosses it.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from functions.intervals import Span
from tests.unit.factories import at


@pytest.mark.parametrize(
    ("span", "join", "leave"),
    [
        (Span(at(10), at(10)), at(0), at(20)),  # a session crossing a zero-length span
        (Span(at(10), at(10)), at(10), at(10)),  # a zero-length session on it
        (Span(at(20), at(10)), at(0), at(30)),  # end before start: contradictory bounds
        (Span(at(20), at(10)), at(15), at(15)),
    ],
)
def test_an_empty_span_overlaps_nothing(span: Span, join: datetime, leave: datetime) -> None:
    assert span.is_empty()
    assert not span.overlaps(join, leave)


@pytest.mark.parametrize(
    ("span", "join", "leave", "overlaps"),
    [
        (Span(at(10), at(20)), at(0), at(10), False),  # ends where the span starts
        (Span(at(10), at(20)), at(20), at(30), False),  # starts where the span ends
        (Span(at(10), at(20)), at(10), at(10), True),  # an instant on the start belongs
        (Span(at(10), at(20)), at(20), at(20), False),  # an instant on the end does not
        (Span(None, at(20)), at(0), at(5), True),
        (Span(at(10), None), at(30), at(40), True),
    ],
)
def test_a_non_empty_span_is_half_open(
    span: Span, join: datetime, leave: datetime, overlaps: bool
) -> None:
    assert not span.is_empty()
    assert span.overlaps(join, leave) is overlaps
