"""Which documents' status mirrors lag (functions/stored_state.py, ``lagging_mirrors``): those the
meeting counts whose ``meeting_status`` is not the meeting's status; a document it does not count
(a fenced-out staged change, or one ahead of its revision) stays as it is.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from functions.participant_keys import participant_doc_id
from functions.schedule import Status
from functions.stored_state import STAGED_COMMIT, lagging_mirrors
from tests.unit.test_rule_strength_stored_state import FENCED, LANDED, MEETING, absence, real

COMPLETE = str(Status.COMPLETE)
COLLECTING = str(Status.COLLECTING)
A = participant_doc_id("a@x.example")
#: The shared meeting (revision 3, landed change LANDED), completed.
DONE = replace(MEETING, status=Status.COMPLETE)


@pytest.mark.parametrize(
    ("document", "lagging"),
    [
        (real("a@x.example", meeting_status=COMPLETE), False),  # mirrors the meeting
        (absence("a@x.example", meeting_status=COMPLETE), False),
        (real("a@x.example", meeting_status=COLLECTING), True),  # the status moved since
        (real("a@x.example", meeting_status="None"), True),
        (real("a@x.example", **{"meeting_status": COLLECTING, STAGED_COMMIT: LANDED}), True),
        # Not counted: mirroring it would have billing count it.
        (real("a@x.example", **{"meeting_status": COLLECTING, STAGED_COMMIT: FENCED}), False),
        (real("a@x.example", 4, meeting_status=COLLECTING), False),  # ahead of the meeting
        (real("a@x.example", 4, meeting_status=COMPLETE), False),
    ],
)
def test_a_mirror_lags_when_a_counted_document_shows_another_status(
    document: dict[str, Any], lagging: bool
) -> None:
    assert lagging_mirrors([document], DONE) == ((A,) if lagging else ())


def test_lagging_mirrors_are_named_in_document_id_order() -> None:
    documents = [
        real(key, meeting_status=status)
        for key, status in [
            ("d@x.example", COLLECTING),
            ("b@x.example", COMPLETE),
            ("c@x.example", "staged"),
            ("a@x.example", COLLECTING),
        ]
    ]
    assert lagging_mirrors(documents, DONE) == tuple(
        sorted(participant_doc_id(k) for k in ("a@x.example", "c@x.example", "d@x.example"))
    )
