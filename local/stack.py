"""The whole system on 127.0.0.1: `make stack` (README "The local stack").

Starts Google's Firestore emulator, our Cloud Tasks emulator, the fake Reports API, the fake Meet
REST + Workspace Events + Directory API and each function (functions-framework), in parallel,
honours the settings of docs/settings.md found in the environment, writes ``.local/stack.env`` once
everything answers, and stops every child on SIGINT/SIGTERM. Children also receive SIGTERM if
this process dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

from functions.config import Role, Settings
from functions.errors import ConfigError
from local._net import LOOPBACK, die_with_parent, free_port, http_get, wait_until
from local.firestore_emulator import EmulatorUnavailable, FirestoreEmulator, no_metadata_env
from local.tasks_emulator import TOKEN_MINT_PATH

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ENV_FILE = ROOT / ".local" / "stack.env"
FUNCTIONS: tuple[Role, ...] = ("ingest", "api", "collect", "backfill", "meet_events")

#: The identity an operator's token names; the stack's API_PRINCIPALS include it.
OPERATOR = "operator@local.test"
#: The identity in the stack's Pub/Sub push tokens (README "The local stack").
PUSH_SERVICE_ACCOUNT = "pubsub-push@local.test"
#: The organizer the stack runs with unless ORGANIZERS says otherwise (the demo's teacher).
LOCAL_ORGANIZER = "organizer@school.test"

#: What the stack runs with when the environment does not say otherwise.
LOCAL_DEFAULTS = {
    "GOOGLE_CLOUD_PROJECT": "demo-attendance",
    "TASKS_LOCATION": "local",
    "TASKS_QUEUE": "attendance-collect",
    "TASKS_SERVICE_ACCOUNT": "collect-tasks@demo-attendance.iam.gserviceaccount.com",
    "SCHEDULER_SERVICE_ACCOUNT": "backfill-scheduler@demo-attendance.iam.gserviceaccount.com",
    "API_PRINCIPALS": OPERATOR,
    "ORGANIZERS": LOCAL_ORGANIZER,
    "PUBSUB_PUSH_SERVICE_ACCOUNT": PUSH_SERVICE_ACCOUNT,
    "WORKSPACE_EVENTS_TOPIC": "projects/demo-attendance/topics/workspace-events",
}

#: Settings that belong to the stack itself: whatever the environment says, the stand-ins win.
STAND_IN_SETTINGS = (
    "FIRESTORE_EMULATOR_HOST",
    "CLOUD_TASKS_EMULATOR_HOST",
    "REPORTS_API_ENDPOINT",
    "OIDC_CERTS_URL",
    "COLLECT_URL",
    "BACKFILL_URL",
    "API_URL",
    "MEET_EVENTS_URL",
    "MEET_API_ENDPOINT",
    "WORKSPACE_EVENTS_API_ENDPOINT",
    "DIRECTORY_API_ENDPOINT",
    "CALENDAR_API_ENDPOINT",
    "CALENDAR_NOTIFICATIONS_URL",
)


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def new_erasure_key() -> str:
    return secrets.token_urlsafe(32)


def stack_settings(source: Mapping[str, str]) -> dict[str, str]:
    """Every setting the stack's functions run with, each function's own checked by its own
    rules (so a setting only one function reads is still validated); ConfigError names every
    problem."""
    env: dict[str, str] = {}
    problems: list[str] = []
    for role in FUNCTIONS:
        try:
            env.update(Settings.from_env(source, role=role).to_env())
        except ConfigError as error:
            problems.extend(p for p in error.problems if p not in problems)
    if problems:
        raise ConfigError(problems)
    return env


@dataclass
class Child:
    name: str
    argv: list[str]
    ready: Callable[[], bool]
    process: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = field(default=None, repr=False)

    def start(self, env: Mapping[str, str]) -> None:
        self.log = tempfile.TemporaryFile(prefix=f"stack-{self.name}-")  # noqa: SIM115
        self.process = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )

    def output(self) -> str:
        """Everything the child wrote so far. Read with pread: the child shares the file's
        offset, and moving it would make its next lines overwrite earlier ones."""
        if self.log is None:
            return ""
        descriptor = self.log.fileno()
        return os.pread(descriptor, os.fstat(descriptor).st_size, 0).decode(errors="replace")

    def death_note(self) -> str | None:
        if self.process is None or self.process.poll() is None:
            return None
        tail = ""
        if self.log is not None:
            self.log.seek(0)
            lines = self.log.read().decode(errors="replace").strip().splitlines()
            tail = " | ".join(lines[-5:])
        return f"exit code {self.process.returncode}; output: {tail}"

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            # The whole process group: gunicorn forks workers under functions-framework.
            _signal_group(process, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait(timeout=10)
        elif process is not None:
            _signal_group(process, signal.SIGKILL)  # stragglers of a child that already exited
        if self.log is not None:
            self.log.close()
            self.log = None


def answers(url: str, *, status: int | None = None) -> Callable[[], bool]:
    """A readiness check: the URL answers (with ``status``, when given)."""

    def check() -> bool:
        got = http_get(url)[0]
        return got != 0 if status is None else got == status

    return check


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


class Stack:
    """Every stand-in and function; ``env`` holds what ``.local/stack.env`` exports."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = dict(os.environ if environ is None else environ)
        self.env: dict[str, str] = {}
        self.firestore: FirestoreEmulator | None = None
        self.children: list[Child] = []

    def plan(self) -> dict[str, str]:
        """Choose ports and settings; raises ConfigError naming every bad setting."""
        source = {**LOCAL_DEFAULTS, **self._environ}
        source.setdefault("WEBHOOK_SECRET", new_webhook_secret())
        source.setdefault("ERASURE_KEY", new_erasure_key())
        principals = [p.strip() for p in source["API_PRINCIPALS"].split(",") if p.strip()]
        if OPERATOR not in principals:
            source["API_PRINCIPALS"] = ",".join([*principals, OPERATOR])
        tasks_port, tasks_http_port, reports_port = free_port(), free_port(), free_port()
        workspace_port, calendar_port = free_port(), free_port()
        function_ports = {name: free_port() for name in FUNCTIONS}
        self.firestore = FirestoreEmulator(project=source["GOOGLE_CLOUD_PROJECT"])
        control_url = f"http://{LOOPBACK}:{tasks_http_port}"
        stand_ins = {
            "FIRESTORE_EMULATOR_HOST": self.firestore.host,
            "CLOUD_TASKS_EMULATOR_HOST": f"{LOOPBACK}:{tasks_port}",
            "REPORTS_API_ENDPOINT": f"http://{LOOPBACK}:{reports_port}",
            "OIDC_CERTS_URL": f"{control_url}/oauth2/v1/certs",
            "COLLECT_URL": f"http://{LOOPBACK}:{function_ports['collect']}/",
            "BACKFILL_URL": f"http://{LOOPBACK}:{function_ports['backfill']}/",
            "API_URL": f"http://{LOOPBACK}:{function_ports['api']}/",
            "MEET_EVENTS_URL": f"http://{LOOPBACK}:{function_ports['meet_events']}/",
            # One fake serves the Meet REST, Workspace Events and Directory APIs.
            "MEET_API_ENDPOINT": f"http://{LOOPBACK}:{workspace_port}/",
            "WORKSPACE_EVENTS_API_ENDPOINT": f"http://{LOOPBACK}:{workspace_port}/",
            "DIRECTORY_API_ENDPOINT": f"http://{LOOPBACK}:{workspace_port}/",
            "CALENDAR_API_ENDPOINT": f"http://{LOOPBACK}:{calendar_port}/calendar/v3/",
            "CALENDAR_NOTIFICATIONS_URL": (
                f"http://{LOOPBACK}:{function_ports['ingest']}/calendar/notifications"
            ),
        }
        env = stack_settings({**source, **stand_ins})
        settings = Settings.from_env(env, role="collect")
        env["INGEST_URL"] = f"http://{LOOPBACK}:{function_ports['ingest']}/"
        env["TASKS_EMULATOR_CONTROL_URL"] = control_url
        env["TOKEN_MINT_URL"] = control_url + TOKEN_MINT_PATH
        self.env = env

        python = sys.executable
        self.children = [
            Child(
                "tasks-emulator",
                [
                    python,
                    "-m",
                    "local.tasks_emulator",
                    f"--port={tasks_port}",
                    f"--http-port={tasks_http_port}",
                    f"--queue={settings.queue_path}",
                ],
                ready=answers(env["OIDC_CERTS_URL"], status=200),
            ),
            Child(
                "fake-reports",
                [python, "-m", "local.fake_reports", f"--port={reports_port}"],
                ready=answers(f"{env['REPORTS_API_ENDPOINT']}/_fake/requests", status=200),
            ),
            Child(
                "fake-workspace",
                [
                    python,
                    "-m",
                    "local.fake_workspace",
                    f"--port={workspace_port}",
                    f"--push-url={env['MEET_EVENTS_URL']}",
                    f"--token-mint-url={env['TOKEN_MINT_URL']}",
                    f"--push-email={env['PUBSUB_PUSH_SERVICE_ACCOUNT']}",
                    f"--project={env['GOOGLE_CLOUD_PROJECT']}",
                ],
                ready=answers(f"{env['MEET_API_ENDPOINT']}_fake/meet/subscriptions", status=200),
            ),
            Child(
                "fake-calendar",
                [python, "-m", "local.fake_calendar", f"--port={calendar_port}"],
                ready=answers(
                    f"http://{LOOPBACK}:{calendar_port}/_fake/calendar/channels", status=200
                ),
            ),
        ]
        for name, port in function_ports.items():
            url = f"http://{LOOPBACK}:{port}/"
            self.children.append(
                Child(
                    name,
                    [
                        python,
                        "-m",
                        "functions_framework",
                        f"--target={name}",
                        "--source=main.py",
                        f"--host={LOOPBACK}",
                        f"--port={port}",
                    ],
                    ready=answers(url),
                )
            )
        return env

    def start(self, *, timeout_s: float = 60.0) -> None:
        if not self.env:
            self.plan()
        child_env = no_metadata_env({**self._environ, **self.env})
        child_env["PYTHONPATH"] = str(ROOT)
        try:
            for child in self.children:
                child.start(child_env)
            assert self.firestore is not None
            self.firestore.start(timeout_s=timeout_s)
            # A new database: its (no) meetings indexed, declarations read the lookup documents.
            subprocess.run(
                [sys.executable, "-m", "functions", "index-lookups"],
                env=child_env,
                cwd=ROOT,
                check=True,
                capture_output=True,
                timeout=timeout_s,
            )
            for child in self.children:
                wait_until(
                    child.ready, timeout_s=timeout_s, what=child.name, alive=child.death_note
                )
        except BaseException:
            self.stop()
            raise

    def output(self) -> dict[str, str]:
        """Each child's output (its log lines) so far, by child."""
        return {child.name: child.output() for child in self.children}

    def first_death(self) -> str | None:
        for child in self.children:
            note = child.death_note()
            if note is not None:
                return f"{child.name} {note}"
        return None

    def stop(self) -> None:
        for child in self.children:
            child.stop()
        if self.firestore is not None:
            self.firestore.stop()

    def pids(self) -> list[int]:
        found = [c.process.pid for c in self.children if c.process is not None]
        if self.firestore is not None and self.firestore.pid is not None:
            found.append(self.firestore.pid)
        return found


def write_env_file(path: Path, env: Mapping[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"export {name}={shlex.quote(value)}\n" for name, value in sorted(env.items())]
    temporary = path.with_suffix(".tmp")
    temporary.write_text("".join(lines))
    temporary.chmod(0o600)  # it holds the webhook secret
    temporary.replace(path)


def read_env_file(path: Path) -> dict[str, str]:
    """The variables of a stack.env file (the inverse of ``write_env_file``)."""
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, value = words[1].split("=", 1)
            env[name] = value
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the whole system on 127.0.0.1.")
    parser.add_argument("--env-file", type=Path, default=DEFAULT_ENV_FILE)
    args = parser.parse_args(argv)

    stop_requested = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    started = time.monotonic()
    stack = Stack()
    try:
        env = stack.plan()
        stack.start()
    except ConfigError as error:
        print(f"stack: {error.message}", file=sys.stderr)
        return 2
    except (EmulatorUnavailable, RuntimeError, TimeoutError) as error:
        print(f"stack: {error}", file=sys.stderr)
        return 1
    try:
        write_env_file(args.env_file, env)
        elapsed = time.monotonic() - started
        print(f"stack ready in {elapsed:.1f} s; settings in {args.env_file}", flush=True)
        for name in (
            "INGEST_URL",
            "API_URL",
            "COLLECT_URL",
            "BACKFILL_URL",
            "TOKEN_MINT_URL",
            "MEET_EVENTS_URL",
            "REPORTS_API_ENDPOINT",
            "MEET_API_ENDPOINT",
        ):
            print(f"  {name}={env[name]}", flush=True)
        print(f"  FIRESTORE_EMULATOR_HOST={env['FIRESTORE_EMULATOR_HOST']}", flush=True)
        print(f"  CLOUD_TASKS_EMULATOR_HOST={env['CLOUD_TASKS_EMULATOR_HOST']}", flush=True)
        print("Ctrl-C stops everything.", flush=True)
        death: str | None = None
        while not stop_requested.wait(0.5):
            death = stack.first_death()
            if death is not None:
                print(f"stack: {death}; stopping", file=sys.stderr, flush=True)
                break
        return 1 if death else 0
    finally:
        stack.stop()
        args.env_file.unlink(missing_ok=True)
        print("stack stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
