"""The Firestore emulator launcher, exercised with the stock google-cloud-firestore client."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

from local.firestore_emulator import EmulatorUnavailable, FirestoreEmulator, find_jar
from tests.conftest import TEST_PROJECT


def client() -> firestore.Client:
    return firestore.Client(project=TEST_PROJECT, credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]


def test_documents_round_trip_and_clear_empties_the_database(
    firestore_db: FirestoreEmulator,
) -> None:
    db = client()
    db.collection("meetings").document("m1").set({"status": "scheduled"})
    db.collection("meetings").document("m1").collection("participants").document("p").set(
        {"attended_seconds": 5}
    )
    snapshot = db.collection("meetings").document("m1").get()
    assert snapshot.to_dict() == {"status": "scheduled"}

    firestore_db.clear()

    assert not db.collection("meetings").document("m1").get().exists
    assert list(db.collection_group("participants").stream()) == []


def test_emulator_host_is_loopback(firestore_emulator: FirestoreEmulator) -> None:
    assert firestore_emulator.host.startswith("127.0.0.1:")
    assert os.environ["FIRESTORE_EMULATOR_HOST"] == firestore_emulator.host


def test_missing_java_fails_at_once_naming_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EmulatorUnavailable, match=r"java is not on PATH; install a Java runtime"):
        FirestoreEmulator().start()


def test_missing_jar_fails_at_once_naming_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FIRESTORE_EMULATOR_JAR", str(tmp_path / "nope.jar"))
    with pytest.raises(EmulatorUnavailable, match="cloud-firestore-emulator"):
        find_jar()


def test_stop_ends_the_process_by_pid() -> None:
    emulator = FirestoreEmulator(project="stop-test")
    emulator.start()
    pid = emulator.pid
    assert pid is not None
    emulator.stop()
    emulator.stop()  # idempotent
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_command_line_launcher_reports_a_missing_jar_in_one_line(tmp_path: Path) -> None:
    env = dict(os.environ, FIRESTORE_EMULATOR_JAR=str(tmp_path / "absent.jar"))
    result = subprocess.run(
        [sys.executable, "-m", "local.firestore_emulator"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "install" in result.stderr
    assert "Traceback" not in result.stderr
