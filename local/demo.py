"""`make demo`: the real pipeline on the local stack, end to end, in about a minute.

Two back-to-back classes in one personal room: the tutor stays across both; students rejoin, use two
devices, dial in by phone; an anonymous guest drops by; one student's events reach the Reports API
late. Signed webhooks announce both classes; Cloud Tasks (emulated) drives the collect worker, which
polls the (fake) Reports API and writes Firestore (emulator) until both meetings are ``complete``.
Then Google Meet's side: the organizer's Workspace Events subscription is made sure of
(``subscriptions --ensure``), a class nobody announced ends in the (fake) Meet, whose "conference
ended" event reaches ``meet_events`` through Pub/Sub push; its preliminary attendance appears
within a second, and the Reports data replaces it when it arrives. Last, Google Calendar's side: a
class scheduled in the organizer's (fake) calendar reaches ``ingest`` as a push notification and is
declared with its invitees, then collected, without any webhook.
Timings are shortened (seconds instead of minutes) so the whole chain runs while you watch.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from local.client import StackClient
from local.simulate import Stay, activities_for, call_ended, rfc3339
from local.stack import Stack

ROOM = "wkt-imxi-vuk"
CONFERENCE = "M72LdSgb9FV57mAVzdLaDxIWOAkIAjIAGAgIigIgBAg"
TUTOR = "maria.tutor@school.example"
DEMO_TIMINGS = {
    "FIRST_POLL_DELAY_S": "2",
    "MAX_POLL_INTERVAL_S": "8",
    "SETTLE_S": "4",
    "ABSENT_GRACE_S": "7200",
    "COLLECT_DEADLINE_S": "7200",
}
TIMEOUT_S = 120

console = Console(width=None if sys.stdout.isatty() else 120)


def the_day(now: datetime) -> tuple[dict[str, Any], dict[str, Any], list[Any], list[Any]]:
    """Two classes, their webhooks, the events visible at once and the late ones."""
    algebra_start, algebra_end = now - timedelta(minutes=100), now - timedelta(minutes=55)
    biology_start, biology_end = now - timedelta(minutes=50), now - timedelta(minutes=2)
    m = timedelta(minutes=1)
    prompt = activities_for(
        [
            # The tutor opens the room early and stays through both classes.
            Stay(TUTOR, algebra_start - 3 * m, biology_end, display_name="Maria (tutor)"),
            # Algebra: a student whose connection drops and who rejoins.
            Stay("ana@school.example", algebra_start, algebra_start + 20 * m, display_name="Ana"),
            Stay("ana@school.example", algebra_start + 22 * m, algebra_end, display_name="Ana"),
            # Two devices at once: the overlap counts once.
            Stay("ben@school.example", algebra_start + m, algebra_end, display_name="Ben"),
            Stay(
                "BEN@school.example",
                algebra_start + 10 * m,
                algebra_start + 30 * m,
                display_name="Ben",
                device_type="android",
            ),
            # A parent dialling in by phone.
            Stay(
                "+44 20 7946 0000",
                algebra_start + 5 * m,
                algebra_start + 25 * m,
                identifier_type="phone_number",
                device_type="pstn_in",
            ),
            # An anonymous guest with a display name.
            Stay(
                "",
                algebra_start + 2 * m,
                algebra_start + 12 * m,
                identifier_type=None,
                display_name="Visitor",
                is_external=True,
            ),
            # Biology: two students, one of them external.
            Stay("dev@school.example", biology_start, biology_end, display_name="Dev"),
            Stay(
                "eve@partner.example",
                biology_start + 3 * m,
                biology_end,
                display_name="Eve",
                is_external=True,
            ),
        ],
        meeting_code=ROOM,
        conference_id=CONFERENCE,
        organizer_email=TUTOR,
    )
    late = [
        call_ended(
            meeting_code=ROOM,
            conference_id=CONFERENCE,
            leave=algebra_end,
            duration_s=round((algebra_end - algebra_start - 4 * m).total_seconds()),
            identifier="carl@school.example",
            display_name="Carl",
            endpoint_id="spaces/late/devices/1",
        )
    ]
    algebra = {
        "type": "meeting.ended",
        "meeting_code": ROOM,
        "external_id": "algebra-2026-11-27",
        "started_at": rfc3339(algebra_start),
        "ended_at": rfc3339(algebra_end),
        "organizer_email": TUTOR,
        "expected_participants": [
            TUTOR,
            "ana@school.example",
            "ben@school.example",
            "carl@school.example",
        ],
    }
    biology = {
        "type": "meeting.ended",
        "meeting_code": ROOM,
        "external_id": "biology-2026-11-27",
        "started_at": rfc3339(biology_start),
        "ended_at": rfc3339(biology_end),
        "organizer_email": TUTOR,
        "expected_participants": [TUTOR, "dev@school.example", "eve@partner.example"],
    }
    return algebra, biology, prompt, late


def hms(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def clock(value: str | None) -> str:
    return "-" if not value else value[11:19]


def participant_table(title: str, view: dict[str, Any]) -> Table:
    meeting = view["meeting"]
    table = Table(
        title=f"{title} · {meeting['status']} · revision {meeting['revision']} · "
        f"{meeting['participant_count']} participants · {hms(meeting['total_attended_seconds'])}",
        title_justify="left",
    )
    for column in ("participant", "name", "first join", "last leave", "attended", "sessions"):
        table.add_column(column)
    table.add_column("devices")
    for doc in view["participants"]:
        label = doc["participant_key"]
        if doc.get("absent"):
            label += " [absent]"
        elif doc.get("estimated"):
            label += " [estimated]"
        elif doc.get("preliminary"):
            label += " [preliminary]"
        devices = sorted({s.get("device_type") or "?" for s in doc.get("sessions", [])})
        table.add_row(
            escape(label),  # "[estimated]" is not rich markup
            doc.get("display_name") or "",
            clock(doc.get("first_join")),
            clock(doc.get("last_leave")),
            hms(doc.get("attended_seconds")),
            str(doc.get("session_count", 0)),
            ", ".join(devices) or "-",
        )
    return table


def run(client: StackClient) -> int:
    now = datetime.now(UTC)
    algebra, biology, prompt, late = the_day(now)
    client.add_activities(prompt)
    client.add_activities(late, visible_after_s=6)
    console.print(
        f"Loaded {len(prompt)} call_ended events into the fake Reports API "
        f"(+{len(late)} that become visible 6 s later)."
    )
    meetings: dict[str, str] = {}
    for title, payload in (("Algebra", algebra), ("Biology", biology)):
        answer = client.meeting_ended(payload)
        if answer.status not in (200, 202):
            console.print(f"[red]webhook refused: {answer.status} {answer.body}")
            return 1
        meetings[title] = answer.body["meeting_id"]
        console.print(
            f"webhook {title}: {answer.status} meeting_id={answer.body['meeting_id']} "
            f"status={answer.body['status']} first poll {clock(answer.body['first_poll_at'])}"
        )

    console.print(
        "reading them through the private api as operator@local.test "
        "(ID tokens from the stack's token mint)"
    )
    seen: dict[str, tuple[Any, ...]] = {}
    started = time.monotonic()
    views: dict[str, dict[str, Any]] = {}
    while time.monotonic() - started < TIMEOUT_S:
        for title, meeting_id in meetings.items():
            answer = client.meeting(meeting_id)
            if answer.status != 200:
                console.print(f"[red]GET {meeting_id}: {answer.status} {answer.body}")
                return 1
            views[title] = answer.body
            meeting = answer.body["meeting"]
            state = (meeting["status"], meeting["attempts"], meeting["revision"])
            previous = seen.get(title)
            if previous != state:
                seen[title] = state
                console.print(
                    f"{time.monotonic() - started:5.1f} s  {title:8} {meeting['status']:10} "
                    f"polls={meeting['attempts']} revision={meeting['revision']} "
                    f"participants={meeting['participant_count']} "
                    f"attended={hms(meeting['total_attended_seconds'])}"
                )
                # The table as it stands whenever attendance changed or the meeting completed.
                if previous is None or previous[2] != state[2] or state[0] == "complete":
                    console.print(participant_table(title, answer.body))
        if all(v["meeting"]["status"] == "complete" for v in views.values()):
            break
        time.sleep(0.5)
    done = all(v["meeting"]["status"] == "complete" for v in views.values())
    requests = client.reports_requests()
    console.print(
        f"Reports API requests served: {len(requests)}; collect deliveries: "
        f"{len(client.dispatches())}."
    )
    if not done:
        console.print(f"[red]Not complete within {TIMEOUT_S} s.")
        return 1
    console.print("[green]Both classes complete; the tutor's time is split at the boundary.")
    status = meet_path(client)
    return status if status != 0 else write_report(client, meetings["Biology"])


# ------------------------------------------------------------------------------------------------
# The ending: one class's attendance report, as the organizer would be sent it.

REPORT_FILE = Path(__file__).resolve().parent.parent / ".local" / "demo-report.html"


def write_report(client: StackClient, meeting_id: str) -> int:
    """``report --html`` of Biology (the later class: the boundary with Algebra is marked)."""
    console.rule("The attendance report of one class")
    REPORT_FILE.parent.mkdir(exist_ok=True)
    done = client.run_cli("report", meeting_id, "--html", str(REPORT_FILE), "--tz", "UTC")
    if done.returncode != 0:
        console.print(f"[red]report failed: {escape(done.stderr.strip())}")
        return 1
    console.print(escape(done.stderr.strip()))
    console.print(f"Report written: {escape(str(REPORT_FILE))} (open {REPORT_FILE.as_uri()})")
    return 0


# ------------------------------------------------------------------------------------------------
# The Meet path: nobody announces Chemistry; Google Meet says it ended.

CHEM_ROOM = "chm-labs-xyz"
CHEM_SPACE = "spaces/chemLab01"
CHEM_RECORD = "conferenceRecords/chem-2026-11-27"
ORGANIZER = "organizer@school.test"
CHEMISTS = {
    # email: (Directory id, minutes after the start they joined, minutes before the end they left)
    ORGANIZER: ("100", 0, 0),
    "fay@school.example": ("201", 1, 0),
    "gus@school.example": ("202", 4, 10),
}


def chemistry(now: datetime) -> tuple[dict[str, Any], list[Any]]:
    """The class in the fake Meet (Google's own JSON shapes) and its Reports events."""
    start, end = now - timedelta(minutes=40), now - timedelta(seconds=20)
    m = timedelta(minutes=1)
    participants, sessions, users = [], [], []
    for index, (email, (user_id, late, early)) in enumerate(CHEMISTS.items()):
        name = f"{CHEM_RECORD}/participants/{index}"
        join, leave = start + late * m, end - early * m
        participants.append(
            {
                "name": name,
                "signedinUser": {"user": f"users/{user_id}", "displayName": email.split("@")[0]},
                "earliestStartTime": rfc3339(join),
                "latestEndTime": rfc3339(leave),
            }
        )
        sessions.append(
            {
                "name": f"{name}/participantSessions/0",
                "startTime": rfc3339(join),
                "endTime": rfc3339(leave),
            }
        )
        users.append({"id": user_id, "primaryEmail": email})
    # A visitor Meet shows by name only; Reports knows the same person by a dial-in.
    participants.append(
        {
            "name": f"{CHEM_RECORD}/participants/9",
            "anonymousUser": {"displayName": "Visitor"},
            "earliestStartTime": rfc3339(start + 5 * m),
            "latestEndTime": rfc3339(start + 15 * m),
        }
    )
    sessions.append(
        {
            "name": f"{CHEM_RECORD}/participants/9/participantSessions/0",
            "startTime": rfc3339(start + 5 * m),
            "endTime": rfc3339(start + 15 * m),
        }
    )
    resources = {
        "spaces": [
            {
                "name": CHEM_SPACE,
                "meetingCode": CHEM_ROOM,
                "meetingUri": f"https://meet.google.com/{CHEM_ROOM}",
            }
        ],
        "conference_records": [
            {
                "name": CHEM_RECORD,
                "space": CHEM_SPACE,
                "startTime": rfc3339(start),
                "endTime": rfc3339(end),
            }
        ],
        "participants": participants,
        "participant_sessions": sessions,
        "users": users,
    }
    reports = activities_for(
        [
            # Reports counts Gus's leave a minute later than Meet's early sessions view did.
            *(
                Stay(email, start + late * m, end - early * m + (m if early else timedelta()))
                for email, (_, late, early) in CHEMISTS.items()
            ),
            Stay("+44 20 7946 0999", start + 5 * m, start + 15 * m, identifier_type="phone_number"),
        ],
        meeting_code=CHEM_ROOM,
        conference_id="chem-reports-conference",
        organizer_email=ORGANIZER,
    )
    return resources, reports


def meet_path(client: StackClient) -> int:
    console.rule("Google Meet signals: a class nobody announced")
    resources, reports = chemistry(datetime.now(UTC))
    client.add_meet(**resources)  # the Directory knows the organizer before it subscribes
    ensure = client.run_cli("subscriptions", "--ensure")
    console.print(ensure.stdout.rstrip() or ensure.stderr.rstrip())
    if ensure.returncode != 0:
        console.print(f"[red]subscriptions --ensure failed: {ensure.stderr.strip()}")
        return 1
    published = time.monotonic()
    status = client.publish_meet_event(
        "google.workspace.meet.conference.v2.ended", {"conferenceRecord": {"name": CHEM_RECORD}}
    )
    console.print(
        f"Meet published 'conference ended' for {CHEM_ROOM} through Pub/Sub push: "
        f"meet_events answered {status}"
    )
    from functions.model import meeting_id_for

    meeting_id = meeting_id_for(external_id="meet:" + CHEM_RECORD)
    answer = client.meeting(meeting_id)
    if answer.status != 200:
        console.print(f"[red]no meet meeting: {answer.status} {answer.body}")
        return 1
    console.print(
        f"{time.monotonic() - published:4.1f} s after the event: preliminary attendance from "
        "Meet's own participant sessions (no Reports data yet)"
    )
    console.print(participant_table("Chemistry (source meet)", answer.body))
    preliminary = {d["participant_key"]: d["attended_seconds"] for d in answer.body["participants"]}
    client.add_activities(reports, visible_after_s=4)
    console.print("The Reports API shows the class 4 s later (1 to 24 hours in production)…")
    deadline = time.monotonic() + TIMEOUT_S
    view = answer.body
    while time.monotonic() < deadline:
        view = client.meeting(meeting_id).body
        if view["meeting"]["status"] == "complete":
            break
        time.sleep(0.5)
    else:
        console.print(f"[red]Chemistry not complete within {TIMEOUT_S} s.")
        return 1
    console.print(participant_table("Chemistry (Reports data)", view))
    table = Table(title="Preliminary (Meet) → billed (Reports)", title_justify="left")
    for column in ("participant", "meet", "reports"):
        table.add_column(column)
    final = {d["participant_key"]: d["attended_seconds"] for d in view["participants"]}
    for key in sorted({*preliminary, *final}):
        table.add_row(key, hms(preliminary.get(key)), hms(final.get(key)))
    console.print(table)
    console.print(
        f"[green]attendance_source {view['meeting']['attendance_source']}: the Reports data "
        "replaced the preliminary view in one revision."
    )
    return calendar_path(client)


# ------------------------------------------------------------------------------------------------
# The Calendar path: a class scheduled in Google Calendar, collected without any webhook.

PHYSICS_ROOM = "phy-sics-lab"
PHYSICS = [("hal@school.example", "accepted"), ("ivy@school.example", "declined")]


def calendar_path(client: StackClient) -> int:
    console.rule("Google Calendar: a class scheduled in the organizer's calendar")
    # It ended a little over two hours ago (the demo's ABSENT_GRACE_S and COLLECT_DEADLINE_S):
    # its first poll is its last, and the invitee who never came is marked absent.
    end = datetime.now(UTC) - timedelta(minutes=125)
    start = end - timedelta(minutes=45)
    m = timedelta(minutes=1)
    lesson = {
        "id": "physics-2026-11-27",
        "status": "confirmed",
        "summary": "Physics",
        "start": {"dateTime": rfc3339(start)},
        "end": {"dateTime": rfc3339(end)},
        "organizer": {"email": ORGANIZER, "self": True},
        "attendees": [
            {"email": ORGANIZER, "organizer": True, "responseStatus": "accepted"},
            *({"email": email, "responseStatus": answer} for email, answer in PHYSICS),
            {"email": "lab-2@resource.calendar.google.com", "resource": True},
        ],
        "conferenceData": {
            "conferenceId": PHYSICS_ROOM,
            "conferenceSolution": {"key": {"type": "hangoutsMeet"}},
        },
    }
    # Reports already has the class (it ended two hours ago).
    client.add_activities(
        activities_for(
            [Stay(ORGANIZER, start, end), Stay("hal@school.example", start + 3 * m, end)],
            meeting_code=PHYSICS_ROOM,
            conference_id="physics-conference",
        ),
    )
    answer = client.put_calendar_events(ORGANIZER, [lesson])
    console.print(
        "The fake Calendar pushed a notification (headers, no body) to ingest: "
        f"{[n['status'] for n in answer['notified']]}; the backfill function syncs the calendar."
    )
    from functions.model import meeting_id_for

    meeting_id = meeting_id_for(external_id=f"calendar:{ORGANIZER}:{lesson['id']}")
    deadline = time.monotonic() + TIMEOUT_S
    shown = False
    while time.monotonic() < deadline:
        answer = client.meeting(meeting_id)
        if answer.status == 200:
            meeting = answer.body["meeting"]
            if not shown and answer.body["participants"] and meeting["status"] != "complete":
                console.print(participant_table("Physics (declared by Calendar)", answer.body))
                shown = True
            if meeting["status"] == "complete":
                console.print(participant_table("Physics (Reports data)", answer.body))
                rsvps = {d["participant_key"]: d.get("rsvp") for d in answer.body["participants"]}
                console.print(f"RSVPs kept from the invitation: {rsvps}")
                console.print(
                    "[green]No webhook: Calendar declared the class with its invitees; the "
                    "declined one is absent."
                )
                listed = client.run_cli("subscriptions")
                console.print(listed.stdout.rstrip())
                return 0
        time.sleep(0.5)
    console.print(f"[red]Physics not complete within {TIMEOUT_S} s.")
    return 1


def main() -> int:
    environ = {**os.environ, **DEMO_TIMINGS}
    stack = Stack(environ)
    console.print(
        "Starting the local stack (Firestore emulator, Cloud Tasks emulator, fake Reports "
        "API, fake Meet/Workspace Events/Directory, ingest, api, collect, backfill, meet_events)…"
    )
    started = time.monotonic()
    env = stack.plan()
    stack.start()
    try:
        console.print(f"Stack ready in {time.monotonic() - started:.1f} s.")
        return run(StackClient(env))
    finally:
        stack.stop()
        console.print("Stack stopped.")


if __name__ == "__main__":
    sys.exit(main())
