"""journald reporting: structured fields through the sender seam, the plain-line fallback,
JOURNAL_STREAM detection, failure priorities, the catalog, and one real native-protocol
datagram captured in a private mount namespace."""

from __future__ import annotations

import datetime as dt
import inspect
import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO

from scepd.daemon import journal
from scepd.daemon.journal import (
    MESSAGE_IDS,
    PRIORITY,
    Reporter,
    check_field_name,
    failure_priority,
    journal_stream_matches,
    setup_logging,
)

CATALOG = REPO / "contrib" / "systemd" / "scepd.catalog"
UTC = dt.UTC
NOT_AFTER = dt.datetime(2027, 3, 1, 4, 12, 5, tzinfo=UTC)
SECRET = "s3cret-Challenge-never-logged"


class FakeSender:
    """Stands in for systemd.journal.send: one dict of fields per call."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.error = error

    def __call__(self, MESSAGE: str, **fields: Any) -> None:  # journal.send's parameter name
        self.calls.append({"MESSAGE": MESSAGE, **fields})
        if self.error is not None:
            raise self.error


def reporter(sender: FakeSender | None = None) -> tuple[Reporter, FakeSender, io.StringIO]:
    sender = sender or FakeSender()
    stream = io.StringIO()
    return Reporter(sender=sender, stream=stream, journal=True), sender, stream


# --- MESSAGE_IDS -------------------------------------------------------------------------------
def test_message_ids_one_per_kind_distinct_random() -> None:
    assert set(MESSAGE_IDS) == {
        "enrolled", "renewed", "renewal-failed", "pending", "expiring-soon", "expired",
        "hook-failed", "ca-expiring",
    }  # fmt: skip
    assert len(set(MESSAGE_IDS.values())) == len(MESSAGE_IDS)
    assert all(isinstance(v, uuid.UUID) and v.version == 4 for v in MESSAGE_IDS.values())
    assert PRIORITY == {"emerg": 0, "alert": 1, "crit": 2, "err": 3, "warning": 4,
                        "notice": 5, "info": 6, "debug": 7}  # fmt: skip


def test_message_ids_never_change() -> None:
    # Alerts and the installed catalog match on these: a change is a breaking change.
    assert MESSAGE_IDS["renewed"].hex == "138900f30ee14608a1f7fc1c0479717f"
    assert MESSAGE_IDS["renewal-failed"].hex == "74108300ac3a4d3bb53e55859b3c2c08"


# --- structured events -------------------------------------------------------------------------
def test_event_sends_every_field() -> None:
    rep, sender, stream = reporter()
    rep.event(
        "renewed", "web: renewed, serial 1A2B", identity="web", priority=PRIORITY["notice"],
        server="https://ndes.example.com/certsrv/mscep/mscep.dll", serial="1A2B",
        not_after=NOT_AFTER, transaction_id="abc123", fail_info="badRequest",
    )  # fmt: skip
    assert sender.calls == [{
        "MESSAGE": "web: renewed, serial 1A2B",
        "MESSAGE_ID": MESSAGE_IDS["renewed"],
        "PRIORITY": "5",
        "SYSLOG_IDENTIFIER": "scepd",
        "SCEPD_IDENTITY": "web",
        "SCEPD_SERVER": "https://ndes.example.com/certsrv/mscep/mscep.dll",
        "SCEPD_SERIAL": "1A2B",
        "SCEPD_NOT_AFTER": "2027-03-01T04:12:05Z",
        "SCEPD_TRANSACTION_ID": "abc123",
        "SCEPD_FAIL_INFO": "badRequest",
    }]  # fmt: skip
    assert stream.getvalue() == ""  # journald only: no duplicate line


def test_event_leaves_out_none_fields() -> None:
    rep, sender, _ = reporter()
    rep.event("enrolled", "enrolled", identity="mail", priority=PRIORITY["info"])
    (call,) = sender.calls
    assert set(call) == {"MESSAGE", "MESSAGE_ID", "PRIORITY", "SYSLOG_IDENTIFIER",
                         "SCEPD_IDENTITY"}  # fmt: skip
    assert None not in call.values()


def test_not_after_is_converted_to_utc_z() -> None:
    rep, sender, _ = reporter()
    cet = dt.timezone(dt.timedelta(hours=1))
    rep.event("expiring-soon", "x", identity="a", priority=4,
              not_after=dt.datetime(2027, 3, 1, 5, 12, 5, tzinfo=cet))  # fmt: skip
    rep.event("expiring-soon", "x", identity="a", priority=4,
              not_after=dt.datetime(2027, 3, 1, 4, 12, 5))  # naive: UTC  # fmt: skip
    assert [c["SCEPD_NOT_AFTER"] for c in sender.calls] == ["2027-03-01T04:12:05Z"] * 2


def test_every_sent_field_name_is_valid() -> None:
    rep, sender, _ = reporter()
    for kind in MESSAGE_IDS:
        rep.event(kind, "m", identity="i", priority=3, server="s", serial="1",
                  not_after=NOT_AFTER, transaction_id="t", fail_info="f")  # fmt: skip
    for call in sender.calls:
        for name in call:
            assert check_field_name(name) == name
            assert re.fullmatch(r"[A-Z0-9][A-Z0-9_]*", name)
    assert {c["MESSAGE_ID"] for c in sender.calls} == set(MESSAGE_IDS.values())


@pytest.mark.parametrize("name", ["lower", "_PID", "SCEPD-X", "", "SCEPD IDENTITY", "ÄÖ"])
def test_check_field_name_refuses_what_journald_drops(name: str) -> None:
    with pytest.raises(ValueError, match="invalid journal field name"):
        check_field_name(name)


def test_unknown_kind_is_still_reported_without_message_id() -> None:
    rep, sender, _ = reporter()
    rep.event("no-such-kind", "m", identity="i", priority=4)
    (call,) = sender.calls
    assert "MESSAGE_ID" not in call and call["MESSAGE"] == "m"


def test_priority_is_clamped_to_syslog_range() -> None:
    rep, sender, _ = reporter()
    rep.event("expired", "m", identity="i", priority=-3)
    rep.event("expired", "m", identity="i", priority=42)
    assert [c["PRIORITY"] for c in sender.calls] == ["0", "7"]


# --- plain lines -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("priority", "level"),
    [(2, "critical"), (3, "error"), (4, "warning"), (5, "notice"), (6, "info"), (7, "debug")],
)
def test_plain_line_without_journald(priority: int, level: str) -> None:
    stream = io.StringIO()
    sender = FakeSender()
    rep = Reporter(sender=sender, stream=stream, journal=False)
    assert not rep.uses_journal
    rep.event("renewal-failed", "CA rejected: badRequest", identity="web", priority=priority,
              serial="1A", fail_info="badRequest")  # fmt: skip
    assert stream.getvalue() == f"scepd: {level}: web: CA rejected: badRequest\n"
    assert sender.calls == []


def test_plain_line_stays_one_line() -> None:
    stream = io.StringIO()
    Reporter(stream=stream, journal=False).event(
        "hook-failed", "hook exited 1\nline one\n\nline two", identity="web", priority=3
    )
    assert stream.getvalue() == "scepd: error: web: hook exited 1 | line one | line two\n"


def test_plain_line_defaults_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    Reporter(journal=False).event("enrolled", "enrolled", identity="web", priority=6)
    assert capsys.readouterr().err == "scepd: info: web: enrolled\n"


def test_sender_oserror_falls_back_to_the_line() -> None:
    rep, sender, stream = reporter(FakeSender(BlockingIOError(11, "Resource unavailable")))
    rep.event("renewed", "renewed", identity="web", priority=5)
    assert len(sender.calls) == 1
    assert stream.getvalue() == "scepd: notice: web: renewed\n"


def test_never_raises_even_when_the_stream_is_gone() -> None:
    stream = io.StringIO()
    stream.close()
    rep = Reporter(sender=FakeSender(OSError("journald gone")), stream=stream, journal=True)
    rep.event("renewed", "renewed", identity="web", priority=5)  # no exception


def test_no_parameter_can_carry_a_challenge() -> None:
    params = inspect.signature(Reporter.event).parameters
    assert not [p for p in params.values() if p.kind is inspect.Parameter.VAR_KEYWORD]
    assert not [n for n in params if re.search("challenge|password|secret|key", n)]
    rep, sender, stream = reporter(FakeSender(OSError()))
    rep.event("renewal-failed", "CA rejected the request", identity="web", priority=3,
              server="http://ca", serial="1", not_after=NOT_AFTER, transaction_id="t",
              fail_info="badRequest")  # fmt: skip
    assert SECRET not in json.dumps(sender.calls, default=str) + stream.getvalue()


# --- detection ---------------------------------------------------------------------------------
def _dev_ino(fd: int) -> str:
    st = os.fstat(fd)
    return f"{st.st_dev}:{st.st_ino}"


def test_journal_stream_matches_compares_device_and_inode(tmp_path: Path) -> None:
    with (tmp_path / "a").open("w") as a, (tmp_path / "b").open("w") as b:
        value = _dev_ino(a.fileno())
        assert journal_stream_matches(a.fileno(), {"JOURNAL_STREAM": value})
        assert not journal_stream_matches(b.fileno(), {"JOURNAL_STREAM": value})
        for bad in ("", "1234", "x:y", f"{value}:9", ":", "-1:-2"):
            assert not journal_stream_matches(a.fileno(), {"JOURNAL_STREAM": bad}), bad
        assert not journal_stream_matches(a.fileno(), {})
        fd = a.fileno()
    assert not journal_stream_matches(fd, {"JOURNAL_STREAM": value})  # closed


def test_journal_stream_matches_reads_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (tmp_path / "a").open("w") as a:
        monkeypatch.setenv("JOURNAL_STREAM", _dev_ino(a.fileno()))
        assert journal_stream_matches(a.fileno())
        monkeypatch.delenv("JOURNAL_STREAM")
        assert not journal_stream_matches(a.fileno())


def test_reporter_auto_detects_journald_on_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    sender = FakeSender()
    stream = io.StringIO()
    monkeypatch.setenv("JOURNAL_STREAM", _dev_ino(2))  # as systemd sets it for our stderr
    rep = Reporter(sender=sender, stream=stream)
    assert rep.uses_journal
    rep.event("renewed", "renewed", identity="web", priority=5)
    assert len(sender.calls) == 1 and stream.getvalue() == ""


def test_reporter_inherited_journal_stream_is_not_journald(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A shell started from a service inherits JOURNAL_STREAM, but its stderr is elsewhere.
    with (tmp_path / "other").open("w") as other:
        monkeypatch.setenv("JOURNAL_STREAM", _dev_ino(other.fileno()))
        sender = FakeSender()
        stream = io.StringIO()
        rep = Reporter(sender=sender, stream=stream)
    assert not rep.uses_journal
    rep.event("renewed", "renewed", identity="web", priority=5)
    assert sender.calls == [] and stream.getvalue() == "scepd: notice: web: renewed\n"


def test_without_systemd_python_falls_back_to_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "systemd", None)  # import systemd -> ImportError
    monkeypatch.setitem(sys.modules, "systemd.journal", None)
    stream = io.StringIO()
    rep = Reporter(stream=stream, journal=True)
    assert not rep.uses_journal
    rep.event("expired", "expired", identity="web", priority=2)
    assert stream.getvalue() == "scepd: critical: web: expired\n"


def test_default_sender_is_journal_send() -> None:
    systemd_journal = pytest.importorskip("systemd.journal")
    rep = Reporter(journal=True)
    assert rep._sender is systemd_journal.send


# --- failure priorities ------------------------------------------------------------------------
def _at(days: float, lifetime_days: float) -> int:
    start = dt.datetime(2026, 1, 1, tzinfo=UTC)
    return failure_priority(
        not_before=start,
        not_after=start + dt.timedelta(days=lifetime_days),
        now=start + dt.timedelta(days=days),
    )


def test_failure_priority_90_day_certificate() -> None:
    warning, err, crit = PRIORITY["warning"], PRIORITY["err"], PRIORITY["crit"]
    assert _at(0, 90) == warning
    assert _at(59.9, 90) == warning  # 30.1 days (more than a third) left
    assert _at(60.1, 90) == err
    assert _at(80.9, 90) == err  # 9.1 days left: 10 % is 9 days
    assert _at(81.1, 90) == crit
    assert _at(90, 90) == crit  # expires now
    assert _at(120, 90) == crit  # expired


def test_failure_priority_one_year_and_one_week() -> None:
    assert _at(365 - 37, 365) == PRIORITY["err"]
    assert _at(365 - 36, 365) == PRIORITY["crit"]  # 10 % (36.5 days) is larger than 24 h
    assert _at(7 - 1.1, 7) == PRIORITY["err"]  # 10 % is 16.8 h: the 24-hour floor wins
    assert _at(7 - 0.9, 7) == PRIORITY["crit"]


def test_failure_priority_short_demo_certificate_skips_err() -> None:
    # 10 minutes: the 24-hour floor is capped at a third of the lifetime.
    assert _at(6.5 / 1440, 10 / 1440) == PRIORITY["warning"]
    assert _at(7 / 1440, 10 / 1440) == PRIORITY["crit"]


def test_failure_priority_never_decreases_over_the_life() -> None:
    for lifetime in (10 / 1440, 1, 3, 7, 30, 90, 365, 3650):
        levels = [_at(lifetime * i / 200, lifetime) for i in range(0, 221)]
        severity = [-p for p in levels]
        assert severity == sorted(severity), lifetime
        assert levels[0] == PRIORITY["warning"] and levels[-1] == PRIORITY["crit"]


def test_failure_priority_missing_certificate_or_lifetime() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=UTC)
    assert failure_priority(not_after=None, not_before=None, now=now) == PRIORITY["crit"]
    day = dt.timedelta(days=1)
    assert failure_priority(not_after=now + 30 * day, not_before=None, now=now) == 3
    assert failure_priority(not_after=now + day / 2, not_before=None, now=now) == 2
    # notBefore after notAfter: malformed, nothing to scale by.
    assert failure_priority(not_after=now + day, not_before=now + 2 * day, now=now) == 2
    # naive datetimes are UTC
    naive = now.replace(tzinfo=None)
    assert failure_priority(not_after=naive + 90 * day, not_before=naive, now=now) == 4


# --- setup_logging -----------------------------------------------------------------------------
@pytest.fixture
def scepd_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("scepd")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield logger
    logger.handlers[:], logger.level, logger.propagate = saved


def test_setup_logging_plain(
    scepd_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging(debug=False, journal=False)
    scepd_logger.debug("hidden")
    scepd_logger.warning("web: %s", "slow CA")
    assert capsys.readouterr().err == "scepd: warning: web: slow CA\n"
    setup_logging(debug=True, journal=False)
    assert scepd_logger.level == logging.DEBUG and len(scepd_logger.handlers) == 1
    scepd_logger.debug("shown")
    assert capsys.readouterr().err == "scepd: debug: shown\n"


def test_setup_logging_journal_handler(scepd_logger: logging.Logger) -> None:
    systemd_journal = pytest.importorskip("systemd.journal")
    setup_logging(debug=False, journal=True)
    (handler,) = scepd_logger.handlers
    assert isinstance(handler, systemd_journal.JournalHandler)
    assert scepd_logger.level == logging.INFO
    sender = FakeSender()
    handler.send = sender  # type: ignore[attr-defined]  # JournalHandler's own seam
    scepd_logger.info("web: next attempt %s", "2027-01-01")
    (call,) = sender.calls
    assert call["MESSAGE"] == "web: next attempt 2027-01-01"
    assert call["SYSLOG_IDENTIFIER"] == "scepd" and call["PRIORITY"] == "6"


def test_setup_logging_auto_detects(
    scepd_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    systemd_journal = pytest.importorskip("systemd.journal")
    monkeypatch.setenv("JOURNAL_STREAM", _dev_ino(2))
    setup_logging(debug=False)
    assert isinstance(scepd_logger.handlers[0], systemd_journal.JournalHandler)
    monkeypatch.setenv("JOURNAL_STREAM", "1:1")
    setup_logging(debug=False)
    assert not isinstance(scepd_logger.handlers[0], systemd_journal.JournalHandler)


def test_setup_logging_without_systemd_python(
    scepd_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "systemd", None)
    monkeypatch.setitem(sys.modules, "systemd.journal", None)
    setup_logging(debug=False, journal=True)
    (handler,) = scepd_logger.handlers
    assert type(handler) is logging.StreamHandler
    assert isinstance(handler.formatter, journal._PlainFormatter)


# --- the catalog -------------------------------------------------------------------------------
def parse_catalog(text: str) -> dict[str, tuple[dict[str, str], str]]:
    """id -> (headers, body); an id twice is an error."""
    entries: dict[str, tuple[dict[str, str], str]] = {}
    blocks = re.split(r"^-- ", text, flags=re.M)
    for block in blocks[1:]:
        head, _, body = block.partition("\n\n")
        id_line, *header_lines = head.splitlines()
        assert id_line not in entries, f"{id_line} twice"
        headers = dict(line.split(": ", 1) for line in header_lines)
        entries[id_line] = (headers, body.strip())
    return entries


def test_catalog_covers_every_message_id_once() -> None:
    text = CATALOG.read_text()
    entries = parse_catalog(text)
    assert set(entries) == {mid.hex for mid in MESSAGE_IDS.values()}
    assert len(re.findall(r"^-- ", text, flags=re.M)) == len(MESSAGE_IDS)
    sent = {"SCEPD_IDENTITY", "SCEPD_SERVER", "SCEPD_SERIAL", "SCEPD_NOT_AFTER",
            "SCEPD_TRANSACTION_ID", "SCEPD_FAIL_INFO"}  # fmt: skip
    for mid, (headers, body) in entries.items():
        assert re.fullmatch(r"[0-9a-f]{32}", mid)
        assert headers["Subject"] and headers["Defined-By"] == "scepd", mid
        assert headers["Documentation"] == "man:scepd(8)", mid
        assert len(body) > 100, mid
        # every @FIELD@ is one Reporter sends, or journalctl -x prints it literally
        assert set(re.findall(r"@([A-Z0-9_]+)@", headers["Subject"] + body)) <= sent, mid


def test_catalog_compiles_with_journalctl(tmp_path: Path) -> None:
    journalctl = shutil.which("journalctl") or (
        "/usr/bin/journalctl" if Path("/usr/bin/journalctl").exists() else None
    )
    if journalctl is None:
        pytest.skip("journalctl is not installed")
    catalog_dir = tmp_path / "usr" / "lib" / "systemd" / "catalog"
    catalog_dir.mkdir(parents=True)
    shutil.copy(CATALOG, catalog_dir / "scepd.catalog")
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}
    subprocess.run([journalctl, f"--root={tmp_path}", "--update-catalog"],
                   check=True, capture_output=True, env=env)  # fmt: skip
    listed = subprocess.run([journalctl, f"--root={tmp_path}", "--list-catalog"],
                            check=True, capture_output=True, text=True, env=env).stdout  # fmt: skip
    ids = {line.split()[0] for line in listed.splitlines() if line.strip()}
    assert ids == {mid.hex for mid in MESSAGE_IDS.values()}
    assert "Certificate renewed for @SCEPD_IDENTITY@" in listed


# --- the real wire format ----------------------------------------------------------------------
# Runs in a private mount namespace with a tmpfs on /run/systemd, so libsystemd's hard-coded
# /run/systemd/journal/socket is ours and the host's is untouched.
_CAPTURE = r"""
import datetime as dt, json, socket, sys
from scepd.daemon.journal import PRIORITY, Reporter
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
import os; os.makedirs("/run/systemd/journal", exist_ok=True)
sock.bind("/run/systemd/journal/socket")
Reporter(journal=True, stream=sys.stderr).event(
    "renewal-failed", "web: CA rejected\nsecond line", identity="web", priority=PRIORITY["err"],
    serial="1A2B", not_after=dt.datetime(2027, 3, 1, 4, 12, 5, tzinfo=dt.UTC),
    fail_info="badRequest")
sock.settimeout(5)
data = sock.recv(1 << 20)
fields = {}
while data:
    head, sep, rest = data.partition(b"\n")
    if b"=" in head:
        name, _, value = head.partition(b"=")
        data = rest
    else:  # binary form for values with a newline: NAME\n<u64 LE length><bytes>\n
        name, size = head, int.from_bytes(rest[:8], "little")
        value, data = rest[8:8 + size], rest[9 + size:]
    fields[name.decode()] = value.decode()
print(json.dumps(fields))
"""


def test_real_native_protocol_datagram() -> None:
    pytest.importorskip("systemd.journal")
    unshare = shutil.which("unshare")
    if unshare is None or not Path("/run/systemd").is_dir():
        pytest.skip("needs unshare(1) and /run/systemd")
    flags = "-m" if os.geteuid() == 0 else "-rm"
    script = 'mount --make-rprivate / && mount -t tmpfs tmpfs /run/systemd && exec "$@"'
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("JOURNAL_STREAM", None)
    proc = subprocess.run(
        [unshare, flags, "sh", "-c", script, "sh", sys.executable, "-c", _CAPTURE],
        check=False, capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    if proc.returncode != 0 and ("unshare" in proc.stderr or "mount" in proc.stderr):
        pytest.skip(f"no private mount namespace here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    fields = json.loads(proc.stdout)
    assert fields["MESSAGE"] == "web: CA rejected\nsecond line"
    assert fields["MESSAGE_ID"] == MESSAGE_IDS["renewal-failed"].hex
    assert fields["PRIORITY"] == "3"
    assert fields["SYSLOG_IDENTIFIER"] == "scepd"
    assert fields["SCEPD_IDENTITY"] == "web"
    assert fields["SCEPD_SERIAL"] == "1A2B"
    assert fields["SCEPD_NOT_AFTER"] == "2027-03-01T04:12:05Z"
    assert fields["SCEPD_FAIL_INFO"] == "badRequest"
    assert "SCEPD_SERVER" not in fields and "SCEPD_TRANSACTION_ID" not in fields
    assert "CODE_FILE" in fields  # journal.send adds the caller's location
