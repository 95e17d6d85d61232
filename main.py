"""Cloud Functions entry points: ingest, collect, backfill.

Until the pipeline lands, each answers 501 so the local stack can show every part answering.
"""

from __future__ import annotations

import json

import flask
import functions_framework


def _not_implemented(name: str) -> flask.Response:
    body = {"error": {"code": "not_implemented", "message": f"{name} is not implemented yet"}}
    return flask.Response(json.dumps(body), status=501, mimetype="application/json")


@functions_framework.http
def ingest(request: flask.Request) -> flask.Response:
    return _not_implemented("ingest")


@functions_framework.http
def collect(request: flask.Request) -> flask.Response:
    return _not_implemented("collect")


@functions_framework.http
def backfill(request: flask.Request) -> flask.Response:
    return _not_implemented("backfill")
