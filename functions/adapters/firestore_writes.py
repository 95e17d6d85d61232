"""Firestore commits built with the raw protobuf types: what the client's ``WriteBatch`` sends
(``create``, ``set``, ``update``, ``delete``, ``commit``), without proto-plus in between.

Why: the client builds every value of every document through proto-plus (a Python wrapper and a
marshal lookup per ``Value``). A first poll of 5,000 participants writes about 290,000 values,
and building them was more than half of the poll, several times the commit requests themselves.
Here the same messages (the client's own types, ``Write.pb()`` …) are filled in place, in C
(upb): about 17 times faster.

What is sent is what the client would send:

- each value type our documents hold (``None``, ``bool``, ``int`` within int64, ``float``,
  ``str``, ``bytes``, ``datetime``, the client's ``DatetimeWithNanoseconds``, ``list``,
  ``tuple``, ``dict``) is encoded as ``google.cloud.firestore_v1._helpers.encode_value`` encodes
  it (``tests/unit/test_firestore_writes.py`` checks that against the function, with
  generated values, and whole writes and requests against the client's own);
- a write holding anything else (the sentinels and transforms ``SERVER_TIMESTAMP``,
  ``DELETE_FIELD``, ``ArrayUnion``, ``Increment`` …, GeoPoints, references, vectors, BSON values,
  sets, subclasses of ``dict`` or ``list``, a field name an update would read as a path, a value
  the client refuses) is built by the client's own helpers (``pbs_for_set_no_merge``,
  ``pbs_for_update`` …), so it is sent, or refused with the client's exception, as before;
- preconditions: a create carries ``exists: false``, an update ``exists: true`` unless given an
  option, and an option (``Client.write_option(last_update_time=…)``) modifies the write itself,
  as in the client;
- the request goes through the client's GAPIC ``commit`` with its default retry and timeout and
  the client's metadata, as ``WriteBatch.commit`` sends it, so its errors (``FailedPrecondition``,
  ``Aborted``, ``NotFound`` …) reach the caller as they did.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from google.api_core.datetime_helpers import DatetimeWithNanoseconds
from google.cloud import firestore
from google.cloud.firestore_v1 import _helpers
from google.cloud.firestore_v1.document import DocumentReference
from google.cloud.firestore_v1.types import document as document_types
from google.cloud.firestore_v1.types import firestore as firestore_types
from google.cloud.firestore_v1.types import write as write_types

__all__ = [
    "RawBatch",
    "create_write",
    "delete_write",
    "encode_value",
    "set_write",
    "update_document",
    "update_write",
]

#: The raw protobuf classes under the client's proto-plus types (upb messages).
_WRITE: Final[Any] = write_types.Write.pb()
_VALUE: Final[Any] = document_types.Value.pb()
_COMMIT_REQUEST: Final[Any] = firestore_types.CommitRequest.pb()

_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
#: The instants a datetime can name: beyond them the client's ``astimezone(UTC)`` overflows, so
#: such a value is left to the client (which raises).
_MIN_MICROS: Final = (datetime.min.replace(tzinfo=UTC) - _EPOCH) // _MICROSECOND
_MAX_MICROS: Final = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // _MICROSECOND
#: Field names an update's mask holds as they are (``FieldPath.from_string`` gives one part and
#: ``to_api_repr`` adds no backticks); any other name is left to the client's field-path rules.
_SIMPLE_FIELD: Final = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")


class _Unsupported(Exception):
    """A value this module does not encode itself: the client's helpers build the write."""


#: Whatever this module does not build itself, or the client might refuse: the client builds
#: that write, and sends it or raises what it raises.
_LEAVE_TO_CLIENT: Final = (_Unsupported, ValueError, TypeError, OverflowError)


def _timestamp_into(target: Any, value: datetime) -> None:
    # As _helpers._datetime_to_pb_timestamp: naive means UTC, aware is converted to UTC;
    # microseconds since the epoch, split by floor division (so before 1970 too).
    zone = value.tzinfo
    if zone is not UTC:
        if zone is None:
            value = value.replace(tzinfo=UTC)
        elif value.utcoffset() is None:
            raise _Unsupported(value)  # the client would read it as local time
    micros = (value - _EPOCH) // _MICROSECOND
    if not _MIN_MICROS <= micros <= _MAX_MICROS:
        raise _Unsupported(value)
    seconds, micro = divmod(micros, 1_000_000)
    if seconds == 0 and micro == 0:
        target.SetInParent()  # the epoch: every field at its default, the value still set
    target.seconds = seconds
    target.nanos = micro * 1000


def _encode_into(target: Any, value: object) -> None:
    """Fill ``target`` (an empty ``Value``) as ``_helpers.encode_value(value)`` would.

    Exact types first, in the order documents hold them most; subclasses of the scalar types
    then follow the client's ``isinstance`` order; anything else raises ``_Unsupported``.
    """
    kind = type(value)
    if kind is str:
        target.string_value = value
    elif kind is datetime:
        _timestamp_into(target.timestamp_value, value)  # type: ignore[arg-type]
    elif kind is int:
        if not _INT64_MIN <= value <= _INT64_MAX:  # type: ignore[operator]
            raise _Unsupported(value)
        target.integer_value = value
    elif value is None:
        target.null_value = 0  # struct_pb2.NULL_VALUE
    elif kind is bool:
        target.boolean_value = value
    elif kind is list or kind is tuple:
        array = target.array_value
        array.SetInParent()  # an empty array is still an array
        values = array.values
        for item in value:  # type: ignore[attr-defined]
            _encode_into(values.add(), item)
    elif kind is dict:
        mapped = target.map_value
        mapped.SetInParent()  # an empty map is still a map
        fields = mapped.fields
        for key, item in value.items():  # type: ignore[attr-defined]
            if type(key) is not str:
                raise _Unsupported(key)
            _encode_into(fields[key], item)
    elif kind is float:
        target.double_value = value
    elif kind is bytes:
        target.bytes_value = value
    else:
        _encode_subclass_into(target, value)


def _encode_subclass_into(target: Any, value: object) -> None:
    # The client's order: bool, int, float, DatetimeWithNanoseconds, datetime, str. Every type
    # it tries after those (bytes subclasses may be BSON) is left to it.
    if isinstance(value, bool):
        target.boolean_value = bool(value)
    elif isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise _Unsupported(value)
        target.integer_value = int(value)
    elif isinstance(value, float):
        target.double_value = float(value)
    elif isinstance(value, DatetimeWithNanoseconds):
        # Its nanoseconds kept, and its own arithmetic (``timestamp_pb``), as in the client.
        target.timestamp_value.SetInParent()
        target.timestamp_value.CopyFrom(value.timestamp_pb())  # type: ignore[no-untyped-call]
    elif isinstance(value, datetime):
        # Any other datetime subclass (proto-plus's own DatetimeWithNanoseconds, which the
        # client's results hold, among them) is a datetime to the client: microseconds only.
        _timestamp_into(target.timestamp_value, value)
    elif isinstance(value, str):
        target.string_value = str(value)
    else:
        raise _Unsupported(value)


def encode_value(value: object) -> Any:
    """A ``Value`` protobuf (raw) equal to ``_helpers.encode_value(value)._pb``; the client
    encodes (or refuses) what this module does not."""
    encoded = _VALUE()
    try:
        _encode_into(encoded, value)
    except _LEAVE_TO_CLIENT:
        return _helpers.encode_value(value)._pb
    return encoded


def _fill_fields(fields: Any, data: Mapping[str, object]) -> None:
    """A document's fields, as the client's ``extract_fields`` walk and ``encode_dict`` make
    them: a name must be a non-empty string (a ``FieldPath`` part), and a map in a map is
    walked the same way; a map in an array is a plain value (``_encode_into``)."""
    for key, item in data.items():
        if type(key) is not str or not key:
            raise _Unsupported(key)
        if type(item) is dict:
            mapped = fields[key].map_value
            mapped.SetInParent()
            _fill_fields(mapped.fields, item)
        else:
            _encode_into(fields[key], item)


def _set_into(target: Any, path: str, data: Mapping[str, object]) -> None:
    if type(data) is not dict:
        raise _Unsupported(data)
    update = target.update
    update.name = path
    _fill_fields(update.fields, data)


def _create_into(target: Any, path: str, data: Mapping[str, object]) -> None:
    _set_into(target, path, data)
    target.current_document.exists = False


def _update_into(
    target: Any, path: str, data: Mapping[str, object], option: _helpers.WriteOption | None
) -> None:
    if type(data) is not dict or not data:
        raise _Unsupported(data)  # the client refuses an empty update
    names = sorted(data)  # the client's mask: its top-level field paths, sorted
    for name in names:
        if not _SIMPLE_FIELD.fullmatch(name):
            raise _Unsupported(name)
    _set_into(target, path, data)
    target.update_mask.field_paths.extend(names)
    if option is None:
        target.current_document.exists = True  # the client's default, ExistsOption(True)
    else:
        option.modify_write(write_types.Write.wrap(target))


ClientWrites = Callable[[], Sequence[write_types.Write]]


def _client_write(client_writes: ClientWrites) -> Any:
    (only,) = client_writes()  # one write per write, as the callers' results expect
    return only._pb


def _built(fill: Callable[..., None], client_writes: ClientWrites, *args: object) -> Any:
    target = _WRITE()
    try:
        fill(target, *args)
    except _LEAVE_TO_CLIENT:
        return _client_write(client_writes)
    return target


def set_write(path: str, data: Mapping[str, object]) -> Any:
    """The write of ``WriteBatch.set(reference, data)`` for the document at ``path`` (raw)."""
    return _built(_set_into, lambda: _helpers.pbs_for_set_no_merge(path, data), path, data)


def create_write(path: str, data: Mapping[str, object]) -> Any:
    """The write of ``WriteBatch.create(reference, data)`` (raw)."""
    return _built(_create_into, lambda: _helpers.pbs_for_create(path, data), path, data)


def update_write(
    path: str, data: Mapping[str, object], option: _helpers.WriteOption | None = None
) -> Any:
    """The write of ``WriteBatch.update(reference, data, option=option)`` (raw)."""
    return _built(
        _update_into, lambda: _helpers.pbs_for_update(path, data, option), path, data, option
    )


def delete_write(path: str, option: _helpers.WriteOption | None = None) -> Any:
    """The write of ``WriteBatch.delete(reference, option=option)`` (raw)."""
    if option is None:
        return _WRITE(delete=path)
    return _helpers.pb_for_delete(path, option)._pb


def update_document(
    client: firestore.Client,
    reference: DocumentReference,
    data: Mapping[str, object],
    option: _helpers.WriteOption | None = None,
    *,
    also: Sequence[Any] = (),
) -> write_types.WriteResult:
    """``reference.update(data, option=option)`` on raw protobufs: the same request and errors,
    its result (a meeting document carries a fingerprint per participant, thousands of values
    the client would build through proto-plus). ``also``: writes already built, sent in the
    same request after it (their results are not read)."""
    batch = RawBatch(client)
    batch.update(reference, data, option)
    batch.extend(also)
    result, *_ = batch.commit()
    return result


class RawBatch:
    """``WriteBatch``'s ``create``/``set``/``update``/``delete``/``commit`` on raw protobufs:
    each write is built straight into one ``CommitRequest`` (no copy), which is sent as
    ``WriteBatch.commit`` sends its own. ``commit`` answers the write results in order, as the
    client's types give them (``update_time`` a proto-plus ``DatetimeWithNanoseconds``)."""

    def __init__(self, client: firestore.Client, built: Sequence[Any] = ()) -> None:
        """``built``: writes already built (by :func:`set_write` …), added as they are."""
        self._client = client
        self._request = _COMMIT_REQUEST(database=client._database_string)
        self._request.writes.extend(built)

    def _add(self, fill: Callable[..., None], client_writes: ClientWrites, *args: object) -> None:
        writes = self._request.writes
        try:
            fill(writes.add(), *args)
        except _LEAVE_TO_CLIENT:
            del writes[-1]  # half filled: the client builds this one whole
            writes.append(_client_write(client_writes))

    def create(self, reference: DocumentReference, data: Mapping[str, object]) -> None:
        path = reference._document_path
        self._add(_create_into, lambda: _helpers.pbs_for_create(path, data), path, data)

    def set(self, reference: DocumentReference, data: Mapping[str, object]) -> None:
        path = reference._document_path
        self._add(_set_into, lambda: _helpers.pbs_for_set_no_merge(path, data), path, data)

    def update(
        self,
        reference: DocumentReference,
        data: Mapping[str, object],
        option: _helpers.WriteOption | None = None,
    ) -> None:
        if option.__class__.__name__ == "ExistsOption":
            # WriteBatch.update's own check: an update's precondition is exists (or a version).
            raise ValueError("you must not pass an explicit write option to update.")
        path = reference._document_path
        self._add(
            _update_into, lambda: _helpers.pbs_for_update(path, data, option), path, data, option
        )

    def delete(
        self, reference: DocumentReference, option: _helpers.WriteOption | None = None
    ) -> None:
        self._request.writes.append(delete_write(reference._document_path, option))

    def extend(self, built: Sequence[Any]) -> None:
        """Writes already built, added as they are, after those added before."""
        self._request.writes.extend(built)

    def __len__(self) -> int:
        return len(self._request.writes)

    def commit(self) -> Sequence[write_types.WriteResult]:
        # As WriteBatch.commit: the GAPIC method with its default retry and timeout and the
        # client's metadata. The results stay proto-plus, so update_time is what it was.
        response = self._client._firestore_api.commit(
            request=firestore_types.CommitRequest.wrap(self._request),
            metadata=self._client._rpc_metadata,
        )
        results: Sequence[write_types.WriteResult] = response.write_results
        return results
