"""A deterministic scheduler for concurrent operations on our in-memory ports.

Every operation runs as a greenlet of its own, and only one runs at a time: each port call starts
with :meth:`Scheduler.point`, which hands control back to the scheduler, and the scheduler picks
who runs next from a seeded random generator. So a schedule is a function of its seed alone and
replays exactly, and every interleaving of port calls is reachable. A crash is a worker that
never comes back from a point: :class:`Crash` is raised there and at every later point of that
worker, so no clean-up of a dead process reaches a port (``except BaseException`` handlers
included).

Greenlets rather than threads: the same cooperative hand-over, but a switch costs a microsecond
instead of a pair of lock hand-offs between operating-system threads.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import greenlet


class Crash(BaseException):
    """The process died at a port call; nothing after it runs."""


@dataclass
class Worker:
    name: str
    body: Callable[[], None]
    started: bool = False
    finished: bool = False
    dead: bool = False
    error: BaseException | None = None
    runner: greenlet.greenlet | None = None


class Scheduler:
    def __init__(self, rng: random.Random, *, crash_chance: float) -> None:
        self.rng = rng
        self.crash_chance = crash_chance
        self.workers: list[Worker] = []
        self.trace: list[str] = []
        self.after_step: Callable[[], None] = lambda: None
        self._main: greenlet.greenlet | None = None
        self._current: Worker | None = None
        #: While set, points neither switch nor kill: the running worker's port calls are one
        #: step (``atomically``).
        self._held = False

    def spawn(self, name: str, body: Callable[[], None]) -> Worker:
        worker = Worker(name, body)
        self.workers.append(worker)
        return worker

    @contextlib.contextmanager
    def atomically(self) -> Iterator[None]:
        """The running worker's port calls inside run as one step: nobody else runs in between
        and nothing dies there (a delivery whose replay must change nothing, checked at once)."""
        held, self._held = self._held, True
        try:
            yield
        finally:
            self._held = held

    def point(self, what: str) -> None:
        """Called by a worker before each port call: a switch, and a place to die."""
        if self._held:
            return
        worker = self._current
        if worker is None or worker.runner is not greenlet.getcurrent():
            return  # the scheduler itself (checks, set-up) never switches
        if worker.dead:
            raise Crash
        self.trace.append(f"{worker.name} {what}")
        assert self._main is not None
        self._main.switch()
        if worker.dead:
            raise Crash

    def _run_worker(self, worker: Worker) -> None:
        try:
            worker.body()
        except Crash:
            pass
        except BaseException as error:
            worker.error = error
        finally:
            worker.finished = True

    def run(self) -> None:
        """Run every spawned worker to its end, one port call at a time."""
        self._main = greenlet.getcurrent()
        while True:
            runnable = [w for w in self.workers if not w.finished]
            if not runnable:
                break
            worker = self.rng.choice(runnable)
            if worker.started and self.rng.random() < self.crash_chance:
                worker.dead = True
                self.trace.append(f"{worker.name} crashes")
            self._current = worker
            if worker.runner is None:
                worker.started = True
                worker.runner = greenlet.greenlet(self._run_worker, parent=self._main)
                worker.runner.switch(worker)
            else:
                worker.runner.switch()
            self._current = None
            self.after_step()
        self.workers = []
