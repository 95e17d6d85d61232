"""Google's Firestore emulator, started with java directly from the gcloud SDK.

``java -jar`` does not work with this jar and ``gcloud emulators firestore start`` adds a Python
wrapper and a second process; we run the main class ourselves so the PID we hold is the server.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType
from typing import IO

from local._net import LOOPBACK, die_with_parent, free_port, http_get, wait_until

MAIN_CLASS = "com.google.cloud.datastore.emulator.firestore.CloudFirestore"
JAR_IN_SDK = Path("platform/cloud-firestore-emulator/cloud-firestore-emulator.jar")
INSTALL_HINT = (
    "install a Java runtime (e.g. `apt-get install default-jre-headless`) and the Google Cloud SDK "
    "with its Firestore emulator (`gcloud components install cloud-firestore-emulator`, or the "
    "Debian package google-cloud-cli-firestore-emulator)"
)


class EmulatorUnavailable(RuntimeError):
    """java or the emulator jar is missing; the message says what to install."""


def no_metadata_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment in which neither google-auth nor gcloud probes a metadata server."""
    env = dict(os.environ if base is None else base)
    env["NO_GCE_CHECK"] = "True"
    env["CLOUDSDK_CORE_CHECK_GCE_METADATA"] = "false"
    return env


def find_jar() -> Path:
    """The emulator jar of the installed gcloud SDK (``FIRESTORE_EMULATOR_JAR`` overrides)."""
    override = os.environ.get("FIRESTORE_EMULATOR_JAR")
    if override:
        if Path(override).is_file():
            return Path(override)
        raise EmulatorUnavailable(
            f"FIRESTORE_EMULATOR_JAR={override} does not exist; {INSTALL_HINT}"
        )
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        raise EmulatorUnavailable(f"gcloud is not on PATH; {INSTALL_HINT}")
    try:
        result = subprocess.run(
            [gcloud, "info", "--format=value(installation.sdk_root)"],
            capture_output=True,
            text=True,
            timeout=60,
            env=no_metadata_env(),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise EmulatorUnavailable(f"`gcloud info` failed ({error}); {INSTALL_HINT}") from error
    sdk_root = result.stdout.strip()
    if result.returncode != 0 or not sdk_root:
        raise EmulatorUnavailable(f"`gcloud info` did not name the SDK root; {INSTALL_HINT}")
    jar = Path(sdk_root) / JAR_IN_SDK
    if not jar.is_file():
        raise EmulatorUnavailable(f"{jar} is missing; {INSTALL_HINT}")
    return jar


def find_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise EmulatorUnavailable(f"java is not on PATH; {INSTALL_HINT}")
    return java


class FirestoreEmulator:
    """One emulator process on 127.0.0.1; ``host`` is what ``FIRESTORE_EMULATOR_HOST`` holds."""

    def __init__(self, *, port: int = 0, project: str = "demo-attendance") -> None:
        self.port = port or free_port()
        self.project = project
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def host(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self, *, timeout_s: float = 60.0) -> None:
        java = find_java()
        jar = find_jar()
        self._log = tempfile.TemporaryFile(prefix="firestore-emulator-")  # noqa: SIM115
        argv = [
            java,
            "-Duser.language=en",
            "-cp",
            str(jar),
            MAIN_CLASS,
            "start",
            f"--host={LOOPBACK}",
            f"--port={self.port}",
            f"--project_id={self.project}",
        ]
        self._process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=no_metadata_env(),
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        try:
            wait_until(
                self._answers_ok,
                timeout_s=timeout_s,
                what="Firestore emulator",
                alive=self._death_note,
            )
        except BaseException:
            self.stop()
            raise

    def _answers_ok(self) -> bool:
        status, body = http_get(f"http://{self.host}/", timeout_s=1.0)
        return status == 200 and body.strip() == b"Ok"

    def _death_note(self) -> str | None:
        if self._process is None or self._process.poll() is None:
            return None
        return f"exit code {self._process.returncode}; output: {self._log_tail()}"

    def _log_tail(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        lines = self._log.read().decode(errors="replace").strip().splitlines()
        return " | ".join(lines[-5:])

    def clear(self, *, patience_s: float = 90.0) -> None:
        """Delete every document of the project (the emulator's own reset endpoint).

        The emulator refuses (409 "Transaction lock timeout") while a transaction holds a lock,
        and keeps the lock of a transaction nobody ends for about 60 s; so a 409 is retried for
        up to ``patience_s``.
        """
        url = (
            f"http://{self.host}/emulator/v1/projects/{self.project}/databases/(default)/documents"
        )
        deadline = time.monotonic() + patience_s
        while True:
            request = urllib.request.Request(url, method="DELETE")
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    if response.status != 200:
                        raise RuntimeError(
                            f"clearing the Firestore emulator answered {response.status}"
                        )
                    return
            except urllib.error.HTTPError as error:
                if error.code != 409 or time.monotonic() > deadline:
                    raise
            time.sleep(0.5)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> FirestoreEmulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run Google's Firestore emulator on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--project", default="demo-attendance")
    args = parser.parse_args(argv)
    emulator = FirestoreEmulator(port=args.port, project=args.project)
    try:
        emulator.start()
    except EmulatorUnavailable as error:
        print(f"firestore-emulator: {error}", file=sys.stderr)
        return 1
    print(f"firestore-emulator ready host={emulator.host}", flush=True)
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        while not stopping and emulator.pid is not None:
            signal.pause()
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
