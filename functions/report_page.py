"""A meeting's attendance report as one self-contained HTML page (``report --html``,
``GET /meetings/{id}/report``).

:func:`render_report` is pure: the meeting, its participant documents, its revision records and
its neighbours in, one HTML string out. :func:`read_report` makes the store reads it needs
(through the port it is handed), as ``functions.views`` does.

The page fetches nothing: CSS is inline, the timeline is positioned ``div``s (laid out by
``functions.timeline``, the same layout the terminal draws), there is no script, font or image,
and its own Content-Security-Policy forbids loading any. Every value shown is data, never markup:
display names and keys are caller-controlled text, so each one goes through :func:`html.escape`
(attributes too) and style attributes hold only numbers this module formats.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from types import MappingProxyType
from typing import Any, Final

from functions.errors import NotFound
from functions.model import MeetingRecord
from functions.ports import MeetingStore
from functions.schedule import Status
from functions.timeline import (
    Bar,
    Timeline,
    credited_span,
    meeting_timeline,
    neighbours_bounds,
    ticks,
)
from functions.views import hms, participant_row, sorted_participants

__all__ = ["HtmlAnswer", "ReportData", "read_report", "render_report"]

#: What a reason of a revision record means, for the people reading the history.
REASONS: Final[Mapping[str, str]] = {
    "poll": "a Reports poll found new or changed sessions",
    "backfill": "the backfill scan found sessions",
    "neighbour": "a neighbouring meeting of the code changed how time is split",
    "manual": "an operator's sync",
    "meet": "Meet's own attendance (preliminary)",
    "declaration": "the declared meeting changed (times or expected participants)",
    "erasure": "a participant was erased",
}

#: No fetch of any kind, whatever the page holds: styles inline, nothing else.
CONTENT_SECURITY_POLICY: Final = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


class HtmlAnswer(dict[str, Any]):
    """An HTML body in the place of a handler's JSON one: an empty dict, so that it goes wherever
    ``(status, dict)`` goes (``guarded``, the logs), carrying the page; ``main._response`` sends
    ``html`` as ``text/html`` with ``headers`` (it imports nothing of ours but the handlers, so
    it knows the answer by these two attributes)."""

    __slots__ = ("html",)
    #: Sent with the page: no fetch whatever it holds, and no guessing of its type.
    headers: Final[Mapping[str, str]] = MappingProxyType(
        {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff"}
    )

    def __init__(self, page: str) -> None:
        super().__init__()
        self.html = page


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportData:
    """Everything the page shows, as stored."""

    meeting: MeetingRecord
    #: The participant documents in reading order (``views.sorted_participants``).
    participants: Sequence[Mapping[str, Any]]
    #: The revision records, oldest first (``MeetingStore.revisions``).
    revisions: Sequence[Mapping[str, Any]]
    #: The meetings of the code around it: they decide its credited span.
    neighbours: Sequence[MeetingRecord] = ()


def read_report(store: MeetingStore, meeting_id: str) -> ReportData:
    """The store reads of a report; :class:`NotFound` for an unknown meeting."""
    meeting = store.get(meeting_id)
    if meeting is None:
        raise NotFound.meeting(meeting_id)
    neighbours = (
        []
        if meeting.status is Status.MERGED
        else store.with_code(meeting.meeting_code, ended=neighbours_bounds(meeting))
    )
    return ReportData(
        meeting=meeting,
        participants=sorted_participants(store, meeting),
        revisions=store.revisions(meeting_id),
        neighbours=neighbours,
    )


# ------------------------------------------------------------------------------------------------
# Rendering


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _pct(fraction: float) -> str:
    return f"{max(0.0, min(1.0, fraction)) * 100:.4f}%"


def _when(moment: datetime | None, zone: tzinfo) -> str:
    if moment is None:
        return "—"
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def _time(moment: datetime, zone: tzinfo) -> str:
    return moment.astimezone(zone).strftime("%H:%M")


_STYLE: Final = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, sans-serif; color: #1b1f24; background: #fff; margin: 24px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
.sub { color: #57606a; margin: 0 0 12px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; }
dl.facts dt { color: #57606a; }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.status { display: inline-block; padding: 0 8px; border-radius: 10px; background: #ddf4ff; }
.status-completed { background: #dafbe1; } .status-failed { background: #ffebe9; }
.status-merged { background: #eaeef2; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.who { overflow-wrap: anywhere; max-width: 26em; }
.gain { color: #1a7f37; } .loss { color: #cf222e; }
.timeline { width: 100%; }
.tl-row { display: grid; grid-template-columns: 240px 1fr; align-items: center; }
.tl-who { padding-right: 8px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.tl-track { position: relative; height: 22px; background: #f6f8fa;
  border-bottom: 1px solid #fff; }
.tl-axis .tl-track { height: 20px; background: none; }
.tl-tick { position: absolute; top: 0; font-size: 11px; color: #57606a;
  border-left: 1px solid #afb8c1; padding-left: 2px; white-space: nowrap; }
.tl-tick.last { transform: translateX(-100%); border-left: none;
  border-right: 1px solid #afb8c1; padding: 0 2px 0 0; }
.tl-window { position: absolute; top: 0; bottom: 0; background: #eaeef2; }
.tl-credited { position: absolute; top: 0; bottom: 0; background: #dafbe1; }
.tl-mark { position: absolute; top: 0; bottom: 0; width: 0; border-left: 2px dashed #bf8700; }
.session-bar { position: absolute; top: 5px; height: 12px; min-width: 3px; background: #0969da;
  border-radius: 2px; }
.session-bar.outside, .uncredited { background: #8c959f; }
.uncredited { position: absolute; top: 0; bottom: 0; }
.legend { font-size: 12px; color: #57606a; margin: 6px 0 0 240px; }
.legend span { display: inline-block; width: 14px; height: 10px; vertical-align: middle;
  margin: 0 4px 0 12px; }
.empty { color: #57606a; font-style: italic; }
"""


def render_report(data: ReportData, *, zone: tzinfo = UTC) -> str:
    """The page: header (status, revision, totals), timeline, participants, absences and the
    revision history, with times in ``zone``."""
    meeting = data.meeting
    credited = credited_span(meeting, data.neighbours)
    layout = meeting_timeline(meeting, data.participants, credited)
    zone_name = str(zone)
    title = f"Attendance · {meeting.meeting_code} · {_when(meeting.ended_at, zone)}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_e(CONTENT_SECURITY_POLICY)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        _header(meeting, layout, zone, zone_name),
        _timeline(layout, zone, zone_name),
        _participants(data.participants, zone),
        _absences(meeting, data.participants),
        _history(data.revisions, data.participants, zone),
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


def _header(meeting: MeetingRecord, layout: Timeline, zone: tzinfo, zone_name: str) -> str:
    status = str(meeting.status)
    error = meeting.last_error
    credited = layout.credited
    rows: list[tuple[str, str]] = [
        ("Meeting", _e(meeting.meeting_id)),
        ("Status", f'<span class="status status-{_e(status)}">{_e(status)}</span>'),
        ("Revision", _e(meeting.revision)),
        ("Attendance from", _e(meeting.attendance_source)),
        (
            "Totals",
            _e(
                f"{meeting.participant_count} participant(s) with sessions, "
                f"{hms(meeting.total_attended_seconds)} attended, "
                f"{layout.session_count} session(s)"
            ),
        ),
        (
            "Declared",
            _e(f"{_when(meeting.started_at, zone)} → {_when(meeting.ended_at, zone)}"),
        ),
        (
            "Window",
            _e(f"{_when(meeting.window_start, zone)} → {_when(meeting.window_end, zone)}"),
        ),
        (
            "Credited span",
            "nothing (merged)"
            if credited is None
            else _e(f"{_when(credited.join, zone)} → {_when(credited.leave, zone)}"),
        ),
        (
            "Expected",
            _e(
                f"{len(meeting.expected_participants)}, missing {len(meeting.missing_participants)}"
            ),
        ),
        ("Source", _e(meeting.source)),
    ]
    if meeting.external_id is not None:
        rows.insert(1, ("External id", _e(meeting.external_id)))
    if meeting.merged_into is not None:
        rows.insert(2, ("Merged into", _e(meeting.merged_into)))
    if error is not None:
        rows.append(("Last error", _e(f"{error.code}: {error.message} ({_when(error.at, zone)})")))
    facts = "\n".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in rows)
    return (
        f"<header><h1>Attendance of {_e(meeting.meeting_code)}</h1>"
        f'<p class="sub">Times in {_e(zone_name)}.</p>'
        f'<dl class="facts">\n{facts}\n</dl></header>'
    )


def _span_div(css: str, bar: Bar) -> str:
    return f'<div class="{css}" style="left:{_pct(bar.start)};width:{_pct(bar.end - bar.start)}">'


def _overlaps(bar: Bar, credited: Bar | None) -> bool:
    if credited is None:
        return False
    if bar.join == bar.leave:
        return credited.join <= bar.join < credited.leave
    return bar.leave > credited.join and bar.join < credited.leave


def _uncredited_parts(bar: Bar, credited: Bar | None) -> str:
    """The parts of a partly credited session outside the credited span, drawn over it in the
    colour of what is not credited (positions relative to the bar): a session stays one
    element, and the page shows what the terminal shows."""
    length = bar.end - bar.start
    if credited is None or length <= 0 or not _overlaps(bar, credited):
        return ""
    parts = []
    before = (bar.start, min(bar.end, credited.start))
    after = (max(bar.start, credited.end), bar.end)
    for lo, hi in (before, after):
        if hi > lo:
            parts.append(
                f'<div class="uncredited" style="left:{_pct((lo - bar.start) / length)};'
                f'width:{_pct((hi - lo) / length)}"></div>'
            )
    return "".join(parts)


def _timeline(layout: Timeline, zone: tzinfo, zone_name: str) -> str:
    background = [_span_div("tl-window", layout.window) + "</div>"]
    if layout.credited is not None:
        background.append(_span_div("tl-credited", layout.credited) + "</div>")
    for mark in layout.marks:
        background.append(
            f'<div class="tl-mark" style="left:{_pct(mark.position)}" '
            f'title="{_e(mark.label + " · " + _when(mark.at, zone))}"></div>'
        )
    behind = "".join(background)
    tick_labels = "".join(
        # Near the right edge a label is drawn to the left of its tick, inside the track.
        f'<div class="tl-tick{" last" if fraction > 0.95 else ""}" '
        f'style="left:{_pct(fraction)}">{_e(_time(moment, zone))}</div>'
        for moment, fraction in ticks(layout.start, layout.end, zone=zone)
    )
    rows = [
        '<div class="tl-row tl-axis"><div class="tl-who"></div>'
        f'<div class="tl-track">{tick_labels}</div></div>'
    ]
    for row in layout.rows:
        sessions = []
        for bar in row.bars:
            outside = "" if _overlaps(bar, layout.credited) else " outside"
            seconds = round((bar.leave - bar.join).total_seconds())
            label = f"{_when(bar.join, zone)} → {_when(bar.leave, zone)} ({hms(seconds)})"
            sessions.append(
                f'<div class="session-bar{outside}" style="left:{_pct(bar.start)};'
                f'width:{_pct(bar.end - bar.start)}" title="{_e(label)}">'
                f"{_uncredited_parts(bar, layout.credited)}</div>"
            )
        note = f" · {row.note}" if row.note else ""
        rows.append(
            f'<div class="tl-row"><div class="tl-who" title="{_e(row.label)}">'
            f"{_e(row.label + note)}</div>"
            f'<div class="tl-track">{behind}{"".join(sessions)}</div></div>'
        )
    marks = "".join(
        f"<li>{_e(mark.label)}: {_e(_when(mark.at, zone))}</li>" for mark in layout.marks
    )
    legend = (
        '<p class="legend"><span style="background:#0969da"></span>session'
        '<span style="background:#8c959f"></span>session outside the credited span'
        '<span style="background:#dafbe1"></span>credited span'
        '<span style="background:#eaeef2"></span>window'
        '<span style="border-left:2px dashed #bf8700"></span>boundary with a neighbour</p>'
    )
    return (
        f'<section><h2>Timeline</h2><p class="sub">{_e(_when(layout.start, zone))} → '
        f"{_e(_when(layout.end, zone))} ({_e(zone_name)})</p>"
        f'<div class="timeline">{"".join(rows)}</div>{legend}'
        + (f"<ul>{marks}</ul>" if marks else "")
        + "</section>"
    )


def _participants(documents: Sequence[Mapping[str, Any]], zone: tzinfo) -> str:
    if not documents:
        return '<section><h2>Participants</h2><p class="empty">No participant.</p></section>'
    head = (
        "<tr><th>Participant</th><th>Email</th><th>First join</th><th>Last leave</th>"
        "<th>Attended</th><th>Sessions</th><th>Devices</th><th>Note</th></tr>"
    )
    body = []
    for document in documents:
        who, _, _, attended, sessions, devices, note = participant_row(document)
        if document.get("preliminary"):
            note = "preliminary"
        first, last = document.get("first_join"), document.get("last_leave")
        body.append(
            f'<tr><td class="who">{_e(who)}</td><td>{_e(document.get("email") or "—")}</td>'
            f"<td>{_e(_when(first if isinstance(first, datetime) else None, zone))}</td>"
            f"<td>{_e(_when(last if isinstance(last, datetime) else None, zone))}</td>"
            f'<td class="num">{_e(attended)}</td><td class="num">{_e(sessions)}</td>'
            f"<td>{_e(devices)}</td><td>{_e(note)}</td></tr>"
        )
    return (
        f"<section><h2>Participants</h2><table><thead>{head}</thead>"
        f"<tbody>{''.join(body)}</tbody></table></section>"
    )


def _absences(meeting: MeetingRecord, documents: Sequence[Mapping[str, Any]]) -> str:
    """Expected participants who did not attend: the meeting's ``missing_participants`` and the
    documents marked ``absent``; those still estimated (no data yet) are said to be so."""
    by_key = {str(d.get("participant_key")): d for d in documents}
    unseen = [k for k, d in by_key.items() if d.get("absent") or d.get("estimated")]
    keys = list(dict.fromkeys([*meeting.missing_participants, *unseen]))
    if not keys:
        return (
            '<section><h2>Absences</h2><p class="empty">Nobody expected is missing.</p></section>'
        )
    rows = []
    for key in keys:
        document = by_key.get(key, {})
        if document.get("estimated"):
            why = "no attendance data yet (estimated at the declared length)"
        elif key in meeting.missing_participants or document.get("absent"):
            why = "expected, no session in this meeting"
        else:
            why = "expected"
        rsvp = document.get("rsvp") or meeting.rsvps.get(key)
        name = str(document.get("display_name") or "")
        rows.append(
            f'<tr><td class="who">{_e(key)}</td><td>{_e(name or "—")}</td>'
            f"<td>{_e(rsvp or '—')}</td><td>{_e(why)}</td></tr>"
        )
    return (
        "<section><h2>Absences</h2><table><thead><tr><th>Participant</th><th>Name</th>"
        f"<th>Calendar answer</th><th>Why</th></tr></thead><tbody>{''.join(rows)}</tbody>"
        "</table></section>"
    )


def _change(change: Mapping[str, Any]) -> tuple[str, str]:
    """(what happened, its CSS class) for one ``{participant_key, before, after}``."""
    before, after = change.get("before"), change.get("after")
    if before is None and after is None:
        return "no attendance", ""
    if before is None:
        return f"recorded: {hms(int(after or 0))}", "gain"
    if after is None:
        return f"removed (had {hms(int(before))})", "loss"
    delta = int(after) - int(before)
    if delta == 0:
        return f"unchanged at {hms(int(after))}", ""
    sign, css = ("+", "gain") if delta > 0 else ("\N{MINUS SIGN}", "loss")
    return f"{hms(int(before))} → {hms(int(after))} ({sign}{hms(abs(delta))})", css


def _history(
    revisions: Sequence[Mapping[str, Any]],
    documents: Sequence[Mapping[str, Any]],
    zone: tzinfo,
) -> str:
    if not revisions:
        return (
            '<section><h2>Revision history</h2><p class="empty">No revision yet: nothing was '
            "recorded from Reports or Meet.</p></section>"
        )
    names = {str(d.get("participant_key")): str(d.get("display_name") or "") for d in documents}
    rows = []
    for record in sorted(revisions, key=lambda r: int(r.get("revision") or 0), reverse=True):
        at = record.get("at")
        reason = str(record.get("reason") or "")
        why = REASONS.get(reason, "")
        changes = record.get("changes") or []
        items = []
        for change in changes:
            key = str(change.get("participant_key") or "")
            text, css = _change(change)
            who = f"{names[key]} ({key})" if names.get(key) else key
            items.append(
                f'<li><span class="who">{_e(who)}</span>: <span class="{css}">'
                f"{_e(text)}</span></li>"
            )
        listed = f"<ul>{''.join(items)}</ul>" if items else '<span class="empty">no change</span>'
        rows.append(
            f'<tr><td class="num">{_e(record.get("revision"))}</td>'
            f"<td>{_e(_when(at if isinstance(at, datetime) else None, zone))}</td>"
            f"<td>{_e(reason)}<br><small>{_e(why)}</small></td><td>{listed}</td></tr>"
        )
    return (
        '<section><h2>Revision history</h2><p class="sub">Newest first: who gained or lost '
        "attended time, when and why.</p><table><thead><tr><th>Revision</th><th>At</th>"
        f"<th>Why</th><th>Changes</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        "</section>"
    )
