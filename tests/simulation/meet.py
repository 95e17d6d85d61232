"""Meet mode's pieces (``python -m tests.simulation --meet``): Google Meet's own view of a
conference, as its "conference ended" signal carries it (docs/rules.md "Meet signals",
"Preliminary attendance"), derived from the world's ground truth, and the check that a replayed
signal changes nothing.

Meet sees the same people as Reports, but not quite the same: its conference starts a little
before the first join and ends a little after the last leave, each participant session starts and
ends up to a minute away from Reports' times, some people or sessions are missing, a session may
still be open (it ends with the conference), a guest or a phone may be Meet's only, the Directory
may not know someone (their key is then Meet's ``users/ID``), and the sessions may be unreadable
(the signal then only expedites and creates meetings).
"""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from functions.attendance import Session
from functions.duplicates import dedupe_key
from functions.meet_records import Conference, MeetAttendee, MeetSessionTimes
from functions.meet_signals import conference_ended
from functions.ports import Deps
from functions.reports_events import parse_activity
from tests.fakes import MemoryStore
from tests.simulation.invariants import Violation
from tests.simulation.world import Sighting, SimQueue

RECORD_PREFIX = "conferenceRecords/"
SPACE = "spaces/sim-room"
S = timedelta(seconds=1)


@dataclass(frozen=True)
class KnownBug:
    """A rule of ``functions/`` the Meet schedules find broken (reported, not yet fixed): the
    violation it shows (a regular expression), and a seed that shows it."""

    pattern: str
    seed: int
    what: str

    def explains(self, problem: str | None) -> bool:
        return problem is not None and re.search(self.pattern, problem) is not None


#: The Meet schedules that break an invariant today do so through these; the tests tolerate
#: exactly them (``test_simulation.py``), and each seed must keep failing until its bug is fixed
#: (then its entry goes). Replay one: ``python -m tests.simulation --meet --seed N --trace``.
KNOWN_MEET_BUGS: dict[str, KnownBug] = {
    "found_times_without_a_fixpoint": KnownBug(
        r"left the meeting that takes it \(revision \d+, neighbour\)",
        7934,
        "two found meetings overlap in time, and one partly merged away has no times that hold: "
        "at its stored times it lets a session go that it takes at the times that result, and "
        "at those it takes it back (poll_plan.plan_poll plans again at most three times). "
        "The session stays with the other found meeting, which takes it too; the part only the "
        "first takes is counted nowhere (1 of 24,000 schedules)",
    ),
}


def known_bug(problem: str | None) -> str | None:
    """The known bug a violation shows, if any."""
    return next((name for name, bug in KNOWN_MEET_BUGS.items() if bug.explains(problem)), None)


@dataclass(frozen=True)
class Signal:
    """One "conference ended" signal as ``functions.meet_signals.conference_ended`` gets it."""

    conference: Conference
    #: None: Meet's participant sessions could not be read.
    attendees: tuple[MeetAttendee, ...] | None
    #: ``users/ID`` → the Directory's email, for the users it knows.
    emails: Mapping[str, str]

    def deliver(self, deps: Deps, *, meeting_code: str) -> None:
        conference_ended(
            deps,
            conference=self.conference,
            meeting_code=meeting_code,
            attendees=self.attendees,
            emails=dict(self.emails),
        )

    @property
    def label(self) -> str:
        return self.conference.name.removeprefix(RECORD_PREFIX)


@dataclass(frozen=True)
class Delivery:
    """A signal delivered in a round, once per entry of ``atomic`` (copies at once: Pub/Sub's
    duplicates). An atomic copy runs as one step and is replayed at once, in the same step:
    that replay must change nothing."""

    round: int
    signal: Signal
    atomic: tuple[bool, ...]


def truth(sightings: Iterable[Sighting], conference_id: str) -> list[Session]:
    """The sessions Reports has of one conference (one copy each)."""
    sessions: dict[tuple[str, str], Session] = {}
    for sighting in sightings:
        parsed, _, _ = parse_activity(dict(sighting.activity))
        for session in parsed:
            if session.conference_id == conference_id:
                sessions.setdefault(dedupe_key(session), session)
    return sorted(sessions.values(), key=lambda s: (s.join_time, s.event_id))


def meet_view(rng: random.Random, conference_id: str, sessions: list[Session]) -> Signal:
    """Meet's view of the conference whose Reports sessions are ``sessions`` (see the module
    docstring for how it differs)."""
    start = min(s.join_time for s in sessions) - S * rng.randint(0, 90)
    end = max(s.leave_time for s in sessions) + S * rng.randint(0, 90)
    name = RECORD_PREFIX + conference_id
    conference = Conference(name=name, space=SPACE, start=start, end=end)
    people: dict[str, list[Session]] = {}
    for session in sessions:
        people.setdefault((session.identifier or "").lower(), []).append(session)
    attendees: list[MeetAttendee] = []
    emails: dict[str, str] = {}
    for number, (person, stays) in enumerate(sorted(people.items())):
        local = person.split("@")[0]
        user = f"users/{local}"
        emails[user] = person
        if rng.random() < 0.1:
            continue  # Meet's data lacks this person
        parts: list[MeetSessionTimes] = []
        for index, stay in enumerate(stays):
            if rng.random() < 0.15:
                continue  # or one of their sessions
            join = max(start, stay.join_time + S * rng.randint(-60, 60))
            leave = min(end, stay.leave_time + S * rng.randint(-60, 60))
            if leave <= join:
                continue
            still_open = rng.random() < 0.1
            parts.append(
                MeetSessionTimes(
                    name=f"{name}/participants/{number}/participantSessions/{index}",
                    start=join,
                    end=None if still_open else leave,
                )
            )
        if parts:
            attendees.append(
                MeetAttendee(
                    name=f"{name}/participants/{number}",
                    kind="signed_in",
                    user=user,
                    display_name=local.title(),
                    sessions=tuple(parts),
                )
            )
    if rng.random() < 0.3:
        attendees.append(_only_in_meet(rng, conference, "guest", "anonymous", "Guest"))
    if rng.random() < 0.15:
        attendees.append(_only_in_meet(rng, conference, "phone", "phone", "+44 20 ***-**12"))
    if emails and rng.random() < 0.15:
        del emails[rng.choice(sorted(emails))]  # the Directory does not know them
    return Signal(
        conference=conference,
        attendees=None if rng.random() < 0.1 else tuple(attendees),
        emails=emails,
    )


def _only_in_meet(
    rng: random.Random, conference: Conference, who: str, kind: str, display_name: str
) -> MeetAttendee:
    """Someone Reports does not have: a guest, a phone."""
    assert conference.end is not None
    length = int((conference.end - conference.start).total_seconds())
    join = conference.start + S * rng.randint(0, max(0, length - 120))
    leave = min(conference.end, join + S * rng.randint(60, 1800))
    name = f"{conference.name}/participants/{who}"
    return MeetAttendee(
        name=name,
        kind=kind,  # type: ignore[arg-type]
        user=None,
        display_name=display_name,
        sessions=(MeetSessionTimes(name=f"{name}/participantSessions/0", start=join, end=leave),),
    )


#: What a meeting shows of its attendance (its other fields are bookkeeping: when it was updated,
#: which conference records reached it, its lease).
ATTENDANCE_FIELDS = (
    "status",
    "attendance_source",
    "revision",
    "participant_count",
    "total_attended_seconds",
    "started_at",
    "ended_at",
    "merged_into",
    "partly_merged_into",
    "expected_participants",
    "missing_participants",
    "participant_fingerprints",
)


def snapshot(store: MemoryStore, *, of: Collection[str] | None = None) -> dict[str, Any]:
    """Everything the store holds of the meetings, and their versions (a write that changes
    nothing keeps its version; one that bumps it fences others out). ``of``: only those
    meetings' participant and revision documents and what each shows of its attendance."""
    if of is None:
        meetings: dict[str, Any] = dict(store.meetings)
        versions: dict[str, int] = dict(store.versions)
        participants, revisions = store.participant_docs, store.revision_docs
    else:
        meetings = {
            meeting_id: tuple(
                getattr(store.meetings[meeting_id], name) for name in ATTENDANCE_FIELDS
            )
            for meeting_id in of
        }
        versions = {}
        participants = {m: store.participant_docs.get(m, {}) for m in of}
        revisions = {m: store.revision_docs.get(m, {}) for m in of}
    return {
        "meetings": meetings,
        "versions": versions,
        "participants": copy.deepcopy(participants),
        "revisions": copy.deepcopy(revisions),
    }


def difference(before: Mapping[str, Any], after: Mapping[str, Any]) -> str | None:
    """What changed between two snapshots, in a few words (None: nothing)."""
    for part in ("meetings", "participants", "revisions", "versions"):
        one, other = before[part], after[part]
        changed = sorted(k for k in {*one, *other} if one.get(k) != other.get(k))
        if changed:
            return f"{part} of {', '.join(str(k)[:12] for k in changed)}"
    return None


def _tasks(queue: SimQueue | None) -> list[tuple[str, datetime]]:
    return [] if queue is None else sorted((p.name, p.at) for p in queue.pending)


def replay_changes_nothing(
    store: MemoryStore,
    deliver: Callable[[], None],
    *,
    queue: SimQueue | None,
    what: str,
    at: datetime,
    of: Collection[str] | None = None,
) -> None:
    """``deliver`` once more must leave every stored value (and, given ``queue``, every task)
    as it is (docs/rules.md: "a replayed or duplicated event ends in the same state"); ``of``:
    the attendance of those meetings (see :func:`snapshot`)."""
    before, tasks = snapshot(store, of=of), _tasks(queue)
    deliver()
    changed = difference(before, snapshot(store, of=of))
    if changed is None and _tasks(queue) != tasks:
        changed = "the tasks"
    if changed is not None:
        raise Violation(f"a replay of {what} at {at:%H:%M} changed {changed}")
