"""Benchmark: ``summarize --json`` against a plain ``json.load`` of the same Reports dump.

    python -m benchmarks.summarize [--events 100000] [--repeat 3] [--keep] [--json-out PATH]

Generates a realistic activities.list-shaped dump (seeded, so runs are comparable), then measures
each contender in its own subprocess so peak memory is clean: wall time of the work itself and
peak RSS (``ru_maxrss`` of the child) minus the RSS of a child that only imports the same modules.
Targets: time <= 1.5 x json.load, peak memory <= json.load.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).parent / "data"
TIME_TARGET = 1.5  # summarize time / json.load time
MEMORY_TARGET = 1.0  # summarize peak memory / json.load peak memory

_DEVICES = ["web", "web", "web", "android", "ios", "pstn_in", "chromebox"]
_REGIONS = [("DE", "Berlin"), ("IN", "Karnataka"), ("GB", "London"), ("US", "California")]


def _param(name: str, value: object) -> dict[str, object]:
    if isinstance(value, bool):
        return {"name": name, "boolValue": value}
    if isinstance(value, int):
        return {"name": name, "intValue": str(value)}
    return {"name": name, "value": value}


def _activity(rng: random.Random, conference: dict[str, Any], person: int) -> dict[str, Any]:
    start: datetime = conference["start"]
    join = start + timedelta(seconds=rng.randint(-300, 1800), milliseconds=rng.randint(0, 999))
    duration = rng.randint(0, 5400)
    leave = join + timedelta(seconds=duration)
    external = person % 7 == 0
    email = f"student{person}@{'gmail.example' if external else 'school.example'}"
    device = rng.choice(_DEVICES)
    country, region = rng.choice(_REGIONS)
    parameters = [
        _param("identifier", "" if person % 23 == 0 else email),
        _param("identifier_type", "phone_number" if device == "pstn_in" else "email_address"),
        _param("display_name", f"Student {person}"),
        _param("endpoint_id", f"boq_hlane_{rng.getrandbits(64):016x}"),
        _param("device_type", device),
        _param("is_external", external),
        _param("meeting_code", conference["code"]),
        _param("conference_id", conference["id"]),
        _param("calendar_event_id", conference["calendar"]),
        _param("organizer_email", conference["organizer"]),
        _param("duration_seconds", duration),
        _param("ip_address", f"203.0.113.{rng.randint(1, 254)}"),
        _param("location_country", country),
        _param("location_region", region),
        _param("product_type", "meet"),
        _param("network_transport_protocol", "udp"),
        _param("audio_recv_seconds", rng.randint(0, duration)),
        _param("audio_send_seconds", rng.randint(0, duration)),
        _param("video_recv_seconds", rng.randint(0, duration)),
        _param("video_send_seconds", rng.randint(0, duration)),
        _param("network_rtt_msec_mean", rng.randint(10, 300)),
        _param("network_recv_jitter_msec_mean", rng.randint(0, 40)),
        _param("video_send_fps_mean", rng.randint(5, 30)),
    ]
    rng.shuffle(parameters)
    return {
        "kind": "admin#reports#activity",
        "id": {
            "time": leave.strftime("%Y-%m-%dT%H:%M:%S.") + f"{leave.microsecond // 1000:03d}Z",
            "uniqueQualifier": str(rng.randint(-(2**63), 2**63 - 1)),
            "applicationName": "meet",
            "customerId": "C03kq9xzt",
        },
        "etag": f'"{rng.getrandbits(64):016x}"',
        "actor": {"email": email, "profileId": str(rng.getrandbits(70))},
        "events": [{"type": "call", "name": "call_ended", "parameters": parameters}],
    }


def generate(path: Path, events: int, seed: int = 7) -> None:
    """About 1,000 conferences of 100 endpoints over 200 recurring codes; 1% duplicated events."""
    rng = random.Random(seed)
    base = datetime(2026, 1, 12, 8, tzinfo=UTC)
    conferences = [
        {
            "id": f"conf{n:06d}{rng.getrandbits(96):024x}",
            "code": "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(10))
            if n < 200
            else None,
            "start": base + timedelta(hours=n % 96, minutes=rng.randint(0, 59)),
            "calendar": f"{rng.getrandbits(100):025x}",
            "organizer": f"teacher{n % 40}@school.example",
        }
        for n in range(max(1, events // 100))
    ]
    for n, conference in enumerate(conferences):
        if conference["code"] is None:
            conference["code"] = conferences[n % 200]["code"]
    with path.open("w", encoding="utf-8") as out:
        out.write('{"kind": "admin#reports#activities", "etag": "\\"x\\"", "items": [\n')
        previous = None
        for index in range(events):
            if previous is not None and rng.random() < 0.01:
                item = previous  # an overlapping poll delivered the same event twice
            else:
                conference = rng.choice(conferences)
                item = _activity(rng, conference, rng.randint(0, 3000))
            out.write(("" if index == 0 else ",\n") + json.dumps(item))
            previous = item
        out.write("\n]}\n")


_CHILD = r"""
import json, resource, sys, time
{imports}
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
{work}
elapsed = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"seconds": elapsed, "peak_kib": peak, "before_kib": before}}))
"""

_CONTENDERS = {
    "json.load": ("import json", "with open(sys.argv[1], 'rb') as f: data = json.load(f)"),
    "summarize": (
        "from functions.cli import cli",
        "import contextlib, io, os\n"
        "with open(os.devnull, 'w') as sink, contextlib.redirect_stdout(sink):\n"
        "    try:\n"
        "        cli(['summarize', '--json', sys.argv[1]], standalone_mode=False)\n"
        "    except SystemExit as exit:\n"
        "        assert not exit.code, exit.code\n",
    ),
}


def _run_child(imports: str, work: str, path: Path) -> dict[str, float]:
    code = _CHILD.format(imports=imports, work=work)
    root = Path(__file__).resolve().parent.parent
    completed = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
    )
    result: dict[str, float] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def measure(path: Path, repeat: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    for name, (imports, work) in _CONTENDERS.items():
        baseline = _run_child(imports, "pass", path)["peak_kib"]
        runs = [_run_child(imports, work, path) for _ in range(repeat)]
        best = min(runs, key=lambda r: r["seconds"])
        results[name] = {
            "seconds": best["seconds"],
            "peak_mib": (max(r["peak_kib"] for r in runs) - baseline) / 1024,
        }
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender; best time")
    parser.add_argument("--keep", action="store_true", help="keep the dump in benchmarks/data/")
    parser.add_argument("--json-out", type=Path, help="also write the numbers as JSON to this path")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as scratch:
        if args.keep:
            DATA_DIR.mkdir(exist_ok=True)
        path = (DATA_DIR if args.keep else Path(scratch)) / f"reports-{args.events}.json"
        if not path.exists():
            generate(path, args.events)
        size_mib = path.stat().st_size / 2**20
        print(f"dump: {args.events} events, {size_mib:.1f} MiB ({path.name})")
        results = measure(path, args.repeat)

    report = _report(results, args.events, size_mib)
    for name, result in report["contenders"].items():
        print(
            f"{name:>10}: {result['seconds']:6.2f} s  {result['events_per_second']:>9,.0f} ev/s"
            f"  peak {result['peak_mib']:7.1f} MiB ({result['peak_per_file_size']:.2f}x file)"
        )
    ratios = report["ratios"]
    print(
        f"ours/json.load: time {ratios['time']:.2f}x (target <= {TIME_TARGET}),"
        f" memory {ratios['memory']:.2f}x (<= {MEMORY_TARGET})"
    )
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def _report(results: dict[str, dict[str, float]], events: int, size_mib: float) -> dict[str, Any]:
    """The numbers, as printed and as written by ``--json-out``."""
    ours, theirs = results["summarize"], results["json.load"]
    time_ratio = ours["seconds"] / theirs["seconds"]
    memory_ratio = ours["peak_mib"] / theirs["peak_mib"]
    return {
        "benchmark": "summarize",
        "events": events,
        "file_mib": round(size_mib, 3),
        "contenders": {
            name: {
                "seconds": round(result["seconds"], 4),
                "events_per_second": round(events / result["seconds"]),
                "peak_mib": round(result["peak_mib"], 2),
                "peak_per_file_size": round(result["peak_mib"] / size_mib, 4),
            }
            for name, result in results.items()
        },
        "ratios": {"time": round(time_ratio, 4), "memory": round(memory_ratio, 4)},
        "targets": {"time": TIME_TARGET, "memory": MEMORY_TARGET},
        "met": time_ratio <= TIME_TARGET and memory_ratio <= MEMORY_TARGET,
    }


if __name__ == "__main__":
    main()
