"""Cloud Functions entry points: ingest (public, signed), api (private, ID tokens), collect (Cloud
Tasks), backfill (Cloud Scheduler), meet_events (Pub/Sub push of Workspace Events).

Each adapts Flask to the framework-free handlers in ``functions.app`` and nothing more.
"""

from __future__ import annotations

import flask
import functions_framework

from functions import app
from functions.limits import MAX_BODY_BYTES


def _request(request: flask.Request) -> app.HttpRequest:
    # Read at most one byte past the limit: enough to refuse a large body without holding it.
    body = request.stream.read(MAX_BODY_BYTES + 1)
    return app.HttpRequest(
        method=request.method,
        path=request.path,
        headers={name.lower(): value for name, value in request.headers.items()},
        body=body,
        content_type=request.content_type,
        content_length=request.content_length,
    )


def _response(answer: app.Response) -> flask.Response:
    status, body = answer
    if status == 204:
        return flask.Response(status=204)
    page = getattr(body, "html", None)
    if isinstance(page, str):  # an HTML answer (functions.report_page.HtmlAnswer)
        html = flask.Response(page, status=status, mimetype="text/html")
        html.headers.update(getattr(body, "headers", {}))
        return html
    response = flask.Response(app.json_bytes(body), status=status, mimetype="application/json")
    if status == 405:
        response.headers["Allow"] = ", ".join(body["error"].get("allowed") or ())
    return response


@functions_framework.http
def ingest(request: flask.Request) -> flask.Response:
    return _response(app.ingest(_request(request)))


@functions_framework.http
def api(request: flask.Request) -> flask.Response:
    return _response(app.api(_request(request)))


@functions_framework.http
def collect(request: flask.Request) -> flask.Response:
    return _response(app.collect(_request(request)))


@functions_framework.http
def backfill(request: flask.Request) -> flask.Response:
    return _response(app.backfill(_request(request)))


@functions_framework.http
def meet_events(request: flask.Request) -> flask.Response:
    return _response(app.meet_events(_request(request)))


app.freeze_startup_heap()
