"""Properties of the attendance rules and the partition, over generated inputs."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.attendance import (
    SessionCollector,
    attended_seconds,
    build_participants,
    meeting_to_json,
    meetings_by_conference,
    participant_key,
)
from functions.selection import MeetingSpec, credited_spans, select_meetings
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
