"""functions-framework with every Firestore and Cloud Tasks gRPC call counted (benchmarks only).

    BENCH_GRPC_CALLS=/tmp/calls.jsonl python -m benchmarks.instrumented --target=ingest \
        --source=main.py --host=127.0.0.1 --port=8080

A bootstrap: before functions-framework's own main runs, it patches the constructors of the GAPIC
gRPC transports of Firestore (``FirestoreGrpcTransport``) and Cloud Tasks
(``CloudTasksGrpcTransport``) so that whatever channel a transport gets — one handed to it (the
Firestore client's emulator channel, our Cloud Tasks adapter's ``grpc.insecure_channel``) or one
its ``create_channel`` makes — is ``grpc.intercept_channel(channel, CallCounter(...))``. The
production code is untouched: nothing under ``functions/`` knows about this module.

The counter records every unary and streaming call at the channel: service, method name, start
and end (``time.monotonic()``, comparable across the processes of one machine). A unary call ends
when its outcome is known, a streaming one when the RPC terminates (its response stream read to
the end). Calls are attributed to the HTTP request being served: a WSGI middleware reads the
``X-Bench-Request`` header the benchmark sets and holds it in a context variable for the request's
thread; a call on another thread (no context) goes to the only request in flight, if exactly one
is. Each finished call, and each request (status, start, end), is one JSON line in the file named
by ``BENCH_GRPC_CALLS``; :func:`read_calls` and :func:`summarise_requests` read them back.
"""

from __future__ import annotations

import contextvars
import importlib
import itertools
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc

CALLS_FILE_ENV = "BENCH_GRPC_CALLS"
REQUEST_HEADER = "X-Bench-Request"
_WSGI_KEY = "HTTP_" + REQUEST_HEADER.upper().replace("-", "_")

FIRESTORE = "firestore"
TASKS = "tasks"

Record = dict[str, Any]
Sink = Callable[[Record], None]


@dataclass
class Call:
    id: int
    key: str | None
    service: str
    method: str
    kind: str
    start: float
    thread: int
    end: float | None = None
    #: Streams: when the reader last got a response, and when gRPC reported the RPC over.
    last_read: float | None = None
    terminated: float | None = None
    #: A stream whose reader never saw its end (a get reads one response and leaves it).
    read_to_end: bool = True

    def line(self) -> Record:
        return {"type": "call", **asdict(self)}


@dataclass
class _Request:
    key: str
    start: float
    status: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Recorder:
    """The calls seen at the channels, attributed to the request in flight, written to a sink."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending: dict[int, Call] = {}
        self._active: dict[str, int] = {}
        self._current: contextvars.ContextVar[str | None] = contextvars.ContextVar(
            "bench_request", default=None
        )

    def key(self) -> str | None:
        """The request this thread serves; else the only one in flight; else None."""
        key = self._current.get()
        if key is not None:
            return key
        with self._lock:
            return next(iter(self._active)) if len(self._active) == 1 else None

    def begin(self, service: str, method: str, kind: str) -> Call:
        call = Call(
            id=next(self._ids),
            key=self.key(),
            service=service,
            method=method,
            kind=kind,
            start=time.monotonic(),
            thread=threading.get_ident(),
        )
        if call.key is None:  # counted as unattributed at once; no request waits for its end
            self._sink(call.line())
            return call
        with self._lock:
            self._pending[call.id] = call
        return call

    def end(self, call: Call) -> None:
        """The caller has the call's outcome: a unary answer, or a stream read to its end."""
        ended = time.monotonic()
        with self._lock:
            pending = self._pending.pop(call.id, None)
        if pending is not None:  # not flushed by its request meanwhile
            pending.end = ended
            self._sink(pending.line())

    def read(self, call: Call) -> None:
        """The reader of a stream got one more response."""
        call.last_read = time.monotonic()

    def terminated(self, call: Call) -> None:
        """gRPC reports a stream's RPC over (on its own thread, maybe a moment after the reader
        got what it wanted): the call stays pending until its reader sees the end or its
        request ends."""
        call.terminated = time.monotonic()

    @contextmanager
    def request(self, key: str) -> Iterator[_Request]:
        """Attribute the calls made while the block runs to ``key``; write the request line."""
        token = self._current.set(key)
        with self._lock:
            self._active[key] = self._active.get(key, 0) + 1
        request = _Request(key=key, start=time.monotonic())
        try:
            yield request
        finally:
            self._current.reset(token)
            ended = time.monotonic()
            with self._lock:
                left = self._active.pop(key) - 1
                if left:
                    self._active[key] = left
                left_open = [c for c in self._pending.values() if c.key == key]
                for call in left_open:
                    del self._pending[call.id]
            for call in left_open:  # streams whose reader stopped before their end
                call.end, call.read_to_end = _stream_end(call, otherwise=ended), False
                self._sink(call.line())
            self._sink(
                {
                    "type": "request",
                    "key": key,
                    "start": request.start,
                    "end": ended,
                    "status": request.status,
                    **request.extra,
                }
            )


def _stream_end(call: Call, *, otherwise: float | None = None) -> float:
    """The end of a stream its reader left before the end: its last response read (what the
    caller waited for); else when it terminated; else ``otherwise`` (now)."""
    for moment in (call.last_read, call.terminated, otherwise):
        if moment is not None:
            return moment
    return time.monotonic()


def _method_name(details: Any) -> str:
    method = details.method
    return method.decode() if isinstance(method, bytes) else str(method)


class _CountedStream(grpc.Call):  # type: ignore[misc]
    """A response stream that tells the recorder of each response its reader gets and of the
    end the moment the reader sees it (StopIteration, or the RPC's error); everything else is
    the stream's own."""

    def __init__(self, stream: Any, recorder: Recorder, call: Call) -> None:
        self._stream = stream
        self._recorder = recorder
        self._call = call

    def __iter__(self) -> _CountedStream:
        return self

    def __next__(self) -> Any:
        try:
            response = next(self._stream)
        except BaseException:
            self._recorder.end(self._call)
            raise
        self._recorder.read(self._call)
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return bool(self._stream.add_callback(callback))

    def cancel(self) -> bool:
        return bool(self._stream.cancel())

    def code(self) -> Any:
        return self._stream.code()

    def details(self) -> Any:
        return self._stream.details()

    def initial_metadata(self) -> Any:
        return self._stream.initial_metadata()

    def is_active(self) -> bool:
        return bool(self._stream.is_active())

    def time_remaining(self) -> Any:
        return self._stream.time_remaining()

    def trailing_metadata(self) -> Any:
        return self._stream.trailing_metadata()


class CallCounter(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[misc]
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc]
):
    """A client interceptor recording each call of one service's channel in a Recorder."""

    def __init__(self, recorder: Recorder, service: str) -> None:
        self._recorder = recorder
        self._service = service

    def _unary(self, continuation: Any, details: Any, request: Any, kind: str) -> Any:
        call = self._recorder.begin(self._service, _method_name(details), kind)
        try:
            outcome = continuation(details, request)
        except BaseException:
            self._recorder.end(call)
            raise
        add_done_callback = getattr(outcome, "add_done_callback", None)
        if add_done_callback is None:
            self._recorder.end(call)
        else:  # a finished outcome calls back at once; a future (``.future()``) when it is done
            add_done_callback(lambda _: self._recorder.end(call))
        return outcome

    def _stream(self, continuation: Any, details: Any, request: Any, kind: str) -> Any:
        call = self._recorder.begin(self._service, _method_name(details), kind)
        try:
            stream = continuation(details, request)
        except BaseException:
            self._recorder.end(call)
            raise
        add_callback = getattr(stream, "add_callback", None)
        if add_callback is None or not add_callback(lambda: self._recorder.terminated(call)):
            self._recorder.end(call)  # not a call object, or the RPC already failed
            return stream
        return _CountedStream(stream, self._recorder, call)

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return self._unary(continuation, details, request, "unary_unary")

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return self._unary(continuation, details, requests, "stream_unary")

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return self._stream(continuation, details, request, "unary_stream")

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return self._stream(continuation, details, requests, "stream_stream")


def _transports() -> list[tuple[str, type[Any]]]:
    from google.cloud.firestore_v1.services.firestore.transports.grpc import (
        FirestoreGrpcTransport,
    )
    from google.cloud.tasks_v2.services.cloud_tasks.transports.grpc import (
        CloudTasksGrpcTransport,
    )

    return [(FIRESTORE, FirestoreGrpcTransport), (TASKS, CloudTasksGrpcTransport)]


def _counted_channel(transport: type[Any], channel: Any, counter: CallCounter) -> Any:
    """What the transport is given instead of ``channel``: the same channel, intercepted."""
    if isinstance(channel, grpc.Channel):
        return grpc.intercept_channel(channel, counter)
    make = channel if callable(channel) else transport.create_channel

    def create(*args: Any, **kwargs: Any) -> Any:
        return grpc.intercept_channel(make(*args, **kwargs), counter)

    return create


def install(recorder: Recorder) -> Callable[[], None]:
    """Count every channel of Firestore and Cloud Tasks transports made from now on; returns the
    function that undoes it."""
    undo = [
        _patch(transport, CallCounter(recorder, service)) for service, transport in _transports()
    ]

    def uninstall() -> None:
        for step in reversed(undo):
            step()

    return uninstall


def _patch(transport: type[Any], counter: CallCounter) -> Callable[[], None]:
    original = transport.__dict__["__init__"]

    def counted_init(self: Any, *args: Any, channel: Any = None, **kwargs: Any) -> None:
        original(self, *args, channel=_counted_channel(transport, channel, counter), **kwargs)

    setattr(transport, "__init__", counted_init)  # noqa: B010 (an instance method, patched)

    def restore() -> None:
        setattr(transport, "__init__", original)  # noqa: B010

    return restore


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def middleware(recorder: Recorder, app: WsgiApp) -> WsgiApp:
    """A WSGI app that serves requests carrying ``X-Bench-Request`` as ``recorder.request``."""

    def counted(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        key = environ.get(_WSGI_KEY)
        if not key:
            return app(environ, start_response)
        with recorder.request(str(key)) as request:

            def capture(status: str, headers: Any, exc_info: Any = None) -> Any:
                request.status = status
                return start_response(status, headers, exc_info)

            result = app(environ, capture)
            try:
                body = b"".join(result)  # the whole response inside the request's span
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        return [body]

    return counted


class JsonLines:
    """A sink appending one JSON line per record, opened by the process that writes (gunicorn
    forks its worker after this module patched the master)."""

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()
        self._file: Any = None
        self._pid = 0

    def __call__(self, record: Record) -> None:
        line = json.dumps(record) + "\n"
        with self._lock:
            if self._file is None or self._pid != os.getpid():
                self._file = self._path.open("a", encoding="utf-8", buffering=1)
                self._pid = os.getpid()
            self._file.write(line)
            self._file.flush()


# --- reading what was recorded --------------------------------------------------------------------


def read_calls(path: str | Path) -> list[Record]:
    """Every line the instrumented process wrote (none if it wrote nothing yet)."""
    target = Path(path)
    if not target.exists():
        return []
    return [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines() if line]


def sequential_depth(intervals: Iterable[tuple[float, float]]) -> int:
    """The length of the longest chain of calls each starting after the previous one ended:
    calls that overlap in time count once. (Greedy by end time: the most pairwise
    non-overlapping intervals, which for intervals is the longest such chain.)"""
    depth, last_end = 0, -math.inf
    for start, end in sorted(intervals, key=lambda span: (span[1], span[0])):
        if start >= last_end:
            depth, last_end = depth + 1, end
    return depth


@dataclass
class RequestCalls:
    """What one request did at the channels."""

    key: str
    status: str | None
    latency_ms: float | None
    firestore_calls: int
    firestore_sequential: int
    tasks_calls: int
    tasks_sequential: int
    sequential: int
    #: Streams whose reader left them before their end (each counted up to its last read).
    left_open: int
    methods: dict[str, int]


def short_method(method: str) -> str:
    """``/google.firestore.v1.Firestore/Commit`` → ``firestore Commit``."""
    service, _, name = method.rpartition("/")
    return f"{service.rsplit('.', 1)[-1].lower() or '?'} {name}"


def summarise_requests(lines: Sequence[Mapping[str, Any]]) -> dict[str, RequestCalls]:
    """Per request key: calls per service, the sequential depth of each and of both together."""
    calls: dict[str, list[Mapping[str, Any]]] = {}
    requests: dict[str, Mapping[str, Any]] = {}
    for line in lines:
        if line.get("type") == "request":
            requests[str(line["key"])] = line
        elif line.get("type") == "call" and line.get("key") is not None:
            calls.setdefault(str(line["key"]), []).append(line)
    summary = {}
    for key in sorted(set(calls) | set(requests)):
        own = calls.get(key, [])
        request = requests.get(key)
        spans = {
            service: [(float(c["start"]), float(c["end"])) for c in own if c["service"] == service]
            for service in (FIRESTORE, TASKS)
        }
        methods: dict[str, int] = {}
        for c in sorted(own, key=lambda c: float(c["start"])):
            name = short_method(str(c["method"]))
            methods[name] = methods.get(name, 0) + 1
        summary[key] = RequestCalls(
            key=key,
            status=None if request is None else request.get("status"),
            latency_ms=(
                None
                if request is None
                else round(1000 * (float(request["end"]) - float(request["start"])), 2)
            ),
            firestore_calls=len(spans[FIRESTORE]),
            firestore_sequential=sequential_depth(spans[FIRESTORE]),
            tasks_calls=len(spans[TASKS]),
            tasks_sequential=sequential_depth(spans[TASKS]),
            sequential=sequential_depth(spans[FIRESTORE] + spans[TASKS]),
            left_open=sum(not c.get("read_to_end", True) for c in own),
            methods=methods,
        )
    return summary


def unattributed(lines: Sequence[Mapping[str, Any]]) -> int:
    """Calls made while no (or more than one) counted request was in flight."""
    return sum(1 for line in lines if line.get("type") == "call" and line.get("key") is None)


# --- the bootstrap ------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    import sys

    path = os.environ.get(CALLS_FILE_ENV)
    if not path:
        print(f"{CALLS_FILE_ENV} must name the file the calls are written to", file=sys.stderr)
        return 2
    recorder = Recorder(JsonLines(path))
    install(recorder)

    cli: Any = importlib.import_module("functions_framework._cli")
    create_app = cli.create_app

    def counted_app(*args: Any, **kwargs: Any) -> Any:
        app = create_app(*args, **kwargs)
        app.wsgi_app = middleware(recorder, app.wsgi_app)
        return app

    cli.create_app = counted_app
    arguments = list(sys.argv[1:] if argv is None else argv)
    cli._cli.main(args=arguments, prog_name="python -m benchmarks.instrumented")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
