"""The HTML report in a real browser: Debian's headless chromium renders the page of a known
meeting (hostile display names included) to a screenshot and to its DOM.

The screenshot must not be blank (decoded with ``zlib`` from the standard library: many colours,
many pixels that are not white), and the DOM must hold exactly one ``session-bar`` per stored
session and none of the elements the names try to inject. Skipped when chromium is missing,
unless ``CI`` is set (``.ci/run`` installs it): there, a missing browser fails.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from functions.report_page import read_report, render_report
from tests.unit.test_report_page import HOSTILE, Page, stored_sessions
from tests.unit.test_timeline import Known, known_meeting

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)
WIDTH, HEIGHT = 1280, 1000

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def chromium() -> str:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium); CI fails instead")
    return CHROMIUM


def run_chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, timeout=120, check=False)


@pytest.fixture
def rendered(tmp_path: Path) -> tuple[Known, Path]:
    known = known_meeting(hostile=True)
    page = tmp_path / "report.html"
    page.write_text(render_report(read_report(known.store, known.meeting)), encoding="utf-8")
    return known, page


# ------------------------------------------------------------------------------------------------
# PNG, decoded with the standard library


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def decode_png(data: bytes) -> tuple[int, int, list[bytes], int]:
    """(width, height, rows of unfiltered bytes, bytes per pixel) of an 8-bit RGB(A) PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    offset, idat = 8, []
    width = height = channels = 0
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        offset += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert (depth, interlace) == (8, 0), (depth, interlace)
            channels = {2: 3, 6: 4}[colour]
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    raw = zlib.decompress(b"".join(idat))
    stride = width * channels
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        method, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if method == 1:  # Sub (0, None, needs nothing)
            for i in range(channels, stride):
                line[i] = (line[i] + line[i - channels]) & 0xFF
        elif method == 2:  # Up
            line = bytearray((x + p) & 0xFF for x, p in zip(line, previous, strict=True))
        elif method == 3:  # Average
            for i in range(stride):
                left = line[i - channels] if i >= channels else 0
                line[i] = (line[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif method == 4:  # Paeth
            for i in range(stride):
                left = line[i - channels] if i >= channels else 0
                corner = previous[i - channels] if i >= channels else 0
                line[i] = (line[i] + _paeth(left, previous[i], corner)) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, height, rows, channels


def test_decode_png_reads_what_zlib_wrote() -> None:
    """The decoder itself, on a PNG built here: 2 by 2 RGB, with Sub and Up filters."""
    pixels = [b"\xff\x00\x00\x00\xff\x00", b"\x00\x00\xff\xff\xff\xff"]
    sub = bytes([1, 0xFF, 0, 0, (0 - 0xFF) & 0xFF, 0xFF, 0])
    up = bytes([2, *((a - b) & 0xFF for a, b in zip(pixels[1], pixels[0], strict=True))])
    body = zlib.compress(sub + up)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", body)
        + chunk(b"IEND", b"")
    )
    assert decode_png(png) == (2, 2, pixels, 3)


# ------------------------------------------------------------------------------------------------
# The browser


def test_the_screenshot_is_not_blank(
    chromium: str, rendered: tuple[Known, Path], tmp_path: Path
) -> None:
    _, page = rendered
    shot = tmp_path / "report.png"
    done = run_chromium(
        chromium,
        tmp_path / "profile-shot",
        f"--screenshot={shot}",
        f"--window-size={WIDTH},{HEIGHT}",
        page.as_uri(),
    )
    assert shot.exists(), done.stderr.decode(errors="replace")[-2000:]
    width, height, rows, channels = decode_png(shot.read_bytes())
    assert (width, height) == (WIDTH, HEIGHT)
    colours: set[bytes] = set()
    not_white = 0
    for row in rows:
        for x in range(0, len(row), channels):
            pixel = row[x : x + 3]
            colours.add(pixel)
            not_white += pixel != b"\xff\xff\xff"
    # Text, the bars' blue, the credited green, the grey of the window and of tables.
    assert len(colours) > 20, len(colours)
    assert not_white > width * height // 50, not_white
    # The session bars' blue (#0969da) is drawn somewhere.
    assert b"\x09\x69\xda" in colours


def test_the_dom_has_one_session_bar_per_stored_session(
    chromium: str, rendered: tuple[Known, Path], tmp_path: Path
) -> None:
    known, page = rendered
    done = run_chromium(chromium, tmp_path / "profile-dom", "--dump-dom", page.as_uri())
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    dom = Page(done.stdout.decode("utf-8"))
    assert len(dom.with_class("session-bar")) == stored_sessions(known) == 6
    # The hostile names stayed text: no element they try to inject exists.
    assert not [tag for tag, _ in dom.tags if tag in ("script", "img")]
    assert not any("onerror" in attrs for _, attrs in dom.tags)
    for name in HOSTILE:
        assert name in dom.sections["Participants"]
