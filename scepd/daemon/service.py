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
from scepd.errors import ScepError
from scepd.manager import Manager

log = logging.getLogger("scepd")

# Renewals finishing within this window share one post_renew_batch run.
BATCH_WINDOW = dt.timedelta(seconds=2)
_BATCH_JOB = "__post_renew_batch__"


class Service:
    def __init__(self, config_path: Path, config: Config) -> None:
        self._path = config_path
        self._manager = Manager(config)
        self._scheduler = BlockingScheduler(timezone=dt.UTC)
        self._batch: list[str] = []
        self._batch_lock = threading.Lock()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, self._reload)
        self._schedule_all()
        count = len(self._manager.config.identities)
        log.info("scepd running: %d identities from %s", count, self._path)
        self._scheduler.start()  # returns after shutdown()
        log.info("scepd stopped")
        return 0

    def _schedule_all(self) -> None:
        for job in self._scheduler.get_jobs():
            if job.id != _BATCH_JOB:
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

    def _run_batch(self) -> None:
        with self._batch_lock:
            renewed, self._batch = self._batch, []
        self._manager.run_batch_hooks(renewed)

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        log.info("scepd stopping (%s)", signal.Signals(signum).name)
        # shutdown() from the signal handler would join the executor from the main thread
        # while it is inside start(); a thread lets start() return cleanly.
        threading.Thread(target=self._scheduler.shutdown, kwargs={"wait": False}).start()

    def _reload(self, signum: int, frame: FrameType | None) -> None:
        try:
            config = load_config(self._path)
        except ScepError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            return
        self._manager = Manager(config)
        log.info("configuration reloaded: %d identities", len(config.identities))
        self._schedule_all()


def run(config_path: Path) -> int:
    return Service(config_path, load_config(config_path)).run()
