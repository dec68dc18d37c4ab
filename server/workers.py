"""`serve --workers N`: N instance processes on one port, joined through Redis.

Each worker is a full instance (its own event loop, hub and PostgreSQL pool)
bound with SO_REUSEPORT, so the kernel spreads new connections over them and
every core does work. They share state the same way separate machines do:
through PostgreSQL and the Redis bus. Without a Redis URL the supervisor starts
an embedded Valkey for them (stopped on exit).

The supervisor forwards SIGTERM/SIGINT to the workers (each drains: sockets
closed with 1012), waits for them, and restarts a worker that dies on its own,
with a capped back-off that grows while it keeps crashing (reset after
STABLE_AFTER seconds up), so a crash costs one worker's sockets, not the port.
A crash loop ends it: CRASH_LIMIT crashes within CRASH_WINDOW seconds, none
after a stable run, stop every worker and exit 1 with the reason; so does a
worker that cannot listen (exit EXIT_CANNOT_LISTEN), since a restart cannot fix that.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import multiprocessing as mp
import signal
import sys
import time
import uuid
from collections import deque
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Final

from protocol.backoff import Backoff
from server.config import Settings
from server.logs import setup_logging
from server.preflight import EXIT_CANNOT_LISTEN, OperatorError, listen_error
from server.serving import run_instance
from store.embedded import EmbeddedValkey

log = logging.getLogger(__name__)

RESTART_BACKOFF_MAX: Final = 10.0
# A worker that stayed up this long is healthy again: its next crash waits the shortest delay.
STABLE_AFTER: Final = 30.0
STOP_TIMEOUT: Final = 20.0
# This many crashes within CRASH_WINDOW seconds, with no stable run among them: a crash loop.
CRASH_LIMIT: Final = 5
CRASH_WINDOW: Final = 60.0


def _worker_main(settings: Settings) -> None:
    setup_logging(settings.log_level, settings.log_format)
    try:
        run_instance(settings, reuse_port=True)
    except OSError as exc:
        if exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            raise
        print(f"droptv-live: {listen_error(settings.host, settings.port, exc)}", file=sys.stderr)
        sys.exit(EXIT_CANNOT_LISTEN)


class Supervisor:
    """Keeps `settings.workers` instance processes running until told to stop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ctx = mp.get_context("spawn")
        self.procs: dict[int, BaseProcess] = {}
        self.backoff: dict[int, Backoff] = {}
        self.started: dict[int, float] = {}
        self.crashes: deque[float] = deque()
        self.stopping = False

    def _spawn(self, slot: int) -> None:
        worker_settings = dataclasses.replace(
            self.settings,
            workers=1,
            instance_id=f"{self.settings.instance_id or uuid.uuid4().hex[:8]}-w{slot}",
        )
        proc = self.ctx.Process(target=_worker_main, args=(worker_settings,), name=f"worker-{slot}")
        proc.start()
        self.procs[slot] = proc
        self.started[slot] = time.monotonic()
        log.info("worker %d started (pid %s)", slot, proc.pid)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        for slot in range(self.settings.workers):
            self._spawn(slot)
        while not self.stopping:
            for slot, proc in list(self.procs.items()):
                backoff = self.backoff.setdefault(slot, Backoff(0.5, RESTART_BACKOFF_MAX))
                if proc.is_alive():
                    # Reset only after a stable run: a worker that dies right after each
                    # start must wait longer every time, not restart every half second.
                    if time.monotonic() - self.started[slot] >= STABLE_AFTER:
                        backoff.reset()
                    continue
                failure = self._judge(slot, proc.exitcode)
                if failure is not None:
                    self._stop_all()
                    raise OperatorError(failure)
                delay = backoff.next()
                log.error(
                    "worker %d exited with %s; restarting in %.1fs", slot, proc.exitcode, delay
                )
                time.sleep(delay)
                if not self.stopping:
                    self._spawn(slot)
            time.sleep(0.2)
        return self._stop_all()

    def _judge(self, slot: int, code: int | None) -> str | None:
        """Why to give up after this exit, or None to restart the worker."""
        host, port = self.settings.host, self.settings.port
        if code == EXIT_CANNOT_LISTEN:
            return f"worker {slot} cannot listen on {host}:{port}; stopping all workers"
        now = time.monotonic()
        if now - self.started[slot] >= STABLE_AFTER:
            self.crashes.clear()  # it had a stable run: earlier crashes are history
        self.crashes.append(now)
        while self.crashes and now - self.crashes[0] > CRASH_WINDOW:
            self.crashes.popleft()
        if len(self.crashes) < CRASH_LIMIT:
            return None
        return (
            f"workers crashed {len(self.crashes)} times within {CRASH_WINDOW:g}s without a "
            f"stable run (last: worker {slot} exited with {code}); giving up"
        )

    def _stop_all(self) -> int:
        for proc in self.procs.values():
            if proc.is_alive() and proc.pid is not None:
                proc.terminate()  # SIGTERM: the worker drains
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc in self.procs.values():
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        return 0


def run_workers(settings: Settings) -> int:
    """Run the supervisor; start an embedded Valkey first when no Redis URL is configured."""
    valkey: EmbeddedValkey | None = None
    if not settings.redis_url:
        valkey = EmbeddedValkey().start()
        log.info("embedded Valkey for %d workers on %s", settings.workers, valkey.url)
        settings = dataclasses.replace(settings, redis_url=valkey.url)
    try:
        return Supervisor(settings).run()
    finally:
        if valkey is not None:
            valkey.stop()
