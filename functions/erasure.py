"""Use case: erase a participant (CONTRACT §3 "Privacy": ``erase`` and ``POST /erasures``).

Order matters, and every step may be retried:

1. ``erasures/{name}`` is recorded first (``name``: the participant key's keyed hash). From then
   on no poll, declaration or backfill stores the participant again; a poll already running
   when it is recorded checks again after its commit (``functions.polling``).
2. Every meeting naming the participant (a participant document, or the expected or missing
   list) is changed by :func:`functions.polling.erase_from_meeting`: its documents removed, its
   totals recomputed by a poll (revision reason ``erasure``), its key replaced by ``name`` in
   every revision record.

A crash or a busy meeting (503, retryable) leaves the erasure recorded and the rest for the retry:
running it again finds what is left and changes nothing else.
"""

from __future__ import annotations

from functions import logs
from functions.errors import ConfigError
from functions.participant_keys import erasure_name
from functions.polling import erase_from_meeting
from functions.ports import Deps

__all__ = ["erase_participant"]


def erase_participant(deps: Deps, participant_key: str) -> int:
    """Erase ``participant_key`` (already normalised) everywhere; how many meetings changed."""
    if deps.erasure_key is None:
        raise ConfigError(["ERASURE_KEY is required to erase a participant"])
    name = erasure_name(participant_key, deps.erasure_key)
    deps.store.record_erasure(name, at=deps.clock())
    changed = 0
    for meeting_id in deps.store.meetings_naming(participant_key):
        with logs.bind(meeting_id=meeting_id):
            if erase_from_meeting(deps, meeting_id, participant_key, name):
                changed += 1
                logs.info("participant erased from the meeting")
    return changed
