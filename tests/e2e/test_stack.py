"""`make stack`: everything on 127.0.0.1, ready quickly, settings written, no orphans after a signal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from local.stack import read_env_file
from tests.e2e.conftest import wait_for

DOCUMENTED_SETTINGS = {
    "GOOGLE_CLOUD_PROJECT",
    "TASKS_LOCATION",
    "TASKS_QUEUE",
    "COLLECT_URL",
    "TASKS_SERVICE_ACCOUNT",
    "REPORTS_CREDENTIALS",
    "WEBHOOK_SECRET",
    "FIRST_POLL_DELAY_S",
    "MAX_POLL_INTERVAL_S",
    "COLLECT_DEADLINE_S",
    "SETTLE_S",
    "ABSENT_GRACE_S",
    "WINDOW_BEFORE_S",
    "WINDOW_AFTER_S",
    "BACKFILL_LOOKBACK_S",
    "IP_ADDRESS_MODE",
    "LOCATION_MODE",
    "ERASURE_KEY",
    "API_URL",
    "API_PRINCIPALS",
    "FIRESTORE_EMULATOR_HOST",
    "CLOUD_TASKS_EMULATOR_HOST",
    "REPORTS_API_ENDPOINT",
    "OIDC_CERTS_URL",
}


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children's children included), from /proc."""
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            children = (
                (task / "children").read_text().split() if (task / "children").exists() else []
            )
            for child in map(int, children):
                if child not in found:
                    found.add(child)
                    frontier.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_stack_is_ready_fast_writes_its_settings_and_leaves_nothing_behind(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    env_file = tmp_path / "stack.env"
    environ = dict(os.environ, SETTLE_S="7", IP_ADDRESS_MODE="truncated")
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "local.stack", f"--env-file={env_file}"],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(env_file.exists, timeout_s=60, what="stack.env")
        ready_after = time.monotonic() - started
        settings = read_env_file(env_file)
        children = descendants(process.pid)
    finally:
        process.send_signal(stop_signal)
        output, _ = process.communicate(timeout=60)
    # How fast it starts is printed, not asserted: a loaded machine is slower, not wrong.
    print(f"stack ready after {ready_after:.1f} s")
    assert process.returncode == 0, output
    assert "stack stopped" in output
    assert set(settings) >= DOCUMENTED_SETTINGS
    assert {"INGEST_URL", "BACKFILL_URL", "TOKEN_MINT_URL"} <= set(settings)
    assert "operator@local.test" in settings["API_PRINCIPALS"].split(",")
    # Settings of the environment are honoured; everything points at loopback.
    assert (settings["SETTLE_S"], settings["IP_ADDRESS_MODE"]) == ("7", "truncated")
    for name in ("INGEST_URL", "API_URL", "BACKFILL_URL", "COLLECT_URL", "TOKEN_MINT_URL"):
        assert settings[name].startswith("http://127.0.0.1:")
    for name in ("FIRESTORE_EMULATOR_HOST", "CLOUD_TASKS_EMULATOR_HOST"):
        assert settings[name].startswith("127.0.0.1:")
    # Firestore (java), the Tasks emulator, the fake Reports API and four functions, at least.
    assert len(children) >= 7
    wait_for(lambda: not any(alive(pid) for pid in children), timeout_s=20, what="no orphans")
    assert not env_file.exists()


def test_an_invalid_setting_stops_the_stack_at_once_naming_it(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "local.stack", f"--env-file={tmp_path / 'stack.env'}"],
        env=dict(os.environ, SETTLE_S="soon", IP_ADDRESS_MODE="partial"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "SETTLE_S" in result.stderr
    assert "IP_ADDRESS_MODE" in result.stderr
    assert "Traceback" not in result.stderr
