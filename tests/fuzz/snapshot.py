"""Every document the Firestore emulator holds, to show that a batch of requests wrote nothing.

Read with google-cloud-firestore's own client against ``FIRESTORE_EMULATOR_HOST``: every
top-level collection, and each one recursively (subcollections at any depth, under documents
that exist or not).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from google.cloud import firestore

from functions.adapters.firestore_store import firestore_client
from functions.config import Settings

Snapshot = dict[str, dict[str, Any]]


def emulator_client(env: Mapping[str, str]) -> firestore.Client:
    """A client of the stack's emulator (anonymous credentials; nothing but 127.0.0.1)."""
    host = env["FIRESTORE_EMULATOR_HOST"]
    if not host.startswith("127.0.0.1:"):
        raise ValueError("FIRESTORE_EMULATOR_HOST must be the local stack's emulator")
    # The client reads the variable itself, once, when it is made.
    previous = os.environ.get("FIRESTORE_EMULATOR_HOST")
    os.environ["FIRESTORE_EMULATOR_HOST"] = host
    try:
        return firestore_client(Settings.from_env(env))
    finally:
        if previous is None:
            del os.environ["FIRESTORE_EMULATOR_HOST"]
        else:
            os.environ["FIRESTORE_EMULATOR_HOST"] = previous


def snapshot(client: firestore.Client) -> Snapshot:
    """Document path → fields, for every document of the database."""
    documents: Snapshot = {}
    for collection in client.collections():
        for document in collection.recursive().stream():
            documents[document.reference.path] = document.to_dict() or {}
    return documents


def differences(before: Snapshot, after: Snapshot, *, limit: int = 10) -> list[str]:
    """What changed between two snapshots: added, removed and changed document paths."""
    changes = [f"added {path}" for path in sorted(after.keys() - before.keys())]
    changes += [f"removed {path}" for path in sorted(before.keys() - after.keys())]
    for path in sorted(before.keys() & after.keys()):
        if before[path] != after[path]:
            fields = sorted(
                name
                for name in before[path].keys() | after[path].keys()
                if before[path].get(name) != after[path].get(name)
            )
            changes.append(f"changed {path}: {', '.join(fields)}")
    return changes[:limit] + (
        [f"… and {len(changes) - limit} more"] if len(changes) > limit else []
    )


def settled(client: firestore.Client, *, quiet_s: float = 1.5, timeout_s: float = 90.0) -> Snapshot:
    """A snapshot once nothing has changed for ``quiet_s`` (work in flight has landed)."""
    deadline = time.monotonic() + timeout_s
    previous = snapshot(client)
    while True:
        time.sleep(quiet_s)
        current = snapshot(client)
        if current == previous:
            return current
        if time.monotonic() > deadline:
            changed = "; ".join(differences(previous, current, limit=3))
            raise TimeoutError(f"Firestore did not settle within {timeout_s} s ({changed})")
        previous = current
