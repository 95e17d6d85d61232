"""The rules of ``python -m functions list`` (functions/meeting_search.py): which meetings a query
matches, their order, pages and page tokens, and the command's options; and the command itself on
the in-memory store (its Firestore side: tests/integration/test_meeting_listing.py, tests/e2e)."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.cli import cli  # first: it imports functions.cli_list
from functions.errors import InvalidInput
from functions.meeting_search import (
    LISTED_FIELDS,
    Cursor,
    MeetingQuery,
    checked_code,
    checked_organizer,
    checked_participant,
    checked_range,
    decode_token,
    encode_token,
    ended_range,
    equality_filters,
    listed_fields,
    listed_statuses,
    matches,
    page,
    select,
    shows_participant,
)
from functions.model import MeetingRecord
from functions.schedule import Status
from tests.fakes import MemoryStore

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)


def meeting(meeting_id: str, ended_at: datetime = T0, **changes: Any) -> MeetingRecord:
    record = MeetingRecord(
        meeting_id=meeting_id,
        source="webhook",
        meeting_code="abc-defg-hij",
        ended_at=ended_at,
        started_at=ended_at - H,
        external_id=None,
        window_start=ended_at - 2 * H,
        window_end=ended_at + H,
        deadline=ended_at + 24 * H,
        status=Status.COMPLETE,
    )
    return replace(record, **changes)


# ----------------------------------------------------------------------------- filters


def test_merged_meetings_are_listed_only_when_asked_for() -> None:
    assert Status.MERGED not in listed_statuses(MeetingQuery())
    assert set(listed_statuses(MeetingQuery())) == set(Status) - {Status.MERGED}
    assert listed_statuses(MeetingQuery(status=Status.MERGED)) == (Status.MERGED,)
    merged = meeting("c-m", status=Status.MERGED)
    assert not matches(MeetingQuery(), merged)
    assert matches(MeetingQuery(status=Status.MERGED), merged)
    assert not matches(MeetingQuery(status=Status.COMPLETE), merged)


@pytest.mark.parametrize(
    ("query", "fails"),
    [
        (MeetingQuery(meeting_code="xyz-abcd-efg"), {"meeting_code": "abc-defg-hij"}),
        (MeetingQuery(organizer_email="a@school.example"), {"organizer_email": "b@s.example"}),
        (MeetingQuery(status=Status.FAILED), {"status": Status.COMPLETE}),
        (MeetingQuery(ended_from=T0), {"ended_at": T0 - timedelta(microseconds=1)}),
        (MeetingQuery(ended_to=T0), {"ended_at": T0}),
    ],
    ids=["code", "organizer", "status", "from is included", "to is excluded"],
)
def test_each_filter_alone_refuses_a_meeting(query: MeetingQuery, fails: dict[str, Any]) -> None:
    passes = meeting(
        "c-1",
        meeting_code=query.meeting_code or "abc-defg-hij",
        organizer_email=query.organizer_email,
        status=query.status or Status.COMPLETE,
        ended_at=query.ended_from or (query.ended_to or T0) - timedelta(microseconds=1),
    )
    assert matches(query, passes)
    assert not matches(query, replace(passes, **fails))


def test_the_filters_sent_to_firestore() -> None:
    everything = MeetingQuery(
        meeting_code="abc-defg-hij",
        organizer_email="o@school.example",
        status=Status.NO_DATA,
        ended_from=T0,
        ended_to=T0 + H,
    )
    assert equality_filters(everything) == [
        ("meeting_code", "==", "abc-defg-hij"),
        ("organizer_email", "==", "o@school.example"),
        ("status", "==", "no_data"),
    ]
    assert ended_range(everything) == [("ended_at", ">=", T0), ("ended_at", "<", T0 + H)]
    assert equality_filters(MeetingQuery()) == [
        ("status", "in", ["collecting", "complete", "failed", "no_data", "scheduled"])
    ]
    assert ended_range(MeetingQuery()) == []


def test_a_participant_shows_while_one_of_its_documents_counts() -> None:
    shown = meeting("c-1", revision=2, staged_commit="t1")
    landed = {"revision": 2}
    ahead = {"revision": 3}  # a staged change not landed yet, replacing nothing
    replacing = {"revision": 3, "previous_attended_seconds": 60}
    other_change = {"revision": 1, "staged_commit": "t0"}  # a fenced-out staged change
    assert shows_participant([landed], shown)
    assert shows_participant([{"revision": 1, "staged_commit": "t1"}], shown)
    assert not shows_participant([ahead], shown)
    assert shows_participant([replacing], shown)
    assert not shows_participant([other_change], shown)
    assert not shows_participant([], shown)


# ----------------------------------------------------------------------------- order and pages


def test_newest_first_and_ties_by_meeting_id_descending() -> None:
    meetings = [
        meeting("c-a", T0),
        meeting("c-b", T0 + H),
        meeting("c-c", T0),
        meeting("c-d", T0 - H),
    ]
    found = select(meetings, MeetingQuery(), limit=10, after=None)
    assert [m.meeting_id for m in found] == ["c-b", "c-c", "c-a", "c-d"]
    after_c = select(meetings, MeetingQuery(), limit=10, after=Cursor(T0, "c-c"))
    assert [m.meeting_id for m in after_c] == ["c-a", "c-d"]
    assert [m.meeting_id for m in select(meetings, MeetingQuery(), limit=2, after=None)] == [
        "c-b",
        "c-c",
    ]


def test_a_page_knows_another_follows_only_from_the_extra_meeting() -> None:
    meetings = [meeting(f"c-{n}", T0 - n * H) for n in range(4)]
    full = page(meetings[:3], limit=3)
    assert [m.meeting_id for m in full.meetings] == ["c-0", "c-1", "c-2"]
    assert full.next_cursor is None
    more = page(meetings, limit=3)
    assert [m.meeting_id for m in more.meetings] == ["c-0", "c-1", "c-2"]
    assert more.next_cursor == Cursor(T0 - 2 * H, "c-2")
    assert page([], limit=3).next_cursor is None


IDS = st.sampled_from([f"c-{n:02d}" for n in range(40)])
MOMENTS = st.integers(0, 6).map(lambda n: T0 + n * timedelta(minutes=30))
STATUSES = st.sampled_from(list(Status))
CODES = st.sampled_from(["aaa-bbbb-ccc", "ddd-eeee-fff"])
ORGANIZERS = st.sampled_from([None, "a@school.example", "b@school.example"])
STORED = st.lists(
    st.builds(
        lambda meeting_id, ended_at, status, code, organizer: meeting(
            meeting_id,
            ended_at,
            status=status,
            meeting_code=code,
            organizer_email=organizer,
        ),
        IDS,
        MOMENTS,
        STATUSES,
        CODES,
        ORGANIZERS,
    ),
    max_size=30,
    unique_by=lambda m: m.meeting_id,
)
QUERIES = st.builds(
    MeetingQuery,
    meeting_code=st.none() | CODES,
    organizer_email=ORGANIZERS,
    status=st.none() | STATUSES,
    ended_from=st.none() | MOMENTS,
    ended_to=st.none() | MOMENTS,
)


def _expected(meetings: list[MeetingRecord], query: MeetingQuery) -> list[str]:
    """The oracle: the whole set filtered by the option rules as the README states them."""
    wanted = [
        m
        for m in meetings
        if (query.meeting_code in (None, m.meeting_code))
        and (query.organizer_email in (None, m.organizer_email))
        and (m.status == query.status if query.status else m.status != Status.MERGED)
        and (query.ended_from is None or query.ended_from <= m.ended_at)
        and (query.ended_to is None or m.ended_at < query.ended_to)
    ]
    wanted.sort(key=lambda m: (m.ended_at.timestamp(), m.meeting_id), reverse=True)
    return [m.meeting_id for m in wanted]


@settings(max_examples=300, deadline=None)
@given(meetings=STORED, query=QUERIES, limit=st.integers(1, 8))
def test_paging_returns_every_match_once_newest_first(
    meetings: list[MeetingRecord], query: MeetingQuery, limit: int
) -> None:
    store = MemoryStore()
    for record in meetings:
        assert store.create(record)
    seen: list[str] = []
    token: str | None = None
    for _ in range(len(meetings) + 2):
        after = None if token is None else decode_token(token)
        result = page(store.search(query, limit=limit + 1, after=after), limit=limit)
        assert len(result.meetings) <= limit
        seen += [m.meeting_id for m in result.meetings]
        if result.next_cursor is None:
            break
        assert len(result.meetings) == limit
        token = encode_token(result.next_cursor)
    else:
        pytest.fail("paging did not end")
    assert seen == _expected(meetings, query)


# ----------------------------------------------------------------------------- tokens


@pytest.mark.parametrize(
    "cursor",
    [
        Cursor(T0, "c-abc"),
        Cursor(datetime(2026, 1, 15, 10, 45, 0, 123456, tzinfo=UTC), "x-" + "f" * 126),
        Cursor(datetime(1970, 1, 1, tzinfo=UTC), "b_1"),
    ],
)
def test_a_token_names_its_cursor_to_the_microsecond(cursor: Cursor) -> None:
    token = encode_token(cursor)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert decode_token(token) == cursor


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not a token",
        "abc=",  # padding is never printed
        _b64("2|1767225600000000|c-abc"),  # unknown version
        _b64("1|-5|c-abc"),
        _b64("1|12x|c-abc"),
        _b64("1|99999999999999999999|c-abc"),  # past year 9999
        _b64("1|1767225600000000|c/abc"),  # not a meeting id
        _b64("1|1767225600000000"),
        _b64("1|1767225600000000|c-abc|more"),
        encode_token(Cursor(T0, "c-abc")) + "A",  # another spelling
        "A" * 401,
    ],
)
def test_a_bad_token_is_refused_as_bad_input(token: str) -> None:
    with pytest.raises(InvalidInput, match="--page-token"):
        decode_token(token)


# ----------------------------------------------------------------------------- options


def test_options_take_their_stored_forms() -> None:
    assert checked_code(" ABC defg-HIJ") == "abc-defg-hij"
    assert checked_organizer(" Teacher@School.Example ") == "teacher@school.example"
    assert checked_participant("Phone: +441234") == "phone:+441234"
    assert checked_participant("STUDENT@school.example") == "student@school.example"
    for check, raw, option in (
        (checked_code, "ab", "--code"),
        (checked_code, "abc/def", "--code"),
        (checked_organizer, "nobody", "--organizer"),
        (checked_participant, "nobody", "--participant"),
    ):
        with pytest.raises(InvalidInput, match=option):
            check(raw)
    checked_range(T0, T0 + H)
    checked_range(None, T0)
    with pytest.raises(InvalidInput, match="--from must be before --to"):
        checked_range(T0, T0)


def test_listed_fields_are_the_documented_ones() -> None:
    record = meeting("c-1", organizer_email="o@school.example", participant_count=3)
    fields = listed_fields(record)
    assert tuple(fields) == LISTED_FIELDS
    assert fields["ended_at"] == "2026-03-02T09:00:00.000Z"
    assert fields["status"] == "complete"
    assert fields["participant_count"] == 3
    assert json.loads(json.dumps(fields)) == fields


# ----------------------------------------------------------------------------- the command


#: The command's only way to the system (replaced here by the in-memory store).
OPERATOR_STORE = "functions.cli_list.operator_store"


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> MemoryStore:
    memory = MemoryStore()
    monkeypatch.setattr(OPERATOR_STORE, lambda: memory)
    return memory


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, ["list", *args])


def test_the_command_pages_with_the_token_it_prints(store: MemoryStore) -> None:
    for n in range(5):
        store.create(meeting(f"c-{n}", T0 - n * H, meeting_code="abc-defg-hij"))
    store.create(meeting("c-other", T0, meeting_code="xyz-abcd-efg"))
    first = run("--code", "ABCDEFGHIJ", "--limit", "2", "--json")
    assert first.exit_code == 0, first.stderr
    body = json.loads(first.stdout)
    assert [m["meeting_id"] for m in body["meetings"]] == ["c-0", "c-1"]
    token = body["next_page_token"]
    assert first.stderr.splitlines()[-1] == f"list: 2 meeting(s); more: add --page-token {token}"
    ids: list[str] = [m["meeting_id"] for m in body["meetings"]]
    while token is not None:
        more = run("--code", "abc-defg-hij", "--limit", "2", "--json", "--page-token", token)
        assert more.exit_code == 0, more.stderr
        body = json.loads(more.stdout)
        ids += [m["meeting_id"] for m in body["meetings"]]
        token = body["next_page_token"]
    assert ids == ["c-0", "c-1", "c-2", "c-3", "c-4"]
    assert more.stderr.splitlines()[-1] == "list: 1 meeting(s)"


def test_the_table_shows_ids_whole_and_cells_as_text(store: MemoryStore) -> None:
    long_id = "x-" + "0123456789abcdef" * 4
    organizer = "[bold]o" + "x" * 60 + "@school.example"
    store.create(meeting(long_id, organizer_email=organizer))
    result = run()
    assert result.exit_code == 0, result.stderr
    assert long_id in result.stdout  # on one line, whole
    assert organizer in result.stdout  # text, not markup; not cut either
    assert "2026-03-02 09:00:00" in result.stdout
    assert result.stderr.splitlines()[-1] == "list: 1 meeting(s)"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--from", "2026-03-01T00:00:00"], "--from must include a UTC offset"),
        (["--to", "yesterday"], "--to"),
        (["--from", "2026-03-02T00:00:00Z", "--to", "2026-03-01T00:00:00Z"], "--from must be"),
        (["--code", "ab"], "--code"),
        (["--organizer", "nobody"], "--organizer"),
        (["--participant", "nobody"], "--participant"),
        (["--page-token", "garbage!"], "--page-token"),
        (["--status", "done"], "--status"),
        (["--limit", "0"], "--limit"),
        (["--limit", "501"], "--limit"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_the_store(
    args: list[str], says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_store() -> MemoryStore:
        raise AssertionError("the store was opened for bad input")

    monkeypatch.setattr(OPERATOR_STORE, no_store)
    result = run(*args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("list: ")
    assert says in result.stderr
    assert result.stdout == ""
