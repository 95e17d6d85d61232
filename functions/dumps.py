"""Reading Reports dumps, streaming: activities come out one by one, the file is never held whole.

Accepted shapes (docs/cli.md), told apart by the first value's first keys: one ``activities.list``
response ``{"items": [...], ...}`` (several concatenated ones too); a JSON array of such responses
(pages); a JSON array of activity items; JSON Lines of activity items (one object with ``id`` and
``events`` is JSON Lines of one line).

A page (docs/cli.md "summarize") is an object with ``items`` (an array, or null) or with ``"kind":
"admin#reports#activities"``. Where a file holds pages (the values of a response file, the elements
of an array of pages, the first line of JSON Lines), each must be a page or an activity item (an
object with ``id`` and ``events``), or the file is refused: a wrong file never reads as "no
attendance". Decided here: the elements of an array of activities and the lines of JSON Lines after
the first are not checked (what is not an activity there is an item without events, or, not an
object, an item ignored with a warning), so that one odd line of a log never hides the rest.

Every problem with the input raises :class:`InvalidInput` with one line naming the file, however
deep, long or odd the input. The shape is sniffed with the stdlib's decoder: ijson's C backend
crashed the process on integers of over 4,300 digits.
"""

from __future__ import annotations

import codecs
import gc
import io
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from json.encoder import encode_basestring_ascii as _encode
from typing import IO, Any, Final

from functions.attendance import (
    Meeting,
    Participant,
    meeting_fields_to_json,
    meeting_to_json,
    meetings_by_conference,
)
from functions.errors import InvalidInput
from functions.reports_events import SessionCollector
from functions.timestamps import EPOCH, format_timestamp

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

STDIN_NAME: Final = "<stdin>"
_PREFIX_BYTES: Final = 64 * 1024
_READ_BYTES: Final = 256 * 1024
_LOCATE_LIMIT_BYTES: Final = 256 * 1024 * 1024
_BOM: Final = b"\xef\xbb\xbf"
_ACTIVITY_KEYS: Final = frozenset({"events", "id", "actor"})
_PAGE_KIND: Final = "admin#reports#activities"
_ACTIVITY_KIND: Final = "admin#reports#activity"


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


#: What a JSON value is, by its first character.
_KINDS: Final = {
    "{": "a JSON object",
    "[": "a JSON array",
    '"': "a JSON string",
    "t": "a JSON boolean",
    "f": "a JSON boolean",
    "n": "JSON null",
    **dict.fromkeys("-0123456789", "a JSON number"),
}
_ELEMENTS: Final = {"[": "arrays", '"': "strings", "t": "booleans", "f": "booleans", "n": "nulls"}


def detect_shape(prefix: bytes) -> DumpShape | str:
    """The dump's shape from its first bytes, or a one-line reason it is none of them."""
    text = prefix.removeprefix(_BOM).lstrip(b" \t\r\n")
    if not text:
        return "empty input (no JSON value)"
    first = text[0]
    if first == ord("{"):
        return _object_shape(text.decode("utf-8", "ignore"), 0, DumpShape.RESPONSE)
    if first == ord("["):
        sniff = text.decode("utf-8", "ignore")
        at = _skip(sniff, 1)
        char = sniff[at : at + 1]
        if char == "{":
            return _object_shape(sniff, at, DumpShape.PAGES)
        if char in _ELEMENTS or (char and char in "-0123456789"):
            return f"unexpected shape: an array of {_ELEMENTS.get(char, 'numbers')}"
        return DumpShape.ACTIVITIES  # empty, truncated or not JSON: the reader says which
    if chr(first) in _KINDS:
        return f"unexpected shape: {_KINDS[chr(first)]}"
    return f"not JSON at byte {len(prefix) - len(text)} (starts with {text[:12]!r})"


def _skip(text: str, at: int) -> int:
    match = _WHITESPACE.match(text, at)
    return match.end() if match else at


def _object_shape(text: str, at: int, pages: DumpShape) -> DumpShape:
    """Pages (``pages``) or activities, from the top-level keys of the object at ``text[at]``.

    ``items`` or the page kind: pages; ``id``, ``events``, ``actor`` or the activity kind:
    activities. Neither, or a prefix too short to tell: a response object stays ``pages`` (the
    reader then checks it is one), an array stays activities."""
    activities = DumpShape.JSON_LINES if pages is DumpShape.RESPONSE else DumpShape.ACTIVITIES
    undecided = DumpShape.RESPONSE if pages is DumpShape.RESPONSE else DumpShape.ACTIVITIES
    try:
        at = _skip(text, at + 1)
        while text[at] == '"':
            key, at = _DECODE(text, at)
            at = _skip(text, at)
            if text[at] != ":":
                break
            if key == "items":
                return pages
            if key in _ACTIVITY_KEYS:
                return activities
            value, at = _DECODE(text, _skip(text, at + 1))
            if key == "kind" and value in (_PAGE_KIND, _ACTIVITY_KIND):
                return pages if value == _PAGE_KIND else activities
            at = _skip(text, at)
            if text[at] != ",":
                break
            at = _skip(text, at + 1)
    except (ValueError, IndexError, RecursionError, _NotJson):  # cut short, or not JSON
        pass
    return undecided


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
    except (ValueError, RecursionError):  # a 4,300-digit integer, absurd nesting: no place
        return None


class _NotJson(Exception):
    """Invalid JSON, with the stdlib's reason."""


class _NotPage(Exception):
    """JSON, but not a Reports page where one belongs (docs/cli.md), with what it is instead."""


def _reject_constant(name: str) -> object:
    raise _NotJson(f"{name} is not JSON")


_DECODE: Final = json.JSONDecoder(parse_constant=_reject_constant).raw_decode
_WHITESPACE: Final = re.compile(r"[ \t\n\r]*")
# A failed decode this close to the end of the text read so far may just need more of it
# ("tru", "-", "\u00"); an unterminated string always does.
_TRUNCATION_SLACK: Final = 16


class _JsonStream:
    """Values of a UTF-8 JSON text read chunk by chunk, one at a time, by the stdlib's C decoder.

    Only the current value and one chunk are ever held. Containers are entered by hand (``{``, keys,
    ``[``) where the dump's shape says activities are inside; everything else is decoded whole.
    """

    def __init__(self, reader: _PrefixedReader) -> None:
        self._reader = reader
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._text = ""
        self._pos = 0
        self._eof = False

    def _read_more(self) -> bool:
        """Append the next chunk to the unread text; False at the end of the input."""
        if self._eof:
            return False
        # Grow at least as fast as the value being read, so a huge value costs linear time.
        chunk = self._reader.read(max(_READ_BYTES, len(self._text) - self._pos))
        self._eof = not chunk
        try:
            more = self._utf8.decode(chunk, final=self._eof)
        except UnicodeDecodeError as error:
            raise _NotJson(f"invalid UTF-8 ({error.reason})") from None
        self._text = self._text[self._pos :] + more
        self._pos = 0
        return True

    def peek(self) -> str:
        """The next character that is not whitespace, not consumed; ``""`` at the end."""
        while True:
            match = _WHITESPACE.match(self._text, self._pos)
            self._pos = match.end() if match else self._pos
            if self._pos < len(self._text):
                return self._text[self._pos]
            if not self._read_more():
                return ""

    def take(self, expected: str, what: str) -> str:
        """Consume the next character, one of ``expected``."""
        char = self.peek()
        if not char or char not in expected:
            raise _NotJson(
                f"expecting {what}" + (f", found {char!r}" if char else " before the end")
            )
        self._pos += 1
        return char

    def value(self) -> object:
        """The next whole JSON value."""
        if not self.peek():
            raise _NotJson("expecting a value before the end")
        while True:
            try:
                value, end = _DECODE(self._text, self._pos)
            except json.JSONDecodeError as error:
                truncated = error.msg.startswith("Unterminated string") or (
                    error.pos >= len(self._text) - _TRUNCATION_SLACK
                )
                if truncated and self._read_more():
                    continue
                raise _NotJson(error.msg) from None
            except (ValueError, RecursionError) as error:  # 4,300-digit ints, absurd nesting
                raise _NotJson(str(error)) from None
            if end == len(self._text) and self._read_more():
                continue  # a number at the end of the chunk may go on in the next one
            self._pos = end
            return value

    def array_values(self) -> Iterator[object]:
        """The elements of the array that starts here, one by one."""
        self.take("[", "an array")
        if self.peek() == "]":
            self._pos += 1
            return
        while True:
            yield self.value()
            if self.take(",]", "',' or ']'") == "]":
                return

    def page_items(self, where: str) -> Iterator[object]:
        """The ``items`` of the Reports page here, one by one; an activity item here is yielded
        whole; any other value is not a page (``where`` names it in the error)."""
        char = self.peek()
        if char != "{":
            if char in _KINDS:
                raise _NotPage(f"{where} is {_KINDS[char]}")
            self.value()  # not JSON: raises
        self._pos += 1
        page = False
        fields: dict[str, object] = {}  # kept while it may be an activity
        if self.peek() == "}":
            self._pos += 1
            yield _activity(fields, where)  # {}: neither a page nor an activity, refused
            return
        while True:
            if self.peek() != '"':
                raise _NotJson("expecting a property name in double quotes")
            key = str(self.value())
            self.take(":", "':'")
            if key == "items":
                page = True
                fields.clear()
                if self.peek() == "[":
                    yield from self.array_values()
                elif self.value() is not None:
                    raise _NotPage(f'"items" of {where} is not an array')
            else:
                value = self.value()
                page = page or (key == "kind" and value == _PAGE_KIND)
                if not page:
                    fields[key] = value
            if self.take(",}", "',' or '}'") == "}":
                break
        if not page:
            yield _activity(fields, where)

    def end(self) -> None:
        if self.peek():
            raise _NotJson("extra data after the JSON value")


def _activity(fields: dict[str, object], where: str) -> dict[str, object]:
    if "id" in fields and "events" in fields:
        return fields
    raise _NotPage(
        f'{where} has neither "items" nor "kind": "{_PAGE_KIND}"'
        ' (nor the "id" and "events" of an activity)'
    )


def _first_line(value: object) -> Iterator[object]:
    """The first value of JSON Lines: an activity item, or a page (its items); else refused."""
    if not isinstance(value, dict):
        raise _NotPage("the first line is not a JSON object")
    if "items" not in value and value.get("kind") != _PAGE_KIND:
        yield _activity(value, "the object")
        return
    items = value.get("items")
    if items is not None and not isinstance(items, list):
        raise _NotPage('"items" of the object is not an array')
    yield from items or ()


def _activities(stream: _JsonStream, shape: DumpShape) -> Iterator[object]:
    if shape is DumpShape.RESPONSE:
        count = 0
        while stream.peek():
            count += 1
            yield from stream.page_items("the object" if count == 1 else f"JSON value {count}")
    elif shape is DumpShape.PAGES:
        stream.take("[", "an array")
        if stream.peek() == "]":
            stream.take("]", "']'")
        else:
            count = 0
            while True:
                count += 1
                yield from stream.page_items(f"element {count} of the array of pages")
                if stream.take(",]", "',' or ']'") == "]":
                    break
        stream.end()
    elif shape is DumpShape.ACTIVITIES:
        yield from stream.array_values()
        stream.end()
    else:
        if stream.peek():
            yield from _first_line(stream.value())
        while stream.peek():
            yield stream.value()


def iter_activities(stream: IO[bytes], *, name: str) -> Iterator[object]:
    """Every activity item of one dump, parsed one at a time (floats as float, not Decimal)."""
    try:
        prefix = _read_prefix(stream)
    except OSError as error:
        raise InvalidInput(f"{name}: cannot read ({error.strerror or error})") from None
    shape = detect_shape(prefix)
    if isinstance(shape, str):
        raise InvalidInput(f"{name}: {shape}")
    reader = _PrefixedReader(prefix.removeprefix(_BOM), stream)
    try:
        yield from _activities(_JsonStream(reader), shape)
    except _NotJson as error:
        multiple = shape in (DumpShape.RESPONSE, DumpShape.JSON_LINES)
        located = _locate(stream, multiple)
        where = (
            f"at {located}"
            if located
            else f"in its first {reader.served} bytes (parse error: {error})"
        )
        raise InvalidInput(f"{name}: not JSON {where}") from None
    except _NotPage as error:
        raise InvalidInput(f"{name}: not a Reports page: {error}") from None
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
    """The result of ``summarize`` (docs/cli.md "summarize")."""

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


class _Encoded(dict[str | None, str]):
    """JSON text of the strings met so far (``None``: ``null``).

    Most values repeat within a meeting, and a hit is one dict lookup in C."""

    def __missing__(self, value: str | None) -> str:
        text = self[value] = "null" if value is None else _encode(value)
        return text


_MINUTE_SECOND: Final = tuple(f"{m:02d}:{s:02d}." for m in range(60) for s in range(60))
_MILLISECONDS: Final = tuple(f"{ms:03d}Z" for ms in range(1000))


class _Hours(dict[int, str]):
    """``YYYY-MM-DDTHH:`` by hour since the epoch, cut from ``format_timestamp`` itself."""

    def __missing__(self, hour: int) -> str:
        text = self[hour] = format_timestamp(EPOCH + timedelta(hours=hour))[:14]
        return text


def _time_text(moment: datetime, hours: _Hours) -> str:
    """``format_timestamp(moment)`` from tables: the hour's text, then minutes, seconds and
    milliseconds (about half the cost; tests/unit/test_dumps_and_summarize.py checks they agree)."""
    if moment.tzinfo is not UTC:
        return format_timestamp(moment)
    since = moment - EPOCH
    seconds = since.seconds
    return (
        hours[since.days * 24 + seconds // 3600]
        + _MINUTE_SECOND[seconds % 3600]
        + _MILLISECONDS[moment.microsecond // 1000]
    )


def _participant_text(p: Participant, text: _Encoded, hours: _Hours) -> str:
    """``json.dumps(participant_to_json(p))``, laid out one session per line, formatted by hand:
    several times faster (checked against the stdlib in tests/unit/test_dumps_and_summarize.py).

    Strings that repeat within a meeting go through ``text``; ids that do not are encoded
    directly. A first join or last leave is nearly always one of the sessions' own times."""
    first_join, last_leave = p.first_join, p.last_leave
    first_text = last_text = ""
    lines = []
    for s in p.sessions:
        join, leave = s.join_time, s.leave_time
        join_text = _time_text(join, hours)
        leave_text = _time_text(leave, hours)
        if join is first_join:
            first_text = join_text
        if leave is last_leave:
            last_text = leave_text
        endpoint_id = s.endpoint_id
        lines.append(
            f'\n   {{"conference_id": {text[s.conference_id]},'
            f' "endpoint_id": {"null" if endpoint_id is None else _encode(endpoint_id)},'
            f' "join_time": "{join_text}", "leave_time": "{leave_text}",'
            f' "duration_seconds": {s.duration_seconds}, "device_type": {text[s.device_type]},'
            f' "ip_address": {text[s.ip_address]}, "location_country": {text[s.location_country]},'
            f' "location_region": {text[s.location_region]},'
            f' "event_id": {text[s.event_id]}}}'
        )
    return (
        f'\n  {{"participant_key": {text[p.participant_key]}, "email": {text[p.email]},'
        f' "identifier": {text[p.identifier]}, "identifier_type": {text[p.identifier_type]},'
        f' "display_name": {text[p.display_name]},'
        f' "is_external": {"true" if p.is_external else "false"},'
        f' "first_join": "{first_text or _time_text(first_join, hours)}",'
        f' "last_leave": "{last_text or _time_text(last_leave, hours)}",'
        f' "session_count": {p.session_count},'
        f' "total_session_seconds": {p.total_session_seconds},'
        f' "attended_seconds": {p.attended_seconds}, "sessions": ['
        f"{','.join(lines)}\n  ]}}"
    )


def write_summary_json(summary: Summary, out: IO[str]) -> None:
    """The ``--json`` output, written participant by participant.

    Equal, as JSON, to ``json.dumps(summary.to_json())``, laid out one session per line: indenting
    with the stdlib would use its pure-Python encoder, several times slower on large dumps.
    """
    write = out.write
    write('{"meetings": [')
    hours = _Hours()
    for meeting_index, meeting in enumerate(summary.meetings):
        write("," if meeting_index else "")
        write(f'\n {_object_head(meeting_fields_to_json(meeting))}, "participants": [')
        # Per meeting, so that the cache holds one meeting's values at most.
        text = _Encoded()
        for participant_index, participant in enumerate(meeting.participants):
            write(
                f"{',' if participant_index else ''}{_participant_text(participant, text, hours)}"
            )
        write("\n ]}")
    rest = summary.to_json(with_meetings=False)
    del rest["meetings"]
    write(f"\n], {json.dumps(rest)[1:]}\n")


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
