"""Limits set by Google and by the contract, and the settings' defaults: one home for each number.

``config.py`` validates settings against these, the rules default to them and the request edge
refuses what exceeds them. A number that only one module's mechanism uses (a lease, a page size)
lives with that mechanism instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Final, NamedTuple

# --- Google's limits --------------------------------------------------------------------------

#: The Reports API keeps 180 days of Meet activity: nothing older can ever be collected.
REPORTS_RETENTION: Final = timedelta(days=180)
#: A Meet call lasts at most 24 hours.
MEET_CALL_LIMIT: Final = timedelta(hours=24)
#: Cloud Tasks refuses a ``schedule_time`` more than 30 days ahead.
TASKS_MAX_SCHEDULE_AHEAD: Final = timedelta(days=30)

# --- The contract's rules ---------------------------------------------------------------------

#: A declaration without ``started_at`` spans ``[ended_at - 4 h, ended_at]`` (docs/rules.md).
DEFAULT_DECLARED_LENGTH: Final = timedelta(hours=4)
#: A declared class is at most as long as a Meet call; a longer one is almost surely a wrong date.
MAX_DECLARED_LENGTH: Final = MEET_CALL_LIMIT
#: Webhook bodies are at most 64 KiB (docs/api.md "ingest").
MAX_BODY_BYTES: Final = 64 * 1024
#: A webhook timestamp may be this far off either way (docs/api.md "ingest").
WEBHOOK_TOLERANCE: Final = timedelta(minutes=5)
#: The sender's clock and ours disagree a little; an ``ended_at`` further ahead is a wrong time.
MAX_ENDED_IN_FUTURE: Final = timedelta(minutes=5)
MAX_EXPECTED_PARTICIPANTS: Final = 1000
#: The largest commit request Firestore takes (Google: 10 MiB; the emulator refuses over 4 MiB),
#: less a margin for what the size estimate of ``functions.commits`` does not see.
FIRESTORE_COMMIT_BYTES: Final = 8 * 1024 * 1024
EMULATOR_COMMIT_BYTES: Final = 3 * 1024 * 1024
MAX_PARTICIPANT_KEY_LENGTH: Final = 1024
#: ``RETENTION_DAYS`` is at least this: no month is deleted before it is billed (docs/rules.md).
MIN_RETENTION_DAYS: Final = 62
#: An ``ERASURE_KEY`` shorter than this could be guessed, and with it every erased key.
MIN_ERASURE_KEY_LENGTH: Final = 32

# --- Settings' defaults (docs/settings.md) --------------------------------------------------------

FIRST_POLL_DELAY_S: Final = 900
MAX_POLL_INTERVAL_S: Final = 14400
COLLECT_DEADLINE_S: Final = 86400
SETTLE_S: Final = 1800
ABSENT_GRACE_S: Final = 21600
WINDOW_BEFORE_S: Final = 900
WINDOW_AFTER_S: Final = 3600
BACKFILL_LOOKBACK_S: Final = 172800


class DurationLimit(NamedTuple):
    """A whole-seconds setting: its default, the smallest value that makes sense, and the largest
    (with the reason the message gives) where there is one."""

    default: int
    minimum: int
    maximum: int | None = None
    why_maximum: str = ""


DURATION_SETTINGS: Final[Mapping[str, DurationLimit]] = {
    "FIRST_POLL_DELAY_S": DurationLimit(FIRST_POLL_DELAY_S, 1),
    "MAX_POLL_INTERVAL_S": DurationLimit(MAX_POLL_INTERVAL_S, 1),
    # Every link of a chain is scheduled before the deadline, so it must fit Cloud Tasks' limit.
    "COLLECT_DEADLINE_S": DurationLimit(
        COLLECT_DEADLINE_S, 1, int(TASKS_MAX_SCHEDULE_AHEAD.total_seconds()), "30 days"
    ),
    "SETTLE_S": DurationLimit(SETTLE_S, 0),
    "ABSENT_GRACE_S": DurationLimit(ABSENT_GRACE_S, 0),
    "WINDOW_BEFORE_S": DurationLimit(WINDOW_BEFORE_S, 0),
    "WINDOW_AFTER_S": DurationLimit(WINDOW_AFTER_S, 0),
    "BACKFILL_LOOKBACK_S": DurationLimit(
        BACKFILL_LOOKBACK_S, 1, int(REPORTS_RETENTION.total_seconds()), "Reports keeps 180 days"
    ),
}
