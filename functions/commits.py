"""How one change of a meeting is written: in one request when it fits, in stages when it does not
(docs/rules.md "Atomic"). Pure: both stores execute the stages this module plans, in order.

One request (the usual case)::

    [participant sets, deletes, status mirrors, revisions/{n}, delivery record,
     erasures/{name} absent, meetings/{id} fenced]

(``absent``: the request fails if the erasure is recorded — ``MeetingCommit.unerased``.)

Stages, when that is larger than a request may be (Google: 10 MiB, the emulator: 4 MiB)::

    1. meetings/{id} fenced: multi_commit = true       readers now know a change is being written
    2. participant sets, a request at a time           revision n, staged_commit: the change's
       (each with meetings/{id} fenced again;          token, meeting_status "staged" when the
       staging_progress names the change)              change completes the meeting (else its
                                                       status); documents still naming the
                                                       change landed before lose that name
                                                       (settle)
    3. revisions/{n}, meetings/{id} fenced, deletes,   the change becomes the meeting's: the
       delivery record, erasures absent                meeting names the token (staged_commit)
    4. status mirrors, a request at a time             meeting_status of every document follows

Readers count a participant document only when its ``revision`` is not above the meeting's and
its ``staged_commit``, if any, is the one the meeting names (``functions.model.is_committed``);
until stage 3 lands they see the meeting as it was (minus the participants being rewritten, which
is why the meeting says ``multi_commit``). Billing, which counts ``meeting_status ==
"complete"``, never counts a document before its change lands. A stage that is fenced out stops
the rest: what it staged is never counted, whatever revision a later change brings the meeting
to, ``staging_progress`` stays on the meeting until a poll that read every document (and so
rewrote or removed those) clears it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

from functions.model import MeetingRecord
from functions.ports import MeetingCommit
from functions.schedule import Status
from functions.stored_state import STAGED_COMMIT

__all__ = ["STAGED", "Landed", "Stage", "Write", "fits_one_request", "mirror_fence", "stages"]

#: ``meeting_status`` of a participant document written ahead of its meeting (stage 2).
STAGED: Final = "staged"
#: Per-write overhead beyond the document's own bytes (names, paths, framing).
_WRITE_OVERHEAD: Final = 200

#: ``delivery``: a webhook-id's record (its doc id is the webhook-id, which the store hashes);
#: ``erasure``: an erasure's record (its doc id is the erasure name).
Target = Literal["meeting", "participant", "revision", "delivery", "erasure"]


@dataclass(frozen=True, slots=True)
class Write:
    #: ``create``: the meeting document of a new meeting; fails the request if it exists.
    #: ``absent``: writes nothing and fails the request if the document exists (Firestore: a
    #: delete that must find no document).
    kind: Literal["set", "update", "delete", "create", "absent"]
    target: Target
    doc_id: str
    data: Mapping[str, Any] | None = None
    #: The meeting write: conditioned on the version the stores last saw (the commit's expected
    #: version, then whatever the previous fenced write produced).
    fenced: bool = False


@dataclass(frozen=True, slots=True)
class Landed:
    """What the meeting says while the change that landed is still the latest: a request after
    the landing only mirrors statuses, and only while this holds. Another writer may change
    the meeting between two requests; one that moved its status mirrored the documents itself
    (it read them after the landing), and one that began a staged change may have written
    documents a late mirror must not touch (it would make them count)."""

    token: str
    status: str
    staging_progress: str | None

    def holds(self, meeting: MeetingRecord) -> bool:
        return (
            meeting.staged_commit == self.token
            and str(meeting.status) == self.status
            and meeting.staging_progress == self.staging_progress
        )


def mirror_fence(meeting: MeetingRecord) -> Write:
    """The meeting write of a request of status mirrors outside a change: conditioned on the
    version the store just read (it checks :meth:`Landed.holds` on that read first), and
    changing the meeting so that writers that read the documents before are fenced out."""
    data = {"mirror_requests": meeting.mirror_requests + 1}
    return Write("update", "meeting", meeting.meeting_id, data, fenced=True)


@dataclass(frozen=True, slots=True)
class Stage:
    """One request. ``lands``: the request whose success makes the change the meeting's; a
    request after it (``only_while`` set) only mirrors statuses, and a participant deleted
    meanwhile keeps none; the store adds :func:`mirror_fence` of the meeting it read."""

    writes: list[Write]
    lands: bool = False
    only_while: Landed | None = None


#: ``json.dumps(data, default=str)``'s encoder, made once: a large change sizes thousands of
#: documents, and ``dumps`` builds a new encoder for each.
_JSON: Final = json.JSONEncoder(default=str)


def _size(write: Write) -> int:
    body = 0 if write.data is None else len(_JSON.encode(write.data))
    return body + len(write.doc_id) + _WRITE_OVERHEAD


def _chunks(
    writes: Sequence[Write], max_bytes: int, sizes: Sequence[int] | None = None
) -> list[list[Write]]:
    """``writes`` in requests of at most ``max_bytes``; ``sizes``: each write's size (an upper
    bound), when the caller has them."""
    chunks: list[list[Write]] = []
    current: list[Write] = []
    size = 0
    costs = map(_size, writes) if sizes is None else sizes
    for write, cost in zip(writes, costs, strict=True):
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
    delivery = [] if change.delivery is None else [_delivery_write(change)]
    unerased = [Write("absent", "erasure", name) for name in change.unerased]
    ahead_of_the_meeting = [*sets, *deletes, *mirrors, *revision, *delivery, *unerased]
    single = [*ahead_of_the_meeting, _meeting_write(change, multi_commit=False)]
    # Sizing is JSON encoding: each participant document is sized once, here.
    set_sizes = [_size(write) for write in sets]
    if sum(set_sizes) + sum(map(_size, single[len(sets) :])) <= max_bytes:
        return [Stage(single, lands=True)]
    if change.creates is not None:
        raise ValueError("a change creating its meeting is staged after the meeting is created")
    meeting_id = change.meeting.meeting_id

    def progress(written: int) -> Write:
        # Every staged request changes the meeting (Firestore keeps the update time of a write
        # that changes nothing), so a change read before that request is fenced out instead of
        # landing over documents it did not see.
        data = {"multi_commit": True, "staging_progress": f"{change.token}/{written}"}
        return Write("update", "meeting", meeting_id, data, fenced=True)

    # Billing counts "complete" documents: a change that makes the meeting complete writes them
    # "staged" and mirrors them once it landed. Any other status bills nothing, so its documents
    # carry it from the start and need no mirror (their token is cleared by the next staged
    # change, ``settle``).
    completes = change.meeting.status is Status.COMPLETE
    ahead = STAGED if completes else status
    marks = {"meeting_status": ahead, STAGED_COMMIT: change.token}
    # Each set with the marks: built directly, as ``replace`` would (it costs ten times more).
    staged = [
        Write(w.kind, w.target, w.doc_id, {**(w.data or {}), **marks}, w.fenced) for w in sets
    ]
    # A staged document is its set plus the marks: at most the marks' own JSON more.
    marks_size = len(json.dumps(marks))
    rewritten = {write.doc_id for write in [*sets, *deletes]}
    settle = [
        Write("update", "participant", doc_id, {STAGED_COMMIT: None})
        for doc_id in change.settle
        if doc_id not in rewritten
    ]
    # The revision record just before the meeting: revisions/{n} exists once it shows revision n.
    landing = [
        *revision,
        _meeting_write(change, multi_commit=True),
        *deletes,
        *delivery,
        *unerased,
    ]
    followers = [
        Write("update", "participant", w.doc_id, {"meeting_status": status, STAGED_COMMIT: None})
        for w in (sets if completes else ())
    ]
    chunks = _chunks(
        [*staged, *settle],
        max_bytes - _size(progress(0)),
        [*(size + marks_size for size in set_sizes), *map(_size, settle)],
    )
    landed = Landed(change.token, status, change.meeting.staging_progress)
    room = max_bytes - _size(mirror_fence(change.meeting))
    return [
        Stage([progress(0)]),
        *(Stage([*chunk, progress(n)]) for n, chunk in enumerate(chunks, start=1)),
        Stage(landing, lands=True),
        *(Stage(chunk, only_while=landed) for chunk in _chunks([*followers, *mirrors], room)),
    ]


def fits_one_request(change: MeetingCommit, *, max_bytes: int) -> bool:
    """Whether the change is written by one request (a new meeting's is, with its creation)."""
    return len(stages(replace(change, creates=None), max_bytes=max_bytes)) == 1


def _meeting_write(change: MeetingCommit, *, multi_commit: bool) -> Write:
    meeting = change.meeting
    if multi_commit:
        meeting = replace(meeting, multi_commit=True, staged_commit=change.token)
    if change.creates is not None:
        return Write("create", "meeting", meeting.meeting_id, meeting.to_document())
    return Write("update", "meeting", meeting.meeting_id, meeting.to_document(), fenced=True)


def _delivery_write(change: MeetingCommit) -> Write:
    delivery = change.delivery
    assert delivery is not None
    data = {
        "webhook_id": delivery.webhook_id[:256],
        "meeting_id": delivery.meeting_id,
        "expire_at": delivery.expire_at,
    }
    return Write("set", "delivery", delivery.webhook_id, data)
