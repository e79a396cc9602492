"""Reporting to journald: one structured entry per event, with a catalog entry per kind.

Every event an administrator may want to alert on (a renewal, a failure, an expiring
certificate...) has a fixed ``MESSAGE_ID``, so ``journalctl MESSAGE_ID=...`` and ``journalctl
-x`` (with ``contrib/systemd/scepd.catalog``) work, and fields such as ``SCEPD_IDENTITY`` and
``SCEPD_NOT_AFTER`` can be matched on.  Outside systemd (a terminal, a cron job) the same event
is one plain ``scepd: level: identity: message`` line on stderr.

**Secrets**: :meth:`Reporter.event` has no parameter for a challenge password or a key, and
callers must never put one into ``message``: journald keeps entries for months and ships them
to wherever the logs go.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import sys
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TextIO

# Fixed forever: alerts, dashboards and the catalog match on them.  Never change or reuse one.
MESSAGE_IDS: dict[str, uuid.UUID] = {
    "enrolled": uuid.UUID("c0d0bdc6905745bd8473a5f0aa4ce62d"),
    "renewed": uuid.UUID("138900f30ee14608a1f7fc1c0479717f"),
    "renewal-failed": uuid.UUID("74108300ac3a4d3bb53e55859b3c2c08"),
    "pending": uuid.UUID("e94e675edc2a4de7bff8060c3c6d98ac"),
    "expiring-soon": uuid.UUID("094e79197b7540cdbe5ecce8ef9c1034"),
    "expired": uuid.UUID("71e6176249e6407aaf669100cd16b820"),
    "hook-failed": uuid.UUID("78fe7d6b1363489c84672ee8251afa0f"),
    "ca-expiring": uuid.UUID("a188caf0695f4338aa18e043dd1dea13"),
}

PRIORITY = {"emerg": 0, "alert": 1, "crit": 2, "err": 3, "warning": 4, "notice": 5, "info": 6,
            "debug": 7}  # fmt: skip

# The plain-line level names, as scepd/cli.py's formatter spells Python's levels.
_LEVEL_NAMES = {0: "emergency", 1: "alert", 2: "critical", 3: "error", 4: "warning",
                5: "notice", 6: "info", 7: "debug"}  # fmt: skip

# sd_journal_print(3): uppercase letters, digits and underscores, not starting with "_"
# (those are trusted fields journald sets itself).  journald silently drops anything else.
_FIELD_NAME = re.compile(r"[A-Z0-9][A-Z0-9_]*")

# Thresholds of failure_priority().
_ERR_SHARE = 1 / 3
_CRIT_SHARE = 0.10
_CRIT_FLOOR = dt.timedelta(hours=24)

log = logging.getLogger("scepd")


def failure_priority(
    *, not_after: dt.datetime | None, not_before: dt.datetime | None, now: dt.datetime
) -> int:
    """Priority of a renewal-failed / hook-failed event, rising as the certificate runs out.

    - warning while more than 1/3 of the lifetime is left (the renewal window has just opened
      and the retries have time);
    - err once less than 1/3 is left;
    - crit once less than 10 % of the lifetime *or* 24 hours, whichever is larger, is left, or
      when the certificate is missing or expired.  The 24-hour floor gives the person paged at
      least a day to act on a long-lived certificate (10 % of a year is five weeks, of 90 days
      nine days, and of a week only 17 hours).  The crit threshold is capped at the err one, so
      for lifetimes under 72 hours a failure goes from warning straight to crit.

    Without ``not_before`` the lifetime is unknown: err, or crit under 24 hours.
    """
    if not_after is None:
        return PRIORITY["crit"]
    left = _utc(not_after) - _utc(now)
    if left <= dt.timedelta(0):
        return PRIORITY["crit"]
    if not_before is None:
        return PRIORITY["crit"] if left < _CRIT_FLOOR else PRIORITY["err"]
    lifetime = _utc(not_after) - _utc(not_before)
    if lifetime <= dt.timedelta(0):  # a malformed certificate: nothing sensible to scale by
        return PRIORITY["crit"]
    err_at = lifetime * _ERR_SHARE
    crit_at = min(max(lifetime * _CRIT_SHARE, _CRIT_FLOOR), err_at)
    if left < crit_at:
        return PRIORITY["crit"]
    if left < err_at:
        return PRIORITY["err"]
    return PRIORITY["warning"]


def check_field_name(name: str) -> str:
    """``name`` if journald accepts it as a field name, else ValueError (journal.send does not
    check, and journald drops a bad field without a word)."""
    if not _FIELD_NAME.fullmatch(name):
        raise ValueError(f"invalid journal field name {name!r}: [A-Z0-9_], not starting with _")
    return name


def journal_stream_matches(fd: int, environ: Mapping[str, str] | None = None) -> bool:
    """True when ``$JOURNAL_STREAM`` ("device:inode", set by systemd for a service whose
    output goes to the journal) names the file open on ``fd``.

    Comparing with fstat, not just testing that the variable is set, matters: a shell started
    from a service inherits the variable, but its stderr is then a terminal or a pipe.
    """
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    device, sep, inode = value.partition(":")
    if not sep or not device.isdigit() or not inode.isdigit():
        return False
    try:
        st = os.fstat(fd)
    except OSError:  # fd closed
        return False
    return (st.st_dev, st.st_ino) == (int(device), int(inode))


def _journal_sender() -> Callable[..., Any] | None:
    """systemd.journal.send, imported only when needed; None without systemd-python."""
    try:
        from systemd import journal  # noqa: PLC0415 - optional dependency, lazily
    except ImportError:
        return None
    send: Callable[..., Any] = journal.send
    return send


class Reporter:
    """Sends one event per call to journald, or writes it as a plain line."""

    def __init__(
        self,
        *,
        sender: Callable[..., Any] | None = None,
        stream: TextIO | None = None,
        journal: bool | None = None,
    ) -> None:
        """``journal=None``: use journald when $JOURNAL_STREAM matches stderr (fd 2), i.e. we
        run under systemd.  ``sender`` (a seam for tests) defaults to systemd.journal.send;
        without systemd-python, events fall back to plain lines.  ``stream`` (default
        sys.stderr) takes the plain lines, and the events a failing sender could not take."""
        self._stream = stream
        use_journal = journal if journal is not None else journal_stream_matches(2)
        if use_journal and sender is None:
            sender = _journal_sender()
        self._sender = sender if use_journal else None

    @property
    def uses_journal(self) -> bool:
        return self._sender is not None

    def event(
        self,
        kind: str,
        message: str,
        *,
        identity: str,
        priority: int,
        server: str | None = None,
        serial: str | None = None,
        not_after: dt.datetime | None = None,
        transaction_id: str | None = None,
        fail_info: str | None = None,
    ) -> None:
        """Report one event of ``kind`` (a key of MESSAGE_IDS) about ``identity``.

        ``message`` is the human text: never put a challenge password or key material in it.
        ``priority`` is a PRIORITY value (failure_priority() for failures).  Fields that are
        None are left out.  Never raises: reporting must not break a renewal, so a sender error
        turns the event into a plain line, and an unknown ``kind`` is still reported, without
        a MESSAGE_ID.
        """
        priority = min(max(int(priority), 0), 7)
        if self._sender is not None:
            fields = {
                "MESSAGE_ID": MESSAGE_IDS.get(kind),
                "PRIORITY": str(priority),
                "SYSLOG_IDENTIFIER": "scepd",
                "SCEPD_IDENTITY": identity,
                "SCEPD_SERVER": server,
                "SCEPD_SERIAL": serial,
                "SCEPD_NOT_AFTER": _iso_z(not_after) if not_after is not None else None,
                "SCEPD_TRANSACTION_ID": transaction_id,
                "SCEPD_FAIL_INFO": fail_info,
            }
            sent = {check_field_name(k): v for k, v in fields.items() if v is not None}
            try:
                self._sender(MESSAGE=message, **sent)
            except Exception:  # noqa: S110 - any sender failure (OSError...): write the line
                pass
            else:
                return
        self._write(f"scepd: {_LEVEL_NAMES[priority]}: {identity}: {_one_line(message)}\n")

    def _write(self, line: str) -> None:
        stream = self._stream if self._stream is not None else sys.stderr
        try:
            stream.write(line)
            stream.flush()
        except (OSError, ValueError):  # stderr closed or gone: nowhere left to report to
            pass


class _PlainFormatter(logging.Formatter):
    """'scepd: level: message', as scepd/cli.py prints it."""

    def format(self, record: logging.LogRecord) -> str:
        return f"scepd: {record.levelname.lower()}: {record.getMessage()}"


def setup_logging(*, debug: bool, journal: bool | None = None) -> None:
    """Configure the 'scepd' logger: journald's JournalHandler (SYSLOG_IDENTIFIER=scepd) under
    systemd (``journal=None``: detected as for Reporter), else plain lines on stderr."""
    handler: logging.Handler | None = None
    use_journal = journal if journal is not None else journal_stream_matches(2)
    if use_journal:
        try:
            from systemd.journal import JournalHandler  # noqa: PLC0415 - optional dependency
        except ImportError:
            pass
        else:
            # Without the identifier, entries would be tagged with sys.argv[0] (a venv path).
            handler = JournalHandler(SYSLOG_IDENTIFIER="scepd")
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_PlainFormatter())
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    log.propagate = False


def _utc(when: dt.datetime) -> dt.datetime:
    """Naive datetimes are UTC throughout scepd."""
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def _iso_z(when: dt.datetime) -> str:
    return f"{_utc(when):%Y-%m-%dT%H:%M:%SZ}"


def _one_line(message: str) -> str:
    """A multi-line message (hook output) stays one line, so each line is one event."""
    return " | ".join(part for part in message.splitlines() if part.strip()) or message
