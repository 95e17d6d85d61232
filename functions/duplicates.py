"""Duplicate sessions (docs/firestore.md): which events are one session, and which copy wins.

Equal :func:`dedupe_key`\\ s are one session: ``(conference_id, endpoint_id)``, or, without an
``endpoint_id``, the event id (``id.time`` and ``id.uniqueQualifier``). Of two duplicates the
latest leave wins, then the longest, then the greatest event id; the result never depends on the
order they arrive in.

The rules read attributes only, so full sessions and the backfill's compact facts use the same
functions (each keeps its own representation of time: the preference compares like with like).
"""

from __future__ import annotations

from typing import Protocol, TypeVar

__all__ = ["Deduplicable", "dedupe_key", "preferred"]


class Deduplicable(Protocol):
    @property
    def conference_id(self) -> str: ...
    @property
    def endpoint_id(self) -> str | None: ...
    @property
    def event_id(self) -> str: ...
    @property
    def leave_ms(self) -> int: ...
    @property
    def duration_seconds(self) -> int: ...


D = TypeVar("D", bound=Deduplicable)


def dedupe_key(session: Deduplicable) -> tuple[str, str]:
    """Equal keys are one session: ``(conference_id, endpoint_id)``, else ``("", event_id)``."""
    if session.endpoint_id is not None:
        return (session.conference_id, session.endpoint_id)
    return ("", session.event_id)


def preferred(a: D, b: D) -> D:
    """The duplicate that wins: latest leave, then longest, then greatest event id.

    repr() settles the (corrupt-data) case of two different payloads under one event id, so that
    the winner never depends on which copy came first.
    """
    rank_a = (a.leave_ms, a.duration_seconds, a.event_id)
    rank_b = (b.leave_ms, b.duration_seconds, b.event_id)
    if rank_a != rank_b:
        return a if rank_a > rank_b else b
    return a if repr(a) >= repr(b) else b
