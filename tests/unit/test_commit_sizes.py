"""How ``functions.commits`` sizes and splits a change, checked against the plain rules.

A request must never exceed ``max_bytes``: every write is sized as its document's
``json.dumps(data, default=str)`` plus its id and a fixed overhead, and the requests are cut on
those sizes. The sizing is made faster (one encoder for every write, staged writes built without
``dataclasses.replace``); these tests fail if the faster forms ever size or stage differently.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from functions.commits import _WRITE_OVERHEAD, Write, _size, mirror_fence, stages
from functions.model import AttendanceChange, MeetingRecord, ParticipantRecord, RevisionRecord
from functions.ports import MeetingCommit
from functions.schedule import Status
from functions.stored_state import STAGED_COMMIT
from tests.unit.factories import at

_TEXT = st.text(max_size=12) | st.text(
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3
)
#: Aware UTC moments, with and without microseconds (``str`` writes them in two lengths).
_MOMENTS = st.integers(-(10**15), 10**15).map(
    lambda us: datetime(2026, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)
)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | _TEXT
    | _MOMENTS
)
_VALUES = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_TEXT, children, max_size=4),
    max_leaves=20,
)
_DOCUMENTS = st.dictionaries(_TEXT, _VALUES, max_size=8)


def _plain_size(write: Write) -> int:
    """The size rule as first written: the document's JSON, its id and the overhead."""
    body = 0 if write.data is None else len(json.dumps(write.data, default=str))
    return body + len(write.doc_id) + _WRITE_OVERHEAD


@given(_DOCUMENTS | st.none(), _TEXT)
def test_a_write_is_sized_as_its_documents_json(data: dict[str, Any] | None, doc_id: str) -> None:
    write = Write("set", "participant", doc_id, data)
    assert _size(write) == _plain_size(write)


def _meeting(status: Status) -> MeetingRecord:
    return MeetingRecord(
        meeting_id="m-1",
        source="webhook",
        meeting_code="abc-defg-hij",
        ended_at=at(60),
        started_at=at(0),
        external_id=None,
        window_start=at(-15),
        window_end=at(120),
        deadline=at(60) + timedelta(days=1),
        status=status,
        revision=3,
    )


@st.composite
def changes(draw: st.DrawFn) -> tuple[MeetingCommit, int]:
    documents = draw(st.lists(_DOCUMENTS, min_size=1, max_size=12))
    upserts = [
        ParticipantRecord(doc_id=f"p{index}", document=document, fingerprint=f"f{index}")
        for index, document in enumerate(documents)
    ]
    status = draw(st.sampled_from([Status.COLLECTING, Status.COMPLETE]))
    change = MeetingCommit(
        meeting=_meeting(status),
        expected=draw(_MOMENTS),
        upserts=upserts,
        deletes=draw(st.lists(st.sampled_from(["d1", "d2", "p0"]), unique=True)),
        status_updates=draw(st.lists(st.sampled_from(["s1", "s2"]), unique=True)),
        revision=RevisionRecord(
            revision=4,
            at=at(61),
            reason="poll",
            changes=[AttendanceChange(f"k{n}", n or None, n) for n in range(len(upserts))],
        ),
        settle=draw(st.lists(st.sampled_from(["p1", "t1"]), unique=True)),
        token="token-1",
    )
    # From everything in one request to a request per write (and less).
    return change, draw(st.integers(400, 20_000))


@settings(max_examples=150)
@given(changes())
def test_every_request_fits_and_stages_carry_the_plain_documents(
    drawn: tuple[MeetingCommit, int],
) -> None:
    change, max_bytes = drawn
    planned = stages(change, max_bytes=max_bytes)
    if len(planned) == 1:
        assert sum(map(_plain_size, planned[0].writes)) <= max_bytes
        return
    # A staged request names its count in ``staging_progress`` ("token/n"), sized as "token/0":
    # a count of two digits may take one byte more than planned (the overhead covers it).
    slack = len(str(len(planned))) - 1
    for stage in planned:
        if stage.lands:
            continue  # the landing request is not split (docs/rules.md "Atomic")
        writes = stage.writes
        if stage.only_while is not None:
            writes = [*writes, mirror_fence(change.meeting)]
        # One write larger than a request goes alone (nothing can make it smaller).
        assert len(writes) <= 2 or sum(map(_plain_size, writes)) <= max_bytes + slack
    completes = change.meeting.status is Status.COMPLETE
    marks = {"meeting_status": "staged" if completes else "collecting", STAGED_COMMIT: "token-1"}
    staged = {
        write.doc_id: write
        for stage in planned
        if not stage.lands and stage.only_while is None
        for write in stage.writes
        if write.kind == "set" and write.target == "participant"
    }
    for record in change.upserts:
        plain = replace(
            Write("set", "participant", record.doc_id, dict(record.document)),
            data={**record.document, **marks},
        )
        assert staged[record.doc_id] == plain
        assert list(staged[record.doc_id].data or {}) == list(plain.data or {})


def test_a_revision_record_lists_its_changes_field_by_field() -> None:
    record = RevisionRecord(
        revision=2,
        at=at(1),
        reason="poll",
        changes=[AttendanceChange("b", None, 5), AttendanceChange("a", 3, None)],
    )
    document = record.to_document()
    assert document["changes"] == [
        {"participant_key": "b", "before": None, "after": 5},
        {"participant_key": "a", "before": 3, "after": None},
    ]
    assert [list(change) for change in document["changes"]] == [
        ["participant_key", "before", "after"]
    ] * 2
    assert document["participant_keys"] == ["a", "b"]
