"""Reading Reports dumps, streaming: activities come out one by one, the file is never held whole.

Accepted shapes (CONTRACT §2), told apart by the first value's first keys:

- one ``activities.list`` response ``{"items": [...], ...}`` (several concatenated ones too);
- a JSON array of such responses (pages);
- a JSON array of activity items;
- JSON Lines of activity items.

Every problem with the input raises :class:`InvalidInput` with one line naming the file.
"""

from __future__ import annotations

import gc
import io
import json
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import IO, Any, Final

import ijson

from functions.attendance import (
    Meeting,
    SessionCollector,
    meeting_to_json,
    meetings_by_conference,
)
from functions.errors import InvalidInput

__all__ = [
    "STDIN_NAME",
    "DumpShape",
    "Summary",
    "detect_shape",
    "iter_activities",
    "paused_gc",
    "read_dump",
    "summarize_dumps",
    "write_summary_json",
]

try:
    _IJSON: Any = ijson.get_backend("yajl2_c")
except (ImportError, ValueError):  # pragma: no cover - depends on the wheel installed
    _IJSON = ijson

STDIN_NAME: Final = "<stdin>"
_PREFIX_BYTES: Final = 64 * 1024
_READ_BYTES: Final = 256 * 1024
_LOCATE_LIMIT_BYTES: Final = 256 * 1024 * 1024
_BOM: Final = b"\xef\xbb\xbf"
_ACTIVITY_KEYS: Final = frozenset({"events", "id", "actor"})


class DumpShape(Enum):
    RESPONSE = "activities.list response"
    PAGES = "array of responses"
    ACTIVITIES = "array of activities"
    JSON_LINES = "JSON Lines of activities"


class _PrefixedReader:
    """A binary reader that first replays bytes already read for sniffing; counts what it served."""

    def __init__(self, prefix: bytes, rest: IO[bytes]) -> None:
        self._prefix = prefix
        self._rest = rest
        self.served = 0

    def read(self, size: int = -1) -> bytes:
        if size == 0:
            # ijson probes with read(0) to learn whether the source gives bytes or text.
            return b""
        if self._prefix:
            chunk, self._prefix = self._prefix, b""
        else:
            chunk = self._rest.read(size if size and size > 0 else _READ_BYTES)
        self.served += len(chunk)
        return chunk


def _read_prefix(stream: IO[bytes]) -> bytes:
    prefix = stream.read(_PREFIX_BYTES)
    # A prefix of whitespace only tells nothing; keep reading until a value starts or EOF.
    while prefix and not prefix.lstrip(b" \t\r\n").removeprefix(_BOM).lstrip(b" \t\r\n"):
        more = stream.read(_PREFIX_BYTES)
        if not more:
            break
        prefix += more
    return prefix


_SCALAR_NAMES: Final = {
    ord('"'): "a JSON string",
    ord("t"): "a JSON boolean",
    ord("f"): "a JSON boolean",
    ord("n"): "JSON null",
}


def _value_kind(event: str) -> str:
    return {
        "start_array": "arrays",
        "string": "strings",
        "number": "numbers",
        "boolean": "booleans",
        "null": "nulls",
    }.get(event, event)


def detect_shape(prefix: bytes) -> DumpShape | str:
    """The dump's shape from its first bytes, or a one-line reason it is none of them."""
    text = prefix.removeprefix(_BOM).lstrip(b" \t\r\n")
    if not text:
        return "empty input (no JSON value)"
    first = text[0]
    if first == ord("{"):
        return _object_shape(text, "", DumpShape.RESPONSE, DumpShape.JSON_LINES)
    if first == ord("["):
        return _object_shape(text, "item", DumpShape.PAGES, DumpShape.ACTIVITIES)
    if first in _SCALAR_NAMES:
        return f"unexpected shape: {_SCALAR_NAMES[first]}"
    if first == ord("-") or ord("0") <= first <= ord("9"):
        return "unexpected shape: a JSON number"
    return f"not JSON at byte {len(prefix) - len(text)} (starts with {text[:12]!r})"


def _object_shape(
    text: bytes, path: str, response: DumpShape, activities: DumpShape
) -> DumpShape | str:
    """Decide between responses and activities from the first object's top-level keys."""
    kind_path = f"{path}.kind" if path else "kind"
    try:
        for prefix, event, value in _IJSON.parse(io.BytesIO(text), multiple_values=True):
            if prefix == path:
                if event == "map_key":
                    if value == "items":
                        return response
                    if value in _ACTIVITY_KEYS:
                        return activities
                elif event == "end_map":
                    # Neither items nor events. Alone, it is an empty page (the API leaves
                    # "items" out when there are none); in an array, either reading is harmless.
                    return response if not path else activities
                elif event != "start_map":
                    return f"unexpected shape: an array of {_value_kind(event)}"
            elif prefix == kind_path and event == "string":
                if value == "admin#reports#activities":
                    return response
                if value == "admin#reports#activity":
                    return activities
            elif path and prefix == "" and event == "end_array":
                return activities
    except ijson.JSONError:
        # A truncated prefix, or bad JSON: the streaming parse reports the latter with its place.
        pass
    return response if not path else activities


def _locate(stream: IO[bytes], multiple: bool) -> str | None:
    """Exact line and column of a JSON error, re-read with the stdlib, for seekable files only."""
    try:
        if not stream.seekable() or os.fstat(stream.fileno()).st_size > _LOCATE_LIMIT_BYTES:
            return None
        stream.seek(0)
        text = stream.read().decode("utf-8-sig")
    except (OSError, ValueError, io.UnsupportedOperation):
        return None
    decoder = json.JSONDecoder()
    position = 0
    try:
        while True:
            while position < len(text) and text[position] in " \t\r\n":
                position += 1
            if position >= len(text):
                return None
            _, position = decoder.raw_decode(text, position)
            if not multiple:
                if text[position:].strip():
                    raise json.JSONDecodeError("Extra data", text, position)
                return None
    except json.JSONDecodeError as error:
        return f"line {error.lineno}, column {error.colno}: {error.msg}"


_PATHS: Final = {
    DumpShape.RESPONSE: ("items.item", True),
    DumpShape.PAGES: ("item.items.item", False),
    DumpShape.ACTIVITIES: ("item", False),
    DumpShape.JSON_LINES: ("", True),
}


def iter_activities(stream: IO[bytes], *, name: str) -> Iterator[object]:
    """Every activity item of one dump, parsed one at a time (floats as float, not Decimal)."""
    try:
        prefix = _read_prefix(stream)
    except OSError as error:
        raise InvalidInput(f"{name}: cannot read ({error.strerror or error})") from None
    shape = detect_shape(prefix)
    if isinstance(shape, str):
        raise InvalidInput(f"{name}: {shape}")
    path, multiple = _PATHS[shape]
    reader = _PrefixedReader(prefix.removeprefix(_BOM), stream)
    items = _IJSON.items(
        reader, path, use_float=True, multiple_values=multiple, buf_size=_READ_BYTES
    )
    try:
        yield from items
    except ijson.JSONError as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else "invalid JSON"
        located = _locate(stream, multiple)
        where = f"at {located}" if located else f"in its first {reader.served} bytes ({detail})"
        raise InvalidInput(f"{name}: not JSON {where}") from None
    except OSError as error:
        raise InvalidInput(f"{name}: cannot read ({error.strerror or error})") from None


def read_dump(path: str, *, stdin: IO[bytes] | None = None) -> Iterator[object]:
    """The activities of the file at ``path`` (``-``: standard input, as bytes)."""
    if path == "-":
        yield from iter_activities(stdin or sys.stdin.buffer, name=STDIN_NAME)
        return
    try:
        stream = open(path, "rb")  # noqa: SIM115 - the with below closes it
    except OSError as error:
        raise InvalidInput(f"{path}: {error.strerror or error}") from None
    with stream:
        yield from iter_activities(stream, name=path)


@dataclass(slots=True)
class Summary:
    """The result of ``summarize`` (CONTRACT §2)."""

    meetings: list[Meeting]
    events_read: int
    events_used: int
    events_skipped: int
    warnings: list[str] = field(default_factory=list)

    def to_json(self, *, with_meetings: bool = True) -> dict[str, Any]:
        return {
            "meetings": [meeting_to_json(m) for m in self.meetings] if with_meetings else [],
            "events_read": self.events_read,
            "events_used": self.events_used,
            "events_skipped": self.events_skipped,
            "warnings": self.warnings,
        }


def _object_head(fields: dict[str, Any]) -> str:
    """A compact JSON object without its closing brace, ready for one more key."""
    return json.dumps(fields)[:-1]


def write_summary_json(summary: Summary, out: IO[str]) -> None:
    """The ``--json`` output, written meeting by meeting.

    Equal, as JSON, to ``json.dumps(summary.to_json())``, laid out one session per line: indenting
    with the stdlib would use its pure-Python encoder, several times slower on large dumps.
    """
    out.write('{"meetings": [')
    for meeting_index, meeting in enumerate(summary.meetings):
        rendered = meeting_to_json(meeting)
        participants = rendered.pop("participants")
        out.write("," if meeting_index else "")
        out.write(f'\n {_object_head(rendered)}, "participants": [')
        for participant_index, participant in enumerate(participants):
            sessions = participant.pop("sessions")
            out.write("," if participant_index else "")
            out.write(f'\n  {_object_head(participant)}, "sessions": [')
            out.write(",".join(f"\n   {json.dumps(session)}" for session in sessions))
            out.write("\n  ]}")
        out.write("\n ]}")
    rest = summary.to_json(with_meetings=False)
    del rest["meetings"]
    out.write(f"\n], {json.dumps(rest)[1:]}\n")


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector for a summarize run.

    Parsing allocates millions of short-lived containers while 100k sessions stay alive, so the
    collector keeps rescanning the live heap (about 40% of the run). What summarize builds holds
    no reference cycles: reference counting alone frees it.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def summarize_dumps(paths: Iterable[str], *, stdin: IO[bytes] | None = None) -> Summary:
    """Attendance from Reports dumps, one meeting per conference id, sorted by actual start.

    ``events_read`` counts every event of every activity read (any name, duplicates included);
    ``events_used`` the distinct sessions; ``events_skipped`` the unusable ``call_ended`` events.
    """
    collector = SessionCollector()
    for path in paths:
        collector.add_activities(read_dump(path, stdin=stdin))
    return Summary(
        meetings=meetings_by_conference(collector.sessions()),
        events_read=collector.events_read,
        events_used=collector.events_used,
        events_skipped=collector.events_skipped,
        warnings=collector.warnings(),
    )
