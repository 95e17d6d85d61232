"""functions.adapters.firestore_writes against the client it stands in for: every value, write and
commit request it builds is the one google-cloud-firestore builds (protobuf equality, on the
deterministic bytes so that NaN compares too), and what the client refuses it refuses with the
client's exception. No server: the requests are compared before they are sent."""

from __future__ import annotations

import enum
import math
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from google.api_core.datetime_helpers import DatetimeWithNanoseconds
from google.api_core.gapic_v1.method import DEFAULT
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore
from google.cloud.firestore_v1 import _helpers
from google.cloud.firestore_v1.types import firestore as firestore_types
from google.cloud.firestore_v1.types import write as write_types
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.adapters import firestore_writes
from functions.adapters.firestore_writes import (
    RawBatch,
    create_write,
    delete_write,
    encode_value,
    set_write,
    update_write,
)

settings.register_profile(
    "firestore_writes",
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

PATH = "projects/p/databases/(default)/documents/meetings/x-1/participants/a"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class Level(enum.IntEnum):
    LOW = 1


class Colour(enum.StrEnum):
    RED = "red"


def write_result(seconds: int, nanos: int) -> write_types.WriteResult:
    raw = write_types.WriteResult.pb()()
    raw.update_time.seconds, raw.update_time.nanos = seconds, nanos
    result: write_types.WriteResult = write_types.WriteResult.wrap(raw)
    return result


def proto_plus_datetime(seconds: int, nanos: int) -> datetime:
    """proto-plus's own DatetimeWithNanoseconds (what write results hold), not api_core's."""
    stamp: datetime = write_result(seconds, nanos).update_time
    return stamp


def nanosecond_datetime(seconds: int, nanos: int) -> datetime:
    """api_core's DatetimeWithNanoseconds (what the client's snapshots hold)."""
    raw = write_result(seconds, nanos)._pb.update_time
    stamp: datetime = DatetimeWithNanoseconds.from_timestamp_pb(raw)  # type: ignore[no-untyped-call]
    return stamp


def wire(message: Any) -> bytes:
    data: bytes = message.SerializeToString(deterministic=True)
    return data


def outcome(build: Callable[[], Any]) -> tuple[str, Any]:
    """What a builder gives: the deterministic bytes of its protobuf, or its exception's type."""
    try:
        built = build()
    except Exception as error:  # whatever it is: its type is what is compared
        return "raises", type(error)
    return "gives", wire(built)


# ----------------------------------------------------------------------------- strategies

#: Fixed offsets, and zones with DST folds, half- and quarter-hour offsets.
ZONES: list[tzinfo] = [
    UTC,
    timezone(timedelta(hours=5, minutes=30)),
    timezone(-timedelta(hours=11)),
]
ZONES += [ZoneInfo("Europe/London"), ZoneInfo("America/St_Johns"), ZoneInfo("Australia/Lord_Howe")]

timezones: st.SearchStrategy[tzinfo | None] = st.none() | st.sampled_from(ZONES)
datetimes = st.datetimes(timezones=timezones, allow_imaginary=True) | st.builds(
    lambda when, fold: when.replace(fold=fold),
    st.datetimes(timezones=st.sampled_from(ZONES)),
    st.integers(0, 1),
)
edge_datetimes = st.sampled_from(
    [
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),  # before year 1 in UTC
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 0, tzinfo=timezone(-timedelta(hours=2))),  # after 9999
        # Naive ones (which our code never writes): the client reads them as UTC.
        datetime(1970, 1, 1),  # noqa: DTZ001
        datetime(9999, 12, 31, 23, 59, 59, 999999),  # noqa: DTZ001
        datetime(1, 1, 1),  # noqa: DTZ001
    ]
)
nanosecond_datetimes = st.builds(
    nanosecond_datetime, st.integers(-62135596800, 253402300799), st.integers(0, 999_999_999)
)
proto_plus_datetimes = st.builds(
    proto_plus_datetime, st.integers(-62135596800, 253402300799), st.integers(0, 999_999_999)
)
integers = (
    st.integers(INT64_MIN, INT64_MAX)
    | st.sampled_from([INT64_MIN, INT64_MAX, INT64_MIN - 1, INT64_MAX + 1, 0, -1, 2**64])
    | st.integers()
)
texts = st.text() | st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1)
others = st.sampled_from(
    [
        Level.LOW,
        Colour.RED,
        {1, 2},
        frozenset({"a"}),
        OrderedDict(a=1),
        firestore.GeoPoint(51.5, -0.12),
        firestore.SERVER_TIMESTAMP,
        firestore.DELETE_FIELD,
        datetime(2026, 1, 15, tzinfo=UTC).date(),
        object(),
        math.nan,
        -0.0,
        math.inf,
        -math.inf,
        b"",
    ]
)
scalars = (
    st.none()
    | st.booleans()
    | integers
    | st.floats(allow_nan=True, allow_infinity=True)
    | texts
    | st.binary()
    | datetimes
    | edge_datetimes
    | nanosecond_datetimes
    | proto_plus_datetimes
    | others
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(texts, children, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from(["a", "b_1", "_c", "a.b", "", "`x`", "1a", "é", "a-b"]) | texts
transforms = st.sampled_from(
    [
        firestore.SERVER_TIMESTAMP,
        firestore.DELETE_FIELD,
        firestore.ArrayUnion([1, "x"]),
        firestore.ArrayRemove([2]),
        firestore.Increment(3),
    ]
)
documents = st.dictionaries(
    field_names, values | transforms | st.dictionaries(field_names, values, max_size=3), max_size=6
)
#: Documents of the kinds our stores write: every write of them is built by this module.
plain_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(INT64_MIN, INT64_MAX)
    | st.floats()
    | st.text()
    | st.binary()
    # Not within a day of the ends of time, where an aware one may fall outside them in UTC.
    | datetimes.filter(lambda when: 1 < when.year < 9999 or when.month not in (1, 12))
    | nanosecond_datetimes,
    # A map's names are field-path parts (non-empty) wherever it is not inside an array.
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(min_size=1), children, max_size=3)
    ),
    max_leaves=10,
)
plain_names = st.from_regex(r"[_a-zA-Z][_a-zA-Z0-9]{0,8}", fullmatch=True)
plain_documents = st.dictionaries(
    plain_names, plain_values | st.dictionaries(st.text(min_size=1), plain_values), max_size=8
)


# ----------------------------------------------------------------------------- values


@settings(settings.get_profile("firestore_writes"))
@given(values)
def test_every_value_is_encoded_as_the_client_encodes_it(value: object) -> None:
    assert outcome(lambda: encode_value(value)) == outcome(lambda: _helpers.encode_value(value)._pb)


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        INT64_MIN,
        INT64_MAX,
        1.5,
        -0.0,
        math.inf,
        -math.inf,
        "",
        "zoë 🎓",
        b"\x00\xff",
        [],
        {},
        [[], {}],
        {"": {"nested": []}},
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(2026, 1, 15, 10, 45, 0, 123456, tzinfo=UTC),
        datetime(2026, 1, 15, 11, 45, 0, 123456, tzinfo=timezone(timedelta(hours=1))),
        datetime(1969, 7, 20, 20, 17, 40, 1, tzinfo=UTC),
        nanosecond_datetime(1_768_473_900, 123_456_789),
        nanosecond_datetime(0, 0),
        nanosecond_datetime(-1, 999_999_999),
        proto_plus_datetime(1_768_473_900, 123_456_789),
        Level.LOW,
        Colour.RED,
    ],
    ids=repr,
)
def test_the_types_our_documents_hold_are_built_here_not_by_the_client(value: object) -> None:
    """Not merely equal: built by this module (a fallback to the client would hide a slow path
    that the property above cannot see)."""
    target = firestore_writes._VALUE()
    firestore_writes._encode_into(target, value)
    assert wire(target) == wire(_helpers.encode_value(value)._pb)


def test_nan_is_a_nan_double() -> None:
    encoded = encode_value(math.nan)
    assert encoded.WhichOneof("value_type") == "double_value"
    assert math.isnan(encoded.double_value)
    assert wire(encoded) == wire(_helpers.encode_value(math.nan)._pb)


def test_an_aware_datetime_encodes_its_instant_whatever_its_zone() -> None:
    instant = datetime(2026, 3, 29, 0, 59, 59, 999999, tzinfo=UTC)
    for zone in ZONES:
        assert wire(encode_value(instant.astimezone(zone))) == wire(encode_value(instant))


@pytest.mark.parametrize(
    "value",
    [
        INT64_MAX + 1,
        INT64_MIN - 1,
        firestore.SERVER_TIMESTAMP,
        object(),
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
        "\ud800",
        {1: "a"},
    ],
    ids=repr,
)
def test_what_the_client_refuses_is_refused_with_its_exception(value: object) -> None:
    mine, theirs = (
        outcome(lambda: encode_value(value)),
        outcome(lambda: _helpers.encode_value(value)._pb),
    )
    assert mine == theirs
    assert mine[0] == "raises"


# ----------------------------------------------------------------------------- writes


def last_update(seconds: int = 1_768_473_900, nanos: int = 123_456_789) -> Any:
    return _helpers.LastUpdateOption(proto_plus_datetime(seconds, nanos))


@settings(settings.get_profile("firestore_writes"))
@given(documents)
def test_a_set_is_the_clients_set(document: dict[str, Any]) -> None:
    assert outcome(lambda: set_write(PATH, document)) == outcome(
        lambda: _only(_helpers.pbs_for_set_no_merge(PATH, document))
    )


@settings(settings.get_profile("firestore_writes"))
@given(documents)
def test_a_create_is_the_clients_create(document: dict[str, Any]) -> None:
    assert outcome(lambda: create_write(PATH, document)) == outcome(
        lambda: _only(_helpers.pbs_for_create(PATH, document))
    )


@settings(settings.get_profile("firestore_writes"))
@given(documents, st.sampled_from([None, last_update(), last_update(0, 0)]))
def test_an_update_is_the_clients_update(document: dict[str, Any], option: Any) -> None:
    assert outcome(lambda: update_write(PATH, document, option)) == outcome(
        lambda: _only(_helpers.pbs_for_update(PATH, document, option))
    )


@settings(settings.get_profile("firestore_writes"), max_examples=150)
@given(plain_documents, st.sampled_from([None, last_update()]))
def test_writes_of_plain_documents_are_built_here_and_are_the_clients(
    document: dict[str, Any], option: Any
) -> None:
    """The writes our stores make never take the client's path, and are its writes."""
    built = firestore_writes._WRITE()
    firestore_writes._set_into(built, PATH, document)
    assert wire(built) == wire(_only(_helpers.pbs_for_set_no_merge(PATH, document)))
    built = firestore_writes._WRITE()
    firestore_writes._create_into(built, PATH, document)
    assert wire(built) == wire(_only(_helpers.pbs_for_create(PATH, document)))
    if document:
        built = firestore_writes._WRITE()
        firestore_writes._update_into(built, PATH, document, option)
        assert wire(built) == wire(_only(_helpers.pbs_for_update(PATH, document, option)))


def test_a_delete_is_the_clients_delete() -> None:
    for option in (None, last_update()):
        assert wire(delete_write(PATH, option)) == wire(_helpers.pb_for_delete(PATH, option)._pb)


def _only(writes: list[Any]) -> Any:
    (write,) = writes
    return write._pb


def participant_document() -> dict[str, Any]:
    """A participant document as a poll writes it (functions.model), with its expire_at."""
    join = datetime(2026, 1, 15, 9, 52, 30, 478000, tzinfo=UTC)
    sessions = [
        {
            "conference_id": "conf-1",
            "device_type": "web",
            "duration_seconds": 968,
            "endpoint_id": f"spaces/abc/devices/{n}",
            "event_id": f"2026-01-15T10:08:38.478Z/{-1699310360954392 * (n + 1)}",
            "ip_address": "203.0.113.7",
            "join_time": join + timedelta(minutes=20 * n),
            "leave_time": join + timedelta(minutes=20 * n + 16, seconds=8),
            "location_country": "GB",
            "location_region": "London",
        }
        for n in range(3)
    ]
    return {
        "absent": False,
        "attended_seconds": 2904,
        "display_name": "Zoë Ölçer 🎓",
        "email": "student00000@school.example",
        "ended_at": datetime(2026, 1, 15, 10, 45, 0, 123456, tzinfo=UTC),
        "estimated": False,
        "fingerprint": "ed7f1a8862d1c412",
        "first_join": join,
        "identifier": "student00000@school.example",
        "identifier_type": "email_address",
        "is_external": False,
        "last_leave": sessions[-1]["leave_time"],
        "meeting_code": "abc-defg-hij",
        "meeting_id": "x-3fb0fd92d9b1098a20b17ad9",
        "meeting_status": "collecting",
        "participant_key": "student00000@school.example",
        "preliminary": False,
        "previous_attended_seconds": None,
        "revision": 1,
        "rsvp": None,
        "session_count": 3,
        "sessions": sessions,
        "staged_commit": "c34bbc20d2e944f796ca7f9aaad8634d",
        "total_session_seconds": 2904,
        "ratio": 0.75,
        "nested": {"empty": {}, "list": [], "big": INT64_MAX},
        "expire_at": datetime(2026, 4, 15, 10, 45, 0, 123456, tzinfo=UTC),
    }


def test_a_participant_document_is_built_here_and_is_the_clients() -> None:
    document = participant_document()
    target = firestore_writes._WRITE()
    firestore_writes._set_into(target, PATH, document)  # no fallback: this module built it
    assert wire(target) == wire(_only(_helpers.pbs_for_set_no_merge(PATH, document)))


# ----------------------------------------------------------------------------- the request


class RecordingApi:
    """Stands in for the client's GAPIC Firestore API: records what ``commit`` is called with
    and answers one result per write."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def commit(self, **kwargs: Any) -> firestore_types.CommitResponse:
        self.calls.append(kwargs)
        request = firestore_types.CommitRequest.pb(kwargs["request"], coerce=True)
        results = [write_result(seconds=n + 1, nanos=7) for n in range(len(request.writes))]
        return firestore_types.CommitResponse(write_results=results)


def new_client() -> firestore.Client:
    """A client that never connects: its GAPIC API is replaced before any commit."""
    return firestore.Client(
        project="p",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
    )


@pytest.fixture
def client() -> firestore.Client:
    return new_client()


Operation = tuple[str, str, Any]
operations = st.lists(
    st.tuples(
        st.sampled_from(["set", "create", "update", "update_fenced", "delete"]),
        st.sampled_from(["a", "b", "c"]),
        documents,
    ),
    max_size=5,
)


def apply(batch: Any, client: firestore.Client, operations: list[Operation]) -> list[Any]:
    """The operations on ``batch``; each one's exception type (or None)."""
    raised: list[Any] = []
    for kind, doc_id, data in operations:
        reference = client.collection("meetings").document("x-1").collection("p").document(doc_id)
        try:
            if kind == "update_fenced":
                option = client.write_option(last_update_time=proto_plus_datetime(5, 6))
                batch.update(reference, data, option=option)
            elif kind == "delete":
                batch.delete(reference)
            else:
                getattr(batch, kind)(reference, data)
        except Exception as error:  # whatever it is: its type is what is compared
            raised.append(type(error))
        else:
            raised.append(None)
    return raised


@settings(settings.get_profile("firestore_writes"), max_examples=100)
@given(operations)
def test_a_batch_sends_the_clients_request_the_way_the_client_sends_it(
    operations: list[Operation],
) -> None:
    client = new_client()
    api = RecordingApi()
    client._firestore_api_internal = api
    theirs, mine = client.batch(), RawBatch(client)

    assert apply(mine, client, operations) == apply(theirs, client, operations)
    their_results = theirs.commit()
    my_results = mine.commit()

    (their_call, my_call) = api.calls
    assert set(my_call) == set(their_call) == {"request", "metadata"}  # the default retry
    assert my_call["metadata"] == their_call["metadata"]
    assert wire(firestore_types.CommitRequest.pb(my_call["request"])) == wire(
        firestore_types.CommitRequest.pb(firestore_types.CommitRequest(their_call["request"]))
    )
    assert [r.update_time for r in my_results] == [r.update_time for r in their_results]
    assert all(type(r.update_time) is type(proto_plus_datetime(1, 1)) for r in my_results)


def test_the_batch_kwargs_the_client_would_add_are_none(client: firestore.Client) -> None:
    """WriteBatch.commit() passes no retry or timeout of its own (the GAPIC defaults apply):
    RawBatch passes none either, which the test above checks call by call."""
    _, kwargs = client.batch()._prep_commit(DEFAULT, None)
    assert kwargs == {}


def test_an_explicit_exists_option_is_refused_as_the_client_refuses_it(
    client: firestore.Client,
) -> None:
    reference = client.collection("meetings").document("x-1")
    option = _helpers.ExistsOption(exists=True)
    with pytest.raises(ValueError, match="explicit write option"):
        client.batch().update(reference, {"a": 1}, option=option)
    with pytest.raises(ValueError, match="explicit write option"):
        RawBatch(client).update(reference, {"a": 1}, option=option)


def test_a_write_the_client_refuses_leaves_nothing_half_built(client: firestore.Client) -> None:
    batch = RawBatch(client)
    reference = client.collection("meetings").document("x-1")
    batch.set(reference, {"a": 1})
    with pytest.raises(ValueError, match="DELETE_FIELD"):
        batch.set(reference, {"b": 2, "c": firestore.DELETE_FIELD})
    assert len(batch) == 1
