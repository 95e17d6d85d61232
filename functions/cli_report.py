"""``python -m functions report``: a meeting's attendance as one HTML page; and the terminal
drawing of its timeline that ``show --timeline`` prints.

Both draw ``functions.timeline``'s layout: the page in fractions (``functions.report_page``),
the terminal in columns (:func:`render_timeline`).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any, Final

import click
from rich.text import Text

from functions.cli import _checked_meeting_id, operator_store, reports_failures
from functions.errors import CommandFailed
from functions.export import parse_zone
from functions.model import MeetingRecord
from functions.ports import MeetingStore
from functions.report_page import read_report, render_report
from functions.schedule import Status
from functions.timeline import (
    Row,
    Timeline,
    columns,
    credited_span,
    meeting_timeline,
    neighbours_bounds,
    ticks,
)

__all__ = ["render_timeline", "report", "show_timeline"]

#: Columns of the participant labels in front of the tracks.
LABEL_WIDTH: Final = 30
#: The glyphs of the terminal timeline (the legend under it repeats them).
CREDITED_BAR: Final = "█"
OUTSIDE_BAR: Final = "░"
MARK: Final = "┊"
CREDITED_RULE: Final = "━"
WINDOW_RULE: Final = "─"
EMPTY: Final = "·"


def _printable(text: str) -> str:
    """Data for a terminal: a control character (an escape sequence in a display name) would
    be obeyed by the terminal, so it is shown as U+FFFD instead."""
    return "".join(c if c.isprintable() else "\N{REPLACEMENT CHARACTER}" for c in text)


def _clock(moment: datetime, zone: tzinfo) -> str:
    return moment.astimezone(zone).strftime("%H:%M:%S")


def render_timeline(layout: Timeline, *, width: int, zone: tzinfo = UTC) -> Text:
    """The timeline in ``width`` terminal columns: a tick line, a rule (window and credited
    span), one track per participant, and a legend naming the neighbours' boundaries."""
    track = max(10, width - LABEL_WIDTH - 1)
    mark_columns = {min(track - 1, round(mark.position * track)) for mark in layout.marks}
    if layout.credited is None:
        credited: range = range(0)
    else:
        credited = range(*columns(layout.credited.start, layout.credited.end, track))
    window = range(*columns(layout.window.start, layout.window.end, track))
    out = Text(no_wrap=True, overflow="crop")

    ruler = [" "] * track
    for moment, fraction in ticks(layout.start, layout.end, zone=zone, target=track // 8):
        label = moment.astimezone(zone).strftime("%H:%M")
        at = min(track - len(label), round(fraction * track))
        if all(c == " " for c in ruler[max(0, at - 1) : at + len(label) + 1]):
            ruler[at : at + len(label)] = label
    out.append(" " * (LABEL_WIDTH + 1) + "".join(ruler) + "\n")

    out.append(Text(f"{str(zone)[: LABEL_WIDTH - 1]:<{LABEL_WIDTH}} ", style="dim"))
    for column in range(track):
        if column in mark_columns:
            out.append(MARK, style="yellow")
        elif column in credited:
            out.append(CREDITED_RULE, style="green")
        elif column in window:
            out.append(WINDOW_RULE, style="dim")
        else:
            out.append(EMPTY, style="dim")
    out.append("\n")

    for row in layout.rows:
        label = _printable(row.label + (f" · {row.note}" if row.note else ""))
        who = Text(label)
        who.truncate(LABEL_WIDTH, overflow="ellipsis", pad=True)
        out.append(who)
        out.append(_track(row, track, credited=credited, marks=mark_columns))
        out.append("\n")
    _legend(out, layout, width=width, zone=zone)
    out.rstrip()
    return out


def _track(row: Row, track: int, *, credited: range, marks: set[int]) -> Text:
    """One participant's columns: a bar where a session is (credited or not), the neighbours'
    boundaries, and the background inside (blank) and outside (dots) the credited span."""
    cells = Text(" ")
    covered = [False] * track
    for bar in row.bars:
        first, stop = bar.columns(track)
        for column in range(first, stop):
            covered[column] = True
    for column in range(track):
        if covered[column]:
            inside = column in credited
            cells.append(
                CREDITED_BAR if inside else OUTSIDE_BAR, style="blue" if inside else "grey50"
            )
        elif column in marks:
            cells.append(MARK, style="yellow")
        else:
            cells.append(" " if column in credited else EMPTY, style="dim")
    return cells


def _legend(out: Text, layout: Timeline, *, width: int, zone: tzinfo) -> None:
    legend = (
        f"{CREDITED_BAR} session in the credited span",
        f"{OUTSIDE_BAR} session outside it",
        f"{CREDITED_RULE} credited span",
        f"{WINDOW_RULE} window",
        f"{MARK} boundary with a neighbour",
        f"axis {layout.start.astimezone(zone):%Y-%m-%d %H:%M:%S} → "
        f"{layout.end.astimezone(zone):%Y-%m-%d %H:%M:%S} {zone}",
        f"{layout.session_count} session(s)",
    )
    line = ""
    for item in legend:  # wrapped to the width, an item never split
        if line and len(line) + 3 + len(item) > width:
            out.append(line + "\n", style="dim")
            line = ""
        line = f"{line}   {item}" if line else item
    out.append(line + "\n", style="dim")
    for mark in layout.marks:
        out.append(f"{MARK} {_clock(mark.at, zone)} {_printable(mark.label)}\n", style="yellow")


def show_timeline(
    store: MeetingStore,
    meeting: MeetingRecord,
    documents: Sequence[Mapping[str, Any]],
    *,
    width: int,
) -> Text:
    """``show --timeline``: the meeting's neighbours read, then its timeline drawn."""
    neighbours = (
        []
        if meeting.status is Status.MERGED
        else store.with_code(meeting.meeting_code, ended=neighbours_bounds(meeting))
    )
    layout = meeting_timeline(meeting, documents, credited_span(meeting, neighbours))
    return render_timeline(layout, width=width)


def _write_atomically(path: Path, text: str) -> None:
    """The whole page or nothing: written beside the target, then renamed over it."""
    directory = path.parent if str(path.parent) else Path(".")
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@click.command("report")
@click.argument("meeting_id")
@click.option(
    "--html",
    "html_file",
    required=True,
    metavar="FILE",
    help="Write the self-contained HTML page here (- for standard output).",
)
@click.option(
    "--tz", default="UTC", show_default=True, metavar="AREA/CITY", help="Zone of the times."
)
@reports_failures("report")
def _report(meeting_id: str, html_file: str, tz: str) -> None:
    """Write MEETING_ID's attendance report: status, timeline, participants, absences and
    revision history, as one HTML page that loads nothing."""
    zone = parse_zone(tz)  # a bad zone or id exits 2 before any setting is read
    meeting_id = _checked_meeting_id(meeting_id)
    data = read_report(operator_store(), meeting_id)
    page = render_report(data, zone=zone)
    if html_file == "-":
        sys.stdout.write(page)
        sys.stdout.flush()
        return
    path = Path(html_file)
    try:
        _write_atomically(path, page)
    except OSError as error:
        raise CommandFailed(f"cannot write {html_file}: {error.strerror or error}") from None
    sessions = sum(len(d.get("sessions") or ()) for d in data.participants)
    click.echo(
        f"report: wrote {path} ({len(data.participants)} participant(s), {sessions} session(s), "
        f"{len(data.revisions)} revision(s))",
        err=True,
    )


#: Annotated: ``functions.cli`` imports it while this module imports that one, and mypy cannot
#: always infer a decorated command's type across the cycle.
report: click.Command = _report
