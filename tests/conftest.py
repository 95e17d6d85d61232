"""Shared fixtures: Google's Firestore emulator, started once per test session.

No test may reach a Google host: google-auth's metadata probe is disabled for the whole run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ["NO_GCE_CHECK"] = "True"
os.environ["CLOUDSDK_CORE_CHECK_GCE_METADATA"] = "false"

from local.firestore_emulator import FirestoreEmulator

TEST_PROJECT = "test-attendance"


@pytest.fixture(scope="session")
def firestore_emulator() -> Iterator[FirestoreEmulator]:
    emulator = FirestoreEmulator(project=TEST_PROJECT)
    emulator.start()
    previous = os.environ.get("FIRESTORE_EMULATOR_HOST")
    os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host
    try:
        yield emulator
    finally:
        emulator.stop()
        if previous is None:
            os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
        else:
            os.environ["FIRESTORE_EMULATOR_HOST"] = previous


@pytest.fixture
def firestore_db(firestore_emulator: FirestoreEmulator) -> FirestoreEmulator:
    """The emulator, emptied before the test so every test starts from nothing."""
    firestore_emulator.clear()
    return firestore_emulator
