"""functions.logs: the JSON line Cloud Logging and Error Reporting read, trace ids from hostile
headers, and the minimum severity the CLI sets."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast

import pytest

from functions import app, logs
from functions.errors import ReportsError, Unavailable

TRACE = "105445aa7843bc8bf206b12000100000"
SPAN_HEX = "00f067aa0ba902b7"
PROJECT = "acme-prod"
FRAME = re.compile(r'  File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<name>[\w<>]+)')


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]


@pytest.fixture(autouse=True)
def default_severity() -> Iterator[None]:
    yield
    logs.set_minimum_severity("INFO")


# ------------------------------------------------------------------------------------------------
# Minimum severity


def test_info_and_above_are_written_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert logs.minimum_severity() == "INFO"
    logs.log("DEBUG", "debug line")
    logs.info("info line")
    logs.warning("warning line")
    assert [line["message"] for line in lines(capsys)] == ["info line", "warning line"]


def test_lines_below_the_minimum_severity_are_dropped(capsys: pytest.CaptureFixture[str]) -> None:
    logs.set_minimum_severity("WARNING")
    logs.info("dropped")
    logs.log("NOTICE", "dropped too")
    logs.warning("kept")
    logs.error("kept too")
    logs.report_error("reported", RuntimeError("x"))
    assert [line["message"] for line in lines(capsys)] == ["kept", "kept too", "reported"]

    logs.set_minimum_severity("ERROR")
    logs.warning("dropped")
    logs.error("kept")
    assert [line["message"] for line in lines(capsys)] == ["kept"]

    logs.set_minimum_severity("DEBUG")
    logs.log("DEBUG", "now kept")
    assert [line["message"] for line in lines(capsys)] == ["now kept"]


def test_an_unknown_severity_is_refused_and_changes_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(ValueError, match="unknown severity"):
        logs.set_minimum_severity("LOUD")
    assert logs.minimum_severity() == "INFO"
    with pytest.raises(ValueError, match="unknown severity"):
        logs.log("LOUD", "x")
    logs.info("still written")
    assert [line["message"] for line in lines(capsys)] == ["still written"]


# ------------------------------------------------------------------------------------------------
# Trace and span ids


def test_cloud_trace_context_gives_trace_span_and_sampled() -> None:
    fields = logs.trace_fields(cloud_trace=f"{TRACE}/1;o=1", traceparent=None, project=PROJECT)
    assert fields == {
        "logging.googleapis.com/trace": f"projects/{PROJECT}/traces/{TRACE}",
        "logging.googleapis.com/spanId": "0000000000000001",  # decimal 1 as 16 hex digits
        "logging.googleapis.com/trace_sampled": True,
    }
    big = logs.trace_fields(
        cloud_trace=f"{TRACE}/{2**64 - 1};o=0", traceparent=None, project=PROJECT
    )
    assert big["logging.googleapis.com/spanId"] == "ffffffffffffffff"
    assert big["logging.googleapis.com/trace_sampled"] is False


def test_cloud_trace_context_without_span_or_options_gives_the_trace_alone() -> None:
    assert logs.trace_fields(cloud_trace=TRACE, traceparent=None, project=PROJECT) == {
        "logging.googleapis.com/trace": f"projects/{PROJECT}/traces/{TRACE}"
    }
    only_span = logs.trace_fields(cloud_trace=f"{TRACE}/7", traceparent=None, project=PROJECT)
    assert only_span["logging.googleapis.com/spanId"] == "0000000000000007"
    assert "logging.googleapis.com/trace_sampled" not in only_span


def test_traceparent_gives_trace_span_and_sampled_and_wins_over_cloud_trace() -> None:
    other = "4bf92f3577b34da6a3ce929d0e0e4736"
    fields = logs.trace_fields(
        cloud_trace=f"{TRACE}/1;o=0", traceparent=f"00-{other}-{SPAN_HEX}-01", project=PROJECT
    )
    assert fields == {
        "logging.googleapis.com/trace": f"projects/{PROJECT}/traces/{other}",
        "logging.googleapis.com/spanId": SPAN_HEX,
        "logging.googleapis.com/trace_sampled": True,
    }
    unsampled = logs.trace_fields(
        cloud_trace=None, traceparent=f"00-{other}-{SPAN_HEX}-00", project=PROJECT
    )
    assert unsampled["logging.googleapis.com/trace_sampled"] is False


HOSTILE = [
    "",
    "abc",
    f"{TRACE}x",
    f"{TRACE[:-1]}",
    f"{TRACE}/1;o=1\n{{injected}}",
    f'{TRACE}/1;o=1"}},"severity":"CRITICAL',
    f"{TRACE}/-1;o=1",
    f"{TRACE}/0;o=1",  # span 0 is no span
    f"{TRACE}/{2**64};o=1",  # beyond 64 bits
    f"{TRACE}/1;o=yes",
    "0" * 32 + "/1;o=1",  # the invalid all-zero trace
    f"{TRACE}/1;o=1;extra",
    f"{TRACE} /1",
    "ZZ" * 16 + "/1",
]
HOSTILE_TRACEPARENT = [
    f"00-{TRACE}-{SPAN_HEX}",
    f"00-{TRACE}-{SPAN_HEX}-01-extra",
    f"ff-{TRACE}-{SPAN_HEX}-01",
    f"01-{TRACE}-{SPAN_HEX}-01",
    f"00-{TRACE.upper()}-{SPAN_HEX}-01",
    f"00-{'0' * 32}-{SPAN_HEX}-01",
    f"00-{TRACE}-{'0' * 16}-01",
    f"00-{TRACE}-{SPAN_HEX}-0g",
    f"00-{TRACE}-{SPAN_HEX[:-1]}-01",
    f'00-{TRACE}-{SPAN_HEX}-01"',
]


@pytest.mark.parametrize("header", HOSTILE)
def test_a_malformed_cloud_trace_header_gives_nothing(header: str) -> None:
    assert logs.trace_fields(cloud_trace=header, traceparent=None, project=PROJECT) == {}


@pytest.mark.parametrize("header", HOSTILE_TRACEPARENT)
def test_a_malformed_traceparent_gives_nothing_and_falls_back(header: str) -> None:
    assert logs.trace_fields(cloud_trace=None, traceparent=header, project=PROJECT) == {}
    fallback = logs.trace_fields(cloud_trace=f"{TRACE}/1", traceparent=header, project=PROJECT)
    assert fallback["logging.googleapis.com/trace"] == f"projects/{PROJECT}/traces/{TRACE}"


def test_no_project_gives_nothing() -> None:
    assert logs.trace_fields(cloud_trace=f"{TRACE}/1;o=1", traceparent=None, project=None) == {}
    assert logs.trace_fields(cloud_trace=f"{TRACE}/1;o=1", traceparent=None, project="") == {}


def test_cloud_trace_ids_are_case_insensitive_and_written_lower_case() -> None:
    fields = logs.trace_fields(cloud_trace=f"{TRACE.upper()}/1", traceparent=None, project=PROJECT)
    assert fields["logging.googleapis.com/trace"] == f"projects/{PROJECT}/traces/{TRACE}"


# ------------------------------------------------------------------------------------------------
# Error Reporting


class OddFailure(Exception):
    pass


def _inner(email: str) -> None:
    raise OddFailure(f"choked on {email}")


def _outer(email: str) -> None:
    _inner(email)


def _caught(email: str = "kid@school.example") -> BaseException:
    try:
        _outer(email)
    except OddFailure as error:
        return error
    raise AssertionError("not raised")


def test_the_stack_trace_is_a_python_traceback_without_the_message() -> None:
    error = _caught()
    trace = logs.stack_trace(error)
    header, *frames, last = trace.split("\n")
    assert header == "Traceback (most recent call last):"
    parsed = [FRAME.fullmatch(frame) for frame in frames]
    assert all(parsed), frames
    assert [m["name"] for m in parsed if m] == ["_caught", "_outer", "_inner"]
    assert all(m["file"] == __file__ for m in parsed if m)
    assert last == f"{__name__}.OddFailure"  # the type, qualified, and nothing else
    assert "kid@school.example" not in trace
    assert "choked" not in trace


def test_a_builtin_exception_is_named_as_python_names_it() -> None:
    try:
        int("not a number")
    except ValueError as error:
        trace = logs.stack_trace(error)
    assert trace.split("\n")[-1] == "ValueError"
    assert "not a number" not in trace


def test_a_deep_stack_keeps_its_header_innermost_frames_and_type() -> None:
    def down(n: int) -> None:
        if n == 0:
            raise RuntimeError("bottom")
        down(n - 1)

    try:
        down(300)
    except RuntimeError as error:
        trace = logs.stack_trace(error)
    header, *frames, last = trace.split("\n")
    assert header == "Traceback (most recent call last):"
    assert last == "RuntimeError"
    assert 0 < len(frames) <= logs.MAX_FRAMES
    assert len(trace) <= logs.MAX_STACK_CHARS
    assert all(FRAME.fullmatch(frame) for frame in frames)
    assert frames[-1].endswith("in down")


def test_report_error_writes_an_error_reporting_event(capsys: pytest.CaptureFixture[str]) -> None:
    error = _caught("kid@school.example")
    with logs.bind(meeting_id="m-1"):
        logs.report_error(
            "unexpected failure", error, service="collect", version="collect-00042", code="x"
        )
    (line,) = lines(capsys)
    assert line["severity"] == "ERROR"
    assert line["message"] == "unexpected failure"
    assert line["@type"] == (
        "type.googleapis.com/google.devtools.clouderrorreporting.v1beta1.ReportedErrorEvent"
    )
    assert line["stack_trace"] == logs.stack_trace(error)
    assert line["serviceContext"] == {"service": "collect", "version": "collect-00042"}
    assert line["error"] == "OddFailure"
    assert (line["meeting_id"], line["code"]) == ("m-1", "x")
    assert "kid@school.example" not in json.dumps(line)


def test_report_error_leaves_out_what_it_does_not_know(capsys: pytest.CaptureFixture[str]) -> None:
    logs.report_error("unexpected failure", _caught())
    logs.report_error("unexpected failure", _caught(), service="api")
    first, second = lines(capsys)
    assert "serviceContext" not in first
    assert second["serviceContext"] == {"service": "api"}


# ------------------------------------------------------------------------------------------------
# guarded (functions/app.py): where requests' errors are reported


def _request(headers: dict[str, str] | None = None) -> app.HttpRequest:
    return app.HttpRequest(method="GET", path="/", headers=headers or {}, body=b"")


def _runtime() -> app.Runtime:
    return cast(
        app.Runtime, SimpleNamespace(settings=SimpleNamespace(google_cloud_project=PROJECT))
    )


def test_a_bug_reaches_error_reporting_as_the_function(capsys: pytest.CaptureFixture[str]) -> None:
    def broken() -> app.Response:
        _outer("kid@school.example")
        return 200, {}

    status, body = app.guarded(broken, _request(), _runtime(), "collect")
    assert status == 500
    (line,) = lines(capsys)
    assert line["@type"] == logs.ERROR_EVENT_TYPE
    assert line["serviceContext"] == {"service": "collect"}
    assert line["stack_trace"].startswith("Traceback (most recent call last):\n")
    assert line["stack_trace"].endswith("\n" + f"{__name__}.OddFailure")
    assert "kid@school.example" not in json.dumps(line)
    assert "kid@school.example" not in json.dumps(body)


def test_a_5xx_retrying_cures_is_not_an_error_event(capsys: pytest.CaptureFixture[str]) -> None:
    def down() -> app.Response:
        raise Unavailable("Firestore unavailable")

    def refused() -> app.Response:
        raise ReportsError("the admin subject lacks the Reports privilege", kind="permission")

    assert app.guarded(down, _request(), _runtime(), "collect")[0] == 503
    assert app.guarded(refused, _request(), _runtime(), "collect")[0] == 502
    retryable, permanent = lines(capsys)
    assert retryable["message"] == permanent["message"] == "request failed"
    assert "@type" not in retryable
    assert permanent["@type"] == logs.ERROR_EVENT_TYPE
    assert permanent["stack_trace"].endswith("\nfunctions.errors.ReportsError")
    assert permanent["detail"] == "the admin subject lacks the Reports privilege"


def test_request_lines_carry_the_trace_of_a_traceparent(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def handler() -> app.Response:
        logs.info("handled")
        return 200, {}

    headers = {"traceparent": f"00-{TRACE}-{SPAN_HEX}-01"}
    app.guarded(handler, _request(headers), _runtime(), "api")
    (line,) = lines(capsys)
    assert line["logging.googleapis.com/trace"] == f"projects/{PROJECT}/traces/{TRACE}"
    assert line["logging.googleapis.com/spanId"] == SPAN_HEX
    assert line["logging.googleapis.com/trace_sampled"] is True


def test_hostile_trace_headers_never_reach_a_line(capsys: pytest.CaptureFixture[str]) -> None:
    def handler() -> app.Response:
        logs.info("handled")
        return 200, {}

    headers = {
        "traceparent": '00-"},"severity":"CRITICAL-x-01',
        "x-cloud-trace-context": "kid@school.example/1;o=1",
    }
    app.guarded(handler, _request(headers), _runtime(), "ingest")
    (line,) = lines(capsys)
    assert not any(key.startswith("logging.googleapis.com/") for key in line)
    assert "kid@school.example" not in json.dumps(line)
    assert "CRITICAL" not in json.dumps(line)
