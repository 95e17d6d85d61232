"""Finding meetings (``python -m functions list``): the query, its filters, its order and its
pages. Pure: the stores send what :func:`equality_filters` and :func:`ended_range` say and
order as :data:`ORDER` says; the in-memory store and the participant path of the Firestore
store filter with :func:`matches` and page with :func:`select`.

Order: newest first by ``ended_at``, ties by meeting id (descending too, as Firestore orders
``__name__`` after the last ``order_by``). A page is at most ``limit`` meetings; the store is
asked for ``limit + 1`` so that :func:`page` knows whether another page exists. The next page
starts strictly after the last meeting shown (a keyset cursor, not an offset), so meetings
created or changed between two pages never make a page repeat or skip one that stayed put.

Indexes (``infra/firestore.indexes.json``): every equality filter goes to Firestore, and there
is a composite index for every combination the store can send. ``status`` is always one of
them: ``== S`` for ``--status S``, else ``in`` every status but ``merged`` (merged meetings are
listed only when asked for), so the combinations are {status} with any subset of
{meeting_code, organizer_email}: four indexes, each ending ``ended_at DESC, __name__ DESC``.
Sending every filter keeps a page one query of ``limit + 1`` documents, however few meetings
match; four indexes on a collection written a few times per meeting cost little.
``tests/integration/test_meeting_listing.py`` derives every shape the store sends and checks
each has its index (the emulator does not enforce indexes).

``--participant``: participant documents carry ``participant_key`` but their ``ended_at`` and
``meeting_status`` are copies that may lag the meeting's (a real participant's document is not
rewritten when only the meeting's times move), so they cannot order or bound a page. The store
finds the meetings with a document of the key (the collection-group ``participant_key`` index
the erasure uses), reads those meetings and filters, orders and pages them here, on the
meetings' own fields: a page costs one query over that person's documents and one batched read
of their meetings. A meeting shows the participant while a document of the key counts for it
(:func:`shows_participant`): not one of a staged change that has not landed.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from functions.errors import InvalidInput
from functions.meeting_codes import declared_meeting_code
from functions.meeting_ids import is_meeting_id
from functions.model import MeetingRecord
from functions.participant_keys import declared_key, normalise_email
from functions.schedule import Status
from functions.stored_state import PREVIOUS_ATTENDED, is_committed
from functions.timestamps import format_optional, format_timestamp

__all__ = [
    "DEFAULT_LIMIT",
    "LISTED_FIELDS",
    "MAX_LIMIT",
    "ORDER",
    "Cursor",
    "MeetingQuery",
    "Page",
    "checked_code",
    "checked_organizer",
    "checked_participant",
    "checked_range",
    "decode_token",
    "encode_token",
    "ended_range",
    "equality_filters",
    "listed_fields",
    "listed_statuses",
    "matches",
    "page",
    "select",
    "shows_participant",
]

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 500
#: The order of a listing, as Firestore is asked for it: (field, direction).
ORDER: Final = (("ended_at", "DESCENDING"), ("__name__", "DESCENDING"))
#: The fields of a listed meeting (``--json``), in this order.
LISTED_FIELDS: Final = (
    "meeting_id",
    "meeting_code",
    "status",
    "started_at",
    "ended_at",
    "organizer_email",
    "participant_count",
    "total_attended_seconds",
    "attendance_source",
    "revision",
    "source",
    "external_id",
)
_TOKEN_VERSION: Final = "1"  # noqa: S105 (a format version, no secret)
_TOKEN_CHARACTERS: Final = re.compile(r"[A-Za-z0-9_-]{1,400}")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class MeetingQuery:
    """What an operator looks for; None is "any". ``ended_from`` is included, ``ended_to`` is
    not (``[from, to)``, as ``export``'s months). Values are in their stored forms."""

    meeting_code: str | None = None
    organizer_email: str | None = None
    participant_key: str | None = None
    status: Status | None = None
    ended_from: datetime | None = None
    ended_to: datetime | None = None


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ends: the last meeting shown. The next page starts strictly after it."""

    ended_at: datetime
    meeting_id: str

    @classmethod
    def of(cls, meeting: MeetingRecord) -> Cursor:
        return cls(meeting.ended_at, meeting.meeting_id)


@dataclass(frozen=True, slots=True)
class Page:
    meetings: Sequence[MeetingRecord]
    #: Where the next page starts; None when this page is the last.
    next_cursor: Cursor | None


# ------------------------------------------------------------------------------
# What the stores send


def listed_statuses(query: MeetingQuery) -> tuple[Status, ...]:
    """The statuses a query lists: the one asked for, else every status but ``merged``."""
    if query.status is not None:
        return (query.status,)
    return tuple(sorted(s for s in Status if s is not Status.MERGED))


def equality_filters(query: MeetingQuery) -> list[tuple[str, str, Any]]:
    """The equality filters of the meetings query, as (field, operator, value), in the order
    the store adds them (and its index lists them). ``status`` is always one."""
    filters: list[tuple[str, str, Any]] = []
    if query.meeting_code is not None:
        filters.append(("meeting_code", "==", query.meeting_code))
    if query.organizer_email is not None:
        filters.append(("organizer_email", "==", query.organizer_email))
    statuses = [str(s) for s in listed_statuses(query)]
    if len(statuses) == 1:
        filters.append(("status", "==", statuses[0]))
    else:
        filters.append(("status", "in", statuses))
    return filters


def ended_range(query: MeetingQuery) -> list[tuple[str, str, datetime]]:
    """The ``ended_at`` range filters, as (field, operator, value)."""
    bounds: list[tuple[str, str, datetime]] = []
    if query.ended_from is not None:
        bounds.append(("ended_at", ">=", query.ended_from))
    if query.ended_to is not None:
        bounds.append(("ended_at", "<", query.ended_to))
    return bounds


# ------------------------------------------------------------------------------
# The rules in memory


def matches(query: MeetingQuery, meeting: MeetingRecord) -> bool:
    """Whether the meeting's own fields satisfy every filter but the participant's."""
    return (
        (query.meeting_code is None or meeting.meeting_code == query.meeting_code)
        and (query.organizer_email is None or meeting.organizer_email == query.organizer_email)
        and meeting.status in listed_statuses(query)
        and (query.ended_from is None or meeting.ended_at >= query.ended_from)
        and (query.ended_to is None or meeting.ended_at < query.ended_to)
    )


def shows_participant(documents: Iterable[Mapping[str, Any]], meeting: MeetingRecord) -> bool:
    """Whether one of these participant documents (of one key) counts for the meeting: landed,
    or replaced by a staged change in flight while the meeting still shows what it replaced."""
    return any(is_committed(d, meeting) or d.get(PREVIOUS_ATTENDED) is not None for d in documents)


def _position(meeting: MeetingRecord) -> tuple[datetime, str]:
    return meeting.ended_at, meeting.meeting_id


def select(
    meetings: Iterable[MeetingRecord],
    query: MeetingQuery,
    *,
    limit: int,
    after: Cursor | None,
) -> list[MeetingRecord]:
    """The first ``limit`` meetings matching ``query`` after ``after``, newest first."""
    start = None if after is None else (after.ended_at, after.meeting_id)
    found = [m for m in meetings if matches(query, m) and (start is None or _position(m) < start)]
    found.sort(key=_position, reverse=True)
    return found[:limit]


def page(found: Sequence[MeetingRecord], *, limit: int) -> Page:
    """A page from what the store answered to ``limit + 1``: more than ``limit`` means another
    page exists, starting after this page's last meeting."""
    if len(found) <= limit:
        return Page(list(found), None)
    shown = list(found[:limit])
    return Page(shown, Cursor.of(shown[-1]))


# ------------------------------------------------------------------------------
# Page tokens: base64url of "1|<ended_at in µs since the epoch>|<meeting id>"


def encode_token(cursor: Cursor) -> str:
    micros = (cursor.ended_at - _EPOCH) // timedelta(microseconds=1)
    text = f"{_TOKEN_VERSION}|{micros}|{cursor.meeting_id}"
    return base64.urlsafe_b64encode(text.encode("ascii")).decode("ascii").rstrip("=")


def decode_token(token: str) -> Cursor:
    """The cursor of a token :func:`encode_token` made; InvalidInput for anything else."""
    refusal = InvalidInput("--page-token is not a token this command printed", field="page_token")
    if not _TOKEN_CHARACTERS.fullmatch(token):
        raise refusal
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
        version, micros, meeting_id = raw.decode("ascii").split("|")
        ended_at = _EPOCH + timedelta(microseconds=int(micros))
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):
        raise refusal from None
    if version != _TOKEN_VERSION or not micros.isdigit() or not is_meeting_id(meeting_id):
        raise refusal
    cursor = Cursor(ended_at, meeting_id)
    if encode_token(cursor) != token:  # one token per cursor: no other spelling is accepted
        raise refusal
    return cursor


# ------------------------------------------------------------------------------
# The command line's values, in their stored forms (InvalidInput names the option)


def checked_code(raw: str) -> str:
    try:
        return declared_meeting_code(raw)
    except ValueError as error:
        raise InvalidInput(f"--code {error}", field="meeting_code") from None


def checked_organizer(raw: str) -> str:
    email = normalise_email(raw)
    if email is None:
        raise InvalidInput(
            f"--organizer is not a valid email address: {raw[:60]!r}", field="organizer_email"
        )
    return email


def checked_participant(raw: str) -> str:
    try:
        return declared_key(raw)
    except ValueError as error:
        raise InvalidInput(f"--participant {error}", field="participant_key") from None


def checked_range(ended_from: datetime | None, ended_to: datetime | None) -> None:
    if ended_from is not None and ended_to is not None and ended_from >= ended_to:
        raise InvalidInput("--from must be before --to", field="ended_at")


# ------------------------------------------------------------------------------
# What a listing shows


def listed_fields(meeting: MeetingRecord) -> dict[str, Any]:
    """A listed meeting as JSON values (:data:`LISTED_FIELDS`; RFC 3339 'Z' times)."""
    return {
        "meeting_id": meeting.meeting_id,
        "meeting_code": meeting.meeting_code,
        "status": str(meeting.status),
        "started_at": format_optional(meeting.started_at),
        "ended_at": format_timestamp(meeting.ended_at),
        "organizer_email": meeting.organizer_email,
        "participant_count": meeting.participant_count,
        "total_attended_seconds": meeting.total_attended_seconds,
        "attendance_source": meeting.attendance_source,
        "revision": meeting.revision,
        "source": meeting.source,
        "external_id": meeting.external_id,
    }
