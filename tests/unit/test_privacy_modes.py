"""docs/rules.md Privacy: ``IP_ADDRESS_MODE`` and ``LOCATION_MODE`` apply to everything stored,
derived values included (participant fingerprints, the meeting's fingerprint map and sessions
fingerprint, revision records, task names) and to the sync answer.

The strong form, checked here end to end over the in-memory ports: two classes whose Reports
answers differ only in what a mode removes run the same chain in two separate stores, and the
stores hold the same bytes. A stored value that still depended on a removed value (a hash over
the raw address, a duplicate chosen by it) would tell the two stores apart.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.attendance import Session, build_meeting
from functions.model import (
    IpMode,
    LocationMode,
    apply_ip_mode,
    apply_location_mode,
    in_stored_form,
    participant_record,
)
from functions.poll_plan import plan_poll
from functions.polling import PollOutcome, poll_meeting
from functions.ports import Deps
from functions.schedule import Status, Timing
from functions.views import meeting_view, sync_view, to_json
from local.simulate import call_ended
from tests.unit.factories import at
from tests.unit.factories import session as built_session
from tests.unit.test_poll_plan import Stored
from tests.unit.test_poll_plan import meeting as meeting_record
from tests.unit.test_rule_strength_poll_plan import inputs_for
from tests.unit.test_use_cases import CODE, START, World, minutes

PEOPLE = ("teacher@school.example", "student@school.example", "guest@other.example", None)
ABSENT = "absent@school.example"
#: Values that differ between the copies of one duplicated event (the same in both runs) and
#: sort after the address and the location in a session: a copy chosen by a removed value shows.
SIDE_VALUES = ("organizer-a@school.example", "organizer-b@school.example")
COUNTRIES = ("GB", "FR", "US")

Address = str | None
Location = tuple[str | None, str | None]


@dataclass(frozen=True, slots=True)
class Visit:
    """One ``call_ended`` event of the class, sent ``len(copies)`` times (a repeated page)."""

    who: int
    join_min: int
    stay_min: int
    #: Per copy: the address and location of run A, and of run B.
    copies: tuple[tuple[Address, Address, Location, Location], ...]


# ------------------------------------------------------------------------------ strategies

_GARBAGE = st.from_regex(r"[g-z]{1,6}", fullmatch=True)  # never an address


@st.composite
def _address_pair(draw: st.DrawFn, mode: IpMode) -> tuple[Address, Address]:
    """Two addresses that ``mode`` stores alike (``full``: the same text)."""
    if mode == "full":
        one = draw(st.one_of(st.none(), st.ip_addresses().map(str)))
        return one, one
    if mode == "none":
        anything = st.one_of(st.none(), st.ip_addresses().map(str), _GARBAGE, st.just(""))
        return draw(anything), draw(anything)
    kind = draw(st.sampled_from(["v4", "v6", "absent", "unparseable"]))
    if kind == "absent":
        return None, None
    if kind == "unparseable":
        return draw(_GARBAGE), draw(_GARBAGE)
    if kind == "v4":
        network = draw(st.integers(0, 2**24 - 1)) << 8
        hosts = [ipaddress.IPv4Address(network | draw(st.integers(0, 255))) for _ in "ab"]
        texts = [str(h) if draw(st.booleans()) else f" {h} " for h in hosts]
    else:
        network = draw(st.integers(0, 2**48 - 1)) << 80
        lows = [ipaddress.IPv6Address(network | draw(st.integers(0, 2**80 - 1))) for _ in "ab"]
        texts = [draw(st.sampled_from([str(h), h.exploded, str(h).upper()])) for h in lows]
    return texts[0], texts[1]


@st.composite
def _location_pair(draw: st.DrawFn, mode: LocationMode) -> tuple[Location, Location]:
    """Two locations that ``mode`` stores alike."""
    countries = st.one_of(st.none(), st.sampled_from(COUNTRIES), _GARBAGE)
    regions = st.one_of(st.none(), st.sampled_from(["London", "Île-de-France", "Ohio"]), _GARBAGE)
    if mode == "full":
        one = (draw(countries), draw(regions))
        return one, one
    if mode == "country":
        country = draw(countries)
        return (country, draw(regions)), (country, draw(regions))
    return (draw(countries), draw(regions)), (draw(countries), draw(regions))


@st.composite
def _visits(draw: st.DrawFn, ip_mode: IpMode, location_mode: LocationMode) -> list[Visit]:
    """The class's events. The copies of a repeated event differ in what the modes keep (so a
    copy chosen by a removed value shows in what is stored) and in :data:`SIDE_VALUES`: under
    ``IP_ADDRESS_MODE=full`` they share one address, so their locations decide between them."""
    visits = []
    for _ in range(draw(st.integers(1, 5))):
        copies = []
        shared = draw(_address_pair(ip_mode))
        for _ in range(draw(st.integers(1, 2))):
            address_a, address_b = shared if ip_mode == "full" else draw(_address_pair(ip_mode))
            location_a, location_b = draw(_location_pair(location_mode))
            copies.append((address_a, address_b, location_a, location_b))
        visits.append(
            Visit(
                who=draw(st.integers(0, len(PEOPLE) - 1)),
                join_min=draw(st.integers(-10, 40)),
                stay_min=draw(st.integers(1, 50)),
                copies=tuple(copies),
            )
        )
    return visits


# ------------------------------------------------------------------------------ one run


def _activities(visits: Sequence[Visit], run: int) -> list[dict[str, Any]]:
    activities = []
    for index, visit in enumerate(visits):
        who = PEOPLE[visit.who]
        for copy, (address_a, address_b, location_a, location_b) in enumerate(visit.copies):
            country, region = location_a if run == 0 else location_b
            activities.append(
                call_ended(
                    meeting_code=CODE,
                    conference_id="conf-1",
                    leave=START + minutes(visit.join_min + visit.stay_min),
                    duration_s=visit.stay_min * 60,
                    identifier=who,
                    display_name=None if who else "Visitor",
                    endpoint_id=f"spaces/conf-1/devices/{index}",
                    ip_address=address_a if run == 0 else address_b,
                    location_country=country,
                    location_region=region,
                    organizer_email=SIDE_VALUES[copy],
                )
            )
    return activities


@dataclass
class Run:
    world: World
    meeting_id: str
    sync: tuple[int, dict[str, Any]]

    def stored(self) -> dict[str, Any]:
        """Everything the run stored or asked for: meetings (every field, the fingerprint map
        included), participant and revision documents, tasks and their names."""
        store, queue = self.world.store, self.world.queue
        return {
            "meetings": {i: m.to_document() for i, m in sorted(store.meetings.items())},
            "participants": dict(sorted(store.participant_docs.items())),
            "revisions": dict(sorted(store.revision_docs.items())),
            "tasks": [(t.task_id, t.at, t.task) for t in queue.tasks],
            "task_names": sorted(queue.names),
            "backfill_slices": list(queue.slices),
        }

    def shown(self) -> Any:
        """What readers are shown: the sync answer and the meeting view."""
        return to_json({"sync": self.sync, "view": meeting_view(self.world.store, self.meeting_id)})


def run_class(
    activities: list[dict[str, Any]], *, ip_mode: IpMode, location_mode: LocationMode
) -> Run:
    """A declared class polled to the end of its chain, then synced once by hand."""
    world = World()
    world.deps = Deps(
        store=world.store,
        queue=world.queue,
        reports=world.reports,
        clock=world.clock,
        timing=Timing(),
        ip_mode=ip_mode,
        location_mode=location_mode,
    )
    meeting = world.declare(expected_participants=(PEOPLE[0], PEOPLE[1], ABSENT))
    world.reports.activities = list(activities)
    while world.queue.tasks:
        world.run_next()
    world.clock.now += timedelta(hours=1)
    outcome = poll_meeting(world.deps, meeting.meeting_id, reason="manual")
    assert isinstance(outcome, PollOutcome)
    answer = sync_view(outcome, ip_mode=ip_mode, location_mode=location_mode)
    return Run(world, meeting.meeting_id, answer)


def _same_bytes(visits: list[Visit], *, ip_mode: IpMode, location_mode: LocationMode) -> None:
    one, other = (
        run_class(_activities(visits, run), ip_mode=ip_mode, location_mode=location_mode)
        for run in (0, 1)
    )
    assert repr(one.stored()) == repr(other.stored())
    assert repr(one.shown()) == repr(other.shown())
    assert one.world.store.meetings[one.meeting_id].status is Status.COMPLETE


PROPERTY = settings(
    max_examples=30,  # two whole chains per example; the fixed cases below pin the known leaks
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ------------------------------------------------------------------------------ the properties


@PROPERTY
@given(st.data())
@pytest.mark.parametrize("ip_mode", ["none", "truncated"])
def test_classes_that_differ_only_in_removed_address_bits_store_the_same_bytes(
    ip_mode: IpMode, data: st.DataObject
) -> None:
    # The locations are kept (full): the copies of a repeated event differ in them, so a copy
    # chosen by its raw address would show in the stored country.
    visits = data.draw(_visits(ip_mode, "full"))
    _same_bytes(visits, ip_mode=ip_mode, location_mode="full")


@PROPERTY
@given(st.data())
@pytest.mark.parametrize("location_mode", ["none", "country"])
def test_classes_that_differ_only_in_removed_location_fields_store_the_same_bytes(
    location_mode: LocationMode, data: st.DataObject
) -> None:
    visits = data.draw(_visits("full", location_mode))
    _same_bytes(visits, ip_mode="full", location_mode=location_mode)


@PROPERTY
@given(st.data())
def test_with_both_modes_none_only_the_class_itself_is_stored(data: st.DataObject) -> None:
    visits = data.draw(_visits("none", "none"))
    _same_bytes(visits, ip_mode="none", location_mode="none")


# ------------------------------------------------------------------------------ no raw value


def _strings(value: Any) -> Iterator[str]:
    """Every string inside a stored value: keys and values, at any depth."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _strings(item)
    elif hasattr(value, "__dataclass_fields__"):
        for name in value.__dataclass_fields__:
            yield from _strings(getattr(value, name))


RAW_ADDRESSES = ("198.51.100.77", "2001:db8:aaaa:bbbb:cccc:dddd:eeee:1234")
RAW_COUNTRY, RAW_REGION = "Freedonia", "Sylvania-Marches"
OTHER_RAW = (("203.0.113.9", "2001:db8:ffff::9"), "Ruritania", "Elbonia-North")


def _distinctive_class(
    addresses: tuple[str, str] = RAW_ADDRESSES,
    country: str = RAW_COUNTRY,
    region: str = RAW_REGION,
) -> list[dict[str, Any]]:
    return [
        call_ended(
            meeting_code=CODE,
            conference_id="conf-1",
            leave=START + minutes(30 + n),
            duration_s=1800,
            identifier=who,
            endpoint_id=f"spaces/conf-1/devices/{n}",
            ip_address=addresses[n % 2],
            location_country=country,
            location_region=region,
        )
        for n, who in enumerate(PEOPLE[:2])
    ]


@pytest.mark.parametrize(
    ("ip_mode", "location_mode", "removed", "kept"),
    [
        ("none", "none", (*RAW_ADDRESSES, "198.51.100.0", RAW_COUNTRY, RAW_REGION), ()),
        ("truncated", "country", (*RAW_ADDRESSES, RAW_REGION), ("198.51.100.0", RAW_COUNTRY)),
        ("full", "full", (), (*RAW_ADDRESSES, RAW_COUNTRY, RAW_REGION)),
    ],
)
def test_no_stored_string_holds_a_value_the_mode_removed(
    ip_mode: IpMode, location_mode: LocationMode, removed: tuple[str, ...], kept: tuple[str, ...]
) -> None:
    run = run_class(_distinctive_class(), ip_mode=ip_mode, location_mode=location_mode)
    strings = list(_strings([run.stored(), run.shown()]))
    for value in removed:
        assert not [s for s in strings if value.lower() in s.lower()], value
    for value in kept:
        assert any(value == s for s in strings), value
    if ip_mode == "truncated":
        assert "2001:db8:aaaa::" in strings


def test_a_poll_under_a_stricter_mode_stores_what_it_keeps_in_that_form() -> None:
    """Sessions stored under ``full`` that a later poll keeps (Reports no longer has them) are
    written again in the form the modes now store, and so is everything derived from them (the
    sessions fingerprint, the fingerprint map): two classes stored under ``full`` that differed
    only in removed values then store the same bytes."""
    runs = []
    for raw in ((RAW_ADDRESSES, RAW_COUNTRY, RAW_REGION), OTHER_RAW):
        run = run_class(_distinctive_class(*raw), ip_mode="full", location_mode="full")
        world = run.world
        world.deps = replace(world.deps, ip_mode="none", location_mode="none")
        world.reports.activities = []  # past retention: only the stored sessions are left
        world.clock.now += timedelta(hours=1)
        outcome = poll_meeting(world.deps, run.meeting_id, reason="manual")
        assert isinstance(outcome, PollOutcome)
        assert world.store.meetings[run.meeting_id].participant_count == 2
        runs.append(run)
    one, other = (run.stored() for run in runs)
    for value in (*RAW_ADDRESSES, RAW_COUNTRY, RAW_REGION):
        assert not [s for s in _strings(one) if value in s], value
    assert repr(one) == repr(other)


@pytest.mark.parametrize(
    ("ip_mode", "copies"),
    [
        # (address in run A, address in run B) per copy: the raw texts order the copies one way
        # in A and the other way in B; their stored forms order them alike.
        ("none", (("192.0.2.1", "192.0.2.9"), ("192.0.2.5", "192.0.2.5"))),
        ("truncated", (("198.51.100.7", "198.51.100.7"), ("203.0.113.9", " 203.0.113.9"))),
    ],
)
def test_the_copy_kept_of_a_repeated_event_does_not_depend_on_a_removed_value(
    ip_mode: IpMode, copies: tuple[tuple[str, str], ...]
) -> None:
    """Reports repeats an event (a page served twice) with copies that differ in their address
    and in what is kept (here the country): the copy kept is chosen on the stored form."""
    visit = Visit(
        who=0,
        join_min=0,
        stay_min=30,
        copies=tuple(
            (a, b, (country, None), (country, None))
            for (a, b), country in zip(copies, COUNTRIES, strict=False)
        ),
    )
    _same_bytes([visit], ip_mode=ip_mode, location_mode="full")


# ------------------------------------------------------------------------------ each user of it


def _raw_session() -> Session:
    return replace(
        built_session(at(0), at(30)),
        ip_address=RAW_ADDRESSES[0],
        location_country=RAW_COUNTRY,
        location_region=RAW_REGION,
    )


@pytest.mark.parametrize(("ip_mode", "location_mode"), [("none", "none"), ("truncated", "country")])
def test_a_participant_document_and_its_fingerprint_are_of_the_stored_form(
    ip_mode: IpMode, location_mode: LocationMode
) -> None:
    """Handed the fetched participant or the stored one, the record is the same: its fingerprint
    is a hash of what is stored, never of a removed value."""
    raw = _raw_session()
    (fetched,) = build_meeting([raw]).participants
    (stored,) = build_meeting([in_stored_form(raw, ip_mode, location_mode)]).participants
    records = [
        participant_record(
            p,
            meeting=meeting_record(),
            revision=1,
            status=Status.COLLECTING,
            ip_mode=ip_mode,
            location_mode=location_mode,
        )
        for p in (fetched, stored)
    ]
    assert records[0] == records[1]
    assert not [s for s in _strings(records[0].document) if RAW_REGION in s]


@pytest.mark.parametrize(
    ("ip_mode", "location_mode"), [("none", "none"), ("truncated", "country"), ("full", "none")]
)
def test_a_poll_plans_the_same_for_a_fetched_session_and_its_stored_form(
    ip_mode: IpMode, location_mode: LocationMode
) -> None:
    """The plan (documents, fingerprints, the selected meeting, the sessions fingerprint) puts
    what it is handed in the stored form first, whoever fetched it."""
    raw = _raw_session()
    plans = [
        plan_poll(
            inputs_for(Stored(meeting_record()), [s], ip_mode=ip_mode, location_mode=location_mode)
        )
        for s in (raw, in_stored_form(raw, ip_mode, location_mode))
    ]
    assert plans[0] == plans[1]


def test_the_sync_answer_shows_sessions_in_their_stored_form() -> None:
    outcome = PollOutcome(meeting=meeting_record(), selected=build_meeting([_raw_session()]))
    _, body = sync_view(outcome, ip_mode="truncated", location_mode="country")
    (row,) = body["participants"]
    assert (row["ip_address"], row["location_country"], row["location_region"]) == (
        "198.51.100.0",
        RAW_COUNTRY,
        None,
    )


# ------------------------------------------------------------------------------ the rule itself


@pytest.mark.parametrize(
    ("mode", "stored"),
    [
        ("full", ("GB", "London")),
        ("country", ("GB", None)),
        ("none", (None, None)),
    ],
)
def test_the_location_mode_keeps_what_it_names(
    mode: LocationMode, stored: tuple[str | None, str | None]
) -> None:
    assert apply_location_mode("GB", "London", mode=mode) == stored


_SESSIONS = st.builds(
    lambda address, location: replace(
        built_session(at(0), at(30)),
        ip_address=address,
        location_country=location[0],
        location_region=location[1],
    ),
    st.one_of(st.none(), st.ip_addresses().map(str), _GARBAGE),
    st.tuples(st.one_of(st.none(), _GARBAGE), st.one_of(st.none(), _GARBAGE)),
)


@given(
    _SESSIONS,
    st.sampled_from(["full", "truncated", "none"]),
    st.sampled_from(["full", "country", "none"]),
)
def test_the_stored_form_is_the_modes_and_stays_so(
    session: Session, ip_mode: IpMode, location_mode: LocationMode
) -> None:
    stored = in_stored_form(session, ip_mode, location_mode)
    assert in_stored_form(stored, ip_mode, location_mode) == stored
    assert stored.ip_address == apply_ip_mode(session.ip_address, mode=ip_mode)
    assert (stored.location_country, stored.location_region) == apply_location_mode(
        session.location_country, session.location_region, mode=location_mode
    )
    assert replace(stored, ip_address=None, location_country=None, location_region=None) == (
        replace(session, ip_address=None, location_country=None, location_region=None)
    )
    if ip_mode == location_mode == "full":
        assert stored is session  # full modes store the fetched session as it is
