"""The "one-create request": a trivial functions-framework function that creates one Firestore
document per request (benchmarks only: the ceiling a webhook is measured against).

    python -m functions_framework --target=one_create --source=benchmarks/one_create.py \
        --host=127.0.0.1 --port=8081

Reads GOOGLE_CLOUD_PROJECT and FIRESTORE_EMULATOR_HOST (the stock client reads the latter itself);
one client per instance, made on the first request, as ingest makes its own.
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime

import flask
import functions_framework
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

COLLECTION = "one_create"

_lock = threading.Lock()
_client: firestore.Client | None = None


def client() -> firestore.Client:
    global _client
    with _lock:
        if _client is None:
            _client = firestore.Client(
                project=os.environ["GOOGLE_CLOUD_PROJECT"],
                credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            )
        return _client


@functions_framework.http
def one_create(request: flask.Request) -> flask.Response:
    body = request.get_data()
    document = client().collection(COLLECTION).document()
    document.create({"at": datetime.now(UTC), "bytes": len(body)})
    return flask.Response(
        b'{"created":"' + document.id.encode() + b'"}', status=201, mimetype="application/json"
    )
