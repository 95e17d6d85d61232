"""How one change of a meeting is written: in one request when it fits, in stages when it does not
(CONTRACT §3 "Atomic"). Pure: both stores execute the stages this module plans, in order.

One request (the usual case)::

    [participant sets, deletes, status mirrors, revisions/{n}, meetings/{id} fenced]

Stages, when that is larger than a request may be (Google: 10 MiB, the emulator: 4 MiB)::

    1. meetings/{id} fenced: multi_commit = true       readers now know a change is being written
    2. participant sets, a request at a time           revision n, meeting_status "staged",
       (each with meetings/{id} fenced again)          staged_commit: the change's token;
                                                       documents still naming the change
                                                       landed before lose that name (settle)
    3. revisions/{n}, meetings/{id} fenced, deletes    the change becomes the meeting's: the
                                                       meeting names the token (staged_commit)
    4. status mirrors, a request at a time             meeting_status of every document follows

Readers count a participant document only when its ``revision`` is not above the meeting's and
its ``staged_commit``, if any, is the one the meeting names (``functions.model.is_committed``);
until stage 3 lands they see the meeting as it was (minus the participants being rewritten, which
is why the meeting says ``multi_commit``). Billing, which counts ``meeting_status ==
"complete"``, never counts a ``staged`` document. A stage that is fenced out stops the rest: what
it staged is never counted, whatever revision a later change brings the meeting to, and the next
change rewrites or removes it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

from functions.ports import MeetingCommit
from functions.stored_state import STAGED_COMMIT

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
    meeting_id = change.meeting.meeting_id

    def progress(written: int) -> Write:
        # Every staged request changes the meeting (Firestore keeps the update time of a write
        # that changes nothing), so a change read before that request is fenced out instead of
        # landing over documents it did not see.
        data = {"multi_commit": True, "staging_progress": f"{change.token}/{written}"}
        return Write("update", "meeting", meeting_id, data, fenced=True)

    staged = [
        replace(
            write,
            data={**(write.data or {}), "meeting_status": STAGED, STAGED_COMMIT: change.token},
        )
        for write in sets
    ]
    rewritten = {write.doc_id for write in [*sets, *deletes]}
    settle = [
        Write("update", "participant", doc_id, {STAGED_COMMIT: None})
        for doc_id in change.settle
        if doc_id not in rewritten
    ]
    # The revision record just before the meeting: revisions/{n} exists once it shows revision n.
    landing = [*revision, _meeting_write(change, multi_commit=True), *deletes]
    followers = [
        Write("update", "participant", w.doc_id, {"meeting_status": status, STAGED_COMMIT: None})
        for w in sets
    ]
    chunks = _chunks([*staged, *settle], max_bytes - _size(progress(0)))
    return [
        Stage([progress(0)]),
        *(Stage([*chunk, progress(n)]) for n, chunk in enumerate(chunks, start=1)),
        Stage(landing, lands=True),
        *(Stage(chunk) for chunk in _chunks([*followers, *mirrors], max_bytes)),
    ]


def _meeting_write(change: MeetingCommit, *, multi_commit: bool) -> Write:
    meeting = change.meeting
    if multi_commit:
        meeting = replace(meeting, multi_commit=True, staged_commit=change.token)
    return Write("update", "meeting", meeting.meeting_id, meeting.to_document(), fenced=True)
