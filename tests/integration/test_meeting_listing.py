"""``list`` on Firestore: the store's searches on Google's emulator, paged as the command pages,
against the seeded set filtered by the rules as the README states them; and every query shape the
store can send checked against ``infra/firestore.indexes.json`` (the emulator serves any query
without an index, so only this check catches a missing one before production does)."""

from __future__ import annotations

import itertools
import json
import os
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore
from google.cloud.firestore_v1.types import StructuredQuery

os.environ.setdefault("NO_GCE_CHECK", "True")

from functions.adapters.firestore_store import FirestoreStore, firestore_client
from functions.meeting_search import Cursor, MeetingQuery, decode_token, encode_token, page
from functions.model import MeetingRecord, estimated_record
from functions.ports import MeetingCommit
from functions.schedule import Status
from local.firestore_emulator import FirestoreEmulator
from tests.integration.test_firestore_store import meeting, settings_for

INDEXES = Path(__file__).resolve().parents[2] / "infra" / "firestore.indexes.json"
T0 = datetime(2026, 2, 2, 8, 0, tzinfo=UTC)
CODES = ("abc-defg-hij", "klm-nopq-rst", "uvw-xyza-bcd")
ORGANIZERS = (None, "one@school.example", "two@school.example")
KEYS = ("a@school.example", "b@school.example", "phone:+441234567890")

# ----------------------------------------------------------------------------- index coverage

Shape = tuple[str, str, tuple[str, ...], frozenset[str], tuple[tuple[str, str], ...]]
_EQUALITY = {StructuredQuery.FieldFilter.Operator.EQUAL, StructuredQuery.FieldFilter.Operator.IN}


def shape_of(query: Any) -> Shape:
    """(collection, scope, equality fields in order, inequality fields, orders) of a query."""
    proto = query._to_protobuf()
    selector = proto.from_[0]
    scope = "COLLECTION_GROUP" if selector.all_descendants else "COLLECTION"
    where = proto.where
    filters = (
        [f.field_filter for f in where.composite_filter.filters]
        if "composite_filter" in where
        else ([where.field_filter] if "field_filter" in where else [])
    )
    equalities = tuple(f.field.field_path for f in filters if f.op in _EQUALITY)
    ranges = frozenset(f.field.field_path for f in filters if f.op not in _EQUALITY)
    orders = tuple((o.field.field_path, o.direction.name) for o in proto.order_by)
    return selector.collection_id, scope, equalities, ranges, orders


def serving_index(shape: Shape, document: dict[str, Any]) -> str | None:
    """Why Firestore can serve the shape from ``document``'s indexes; None if it cannot.

    Conservative: a composite index must list the equality fields in the order the query sends
    them, then the orders exactly (``__name__`` included); a single-field shape is served by the
    automatic index unless an override of that field leaves out what it needs."""
    collection, scope, equalities, ranges, orders = shape
    overrides = {(o["collectionGroup"], o["fieldPath"]): o for o in document["fieldOverrides"]}
    sorted_on = [field for field, _ in orders if field != "__name__"]
    if len(equalities) + len(sorted_on) == 1 and ranges <= set(sorted_on):
        field = (equalities or tuple(sorted_on))[0]
        override = overrides.get((collection, field))
        if override is None:
            return "automatic" if scope == "COLLECTION" else None
        return (
            "override"
            if any(i["queryScope"] == scope and "order" in i for i in override["indexes"])
            else None
        )
    for index in document["indexes"]:
        fields = [(f["fieldPath"], f["order"]) for f in index["fields"]]
        if (
            index["collectionGroup"] == collection
            and index["queryScope"] == scope
            and [f for f, _ in fields[: len(equalities)]] == list(equalities)
            and tuple(fields[len(equalities) :]) == orders
        ):
            return "composite " + ", ".join(f for f, _ in fields)
    return None


def all_shapes() -> dict[str, Shape]:
    """Every query shape the store sends for ``list``: each combination of options."""
    client = firestore.Client(project="shapes", credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
    store = FirestoreStore(client)
    shapes: dict[str, Shape] = {}
    for code, organizer, status, start, end, after in itertools.product(
        (None, CODES[0]),
        (None, ORGANIZERS[1]),
        (None, *Status),
        (None, T0),
        (None, T0 + timedelta(days=1)),
        (None, Cursor(T0, "c-x")),
    ):
        query = MeetingQuery(
            meeting_code=code,
            organizer_email=organizer,
            status=status,
            ended_from=start,
            ended_to=end,
        )
        shape = shape_of(store.search_query(query, limit=51, after=after))
        shapes.setdefault(repr(shape), shape)
    shape = shape_of(store.participant_query(KEYS[0]))
    shapes.setdefault(repr(shape), shape)
    return shapes


def test_every_query_shape_of_list_has_its_index() -> None:
    document = json.loads(INDEXES.read_text("utf-8"))
    shapes = all_shapes()
    # {status} x {code?} x {organizer?} x {an ended_at range?}, and the participant lookup.
    assert len(shapes) == 9
    missing = [key for key, shape in shapes.items() if serving_index(shape, document) is None]
    assert missing == []


def test_the_index_check_finds_each_index_missing() -> None:
    """Each composite index the listing needs is needed: without it a shape goes unserved."""
    document = json.loads(INDEXES.read_text("utf-8"))
    shapes = all_shapes().values()
    used = {serving_index(shape, document) for shape in shapes}
    composites = sorted(u for u in used if u is not None and u.startswith("composite"))
    assert len(composites) == 4
    for name in composites:
        without = {
            **document,
            "indexes": [
                i
                for i in document["indexes"]
                if "composite " + ", ".join(f["fieldPath"] for f in i["fields"]) != name
            ],
        }
        assert any(serving_index(shape, without) is None for shape in shapes), name
    no_group_key = {
        **document,
        "fieldOverrides": [
            o for o in document["fieldOverrides"] if o["fieldPath"] != "participant_key"
        ],
    }
    assert any(serving_index(shape, no_group_key) is None for shape in shapes)


# ----------------------------------------------------------------------------- on the emulator


@pytest.fixture
def store(firestore_db: FirestoreEmulator) -> FirestoreStore:
    return FirestoreStore(firestore_client(settings_for(firestore_db)))


def seed(store: FirestoreStore) -> tuple[list[MeetingRecord], dict[str, set[str]]]:
    """40 meetings: ties in ended_at, every status, codes, organizers; some with participants."""
    rng = random.Random(16)
    meetings: list[MeetingRecord] = []
    naming: dict[str, set[str]] = {key: set() for key in KEYS}
    for n in range(40):
        ended_at = T0 + timedelta(minutes=30 * rng.randrange(12), microseconds=rng.randrange(2))
        record = meeting(
            f"c-{rng.randrange(10**6):06d}-{n}",
            ended_at=ended_at,
            meeting_code=rng.choice(CODES),
            organizer_email=rng.choice(ORGANIZERS),
            status=rng.choice(list(Status)),
        )
        assert store.create(record)
        keys = [key for key in KEYS if rng.random() < 0.4]
        if keys:
            stored = store.read(record.meeting_id)
            assert stored is not None
            upserts = [
                estimated_record(k, meeting=record, revision=1, status=record.status) for k in keys
            ]
            record = replace(record, revision=1)
            landed = store.commit(
                MeetingCommit(meeting=record, expected=stored.version, upserts=upserts)
            )
            assert landed is not None
            for key in keys:
                naming[key].add(record.meeting_id)
        meetings.append(record)
    return meetings, naming


def expected_ids(
    meetings: list[MeetingRecord], naming: dict[str, set[str]], query: MeetingQuery
) -> list[str]:
    wanted = [
        m
        for m in meetings
        if query.meeting_code in (None, m.meeting_code)
        and query.organizer_email in (None, m.organizer_email)
        and (m.status == query.status if query.status else m.status != Status.MERGED)
        and (query.ended_from is None or query.ended_from <= m.ended_at)
        and (query.ended_to is None or m.ended_at < query.ended_to)
        and (query.participant_key is None or m.meeting_id in naming[query.participant_key])
    ]
    wanted.sort(key=lambda m: (m.ended_at, m.meeting_id), reverse=True)
    return [m.meeting_id for m in wanted]


def paged_ids(store: FirestoreStore, query: MeetingQuery, *, limit: int) -> list[str]:
    """Through every page as the command goes, the cursor through its printed token."""
    ids: list[str] = []
    token: str | None = None
    for _ in range(100):
        after = None if token is None else decode_token(token)
        result = page(store.search(query, limit=limit + 1, after=after), limit=limit)
        ids += [m.meeting_id for m in result.meetings]
        if result.next_cursor is None:
            return ids
        token = encode_token(result.next_cursor)
    raise AssertionError("paging did not end")


def test_paging_through_firestore_lists_every_match_once(store: FirestoreStore) -> None:
    meetings, naming = seed(store)
    middle = T0 + timedelta(hours=2, microseconds=1)
    queries = [
        MeetingQuery(),
        MeetingQuery(status=Status.MERGED),
        MeetingQuery(meeting_code=CODES[0]),
        MeetingQuery(organizer_email=ORGANIZERS[1], status=Status.COMPLETE),
        MeetingQuery(meeting_code=CODES[1], organizer_email=ORGANIZERS[2]),
        MeetingQuery(ended_from=middle, ended_to=T0 + timedelta(hours=5)),
        MeetingQuery(participant_key=KEYS[0]),
        MeetingQuery(participant_key=KEYS[1], meeting_code=CODES[2], ended_from=middle),
        MeetingQuery(participant_key=KEYS[2], status=Status.MERGED),
    ]
    nonempty = 0
    for query in queries:
        expected = expected_ids(meetings, naming, query)
        nonempty += bool(expected)
        for limit in (1, 3, 50):
            assert paged_ids(store, query, limit=limit) == expected, (query, limit)
    assert nonempty >= 7  # the seed exercises the filters, not only empty answers
