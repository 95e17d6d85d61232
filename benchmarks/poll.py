"""Benchmark: one poll of a meeting, with the real adapters on the local stand-ins.

    python -m benchmarks.poll [--participants 10 100 1000 5000] [--profile PATH] [--json-out PATH]
                              [--no-warm-up] [--ratio-runs 5]

For each size: a meeting is accepted, its events (about 2.5 sessions per participant) are loaded
into the fake Reports API (in a process of its own, as Google's is:
``benchmarks._common.ReportsProcess``), then polled twice: the first poll finds everything; the
second the same data. Reported per poll: Reports requests (target ⌈events/1000⌉),
participant-document writes (target: participants whose attendance changed — all of them first,
0 on the unchanged re-poll), other writes (meeting document transactions, revision records) and
wall time.

Beside each poll, in the same run on the same events: the **naive baseline** — the common public
approach: fetch the same events through the same adapter, then one unbatched Firestore ``set`` per
session (activity) plus one for the meeting, no change detection, everything re-written each poll.
Our wall time and writes are reported as a ratio to it.

Before the measured polls, one meeting of ``WARM_UP_PARTICIPANTS`` is polled both ways and not
reported (``--no-warm-up`` skips it): the emulator is a JVM, and its first large commits run
before its JIT has compiled them (a first poll of 1,000 participants took 2.3 s in commits on a
fresh emulator against 0.5 s on a warm one), which would charge whichever poll comes first.

``--profile PATH`` also polls one more meeting of the largest size under cProfile (a separate
meeting, so the measured polls carry no profiler overhead) and writes the top functions by
cumulative time, and the time of each stage, to PATH as JSON.

Speed targets (issue 15, point 3), reported met or not: the first poll of 5,000 participants in at
most 0.15 of the naive poll's time — the median of ``--ratio-runs`` runs (the table's, then new
meetings of that size, each polled our way and then the naive way back to back) — and the
client-side encoding of the writes
(stage ``encode write protos`` of the profile) at most 25 % of the profiled poll.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from google.cloud import firestore

os.environ.setdefault("NO_GCE_CHECK", "True")

from benchmarks._common import ReportsProcess
from functions.adapters.cloud_tasks import CloudTasksQueue, tasks_client
from functions.adapters.firestore_store import FirestoreStore, firestore_client
from functions.adapters.reports import GoogleReportsSource, reports_service
from functions.app import freeze_startup_heap
from functions.config import Settings
from functions.declarations import accept_meeting_end
from functions.model import Declared, MeetingRecord
from functions.polling import PollOutcome, poll_meeting
from functions.ports import Deps, MeetingCommit, Versioned
from functions.schedule import Timing
from local.firestore_emulator import FirestoreEmulator
from local.simulate import large_class
from local.tasks_emulator import TasksEmulator

PROJECT = "bench-attendance"


class CountingStore(FirestoreStore):
    """The real Firestore store, counting the writes each poll makes."""

    meeting_writes = 0
    revision_writes = 0

    def update(
        self, meeting_id: str, change: Callable[[MeetingRecord], MeetingRecord | None]
    ) -> MeetingRecord | None:
        wrote = False

        def counted(current: MeetingRecord) -> MeetingRecord | None:
            nonlocal wrote
            updated = change(current)
            wrote = updated is not None
            return updated

        result = super().update(meeting_id, counted)
        self.meeting_writes += int(wrote)
        return result

    def commit(self, change: MeetingCommit) -> Versioned | None:
        self.meeting_writes += 1
        self.revision_writes += change.revision is not None
        return super().commit(change)


@dataclass
class PollMeasure:
    participants: int
    poll: str
    events: int
    reports_requests: int
    reports_requests_target: int
    participant_writes: int
    participant_writes_target: int
    meeting_writes: int
    revision_writes: int
    wall_s: float
    naive_writes: int = 0
    naive_wall_s: float = 0.0
    writes_ratio: float = 0.0
    time_ratio: float = 0.0

    @property
    def writes(self) -> int:
        return self.participant_writes + self.meeting_writes + self.revision_writes


#: (module path suffix, function name), and optionally the module path suffix its calls must
#: come from to count.
Function = tuple[str, ...]

#: The stage that builds the write protos: every function that turns documents into ``Write``
#: messages, ours (``firestore_writes.RawBatch``) and the client's (``_helpers.pbs_for_*``, which
#: the other writes of a poll — the lease's updates — still use).
ENCODE_STAGE = "encode write protos"
_ENCODERS: tuple[Function, ...] = (
    *(("adapters/firestore_writes.py", name) for name in ("create", "set", "update", "delete")),
    # A staged change's writes, built one by one while the request before is in flight.
    *(
        ("adapters/firestore_writes.py", name)
        for name in ("create_write", "set_write", "update_write", "delete_write")
    ),
    *(
        ("firestore_v1/_helpers.py", name)
        for name in (
            "pbs_for_create",
            "pbs_for_set_no_merge",
            "pbs_for_set_with_merge",
            "pbs_for_update",
            "pb_for_delete",
        )
    ),
)
#: Where a poll's time goes: each stage the cumulative time of its functions, each counted only
#: from callers outside the stage (so a stage of several functions that call each other counts
#: once). Stages may nest: the last three are (almost all) inside the commit.
STAGES: dict[str, tuple[Function, ...]] = {
    "Reports fetch (HTTP + JSON decode)": (("adapters/reports.py", "call_ended_pages"),),
    "parse events into sessions": (("reports_events.py", "add_activities"),),
    "plan the poll (select, decide, build records)": (("poll_plan.py", "plan_poll"),),
    "read stored participants": (("adapters/firestore_store.py", "participants"),),
    "meeting document updates (lease)": (("adapters/firestore_store.py", "update_versioned"),),
    "neighbour query (with_code)": (("adapters/firestore_store.py", "with_code"),),
    "commit (participants, revision, meeting)": (("adapters/firestore_store.py", "commit"),),
    "split the change into requests (commits.stages)": (("functions/commits.py", "stages"),),
    ENCODE_STAGE: _ENCODERS,
    # The GAPIC method every commit goes through: serialize, send, wait for Firestore, decode.
    # A staged change sends its requests from a thread cProfile does not see: what the poll
    # waits for them is its wait for the request in flight (Future.result in the store).
    "commit RPCs": (
        ("firestore/client.py", "commit"),
        ("concurrent/futures/_base.py", "result", "adapters/firestore_store.py"),
    ),
}
#: Issue 15, point 3: a first poll of this many participants in at most this share of the naive
#: poll's time (same run), with at most this share of the profiled poll building write protos.
TIME_RATIO_PARTICIPANTS = 5000
TIME_RATIO_TARGET = 0.15
ENCODE_SHARE_TARGET = 0.25
#: Runs of that ratio (the table's and more, each ours then the naive one back to back): the
#: target is judged on their median, as machine noise moves a single run.
RATIO_RUNS = 5
#: The meeting polled (both ways, unreported) before the measured ones: warms the emulator's JIT.
WARM_UP_PARTICIPANTS = 500


def naive_poll(
    client: firestore.Client, reports: GoogleReportsSource, meeting: MeetingRecord
) -> tuple[int, int]:
    """The naive poll: every session written on its own, every time. Returns (writes, requests)."""
    activities, stats = reports.call_ended(
        meeting_code=meeting.meeting_code.replace("-", "").upper(), start=meeting.window_start
    )
    meeting_ref = client.collection("naive_meetings").document(meeting.meeting_id)
    writes = 0
    total_seconds = 0
    for item in activities:
        fields: dict[str, Any] = {}
        for event in item.get("events", []):
            for parameter in event.get("parameters", []):
                value = parameter.get(
                    "value", parameter.get("intValue", parameter.get("boolValue"))
                )
                fields[parameter["name"]] = value
        leave = datetime.fromisoformat(str(item["id"]["time"]).replace("Z", "+00:00"))
        duration = int(fields.get("duration_seconds") or 0)
        total_seconds += duration
        meeting_ref.collection("sessions").document(str(item["id"]["uniqueQualifier"])).set(
            {
                **fields,
                "actor_email": (item.get("actor") or {}).get("email"),
                "join_time": leave - timedelta(seconds=duration),
                "leave_time": leave,
            }
        )
        writes += 1
    meeting_ref.set(
        {
            "meeting_code": meeting.meeting_code,
            "sessions": len(activities),
            "total_seconds": total_seconds,
            "polled_at": datetime.now(UTC),
        }
    )
    return writes + 1, stats.requests


def measure(
    sizes: Sequence[int],
    *,
    profile_out: Path | None = None,
    warm_up: bool = True,
    ratio_runs: int = RATIO_RUNS,
) -> tuple[list[PollMeasure], dict[str, Any] | None, list[dict[str, Any]]]:
    """The polls of every size; the profile; the time ratio's runs after the first (the one in
    the table), ``ratio_runs`` in all."""
    results: list[PollMeasure] = []
    profile: dict[str, Any] | None = None
    ratio_runs_done: list[dict[str, Any]] = []
    with FirestoreEmulator(project=PROJECT) as firestore, TasksEmulator() as tasks:
        os.environ["FIRESTORE_EMULATOR_HOST"] = firestore.host
        reports = ReportsProcess()
        reports.start()
        try:
            settings = Settings.from_env(
                {
                    "GOOGLE_CLOUD_PROJECT": PROJECT,
                    "TASKS_LOCATION": "local",
                    "TASKS_QUEUE": "bench",
                    "COLLECT_URL": "http://127.0.0.1:9/",
                    "TASKS_SERVICE_ACCOUNT": "tasks@bench.iam.gserviceaccount.com",
                    "WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                    "FIRESTORE_EMULATOR_HOST": firestore.host,
                    "CLOUD_TASKS_EMULATOR_HOST": tasks.address,
                    "REPORTS_API_ENDPOINT": reports.url,
                }
            )
            tasks.create_queue(settings.queue_path)
            tasks_client(settings)  # fail early if the emulator is unreachable
            if warm_up:
                _warm_up(settings, reports)
            for size in sizes:
                results += _measure_size(size, settings, reports)
                print("\n".join(render(results[-2:]).splitlines()[-2:]), flush=True)
            if TIME_RATIO_PARTICIPANTS in sizes:
                for run in range(2, ratio_runs + 1):
                    again = _ratio_run(TIME_RATIO_PARTICIPANTS, settings, reports, f"r{run}")
                    ratio_runs_done.append(again)
                    print(
                        f"time ratio run {run}: {again['wall_s']:.3f} s / "
                        f"{again['naive_wall_s']:.3f} s = {again['ratio']:.3f}",
                        flush=True,
                    )
            if profile_out is not None:
                profile = _profile(max(sizes), settings, reports, profile_out)
        finally:
            reports.stop()
    return results, profile, ratio_runs_done


def _deps(settings: Settings) -> tuple[CountingStore, Deps]:
    store = CountingStore(firestore_client(settings))
    deps = Deps(
        store=store,
        queue=CloudTasksQueue.from_settings(settings),
        reports=GoogleReportsSource(reports_service(settings)),
        clock=lambda: datetime.now(UTC),
        timing=Timing(first_poll_delay_s=3600),  # no chain poll fires during the benchmark
    )
    return store, deps


def _meeting(
    size: int, deps: Deps, reports: ReportsProcess, *, tag: str = "abc"
) -> tuple[MeetingRecord, int]:
    end = datetime.now(UTC) - timedelta(minutes=5)
    code = f"bch-{size:04d}-{tag}"[:12]
    activities = large_class(
        participants=size,
        meeting_code=code,
        conference_id=f"bench-{size}-{tag}",
        start=end - timedelta(minutes=60),
        minutes=60,
    )
    reports.add_activities(activities)
    meeting = accept_meeting_end(
        deps, Declared(meeting_code=code, ended_at=end, external_id=f"bench-{size}-{tag}")
    ).meeting
    return meeting, len(activities)


def _warm_up(settings: Settings, reports: ReportsProcess) -> None:
    """One meeting polled our way and the naive way, unmeasured (see the module docstring)."""
    _, deps = _deps(settings)
    meeting, _ = _meeting(WARM_UP_PARTICIPANTS, deps, reports, tag="wrm")
    poll_meeting(deps, meeting.meeting_id, reason="manual")
    naive_poll(firestore_client(settings), GoogleReportsSource(reports_service(settings)), meeting)


def _measure_size(size: int, settings: Settings, reports: ReportsProcess) -> list[PollMeasure]:
    store, deps = _deps(settings)
    meeting, events = _meeting(size, deps, reports)
    measures = []
    for label, expected_writes in (("first", size), ("unchanged re-poll", 0)):
        before_requests = len(reports.requests())
        store.meeting_writes = store.revision_writes = 0
        started = time.perf_counter()
        outcome = poll_meeting(deps, meeting.meeting_id, reason="manual")
        wall = time.perf_counter() - started
        assert isinstance(outcome, PollOutcome), outcome
        measures.append(
            PollMeasure(
                participants=size,
                poll=label,
                events=events,
                reports_requests=len(reports.requests()) - before_requests,
                reports_requests_target=math.ceil(events / 1000),
                participant_writes=outcome.participant_writes,
                participant_writes_target=expected_writes,
                meeting_writes=store.meeting_writes,
                revision_writes=store.revision_writes,
                wall_s=round(wall, 3),
            )
        )
    # The naive baseline on the same events, first poll and unchanged re-poll.
    client = firestore_client(settings)
    naive_reports = GoogleReportsSource(reports_service(settings))
    for measured in measures:
        started = time.perf_counter()
        writes, _ = naive_poll(client, naive_reports, meeting)
        measured.naive_wall_s = round(time.perf_counter() - started, 3)
        measured.naive_writes = writes
        measured.writes_ratio = round(measured.writes / writes, 4)
        measured.time_ratio = round(measured.wall_s / measured.naive_wall_s, 4)
    return measures


def _ratio_run(size: int, settings: Settings, reports: ReportsProcess, tag: str) -> dict[str, Any]:
    """One more run of the time ratio: the first poll of a new meeting of ``size`` participants
    our way, then the naive way on the same events, back to back."""
    _, deps = _deps(settings)
    meeting, _ = _meeting(size, deps, reports, tag=tag)
    started = time.perf_counter()
    outcome = poll_meeting(deps, meeting.meeting_id, reason="manual")
    wall = time.perf_counter() - started
    assert isinstance(outcome, PollOutcome), outcome
    started = time.perf_counter()
    naive_poll(firestore_client(settings), GoogleReportsSource(reports_service(settings)), meeting)
    naive = time.perf_counter() - started
    return {"wall_s": round(wall, 3), "naive_wall_s": round(naive, 3), "ratio": wall / naive}


def _profile(size: int, settings: Settings, reports: ReportsProcess, out: Path) -> dict[str, Any]:
    """The first poll of one more meeting of ``size`` participants, under cProfile."""
    import pstats

    _, deps = _deps(settings)
    meeting, events = _meeting(size, deps, reports, tag="prf")
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    poll_meeting(deps, meeting.meeting_id, reason="manual")
    profiler.disable()
    wall = time.perf_counter() - started
    out.parent.mkdir(parents=True, exist_ok=True)
    profiler.dump_stats(str(out.with_suffix(".prof")))
    stats = pstats.Stats(profiler)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    rows = []
    for (filename, line, name), (_, ncalls, tottime, cumtime, _) in raw.items():
        rows.append(
            {
                "function": f"{_short(filename)}:{line}({name})",
                "file": filename,
                "name": name,
                "ncalls": ncalls,
                "tottime_s": round(tottime, 4),
                "cumtime_s": round(cumtime, 4),
            }
        )
    rows.sort(key=lambda r: -float(r["cumtime_s"]))
    stages = {label: round(_stage_s(raw, functions), 4) for label, functions in STAGES.items()}
    by_tottime = sorted(rows, key=lambda r: -float(r["tottime_s"]))
    result = {
        "participants": size,
        "events": events,
        "wall_s_profiled": round(wall, 3),
        "stages_cumtime_s": stages,
        "nested_in_commit": list(STAGES)[-3:],
        "encode_stage": ENCODE_STAGE,
        "encode_share": round(stages[ENCODE_STAGE] / wall, 4),
        "top_cumulative": [{k: v for k, v in r.items() if k != "file"} for r in rows[:25]],
        "top_self": [{k: v for k, v in r.items() if k != "file"} for r in by_tottime[:15]],
    }
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def _stage_s(raw: dict[Any, Any], functions: Sequence[Function]) -> float:
    """The cumulative time of ``functions`` in a cProfile table, each counted only from its
    callers outside ``functions`` (the time a caller saw it take)."""

    def matching(key: tuple[str, int, str]) -> Function | None:
        filename, _, name = key
        return next((f for f in functions if name == f[1] and filename.endswith(f[0])), None)

    total = 0.0
    for key, (_, _, _, cumtime, callers) in raw.items():
        function = matching(key)
        if function is None:
            continue
        if not callers:  # called from where cProfile started
            total += cumtime
        total += sum(
            seen[3]
            for caller, seen in callers.items()
            if matching(caller) is None and caller[0].endswith(function[2:3] or ("",))
        )
    return total


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def render(results: Sequence[PollMeasure]) -> str:
    header = (
        "| participants | poll | events | Reports requests (target) | participant writes "
        "(target) | meeting writes | revision writes | wall s | naive writes | naive wall s "
        "| writes ratio | time ratio |\n"
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    rows = [
        f"| {m.participants} | {m.poll} | {m.events} | {m.reports_requests} "
        f"({m.reports_requests_target}) | {m.participant_writes} ({m.participant_writes_target}) "
        f"| {m.meeting_writes} | {m.revision_writes} | {m.wall_s:.3f} | {m.naive_writes} "
        f"| {m.naive_wall_s:.3f} | {m.writes_ratio:.3f} | {m.time_ratio:.3f} |"
        for m in results
    ]
    return header + "\n".join(rows)


def ratio_runs(
    results: Sequence[PollMeasure], more: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Every run of the time ratio: the table's first poll of the size, then the later ones."""
    first = next(
        (m for m in results if m.participants == TIME_RATIO_PARTICIPANTS and m.poll == "first"),
        None,
    )
    runs = [] if first is None else [{"wall_s": first.wall_s, "naive_wall_s": first.naive_wall_s}]
    runs += [{"wall_s": r["wall_s"], "naive_wall_s": r["naive_wall_s"]} for r in more]
    return [{**r, "ratio": round(r["wall_s"] / r["naive_wall_s"], 4)} for r in runs]


def speed_targets(
    results: Sequence[PollMeasure],
    profile: dict[str, Any] | None,
    more: Sequence[dict[str, Any]] = (),
) -> list[dict[str, Any]]:
    """Issue 15's speed targets: {figure, value, unit, target, met}; a figure this run did not
    measure (another size, no profile) has value None and is not met. The time ratio: the
    median of its runs."""
    runs = ratio_runs(results, more)
    ratio = round(statistics.median(r["ratio"] for r in runs), 4) if runs else None
    share = None if profile is None else float(profile["encode_share"])
    return [
        {
            "figure": f"first poll of {TIME_RATIO_PARTICIPANTS:,} participants / naive poll",
            "value": ratio,
            "unit": "x",
            "target": f"<= {TIME_RATIO_TARGET}x",
            "met": ratio is not None and ratio <= TIME_RATIO_TARGET,
        },
        {
            "figure": f"{ENCODE_STAGE}: share of the profiled poll",
            "value": None if share is None else round(100 * share, 1),
            "unit": "%",
            "target": f"<= {ENCODE_SHARE_TARGET:.0%}",
            "met": share is not None and share <= ENCODE_SHARE_TARGET,
        },
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--participants", type=int, nargs="+", default=[10, 100, 1000, 5000])
    parser.add_argument("--profile", type=Path, help="profile one more poll of the largest size")
    parser.add_argument("--json-out", type=Path)
    parser.add_argument(
        "--no-warm-up", action="store_true", help="measure on a cold emulator (no warm-up poll)"
    )
    parser.add_argument(
        "--ratio-runs", type=int, default=RATIO_RUNS, help="runs of the 5,000-participant ratio"
    )
    args = parser.parse_args(argv)
    # As a collect instance does once main.py is imported (both ways of polling run here).
    freeze_startup_heap()
    results, profile, more = measure(
        args.participants,
        profile_out=args.profile,
        warm_up=not args.no_warm_up,
        ratio_runs=args.ratio_runs,
    )
    print(render(results))
    met = all(
        m.reports_requests == m.reports_requests_target
        and m.participant_writes == m.participant_writes_target
        for m in results
    )
    print("targets met" if met else "targets MISSED")
    if profile is not None:
        print(f"profile of {profile['participants']} participants (cumulative s):")
        for label, seconds in profile["stages_cumtime_s"].items():
            print(f"  {seconds:8.3f}  {label}")
    speed = speed_targets(results, profile, more)
    for target in speed:
        value = "not measured" if target["value"] is None else f"{target['value']}{target['unit']}"
        verdict = "met" if target["met"] else "NOT met"
        print(f"{target['figure']}: {value} (target {target['target']}): {verdict}")
    if args.json_out:
        payload: dict[str, Any] = {
            "benchmark": "poll",
            "poll": [{**asdict(m), "writes": m.writes} for m in results],
            "targets_met": met,
            "speed_targets": speed,
            "time_ratio_runs": ratio_runs(results, more),
            "warm_up_participants": 0 if args.no_warm_up else WARM_UP_PARTICIPANTS,
            "profile": profile,
        }
        args.json_out.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
