"""The scheduler: one APScheduler job per identity at its next due time.

No polling loop: BlockingScheduler sleeps until the next job, so an idle daemon uses no CPU.
Each job is one :meth:`Manager.process` attempt, which returns when to come back (renewal due,
retry with scaled backoff, next poll); an identity waiting for a challenge gets no job until
the configuration is reloaded (SIGHUP).  Renewals that complete close together share one run of
the ``post_renew_batch`` hooks.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading
from pathlib import Path
from types import FrameType

from apscheduler.schedulers.blocking import BlockingScheduler

from scepd.client import utc_now
from scepd.config import Config, load_config
from scepd.daemon.sdnotify import Notifier
from scepd.errors import ScepError
from scepd.manager import Manager

log = logging.getLogger("scepd")

# Renewals finishing within this window share one post_renew_batch run.
BATCH_WINDOW = dt.timedelta(seconds=2)
_BATCH_JOB = "__post_renew_batch__"


class Service:
    def __init__(
        self,
        config_path: Path,
        config: Config,
        notifier: Notifier | None = None,
        *,
        debug: bool = False,
    ) -> None:
        self._path = config_path
        self._debug = debug
        self._manager = Manager(config, debug=debug)
        self._scheduler = BlockingScheduler(timezone=dt.timezone.utc)  # noqa: UP017 - APScheduler 3.9
        self._batch: list[str] = []
        self._batch_lock = threading.Lock()
        self._notifier = notifier or Notifier()
        # For the one-line STATUS: what each identity does next, and which are failing.
        self._next: dict[str, tuple[str, dt.datetime | None]] = {}
        self._failing: set[str] = set()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, self._reload)
        self._schedule_all()
        interval = self._notifier.watchdog_interval
        if interval is not None:
            # A job, not a thread of its own: if the scheduler hangs, the pings stop and
            # systemd restarts us.
            self._scheduler.add_job(
                self._notifier.watchdog, "interval", seconds=interval, id="__watchdog__",
                next_run_time=utc_now(),
            )  # fmt: skip
        count = len(self._manager.config.identities)
        log.info("scepd running: %d identities from %s", count, self._path)
        self._manager.write_metrics()
        self._notifier.ready(self._status_line())  # every identity has its job now
        self._scheduler.start()  # returns after shutdown()
        log.info("scepd stopped")
        return 0

    def _status_line(self) -> str:
        """e.g. "3 identities; next: web renews 2027-03-01 04:12; 0 failing"."""
        count = len(self._manager.config.identities)
        upcoming = [(when, name, what) for name, (what, when) in self._next.items() if when]
        text = f"{count} identities"
        if upcoming:
            when, name, what = min(upcoming)
            text += f"; next: {name} {what} {when:%Y-%m-%d %H:%M}"
        return f"{text}; {len(self._failing)} failing"

    def _schedule_all(self) -> None:
        for job in self._scheduler.get_jobs():
            if not job.id.startswith("__"):  # keep the batch and watchdog jobs
                job.remove()
        now = utc_now()
        for name in self._manager.config.identities:
            self._schedule(name, now)  # the first attempt decides; not-due costs no request

    def _schedule(self, name: str, when: dt.datetime) -> None:
        self._scheduler.add_job(
            self._job, "date", run_date=when, args=(name,), id=name, replace_existing=True,
            misfire_grace_time=None, coalesce=True,
        )  # fmt: skip

    def _job(self, name: str) -> None:
        identity = self._manager.config.identities.get(name)
        if identity is None:  # removed by a reload
            return
        try:
            result = self._manager.process(identity)
        except ScepError as exc:  # e.g. a one-shot `renew` holds the identity
            log.warning("%s: %s; trying again in a minute", name, exc)
            self._schedule(name, utc_now() + dt.timedelta(minutes=1))
            return
        log.info("%s: %s: %s", name, result.action, result.message)
        if result.action in ("failed", "waiting"):
            self._failing.add(name)
        else:
            self._failing.discard(name)
        verb = {"pending": "polls", "failed": "retries"}.get(result.action, "renews")
        self._next[name] = (verb, result.next_at)
        if result.renewed:
            with self._batch_lock:
                self._batch.append(name)
            self._scheduler.add_job(
                self._run_batch, "date", run_date=utc_now() + BATCH_WINDOW, id=_BATCH_JOB,
                replace_existing=True, misfire_grace_time=None,
            )  # fmt: skip
        if result.next_at is not None:
            self._schedule(name, result.next_at)
            log.info("%s: next attempt %s", name, f"{result.next_at:%Y-%m-%d %H:%M:%S}Z")
        self._notifier.status(self._status_line())
        self._manager.write_metrics()

    def _run_batch(self) -> None:
        with self._batch_lock:
            renewed, self._batch = self._batch, []
        self._manager.run_batch_hooks(renewed)

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        log.info("scepd stopping (%s)", signal.Signals(signum).name)
        self._notifier.stopping()
        # shutdown() from the signal handler would join the executor from the main thread
        # while it is inside start(); a thread lets start() return cleanly.
        threading.Thread(target=self._scheduler.shutdown, kwargs={"wait": False}).start()

    def _reload(self, signum: int, frame: FrameType | None) -> None:
        self._notifier.reloading()
        try:
            config = load_config(self._path)
        except ScepError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            self._notifier.ready(self._status_line())  # RELOADING=1 must end in READY=1
            return
        self._manager = Manager(config, debug=self._debug)
        self._next = {k: v for k, v in self._next.items() if k in config.identities}
        self._failing &= set(config.identities)
        log.info("configuration reloaded: %d identities", len(config.identities))
        self._schedule_all()
        self._manager.write_metrics()  # a removed identity's series go at once
        self._notifier.ready(self._status_line())


def run(config_path: Path, *, debug: bool = False) -> int:
    return Service(config_path, load_config(config_path), debug=debug).run()
