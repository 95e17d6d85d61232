"""How one change of a meeting is written: in one request when it fits, in stages when it does not
(CONTRACT §3 "Atomic"). Pure: both stores execute the stages this module plans, in order.

One request (the usual case)::

    [participant sets, deletes, status mirrors, revisions/{n}, meetings/{id} fenced]

Stages, when that is larger than a request may be (Google: 10 MiB, the emulator: 4 MiB)::

    1. meetings/{id} fenced: multi_commit = true       readers now know a change is being written
    2. participant sets, a request at a time           revision n, meeting_status "staged"
    3. meetings/{id} fenced, revisions/{n}, deletes    the change becomes the meeting's
    4. status mirrors, a request at a time             meeting_status of every document follows

Readers ignore participant documents whose ``revision`` is above the meeting's, so until stage 3
lands they see the meeting as it was (minus the participants being rewritten, which is why the
meeting says ``multi_commit``); billing, which counts ``meeting_status == "complete"``, never
counts a ``staged`` document. A stage that is fenced out stops the rest: documents already
staged stay invisible (their revision is above the meeting's) until the next poll rewrites them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

from functions.ports import MeetingCommit

__all__ = ["STAGED", "Stage", "Write", "stages"]

#: ``meeting_status`` of a participant document written ahead of its meeting (stage 2).
STAGED: Final = "staged"
#: Per-write overhead beyond the document's own bytes (names, paths, framing).
_WRITE_OVERHEAD: Final = 200

Target = Literal["meeting", "participant", "revision"]


@dataclass(frozen=True, slots=True)
class Write:
    kind: Literal["set", "update", "delete"]
    target: Target
    doc_id: str
    data: Mapping[str, Any] | None = None
    #: The meeting write: conditioned on the version the stores last saw (the commit's expected
    #: version, then whatever the previous fenced write produced).
    fenced: bool = False


@dataclass(frozen=True, slots=True)
class Stage:
    """One request. ``lands``: the request whose success makes the change the meeting's; a
    request after it only mirrors statuses, and a participant deleted meanwhile keeps none."""

    writes: list[Write]
    lands: bool = False


def _size(write: Write) -> int:
    body = 0 if write.data is None else len(json.dumps(write.data, default=str))
    return body + len(write.doc_id) + _WRITE_OVERHEAD


def _chunks(writes: Sequence[Write], max_bytes: int) -> list[list[Write]]:
    chunks: list[list[Write]] = []
    current: list[Write] = []
    size = 0
    for write in writes:
        cost = _size(write)
        if current and size + cost > max_bytes:
            chunks.append(current)
            current, size = [], 0
        current.append(write)
        size += cost
    if current:
        chunks.append(current)
    return chunks


def stages(change: MeetingCommit, *, max_bytes: int) -> list[Stage]:
    """The requests that write ``change``, in order; each fits ``max_bytes`` where it can."""
    status = str(change.meeting.status)
    sets = [Write("set", "participant", r.doc_id, dict(r.document)) for r in change.upserts]
    deletes = [Write("delete", "participant", doc_id) for doc_id in change.deletes]
    mirrors = [
        Write("update", "participant", doc_id, {"meeting_status": status})
        for doc_id in change.status_updates
    ]
    revision = (
        []
        if change.revision is None
        else [
            Write("set", "revision", str(change.revision.revision), change.revision.to_document())
        ]
    )
    single = [*sets, *deletes, *mirrors, *revision, _meeting_write(change, multi_commit=False)]
    if sum(map(_size, single)) <= max_bytes:
        return [Stage(single, lands=True)]
    announce = Write(
        "update", "meeting", change.meeting.meeting_id, {"multi_commit": True}, fenced=True
    )
    staged = [
        replace(write, data={**(write.data or {}), "meeting_status": STAGED}) for write in sets
    ]
    # The revision record just before the meeting: revisions/{n} exists once it shows revision n.
    landing = [*revision, _meeting_write(change, multi_commit=True)]
    followers = [Write("update", "participant", w.doc_id, {"meeting_status": status}) for w in sets]
    return [
        Stage([announce]),
        *(Stage(chunk) for chunk in _chunks(staged, max_bytes)),
        Stage(landing, lands=True),
        *(Stage(chunk) for chunk in _chunks([*deletes, *followers, *mirrors], max_bytes)),
    ]


def _meeting_write(change: MeetingCommit, *, multi_commit: bool) -> Write:
    meeting = change.meeting
    if multi_commit:
        meeting = replace(meeting, multi_commit=True)
    return Write("update", "meeting", meeting.meeting_id, meeting.to_document(), fenced=True)
