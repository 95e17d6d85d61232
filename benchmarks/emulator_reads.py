"""Benchmark: what the Firestore emulator charges for a webhook's first read as its database grows.

    python -m benchmarks.emulator_reads [--sizes 0 1000 3000 10000] [--samples 40]
                                        [--json-out PATH]

The webhook's first round trip (``FirestoreStore.declaration_reads``) is one batched get and, beside
it, two queries: the code's neighbours (``with_code``: a range query on the code and ``ended_at``,
served by a composite index in Google's Firestore) and the meetings aliased to the webhook's
external id (``named``). The one-create figure of the ingest benchmark is a single document write.

On a fresh emulator, the database grows in steps to ``--sizes`` meetings, each stored as a webhook
stores it (one request creating the meeting and its 10 participants' estimates, through
``FirestoreStore.commit``; every meeting of its own code). At each size, ``--samples`` times each,
alternating: one document create with the stock client, the batched get of the 2 meeting ids
alone, each query alone, and the whole ``declaration_reads`` of a new meeting of a code nobody
used, with the queries and (``declaration_reads (lookups)``) with the lookup documents instead.
Reported: the median of each, in ms, and the first read over one create. Nothing here
changes how a webhook works; the figures say which part of its latency grows with documents it
never reads.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

os.environ.setdefault("NO_GCE_CHECK", "True")

from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

from benchmarks._common import median
from functions.adapters.firestore_store import FirestoreStore
from functions.declarations import expected_change, new_meeting_record
from functions.intervals import Bounds
from functions.meeting_ids import meeting_id_for
from functions.model import Declared
from functions.ports import DeclarationReads, Deps, MeetingCommit
from local.firestore_emulator import FirestoreEmulator

PROJECT = "bench-emulator-reads"
ROSTER = tuple(f"student{index:02d}@school.example" for index in range(10))
#: The ``ended_at`` range a webhook's neighbour query asks for around its meeting.
NEIGHBOURHOOD = timedelta(hours=30)
WARM_UP_SAMPLES = 30
CALLS = (
    "create",
    "batched get",
    "with_code",
    "named (alias)",
    "declaration_reads",
    "declaration_reads (lookups)",
)


def _deps(store: FirestoreStore) -> Deps:
    # Building records reads only the store, the clock and the windows: no queue or Reports.
    return Deps(
        store=store,
        queue=cast(Any, None),
        reports=cast(Any, None),
        clock=lambda: datetime.now(UTC),
    )


def _stored_meeting(deps: Deps, index: int, now: datetime) -> None:
    """One meeting with its estimates, in the one request a webhook's commit makes."""
    external_id = f"seed-{index}-{uuid.uuid4().hex[:8]}"
    ended = now - timedelta(hours=index % 720)
    declared = Declared(
        meeting_code=f"sd{index:010d}"[-10:],
        ended_at=ended,
        started_at=ended - timedelta(hours=1),
        external_id=external_id,
        expected_participants=ROSTER,
    )
    record = new_meeting_record(
        declared,
        meeting_id=meeting_id_for(external_id=external_id),
        source="webhook",
        deps=deps,
        now=now,
    )
    change = expected_change(record, [], expected=ROSTER, now=now)
    commit = MeetingCommit(meeting=record, expected=None) if change is None else change
    if deps.store.commit(replace(commit, expected=None, creates=record)) is None:
        raise RuntimeError(f"seeding meeting {index}: it existed already")


def _grow(deps: Deps, start: int, stop: int, now: datetime) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda index: _stored_meeting(deps, index, now), range(start, stop)))


def _fresh_reads(now: datetime) -> DeclarationReads:
    """What a new meeting's webhook asks for: its two possible ids, its webhook id's record, the
    neighbours of a code nobody used, and the meetings aliased to its external id."""
    external_id = f"new-{uuid.uuid4().hex}"
    code = uuid.uuid4().hex[:10]
    return DeclarationReads(
        meeting_ids=[
            meeting_id_for(external_id=external_id),
            meeting_id_for(meeting_code=code, ended_at=now),
        ],
        webhook_id=f"wh-{uuid.uuid4().hex}",
        meeting_code=code,
        neighbours=Bounds(now - NEIGHBOURHOOD, now + NEIGHBOURHOOD),
        alias=external_id,
    )


def _timed_ms(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def _sample(
    client: firestore.Client, store: FirestoreStore, now: datetime, *, samples: int
) -> dict[str, list[float]]:
    """``samples`` rounds of every call, in turn; ms per call."""
    times: dict[str, list[float]] = {name: [] for name in CALLS}
    for _ in range(samples):
        for name, ms in _one_round(client, store, _fresh_reads(now)).items():
            times[name].append(ms)
    return times


def _one_round(
    client: firestore.Client, store: FirestoreStore, reads: DeclarationReads
) -> dict[str, float]:
    # The same reads as a store whose lookup index is complete makes them (by key, no query).
    looking_up = FirestoreStore(client, lookups_ready=True)
    refs = [client.collection("meetings").document(i) for i in reads.meeting_ids]
    one = client.collection("one_create").document(uuid.uuid4().hex)
    return {
        "create": _timed_ms(lambda: one.create({"at": datetime.now(UTC)})),
        "batched get": _timed_ms(lambda: list(client.get_all(refs))),
        "with_code": _timed_ms(lambda: store.with_code(reads.meeting_code, ended=reads.neighbours)),
        "named (alias)": _timed_ms(lambda: store.named(alias=reads.alias)),
        "declaration_reads": _timed_ms(lambda: store.declaration_reads(reads)),
        "declaration_reads (lookups)": _timed_ms(lambda: looking_up.declaration_reads(reads)),
    }


def measure(sizes: Sequence[int], *, samples: int) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    with FirestoreEmulator(project=PROJECT) as emulator:
        os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host
        client = firestore.Client(
            project=PROJECT,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        )
        store = FirestoreStore(client, lookups_ready=False)  # the queries
        deps = _deps(store)
        now = datetime.now(UTC)
        stored = 0
        # The JVM's first calls run before its JIT compiled them: unmeasured rounds first.
        _sample(client, store, now, samples=WARM_UP_SAMPLES)
        for size in sizes:
            seeding = time.perf_counter()
            if size > stored:
                _grow(deps, stored, size, now)
                stored = size
            seeded_s = time.perf_counter() - seeding
            times = _sample(client, store, now, samples=samples)
            p50 = {name: round(median(values), 2) for name, values in times.items()}
            row = {
                "meetings": size,
                "documents": size * (1 + len(ROSTER)),
                "seed_s": round(seeded_s, 1),
                "p50_ms": p50,
                "first_read_over_create": round(p50["declaration_reads"] / p50["create"], 2),
                "lookup_read_over_create": round(
                    p50["declaration_reads (lookups)"] / p50["create"], 2
                ),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    return {
        "benchmark": "emulator_reads",
        "samples": samples,
        "roster": len(ROSTER),
        "calls": list(CALLS),
        "rows": rows,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 1000, 3000, 10000])
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    result = measure(args.sizes, samples=args.samples)
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
