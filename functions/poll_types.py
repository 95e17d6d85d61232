"""What a poll reads and what it changes: the values of ``functions.poll_plan``, and the warning
codes its plans write. Pure data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from functions.attendance import Meeting, Session
from functions.duplicates import dedupe_key
from functions.model import (
    IpMode,
    LastError,
    LocationMode,
    MeetingRecord,
    ParticipantRecord,
    RevisionReason,
    RevisionRecord,
)
from functions.schedule import Decision, Timing

__all__ = [
    "INCOMPLETE_ANSWER",
    "TEXTS_REPAIRED",
    "UNUSABLE_EVENTS",
    "Documents",
    "Key",
    "PollInputs",
    "PollPlan",
]

#: ``last_warning.code`` when Reports returned fewer of the selection's sessions than are stored.
INCOMPLETE_ANSWER: Final = "incomplete_answer"
#: ``last_warning.code`` when the answer held ``call_ended`` events that could not be used.
UNUSABLE_EVENTS: Final = "unusable_events"
#: ``last_warning.code`` when descriptive texts of the answer were repaired (not valid Unicode).
TEXTS_REPAIRED: Final = "texts_repaired"

Documents = Sequence[Mapping[str, Any]]
Key = tuple[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class PollInputs:
    """What one poll read. ``fetched`` is None when the Reports poll failed (``error`` says how);
    ``donors`` holds the participant documents of neighbours whose sessions may belong here."""

    meeting: MeetingRecord
    neighbours: Sequence[MeetingRecord]
    stored: Documents
    donors: Mapping[str, Documents]
    fetched: Sequence[Session] | None
    error: LastError | None
    #: What the decoder said of the answer (skipped events, repaired texts), and how many of
    #: its events it skipped.
    answer_warnings: tuple[str, ...] = ()
    skipped_events: int = 0
    polled_at: datetime
    revision_reason: RevisionReason
    in_chain: bool
    timing: Timing
    window_before_s: int
    window_after_s: int
    #: The privacy modes (docs/rules.md): every session read or fetched takes their stored form.
    ip_mode: IpMode
    location_mode: LocationMode = "full"
    #: Erased participants among those this poll read (docs/rules.md "Erasure"): key → the keyed
    #: hash that names them in revision records. Their sessions, wherever they come from, and
    #: their expected entries are left out, so their documents are removed.
    erased: Mapping[str, str] = field(default_factory=dict)

    def last_warning(
        self, own: Sequence[Session], chosen: Mapping[Key, Session], fetched: Sequence[Session]
    ) -> LastError | None:
        """``last_warning`` after the poll: when Reports lacked sessions the meeting holds
        (``own``) inside its selection (``chosen``), else the answer's own warning."""
        if self.fetched is None:
            return self.meeting.last_warning
        held = [key for key in map(dedupe_key, own) if key in chosen]
        # A meeting's first poll holds nothing: the fetched sessions need no keys then.
        fetched_keys = {dedupe_key(s) for s in fetched} if held else set()
        lacking = sum(1 for key in held if key not in fetched_keys)
        if not lacking:
            return self.answer_warning()
        return LastError(
            code=INCOMPLETE_ANSWER,
            message=(
                f"the Reports API returned {lacking} fewer session(s) than the meeting holds; "
                "the stored sessions are kept"
            ),
            at=self.polled_at,
        )

    def answer_warning(self) -> LastError | None:
        """``last_warning`` when the answer held unusable events or texts that needed repair
        (docs/firestore.md: skipped and counted, never fatal)."""
        if not self.answer_warnings:
            return None
        return LastError(
            code=UNUSABLE_EVENTS if self.skipped_events else TEXTS_REPAIRED,
            message="; ".join(self.answer_warnings),
            at=self.polled_at,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class PollPlan:
    """Everything the poll changes. ``meeting`` is the document after it (lease released)."""

    meeting: MeetingRecord
    upserts: tuple[ParticipantRecord, ...]
    deletes: tuple[str, ...]
    status_updates: tuple[str, ...]
    #: Documents naming the staged change this meeting landed before (MeetingCommit.settle).
    settle: tuple[str, ...]
    revision: RevisionRecord | None
    selected: Meeting
    decision: Decision
    created: tuple[str, ...]
    updated: tuple[str, ...]
    #: Neighbours to re-poll now: they hold sessions this meeting took and no longer select
    #: them (so they let them go), or a found meeting's shrunken times moved their spans.
    repolls: tuple[str, ...]
    #: Sessions this meeting let go that no meeting takes: held here (and counted) until a
    #: found meeting is given them and takes them from here (docs/rules.md "never to none").
    orphans: tuple[Session, ...]
