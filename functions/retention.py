"""Retention (docs/rules.md "Privacy"): when a meeting's data is deleted, and what may no longer be
created. Pure; one home for the rule.

With ``RETENTION_DAYS`` set, a meeting and everything under it expire that many days after its
``ended_at``: Firestore's TTL deletes documents by their ``expire_at`` (the store writes it on
every meeting, participant and revision document), and the daily sweep deletes what TTL has not
yet (TTL runs within about a day, and documents written before the setting have no
``expire_at``). Declarations and backfill ranges that end before the cutoff are refused, so
nothing deleted is created again.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from functions.errors import InvalidInput
from functions.timestamps import format_timestamp

__all__ = ["EXPIRE_AT", "check_retained", "expire_at", "retention_cutoff"]

#: The field Firestore's TTL policies read (infra/firestore.tf).
EXPIRE_AT = "expire_at"


def expire_at(ended_at: datetime, retention_days: int | None) -> datetime | None:
    """When a meeting that ended at ``ended_at`` and its documents expire (None: never)."""
    if retention_days is None:
        return None
    return ended_at + timedelta(days=retention_days)


def retention_cutoff(now: datetime, retention_days: int | None) -> datetime | None:
    """Meetings that ended before this are deleted, and may not be created (None: no limit)."""
    if retention_days is None:
        return None
    return now - timedelta(days=retention_days)


def check_retained(
    moment: datetime, *, now: datetime, retention_days: int | None, field: str
) -> None:
    """Refuse (400, naming ``field``) a time before the retention cutoff."""
    cutoff = retention_cutoff(now, retention_days)
    if cutoff is not None and moment < cutoff:
        raise InvalidInput(
            f"{field} is older than the retention of {retention_days} days "
            f"(before {format_timestamp(cutoff)}): its data would be deleted at once",
            field=field,
        )
