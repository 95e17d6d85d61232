"""Reading dumps in every shape, and ``python -m functions summarize`` (docs/cli.md "summarize")."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from functions.attendance import build_meeting, participant_to_json
from functions.cli import cli
from functions.dumps import (
    DumpShape,
    _Encoded,
    _Hours,
    _participant_text,
    _time_text,
    detect_shape,
    iter_activities,
    summarize_dumps,
    write_summary_json,
)
from functions.errors import InvalidInput
from functions.intervals import Span
from functions.timestamps import format_timestamp
from tests.unit.factories import activity, at, session

EXAMPLES = Path("/work/shared/examples")
EXAMPLE = EXAMPLES / "reports-meet-class.json"
EXPECTED = json.loads((EXAMPLES / "reports-meet-class.summary.json").read_text())
ROOT = Path(__file__).resolve().parents[2]
PAGES: list[dict[str, Any]] = json.loads(EXAMPLE.read_text())
ITEMS = [item for page in PAGES for item in page["items"]]


def without_event_ids(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_event_ids(v) for k, v in value.items() if k != "event_id"}
    if isinstance(value, list):
        return [without_event_ids(v) for v in value]
    return value


def shapes() -> dict[str, str]:
    """The example in every accepted shape; concatenated pages stand in for one response."""
    merged = {"kind": "admin#reports#activities", "items": ITEMS}
    return {
        "pages": json.dumps(PAGES, indent=2),
        "response": json.dumps(merged),
        "response-items-last": json.dumps({"etag": "x", "kind": merged["kind"], "items": ITEMS}),
        "activities": json.dumps(ITEMS),
        "jsonl": "\n".join(json.dumps(item) for item in ITEMS) + "\n",
        "concatenated-responses": "\n".join(json.dumps(page) for page in PAGES),
    }


def run(args: list[str], stdin: str | bytes | None = None) -> Any:
    return CliRunner().invoke(cli, args, input=stdin)


# --- shapes --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shape"),
    [
        ('{"kind": "admin#reports#activities", "items": []}', DumpShape.RESPONSE),
        ('{"kind": "admin#reports#activities", "etag": "x"}', DumpShape.RESPONSE),  # empty page
        ("{}", DumpShape.RESPONSE),
        ('{"kind": "admin#reports#activity", "id": {}}', DumpShape.JSON_LINES),
        ('{"id": {"time": "x"}, "events": []}\n{"id": {}}', DumpShape.JSON_LINES),
        ('[{"items": []}]', DumpShape.PAGES),
        ('[{"kind": "admin#reports#activities"}]', DumpShape.PAGES),
        ('[{"events": [], "id": {}}]', DumpShape.ACTIVITIES),
        ("[]", DumpShape.ACTIVITIES),
        ('\ufeff\n  [{"items": []}]', DumpShape.PAGES),
        ("1", "unexpected shape: a JSON number"),
        ("-1", "unexpected shape: a JSON number"),
        ('"x"', "unexpected shape: a JSON string"),
        ("true", "unexpected shape: a JSON boolean"),
        ("null", "unexpected shape: JSON null"),
        ("[1, 2]", "unexpected shape: an array of numbers"),
        ('["a"]', "unexpected shape: an array of strings"),
        ("[[1]]", "unexpected shape: an array of arrays"),
        ('{"kind": "admin#reports#activities", "id": {}, "events": []}', DumpShape.RESPONSE),
        ('{"etag": ' + "9" * 5000 + ', "items": []}', DumpShape.RESPONSE),  # no crash
        ("[" + '{"a": ' * 3000 + "1" + "}" * 3000 + "]", DumpShape.ACTIVITIES),  # the reader says
        ("[" + "9" * 5000 + "]", "unexpected shape: an array of numbers"),
        ("[true]", "unexpected shape: an array of booleans"),
        ("[null]", "unexpected shape: an array of nulls"),
        ("   \n", "empty input (no JSON value)"),
        ("", "empty input (no JSON value)"),
    ],
)
def test_detect_shape(text: str, shape: DumpShape | str) -> None:
    assert detect_shape(text.encode()) == shape


@pytest.mark.parametrize("name", list(shapes()))
def test_every_shape_yields_the_same_summary(name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.json"
    path.write_text(shapes()[name])
    summary = summarize_dumps([str(path)]).to_json()
    assert without_event_ids(summary["meetings"]) == EXPECTED["meetings"]
    assert summary["events_used"] == 7


def test_events_read_counts_every_event_of_every_item() -> None:
    summary = summarize_dumps([str(EXAMPLE)])
    assert (summary.events_read, summary.events_used, summary.events_skipped) == (11, 7, 0)


def test_streams_items_larger_than_the_sniffed_prefix(tmp_path: Path) -> None:
    items = [
        activity(leave=at(n), endpoint_id=f"e{n}", qualifier=str(n), filler="x" * 3000)
        for n in range(200)
    ]
    for name, text in {
        "jsonl": "\n".join(json.dumps(i) for i in items),
        "array": json.dumps(items),
        "response": json.dumps({"etag": "e" * 70_000, "items": items}),
    }.items():
        path = tmp_path / name
        path.write_text(text)
        assert summarize_dumps([str(path)]).events_used == 200, name


def test_several_files_are_one_summary_and_duplicates_across_them_count_once(
    tmp_path: Path,
) -> None:
    (tmp_path / "one.json").write_text(json.dumps(PAGES[:2]))
    (tmp_path / "two.json").write_text(json.dumps(PAGES[1:]))
    summary = summarize_dumps([str(tmp_path / "one.json"), str(tmp_path / "two.json")])
    assert without_event_ids(summary.to_json())["meetings"] == EXPECTED["meetings"]


def test_floats_are_floats_not_decimals() -> None:
    (item,) = iter_activities(io.BytesIO(b'[{"x": 1.5}]'), name="f")
    assert item == {"x": 1.5}
    assert isinstance(item["x"], float)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"items": [{"a": 1},, ]}', "f.json: not JSON at line 1, column 21: Expecting value"),
        (b'{"items": [', "f.json: not JSON at line 1, column 12: Expecting value"),
        (b"[1", "f.json: unexpected shape: an array of numbers"),
        (b"42", "f.json: unexpected shape: a JSON number"),
        (b"hello", "f.json: not JSON at byte 0 (starts with b'hello')"),
        (b"", "f.json: empty input (no JSON value)"),
        (
            b'{"foo": 1}',
            'f.json: not a Reports page: the object has neither "items" nor "kind":'
            ' "admin#reports#activities" (nor the "id" and "events" of an activity)',
        ),
        (
            b'[{"items": []}, {"foo": 1}]',
            'f.json: not a Reports page: element 2 of the array of pages has neither "items" nor'
            ' "kind": "admin#reports#activities" (nor the "id" and "events" of an activity)',
        ),
        (
            b'{"a": ' + b"9" * 5000 + b"}",
            "f.json: not JSON in its first 5007 bytes (parse error: Exceeds the limit (4300 digits)"
            " for integer string conversion: value has 5000 digits; use"
            " sys.set_int_max_str_digits() to increase the limit)",
        ),
    ],
)
def test_unreadable_dumps_raise_one_line_naming_the_file(
    content: bytes, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "f.json"
    path.write_bytes(content)
    with pytest.raises(InvalidInput) as caught:
        summarize_dumps([str(path)])
    assert caught.value.message.replace(str(tmp_path) + "/", "") == message
    assert caught.value.status == 400


def test_bad_json_on_stdin_names_stdin_and_a_place() -> None:
    with pytest.raises(InvalidInput, match=r"^<stdin>: not JSON in its first 9 bytes \(parse"):
        summarize_dumps(["-"], stdin=io.BytesIO(b'[{"a": }]'))


def test_missing_file() -> None:
    with pytest.raises(InvalidInput, match=r"^/no/such\.json: No such file or directory$"):
        summarize_dumps(["/no/such.json"])


def test_json_output_equals_the_summary_as_data() -> None:
    summary = summarize_dumps([str(EXAMPLE)])
    out = io.StringIO()
    write_summary_json(summary, out)
    assert json.loads(out.getvalue()) == summary.to_json()
    assert out.getvalue().endswith("}\n")


def test_json_output_of_no_meetings() -> None:
    out = io.StringIO()
    write_summary_json(summarize_dumps(["-"], stdin=io.BytesIO(b"[]")), out)
    assert json.loads(out.getvalue()) == {
        "meetings": [],
        "events_read": 0,
        "events_used": 0,
        "events_skipped": 0,
        "warnings": [],
    }


def test_skipped_events_are_counted_and_warned() -> None:
    items = [activity(), activity(conference_id=None, endpoint_id="x", qualifier="2")]
    summary = summarize_dumps(["-"], stdin=io.BytesIO(json.dumps(items).encode()))
    assert (summary.events_read, summary.events_used, summary.events_skipped) == (2, 1, 1)
    assert summary.warnings == ["1 event skipped: call_ended without conference_id"]


# --- the CLI -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(shapes()))
def test_cli_json_from_stdin_in_every_shape(name: str) -> None:
    result = run(["summarize", "--json", "-"], stdin=shapes()[name])
    assert result.exit_code == 0, result.output
    assert without_event_ids(json.loads(result.stdout)) == EXPECTED


def test_cli_json_from_a_file() -> None:
    result = run(["summarize", "--json", str(EXAMPLE)])
    assert result.exit_code == 0
    assert without_event_ids(json.loads(result.stdout)) == EXPECTED
    assert result.stderr == ""


def test_cli_table_shows_names_times_and_durations() -> None:
    result = run(["summarize", str(EXAMPLE)])
    assert result.exit_code == 0
    for text in (
        "hqx-vbnr-tle",
        "Ms. Rivera",
        "teacher@school.example",
        "Guest Parent",
        "phone:+14155550134",
        "2026-01-15 09:58:11",
        "0:48:52",  # the teacher: 2932 s
        "0:43:10",  # Ben: two devices at once count once
        "android, web",
        "events read 11, used 7, skipped 0",
    ):
        assert text in result.stdout, text


def test_cli_table_warns_on_stderr() -> None:
    items = [activity(duration="x")]
    result = run(["summarize", "-"], stdin=json.dumps(items))
    assert result.exit_code == 0
    assert "warning: 1 event skipped: call_ended without an integer duration_seconds" in (
        result.stderr
    )


@pytest.mark.parametrize(
    ("args", "stdin", "fragment"),
    [
        (["summarize", "/no/such.json"], None, "summarize: /no/such.json: No such file"),
        (["summarize", "--json", "-"], "{not json", "summarize: <stdin>: not JSON"),
        (["summarize", "-"], "12", "summarize: <stdin>: unexpected shape: a JSON number"),
        (["summarize", "-"], "[1, 2]", "unexpected shape: an array of numbers"),
        (["summarize", "-"], "", "summarize: <stdin>: empty input"),
        (["summarize", "--json", "-"], '{"foo": 1}', "summarize: <stdin>: not a Reports page"),
        (["summarize", "-"], "{}", "summarize: <stdin>: not a Reports page"),
    ],
)
def test_cli_unreadable_input_exits_2_with_one_line(
    args: list[str], stdin: str | None, fragment: str
) -> None:
    result = run(args, stdin)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("args", [["summarize"], ["summarize", "--bogus", "x"], ["nope"]])
def test_cli_usage_errors_exit_2(args: list[str]) -> None:
    assert run(args).exit_code == 2


def test_real_subprocess_json_and_error(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "functions", "summarize"]
    ok = subprocess.run(
        [*command, "--json", "-"],
        input=EXAMPLE.read_bytes(),
        capture_output=True,
        cwd=ROOT,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert without_event_ids(json.loads(ok.stdout)) == EXPECTED

    bad = tmp_path / "bad.json"
    bad.write_text('{"items": [1,,]}')
    failed = subprocess.run(
        [*command, str(bad)], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert failed.returncode == 2
    assert failed.stderr == f"summarize: {bad}: not JSON at line 1, column 14: Expecting value\n"
    assert failed.stdout == ""


# --- streaming reader and hand-formatted JSON ----------------------------------------------------


class _Trickle(io.RawIOBase):
    """A pipe that, after enough bytes to tell the shape, gives at most ``size`` bytes per read:
    values then cross every chunk boundary."""

    def __init__(self, data: bytes, size: int) -> None:
        self._data, self._size, self._at = data, size, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        most = 60 if self._at == 0 else self._size
        chunk = self._data[self._at : self._at + min(most, size if size > 0 else most)]
        self._at += len(chunk)
        return chunk


@pytest.mark.parametrize("name", sorted(shapes()))
@pytest.mark.parametrize("size", [1, 7, 64])
def test_reading_in_tiny_chunks_yields_exactly_the_items(name: str, size: int) -> None:
    data = shapes()[name].encode()
    assert list(iter_activities(_Trickle(data, size), name="x")) == ITEMS  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [1, 5, 4096])
def test_reading_unusual_values_across_chunk_boundaries(size: int) -> None:
    odd = {
        "n": [12345678901234567890, -0.5e-3, 1e300, 0],
        "s": 'é€😀 \\" \u2028',
        "t": [True, None],
    }
    items = [{"id": {"time": "x"}, "events": [], "odd": odd}, {"id": {}, "events": [], "k": 7}]
    page = {"kind": "admin#reports#activities", "etag": 12345, "items": items, "next": [1.5]}
    for text in (json.dumps(page), json.dumps(items), json.dumps([page, page])):
        got = list(iter_activities(_Trickle(text.encode(), size), name="x"))  # type: ignore[arg-type]
        assert got == items * (2 if text.startswith('[{"kind') else 1)


@pytest.mark.parametrize(
    "text",
    ['{"items": [{"id": {}}', '[{"id": {}} {"id": {}}]', '{"items": [{"id": NaN}]}', "[{}] x"],
)
def test_truncated_or_invalid_streams_are_not_json(text: str) -> None:
    with pytest.raises(InvalidInput, match=r"^<stdin>: not JSON in its first \d+ bytes"):
        list(iter_activities(_Trickle(text.encode(), 3), name="<stdin>"))  # type: ignore[arg-type]


def test_json_output_is_laid_out_one_session_per_line_with_exact_stdlib_text() -> None:
    items = [
        activity(leave=at(5), qualifier="q1", endpoint_id='é"1', display_name="Zoë \\ ☃"),
        activity(leave=at(6), qualifier="q2", endpoint_id=None, identifier=None, is_external=True),
        activity(leave=at(7), qualifier="q3", endpoint_id="ep-2", conference_id="conf-B"),
    ]
    summary = summarize_dumps(["-"], stdin=io.BytesIO(json.dumps(items).encode()))
    out = io.StringIO()
    write_summary_json(summary, out)
    expected = ['{"meetings": [']
    for m, meeting in enumerate(summary.to_json()["meetings"]):
        participants = meeting.pop("participants")
        expected.append(("," if m else "") + f'\n {json.dumps(meeting)[:-1]}, "participants": [')
        for p, participant in enumerate(participants):
            sessions = participant.pop("sessions")
            head = json.dumps(participant)[:-1]
            expected.append(("," if p else "") + f'\n  {head}, "sessions": [')
            expected.append(",".join(f"\n   {json.dumps(s)}" for s in sessions) + "\n  ]}")
        expected.append("\n ]}")
    rest = summary.to_json()
    del rest["meetings"]
    expected.append(f"\n], {json.dumps(rest)[1:]}\n")
    assert out.getvalue() == "".join(expected)


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(
        min_value=datetime(1, 1, 2),  # noqa: DTZ001 - made aware below
        max_value=datetime(9999, 12, 30),  # noqa: DTZ001
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
    )
)
def test_time_text_is_format_timestamp(moment: datetime) -> None:
    assert _time_text(moment, _Hours()) == format_timestamp(moment)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 120), st.integers(0, 3600), st.sampled_from(["a", "b", "c"])),
        min_size=1,
        max_size=6,
    ),
    st.sampled_from([None, (10, None), (None, 60), (20, 40)]),
)
def test_participant_text_is_the_stdlib_text(
    raw: list[tuple[int, int, str]], clip: tuple[int | None, int | None] | None
) -> None:
    sessions = [
        session(
            at(leave) - timedelta(seconds=length),
            at(leave),
            key=f"{who}@s.example",
            endpoint_id=f"e{n}",
        )
        for n, (leave, length, who) in enumerate(raw)
    ]
    span = None if clip is None else Span(*(None if c is None else at(c) for c in clip))
    meeting = build_meeting(sessions, clip=span)
    text = _Encoded()
    for participant in meeting.participants:
        rendered = participant_to_json(participant)
        lines = rendered.pop("sessions")
        expected = (
            f'\n  {json.dumps(rendered)[:-1]}, "sessions": ['
            + ",".join(f"\n   {json.dumps(s)}" for s in lines)
            + "\n  ]}"
        )
        assert _participant_text(participant, text, _Hours()) == expected
