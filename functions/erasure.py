"""Use case: erase a participant (docs/rules.md "Privacy": ``erase`` and ``POST /erasures``).

Order matters, and every step may be retried:

1. ``erasures/{name}`` is recorded first (``name``: the participant key's keyed hash). From then
   on no poll, declaration or backfill stores the participant again; a poll already running
   when it is recorded checks again after its commit (``functions.polling``), and so does a
   declaration (``functions.declarations.write_estimates``).
2. Every meeting naming the participant (a participant document, or the expected or missing
   list) is changed by :func:`erase_from_meeting`: its documents removed, its
   totals recomputed by a poll (revision reason ``erasure``), its key replaced by ``name`` in
   every revision record.

A crash or a busy meeting (503, retryable) leaves the erasure recorded and the rest for the retry:
running it again finds what is left and changes nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any, Final

from functions import logs
from functions.errors import Busy, ConfigError, StoreContention, Unavailable
from functions.model import AttendanceChange, RevisionRecord
from functions.participant_keys import erasure_name, participant_doc_id
from functions.polling import MAX_PLANS, PollOutcome, Skipped, poll_meeting
from functions.ports import Deps, MeetingCommit
from functions.schedule import Status
from functions.stored_state import committed_attended, is_committed

__all__ = ["ERASURE_WAIT", "erase_from_meeting", "erase_participant"]

#: How long an erasure waits for a poll holding the meeting's lease before answering "retry".
ERASURE_WAIT: Final = timedelta(seconds=30)


def erase_from_meeting(
    deps: Deps, meeting_id: str, key: str, name: str, *, wait: timedelta = ERASURE_WAIT
) -> bool:
    """Remove participant ``key`` from one meeting: its documents, its expected and missing
    entries, and its key from every revision record (replaced by ``name``, the keyed hash).
    Whether anything changed.

    The meeting is re-planned by a poll (reason ``erasure``, which leaves the participant out),
    so its totals follow the same rules as any change; a merged meeting, which polls skip, is
    changed directly. Either way the revision records are renamed before the commit that removes
    the documents (so a retry still finds the meeting), and once more after it.
    """
    meeting = deps.store.get(meeting_id)
    changed = False
    if meeting is not None and meeting.status is Status.MERGED:
        changed = _erase_from_merged(deps, meeting_id, key, name)
    elif meeting is not None:
        outcome = _erasure_poll(deps, meeting_id, wait=wait)
        skipped = isinstance(outcome, Skipped) and outcome.skipped_reason == "merged"
        if skipped or (outcome.meeting is not None and outcome.meeting.status is Status.MERGED):
            # Merged since it was read (a declaration absorbed it meanwhile: the poll skipped
            # it), or by this very poll (a found meeting whose other sessions went to declared
            # meetings). Either way a merged meeting keeps its documents: erased directly.
            changed = _erase_from_merged(deps, meeting_id, key, name)
        else:
            changed = outcome.meeting is not None and outcome.meeting.revision != meeting.revision
    renamed = deps.store.rename_in_revisions(meeting_id, key, name)
    return changed or renamed > 0


def _erasure_poll(deps: Deps, meeting_id: str, *, wait: timedelta) -> PollOutcome | Skipped:
    # Waited by the wall clock: the poll holding the lease runs in real time.
    give_up = time.monotonic() + wait.total_seconds()
    pause = 0.25
    while True:
        try:
            return poll_meeting(deps, meeting_id, reason="erasure")
        except Busy:
            if time.monotonic() + pause > give_up:
                raise Unavailable(
                    f"meeting {meeting_id} is being polled; the erasure is recorded, retry it"
                ) from None
            time.sleep(pause)
            pause = min(pause * 2, 4.0)


def _erase_from_merged(deps: Deps, meeting_id: str, key: str, name: str) -> bool:
    for _ in range(MAX_PLANS):
        current = deps.store.read(meeting_id)
        if current is None:
            return False
        record = current.record
        documents = [
            d for d in deps.store.participants(meeting_id) if d.get("participant_key") == key
        ]
        listed = key in record.expected_participants or key in record.missing_participants
        if not documents and not listed:
            return False
        deps.store.rename_in_revisions(meeting_id, key, name)
        doc_ids = (participant_doc_id(key),) if documents else ()
        now = deps.clock()
        revision = record.revision + 1
        before = committed_attended(documents[0], record) if documents else None
        counted = documents and is_committed(documents[0], record) and _is_real(documents[0])
        change = MeetingCommit(
            meeting=replace(
                record,
                revision=revision,
                participant_count=record.participant_count - bool(counted),
                total_attended_seconds=record.total_attended_seconds
                - (before or 0) * bool(counted),
                participant_fingerprints={
                    d: f for d, f in record.participant_fingerprints.items() if d not in doc_ids
                },
                expected_participants=tuple(k for k in record.expected_participants if k != key),
                missing_participants=tuple(k for k in record.missing_participants if k != key),
                updated_at=now,
            ),
            expected=current.version,
            deletes=doc_ids,
            revision=RevisionRecord(
                revision=revision,
                at=now,
                reason="erasure",
                changes=[AttendanceChange(participant_key=name, before=before, after=None)],
            ),
        )
        if deps.store.commit(change) is not None:
            return True
    raise StoreContention(meeting_id)


def _is_real(document: Mapping[str, Any]) -> bool:
    """Counted in the meeting's totals: a participant with sessions."""
    sessions = int(document.get("session_count") or 0)
    return not document.get("estimated") and not document.get("absent") and sessions > 0


def erase_participant(deps: Deps, participant_key: str, *, wait: timedelta = ERASURE_WAIT) -> int:
    """Erase ``participant_key`` (already normalised) everywhere; how many meetings changed.
    ``wait``: how long to wait for a poll holding a meeting's lease before answering 503."""
    if deps.erasure_key is None:
        raise ConfigError(["ERASURE_KEY is required to erase a participant"])
    name = erasure_name(participant_key, deps.erasure_key)
    deps.store.record_erasure(name, at=deps.clock())
    changed = 0
    for meeting_id in deps.store.meetings_naming(participant_key):
        with logs.bind(meeting_id=meeting_id):
            if erase_from_meeting(deps, meeting_id, participant_key, name, wait=wait):
                changed += 1
                logs.info("participant erased from the meeting")
    return changed
