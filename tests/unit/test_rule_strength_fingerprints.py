"""Change fingerprints (functions/fingerprints.py) are stored: they must not change across versions.

Every participant document and meeting holds fingerprints (``fingerprint``,
``participant_fingerprints``, ``sessions_fingerprint``); a poll rewrites a document whose new
fingerprint differs from the stored one, and the settle clock restarts when the sessions
fingerprint differs. A release that computed them differently would rewrite every document of
every live meeting and delay every completion by SETTLE_S, so their values are pinned here,
non-ASCII data included. A deliberate change of the attendance JSON (docs/firestore.md fields added)
changes them too: update the values then, knowing what the deploy will rewrite.
"""

from __future__ import annotations

from functions.attendance import Meeting, build_meeting
from functions.fingerprints import (
    absence_fingerprint,
    estimate_fingerprint,
    meeting_fingerprint,
    participant_fingerprint,
    stored_participant_fingerprint,
)
from tests.unit.factories import at, session

ZOE = "zoë@école.example"


def meeting(zoe_name: str = "Zoë 李") -> Meeting:
    return build_meeting(
        [
            session(at(0), at(30), key=ZOE, display_name=zoe_name, endpoint_id="ep-1"),
            session(
                at(10),
                at(50),
                key="ann@school.example",
                display_name="Ann",
                endpoint_id="ep-2",
                qualifier="2",
            ),
        ],
        meeting_code="abc-defg-hij",
    )


def test_fingerprint_values_are_those_earlier_versions_stored() -> None:
    pinned = meeting()
    zoe, ann = pinned.participants
    assert zoe.participant_key == ZOE
    assert participant_fingerprint(zoe) == (
        "2d84d1934d82b43254786116679126f668730e162327e0a631e0b5ee76b430ef"
    )
    assert participant_fingerprint(ann) == (
        "419c1c2446c05692d6a0e762d0be57ee639bec1683056cc21e3badc6bf7a42ba"
    )
    assert meeting_fingerprint(pinned) == (
        "fe21a73c42840d39538f0088d6b87fa03fde9d72a6491bb1853ff3aaa6fa74b1"
    )
    assert stored_participant_fingerprint(zoe, "full") == "65f592bb39dab697"
    assert stored_participant_fingerprint(zoe, "truncated") == "b0a96b273bf5763f"
    assert estimate_fingerprint(ZOE, at(0), at(45)) == "83910d586d9fbed0"
    assert absence_fingerprint(ZOE) == "747b7d11d8ad7188"


def test_a_non_ascii_change_alone_changes_the_fingerprints() -> None:
    before, after = meeting("Zoë 李"), meeting("Zoé 李")
    assert participant_fingerprint(before.participants[0]) != participant_fingerprint(
        after.participants[0]
    )
    assert meeting_fingerprint(before) != meeting_fingerprint(after)
    assert participant_fingerprint(before.participants[1]) == participant_fingerprint(
        after.participants[1]
    )


def test_a_document_is_rewritten_when_the_ip_mode_changes() -> None:
    zoe = meeting().participants[0]
    modes = {stored_participant_fingerprint(zoe, mode) for mode in ("full", "truncated", "none")}
    assert len(modes) == 3


def test_an_estimate_changes_with_its_key_and_either_declared_time() -> None:
    base = estimate_fingerprint(ZOE, at(0), at(45))
    assert estimate_fingerprint("ann@school.example", at(0), at(45)) != base
    assert estimate_fingerprint(ZOE, at(5), at(45)) != base
    assert estimate_fingerprint(ZOE, at(0), at(50)) != base


def test_estimate_absence_and_real_data_of_one_key_are_told_apart() -> None:
    zoe = meeting().participants[0]
    fingerprints = {
        absence_fingerprint(ZOE),
        estimate_fingerprint(ZOE, at(0), at(45)),
        stored_participant_fingerprint(zoe, "full"),
    }
    assert len(fingerprints) == 3
    assert absence_fingerprint(ZOE) != absence_fingerprint("ann@school.example")
