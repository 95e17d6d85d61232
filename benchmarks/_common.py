"""Helpers shared by the benchmarks: settings for the local stand-ins, process CPU, the machine."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import urllib.request
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from functions.config import Settings

PROJECT = "bench-attendance"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # noqa: S105 (local stand-ins only)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def bench_settings(
    *, firestore_host: str, tasks_address: str, reports_url: str, queue: str = "bench"
) -> Settings:
    """Settings pointing every adapter at a stand-in on 127.0.0.1."""
    return Settings.from_env(bench_env(firestore_host, tasks_address, reports_url, queue))


def bench_env(
    firestore_host: str, tasks_address: str, reports_url: str, queue: str = "bench"
) -> dict[str, str]:
    return {
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "TASKS_LOCATION": "local",
        "TASKS_QUEUE": queue,
        "COLLECT_URL": "http://127.0.0.1:9/",
        "TASKS_SERVICE_ACCOUNT": "tasks@bench.iam.gserviceaccount.com",
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "FIRESTORE_EMULATOR_HOST": firestore_host,
        "CLOUD_TASKS_EMULATOR_HOST": tasks_address,
        "REPORTS_API_ENDPOINT": reports_url,
    }


def cpu_seconds(pid: int, *, children: bool = True) -> float:
    """User + system CPU of a process (and its reaped children), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # After the ")": state is field 3, so utime (14) .. cstime (17) are indexes 11..14.
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return (utime + stime + ((cutime + cstime) if children else 0)) / CLOCK_TICKS


def tree_pids(pid: int) -> list[int]:
    """The process and all its descendants (gunicorn forks workers under functions-framework)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack += children.get(current, [])
    return found


def tree_cpu_seconds(pid: int) -> float:
    total = 0.0
    for member in tree_pids(pid):
        try:
            total += cpu_seconds(member)
        except (OSError, ValueError, IndexError):
            continue  # exited meanwhile
    return total


def machine() -> dict[str, Any]:
    memory_kib = 0
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(memory_kib / 2**20, 1),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of ``values`` (``fraction`` in 0..1); 0 for an empty list."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


def load_average() -> list[float]:
    """The machine's 1, 5 and 15 minute load averages: how busy other processes kept it."""
    return [round(value, 2) for value in os.getloadavg()]


def median(values: Sequence[float]) -> float:
    """The median (mean of the middle two for an even count); 0 for an empty list."""
    return float(statistics.median(values)) if values else 0.0


def target(
    figure: str, value: float | None, limit: float, *, unit: str = "", digits: int = 2
) -> dict[str, Any]:
    """One measured figure beside its target (every target is an upper bound): met or not.

    ``value`` None means the figure could not be measured in this run (never met)."""
    return {
        "figure": figure,
        "value": None if value is None else round(value, digits),
        "target": f"<= {limit:g}{unit}",
        "limit": limit,
        "unit": unit,
        "met": value is not None and value <= limit,
        "digits": digits,
    }


class ReportsProcess:
    """The fake Reports API in a process of its own, driven through its ``/_fake/`` control
    routes: Google's Reports API does not share the poller's interpreter, and a fake on a thread
    of the benchmark would make the poller and the server take turns at one GIL (what the
    poller does while a page is being prepared would not overlap it, as it does in
    production)."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "local.fake_reports", "--port", "0"],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=merge_env({}),
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if "url=" not in line:
            self.stop()
            raise RuntimeError(f"the fake Reports API did not start: {line!r}")
        self.url = line.split("url=", 1)[1].strip()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            process.wait(timeout=10)

    def _call(self, method: str, path: str, body: object = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 (loopback)
            return json.loads(response.read())

    def add_activities(self, items: list[dict[str, Any]]) -> None:
        self._call("POST", "/_fake/activities", {"activities": items})

    def requests(self) -> list[dict[str, Any]]:
        answer: list[dict[str, Any]] = self._call("GET", "/_fake/requests")
        return answer

    def reset(self) -> None:
        self._call("POST", "/_fake/reset", {})


def merge_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    env["NO_GCE_CHECK"] = "True"
    env["CLOUDSDK_CORE_CHECK_GCE_METADATA"] = "false"
    return env
