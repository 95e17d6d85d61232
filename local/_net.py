"""Small helpers shared by the local stand-ins: loopback ports and readiness polling."""

from __future__ import annotations

import ctypes
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (the caller binds it next)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def http_get(url: str, *, timeout_s: float = 2.0) -> tuple[int, bytes]:
    """GET a loopback URL; (status, body), or (0, b"") when nothing answers."""
    if not url.startswith(f"http://{LOOPBACK}:"):
        raise ValueError(f"refusing to contact a non-loopback URL: {url}")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (OSError, urllib.error.URLError):
        return 0, b""


def wait_until(
    ready: Callable[[], bool],
    *,
    timeout_s: float,
    what: str,
    alive: Callable[[], str | None] | None = None,
    interval_s: float = 0.05,
) -> None:
    """Poll ``ready`` until true; fail fast when ``alive`` reports the process died."""
    deadline = time.monotonic() + timeout_s
    while True:
        if ready():
            return
        if alive is not None:
            death = alive()
            if death is not None:
                raise RuntimeError(f"{what} exited before it was ready: {death}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} was not ready within {timeout_s:.0f} s")
        time.sleep(interval_s)


def die_with_parent() -> None:
    """``preexec_fn`` for children: Linux sends them SIGTERM if the process that started them dies.

    The stack stops its children on SIGINT/SIGTERM itself; this covers SIGKILL and crashes, so no
    emulator is ever left orphaned.
    """
    if sys.platform != "linux":
        return
    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
