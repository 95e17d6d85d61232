"""Reverted fixes: each undoes one rule the simulation exists to guard, so that a test can show
the invariants notice (``python -m tests.simulation --mutant NAME`` finds the first seed that
does; ``tests/simulation/test_simulation.py`` keeps the seeds found).

A mutant swaps one attribute of a module or class for as long as it is applied. The schedules
then run in this process (or in processes forked from it), never in a fresh interpreter.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from functions import (
    backfill,
    commits,
    declarations,
    meet_signals,
    poll_plan,
    polling,
    reports_events,
)
from functions.meet_attendance import PreliminaryInputs
from functions.model import MeetingRecord, estimated_record
from functions.participant_keys import participant_doc_id
from functions.ports import Deps, MeetingCommit
from functions.schedule import Status
from functions.selection import Partition
from functions.stored_state import STAGED_COMMIT, preliminary_kept, preliminary_sessions
from tests import fakes
from tests.fakes import MemoryStore


@dataclass(frozen=True)
class Mutant:
    name: str
    #: The rule it reverts, as the issue that asked for it says it broke.
    reverts: str
    target: object
    attribute: str
    replacement: Callable[[Callable[..., Any]], Callable[..., Any]]

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        original = getattr(self.target, self.attribute)
        setattr(self.target, self.attribute, self.replacement(original))
        try:
            yield
        finally:
            setattr(self.target, self.attribute, original)


def _forget_stored(original: Callable[..., Any]) -> Callable[..., Any]:
    # The poll replaces what the meeting holds by what Reports answered this time.
    return lambda documents, meeting: []


def _one_write_per_request(original: Callable[..., Any]) -> Callable[..., Any]:
    # Participants and the revision written before the meeting, each on its own.
    def stages(change: MeetingCommit, *, max_bytes: int) -> list[commits.Stage]:
        planned = original(change, max_bytes=1 << 40)
        (only,) = planned
        return [commits.Stage([write], lands=write.target == "meeting") for write in only.writes]

    return stages


def _unfenced(original: Callable[..., Any]) -> Callable[..., Any]:
    # A commit lands whatever happened to the meeting since the writer read it.
    def apply(
        self: MemoryStore, meeting_id: str, writes: Sequence[Any], version: object, **kw: Any
    ) -> object | None:
        result: object | None = original(
            self, meeting_id, writes, self.versions.get(meeting_id), **kw
        )
        return result

    return apply


def _outside_the_fence(
    touches: Callable[[MeetingRecord, MeetingRecord], bool],
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A change of the kind ``touches`` recognises keeps the meeting's version: writers that
    read the meeting before it are not fenced out by it."""

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        # Wraps MemoryStore._stamp, which every write of a meeting calls once it is applied.
        stamped: weakref.WeakKeyDictionary[MemoryStore, dict[str, MeetingRecord]]
        stamped = weakref.WeakKeyDictionary()

        def stamp(self: MemoryStore, meeting_id: str, **kw: Any) -> int:
            last = stamped.setdefault(self, {})
            before = last.get(meeting_id)
            after = self.meetings[meeting_id]
            last[meeting_id] = after
            if before is not None and touches(before, after):
                self.writes += 1
                return self.versions[meeting_id]
            result: int = original(self, meeting_id, **kw)
            return result

        return stamp

    return wrap


def _merged(before: MeetingRecord, after: MeetingRecord) -> bool:
    return before.status is not Status.MERGED and after.status is Status.MERGED


def _span_moved(before: MeetingRecord, after: MeetingRecord) -> bool:
    return after.span_version != before.span_version


def _plan_once(original: Callable[..., Any]) -> Callable[..., Any]:
    # A poll fenced out commits what it planned before on the fresh version, instead of
    # planning again on what changed meanwhile.
    plans: dict[tuple[str, str | None], Any] = {}

    def plan(deps: Deps, meeting: MeetingRecord, fetched: Any, **kw: Any) -> Any:
        key = (meeting.meeting_id, meeting.lease_owner)
        if key not in plans:
            plans[key] = original(deps, meeting, fetched, **kw)
        return plans[key]

    return plan


def _never_grow(original: Callable[..., Any]) -> Callable[..., Any]:
    def new_times(current: MeetingRecord, declared: MeetingRecord, **kw: Any) -> Any:
        return None if current.is_found else original(current, declared, **kw)

    return new_times


def _whole_conference_claimed(original: Callable[..., Any]) -> Callable[..., Any]:
    # A conference with any one session covered contributes none of the rest.
    def unclaimed(partition: Any, code: str, conference: Any) -> list[Any]:
        rest = original(partition, code, conference)
        return rest if len(rest) == len(conference.sessions) else []

    return unclaimed


def _expected_kept(original: Callable[..., Any]) -> Callable[..., Any]:
    # A re-declaration's new expected participants are ignored once the meeting has some.
    def write(deps: Any, meeting: MeetingRecord, *, expected: tuple[str, ...]) -> None:
        current = deps.store.get(meeting.meeting_id)
        if current is not None and current.expected_participants:
            return
        original(deps, meeting, expected=expected)

    return write


def _no_hold(original: Callable[..., Any]) -> Callable[..., Any]:
    # A session leaves as soon as the selection moves, before the meeting that gains it has it.
    return lambda selected, sessions, inputs, specs: selected


def _no_settle(original: Callable[..., Any]) -> Callable[..., Any]:
    return lambda documents, meeting: ()


def _no_progress(original: Callable[..., Any]) -> Callable[..., Any]:
    # Staged requests leave the meeting's version alone.
    def stages(change: MeetingCommit, *, max_bytes: int) -> list[commits.Stage]:
        planned: list[commits.Stage] = original(change, max_bytes=max_bytes)
        if len(planned) == 1:
            return planned
        return [
            planned[0],
            *(
                commits.Stage([w for w in stage.writes if w.target != "meeting"], stage.lands)
                if not stage.lands and index < _landing(planned)
                else stage
                for index, stage in enumerate(planned)
                if index
            ),
        ]

    return stages


def _landing(planned: list[commits.Stage]) -> int:
    return next(index for index, stage in enumerate(planned) if stage.lands)


def _no_link_on_retry(original: Callable[..., Any]) -> Callable[..., Any]:
    def ensure(deps: Any, meeting: MeetingRecord, **kw: Any) -> MeetingRecord:
        return meeting

    return ensure


def _unusable_events_raise(original: Callable[..., Any]) -> Callable[..., Any]:
    # An unusable event stops its page (and the poll) instead of being skipped.
    def parse(item: object, **kw: Any) -> Any:
        sessions, reasons, seen = original(item, **kw)
        if reasons:
            raise OverflowError(reasons[0])
        return sessions, reasons, seen

    return parse


def _nobody_given_orphans(original: Callable[..., Any]) -> Callable[..., Any]:
    # Sessions a poll lets go that no meeting takes get no found meeting.
    return lambda deps, code, sessions: None


def _mirrors_left_behind(original: Callable[..., Any]) -> Callable[..., Any]:
    # A delivery that does not poll leaves the mirrors a crashed change did not write.
    return lambda deps, meeting: None


def _nothing_lags(original: Callable[..., Any]) -> Callable[..., Any]:
    # The poll trusts a plan made without the documents whatever they mirror.
    return lambda self, meeting_id, meeting_status: False


def _late_mirrors_unchecked(original: Callable[..., Any]) -> Callable[..., Any]:
    # The mirrors of a landed change are written whatever happened to the meeting since.
    return lambda self, meeting: True


def _mirrors_do_not_fence(original: Callable[..., Any]) -> Callable[..., Any]:
    # A request of late mirrors leaves the meeting as it is: writers that read the documents
    # before it are not fenced out by it.
    def fence(meeting: MeetingRecord) -> commits.Write:
        data = {"mirror_requests": meeting.mirror_requests}
        return commits.Write("update", "meeting", meeting.meeting_id, data, fenced=True)

    return fence


def _unread_plan_unchecked(original: Callable[..., Any]) -> Callable[..., Any]:
    # A re-poll plans without the documents whatever its plan changes.
    def plan(inputs: poll_plan.PollInputs) -> poll_plan.PollPlan | None:
        if inputs.fetched is None or not inputs.meeting.participant_fingerprints:
            return None
        return poll_plan._plan(inputs, documents_read=False)

    return plan


MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        "forget_stored_sessions",
        "1. an empty answer wipes a complete meeting",
        poll_plan,
        "stored_sessions",
        _forget_stored,
    ),
    Mutant(
        "one_write_per_request",
        "2. readers see half-written polls",
        fakes,
        "stages",
        _one_write_per_request,
    ),
    Mutant(
        "unfenced_commits",
        "3. the lease does not fence the writes",
        MemoryStore,
        "_apply",
        _unfenced,
    ),
    Mutant(
        "merge_outside_the_fence",
        "4. a merge races a poll and bills twice",
        MemoryStore,
        "_stamp",
        _outside_the_fence(_merged),
    ),
    Mutant(
        "fenced_out_poll_keeps_its_plan",
        "5. a reschedule races a poll (the poll commits what it planned with the old times)",
        polling,
        "_plan",
        _plan_once,
    ),
    Mutant(
        "unusable_events_raise",
        "6. one malformed event blocks a meeting forever",
        reports_events,
        "parse_activity",
        _unusable_events_raise,
    ),
    Mutant(
        "found_meetings_never_grow",
        "7. backfill meetings never grow",
        declarations,
        "new_times",
        _never_grow,
    ),
    Mutant(
        "whole_conference_claimed",
        "7. a conference partly covered contributes nothing",
        backfill,
        "_unclaimed",
        _whole_conference_claimed,
    ),
    Mutant(
        "redeclared_expected_ignored",
        "8. new expected participants of a re-declaration are ignored",
        declarations,
        "write_estimates",
        _expected_kept,
    ),
    Mutant(
        "span_move_outside_the_fence",
        "a neighbour's declaration does not fence a poll planned with the old partition",
        MemoryStore,
        "_stamp",
        _outside_the_fence(_span_moved),
    ),
    Mutant(
        "no_hold_until_handed_over",
        "a session leaves before the meeting that gains it stores it",
        poll_plan,
        "_rebuilt",
        _no_hold,
    ),
    Mutant(
        "no_settle_of_landed_tokens",
        "documents of an earlier staged change drop out when a later one lands",
        poll_plan,
        "carrying_landed_token",
        _no_settle,
    ),
    Mutant(
        "staged_requests_do_not_fence",
        "a change read before a staged request lands over documents it did not see",
        fakes,
        "stages",
        _no_progress,
    ),
    # "estimates_skip_reading_while_staged" is gone: a new meeting's first estimates are written
    # by the request that creates it, so no staged poll can be writing into it before them; the
    # race that remains (a re-declaration naming participants during a staged poll) is
    # tests/unit/test_races_and_faults.py::test_first_estimates_during_a_staged_poll_leave_...
    Mutant(
        "backfill_retry_leaves_found_meeting_unpolled",
        "a backfill retried after a crash leaves the found meeting it created without a poll",
        backfill,
        "ensure_link",
        _no_link_on_retry,
    ),
    Mutant(
        "sessions_nobody_takes_get_no_found_meeting",
        "a reschedule leaves sessions that no meeting takes: they fall between meetings",
        polling,
        "give_found_meetings",
        _nobody_given_orphans,
    ),
    Mutant(
        "retry_leaves_mirrors_behind",
        "a change whose status mirrors died after it landed stays unbilled once final",
        polling,
        "_bring_mirrors_up",
        _mirrors_left_behind,
    ),
    Mutant(
        "unread_plan_ignores_lagging_mirrors",
        "a re-poll planned without the documents leaves lagging mirrors as they are",
        MemoryStore,
        "any_participant_not_mirroring",
        _nothing_lags,
    ),
    Mutant(
        "late_mirrors_unchecked",
        "a landed change's late mirrors overwrite what a later writer left",
        commits.Landed,
        "holds",
        _late_mirrors_unchecked,
    ),
    Mutant(
        "mirror_requests_do_not_fence",
        "a writer that read the documents before a late mirror lands over it",
        fakes,
        "mirror_fence",
        _mirrors_do_not_fence,
    ),
    Mutant(
        "unread_plan_unchecked",
        "a re-poll planned without the documents forgets the stored sessions",
        polling,
        "plan_without_documents",
        _unread_plan_unchecked,
    ),
)

BY_NAME = {mutant.name: mutant for mutant in MUTANTS}


def _no_recheck_after_commit(original: Callable[..., Any]) -> Callable[..., Any]:
    def skip(deps: Deps, plan: poll_plan.PollPlan) -> None:
        return None

    return skip


def _search_misses_revisions(original: Callable[..., Any]) -> Callable[..., Any]:
    def naming(self: MemoryStore, participant_key: str) -> list[str]:
        revisions = self.revision_docs
        self.revision_docs = {}
        try:
            found: list[str] = original(self, participant_key)
        finally:
            self.revision_docs = revisions
        return found

    return naming


def _declarations_ignore_erasures(original: Callable[..., Any]) -> Callable[..., Any]:
    # Both ways a declaration leaves erased participants out (a new meeting's, and the estimates
    # of one declared again) ask erased_among.
    def nobody(keys: Sequence[str], **kw: Any) -> dict[str, str]:
        return {}

    return nobody


def _commit_ignores_erasures_meanwhile(original: Callable[..., Any]) -> Callable[..., Any]:
    # A new meeting's commit lands whatever erasure was recorded since its declaration's read.
    def commit(self: MemoryStore, change: MeetingCommit) -> Any:
        return original(self, replace(change, unerased=()))

    return commit


#: Reverted rules of erasure, noticed by the schedules with an erasure (``--erasure``).
ERASURE_MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        "no_recheck_after_commit",
        "a poll running while the erasure is recorded stores the participant again",
        polling,
        "_erased_since",
        _no_recheck_after_commit,
    ),
    Mutant(
        "erasure_search_misses_revisions",
        "revision records of a meeting the participant left keep their key",
        MemoryStore,
        "meetings_naming",
        _search_misses_revisions,
    ),
    Mutant(
        "declarations_ignore_erasures",
        "a declaration brings an erased participant back as expected",
        declarations,
        "erased_among",
        _declarations_ignore_erasures,
    ),
    Mutant(
        "new_meeting_ignores_erasures_meanwhile",
        "a webhook stores a participant erased between its read and its commit",
        MemoryStore,
        "commit",
        _commit_ignores_erasures_meanwhile,
    ),
)

ERASURE_BY_NAME = {mutant.name: mutant for mutant in ERASURE_MUTANTS}


def _preliminary_over_reports(original: Callable[..., Any]) -> Callable[..., Any]:
    # Meet's sessions are written whatever the meeting holds, Reports data included.
    def commit(inputs: PreliminaryInputs) -> MeetingCommit | None:
        meeting = inputs.meeting
        if meeting.attendance_source == "reports":
            inputs = replace(inputs, meeting=replace(meeting, attendance_source="meet"))
        change: MeetingCommit | None = original(inputs)
        return change

    return commit


def _preliminary_counted(original: Callable[..., Any]) -> Callable[..., Any]:
    # A poll takes Meet's preliminary sessions for Reports sessions it holds.
    def sessions(documents: Sequence[Any], meeting: MeetingRecord) -> list[Any]:
        documents = list(documents)
        return [*original(documents, meeting), *preliminary_sessions(documents, meeting)]

    return sessions


def _preliminary_dropped(original: Callable[..., Any]) -> Callable[..., Any]:
    # A poll without Reports data keeps only the estimates: Meet's attendance is gone.
    def kept(
        stored: Sequence[Any], meeting: MeetingRecord, *, status: Status, revision: int, **kw: Any
    ) -> dict[str, Any]:
        estimates = (
            estimated_record(key, meeting=meeting, revision=revision, status=status)
            for key in meeting.expected_participants
        )
        return {record.doc_id: record for record in estimates}

    return kept


def _meet_only_kept(original: Callable[..., Any]) -> Callable[..., Any]:
    # The first poll with Reports data keeps the preliminary documents of those Reports lacks.
    def records(
        inputs: poll_plan.PollInputs, selected: Any, *args: Any, **kw: Any
    ) -> dict[str, Any]:
        made: dict[str, Any] = original(inputs, selected, *args, **kw)
        meeting = inputs.meeting
        if selected.participants and meeting.attendance_source == "meet":
            kept = preliminary_kept(
                inputs.stored, meeting, status=kw["status"], revision=kw["revision"], erased={}
            )
            made = {**{d: r for d, r in kept.items() if r.document.get("preliminary")}, **made}
        return made

    return records


def _absorbed_only_with_reports_sessions(original: Callable[..., Any]) -> Callable[..., Any]:
    # A found meeting that kept nothing merges only if it once held Reports sessions.
    return lambda meeting, stored, erased: meeting.is_found and bool(meeting.found_sessions)


def _no_preliminary_taker(original: Callable[..., Any]) -> Callable[..., Any]:
    # A found meeting holding preliminary sessions is never merged for them.
    return lambda *args, **kw: None


def _no_second_plan(original: Any) -> Any:
    # The poll keeps the plan made at the times the meeting had (``_TIMES_ROUNDS`` = 0).
    return 0


def _moved_not_repolled(original: Callable[..., Any]) -> Callable[..., Any]:
    # A found meeting whose times its poll moved keeps the share it was clipped to before.
    return lambda meeting, selection, *, moved: original(meeting, selection, moved=False)


def _lacking_takers_untold(original: Callable[..., Any]) -> Callable[..., Any]:
    # A poll that fetched a session its neighbour takes and lacks tells nobody.
    return lambda *args, **kw: set()


def _kept_with_the_stage_name(original: Callable[..., Any]) -> Callable[..., Any]:
    # A kept preliminary document keeps the name of the staged change that wrote it.
    def kept(stored: Sequence[Any], meeting: MeetingRecord, **kw: Any) -> dict[str, Any]:
        records: dict[str, Any] = original(stored, meeting, **kw)
        names = {
            participant_doc_id(str(d["participant_key"])): d[STAGED_COMMIT]
            for d in stored
            if d.get(STAGED_COMMIT)
        }
        return {
            doc_id: replace(r, document={**r.document, STAGED_COMMIT: names[doc_id]})
            if doc_id in names
            else r
            for doc_id, r in records.items()
        }

    return kept


def _absorbed_not_read(original: Callable[..., Any]) -> Callable[..., Any]:
    # A poll reads a meeting merged into it only when its meeting document bounds its sessions.
    return lambda deps, one, other: original(deps, one, replace(other, merged_into=None))


def _nothing_after_a_merge(original: Callable[..., Any]) -> Callable[..., Any]:
    # A poll that merges a meeting leaves Meet's preliminary view beside it as it was.
    return lambda deps, merged: None


def _no_preliminary_handed_over(original: Callable[..., Any]) -> Callable[..., Any]:
    # A declared meeting absorbing a meet meeting neither takes its preliminary sessions nor
    # looks at them before merging it.
    return lambda documents, meeting: []


class _Unfenced:
    """A store whose commits land on whatever version the meeting has when they are sent."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def commit(self, change: MeetingCommit) -> Any:
        current = self._store.read(change.meeting.meeting_id)
        if current is None:
            return None
        return self._store.commit(replace(change, expected=current.version))


def _unfenced_preliminary(original: Callable[..., Any]) -> Callable[..., Any]:
    # The preliminary change lands whatever happened to the meeting since it was read.
    def write(deps: Deps, meeting_id: str, *args: Any) -> bool:
        written: bool = original(replace(deps, store=_Unfenced(deps.store)), meeting_id, *args)
        return written

    return write


#: Reverted rules of Meet's signals and preliminary attendance, noticed by the schedules with
#: Meet signals (``--meet``).
MEET_MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        "preliminary_over_reports",
        "preliminary_commit ignores attendance_source == 'reports': Meet replaces Reports data",
        meet_signals,
        "preliminary_commit",
        _preliminary_over_reports,
    ),
    Mutant(
        "stored_sessions_count_preliminary",
        "a poll counts preliminary documents as Reports sessions",
        poll_plan,
        "stored_sessions",
        _preliminary_counted,
    ),
    Mutant(
        "empty_answer_drops_preliminary",
        "a poll without Reports data drops the preliminary documents",
        poll_plan,
        "preliminary_kept",
        _preliminary_dropped,
    ),
    Mutant(
        "first_reports_poll_keeps_meet_only",
        "the first poll with Reports data keeps preliminary documents of people Reports lacks",
        poll_plan,
        "_records",
        _meet_only_kept,
    ),
    Mutant(
        "meet_meeting_left_empty_not_merged",
        "a meet meeting whose Meet sessions all went to declared meetings is not merged: it "
        "held no Reports sessions of its own (it ends no_data, empty, billed nowhere)",
        poll_plan,
        "absorbable",
        _absorbed_only_with_reports_sessions,
    ),
    Mutant(
        "covered_meet_meeting_not_merged",
        "a meet meeting whose preliminary sessions a declared meeting with Reports data takes is "
        "not merged (created by a signal while that class was being declared)",
        poll_plan,
        "preliminary_taker",
        _no_preliminary_taker,
    ),
    Mutant(
        "moved_times_not_planned_again",
        "a poll that moves a found meeting's times keeps the share it selected at the old ones: "
        "beside another found meeting, the credited boundary has moved",
        poll_plan,
        "_TIMES_ROUNDS",
        _no_second_plan,
    ),
    Mutant(
        "moved_found_meeting_not_repolled",
        "a found meeting whose times its poll moved is not polled again under them: beside "
        "another found meeting, its share stays clipped to the old boundary",
        poll_plan,
        "_repolls",
        _moved_not_repolled,
    ),
    Mutant(
        "late_session_neighbour_untold",
        "a poll that fetches a session a neighbour takes and does not hold leaves it to nobody: "
        "Reports showed it after that neighbour's last poll",
        Partition,
        "lacking_takers",
        _lacking_takers_untold,
    ),
    Mutant(
        "kept_preliminary_keeps_its_stage",
        "a poll writes a kept preliminary document again with the name of the staged change "
        "that wrote it and never landed: readers leave it out, the revision counts it",
        poll_plan,
        "preliminary_kept",
        _kept_with_the_stage_name,
    ),
    Mutant(
        "absorbed_meeting_not_read",
        "a poll does not read the documents of a meeting merged into it whose meeting document "
        "does not bound them (its staged change never landed): their sessions are lost",
        polling,
        "_may_exchange",
        _absorbed_not_read,
    ),
    Mutant(
        "merge_leaves_preliminary_as_it_was",
        "a poll that merges a meeting away leaves Meet's preliminary attendance of the meetings "
        "beside it as the old partition gave it",
        polling,
        "_preliminary_after_merge",
        _nothing_after_a_merge,
    ),
    Mutant(
        "absorption_ignores_preliminary",
        "a new partition ignores the preliminary sessions the code's meetings hold",
        meet_signals,
        "preliminary_sessions",
        _no_preliminary_handed_over,
    ),
    Mutant(
        "unfenced_preliminary",
        "the preliminary commit is not fenced: it lands over a poll that stored Reports data",
        meet_signals,
        "write_preliminary",
        _unfenced_preliminary,
    ),
)

MEET_BY_NAME = {mutant.name: mutant for mutant in MEET_MUTANTS}

__all__ = [
    "BY_NAME",
    "ERASURE_BY_NAME",
    "ERASURE_MUTANTS",
    "MEET_BY_NAME",
    "MEET_MUTANTS",
    "MUTANTS",
    "Mutant",
]
