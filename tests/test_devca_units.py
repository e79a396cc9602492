"""devca pieces without a server: durations, GET message decoding, challenge storage."""

from __future__ import annotations

import base64
import datetime as dt
import json
import urllib.parse
from pathlib import Path

import pytest

from scepd.devca import challenges
from scepd.devca.app import decode_get_message
from scepd.devca.state import CADir, Config
from scepd.durations import format_duration, parse_duration
from scepd.errors import MalformedMessage, UsageError

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("120s", 120),
        ("5m", 300),
        ("6h", 21600),
        ("30d", 2592000),
        ("365d", 31536000),
        (" 2H ", 7200),
    ],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == dt.timedelta(seconds=seconds)
    assert parse_duration(format_duration(dt.timedelta(seconds=seconds))).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "5", "m", "1.5h", "-3d", "0s", "3w", "1d2h", "99999999d"])
def test_bad_durations_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match="--validity"):
        parse_duration(text, option="--validity")


def test_get_message_accepts_both_alphabets_escaped_or_not() -> None:
    data = bytes(range(256)) * 3  # has +, / and = in standard base64
    standard = base64.b64encode(data).decode()
    assert "+" in standard and "/" in standard
    urlsafe = base64.urlsafe_b64encode(data).decode()
    for raw in (
        standard,  # macOS: + and / left as they are
        urllib.parse.quote(standard, safe=""),
        urlsafe,
        urlsafe.rstrip("="),
        urllib.parse.quote(standard[:40] + "\n" + standard[40:], safe=""),
    ):
        assert decode_get_message(raw) == data
    with pytest.raises(MalformedMessage):
        decode_get_message("not base64 at all!")


def _dir(tmp_path: Path, static: dict[str, object] | None = None) -> CADir:
    ca = CADir(tmp_path / "ca")
    ca.create()
    ca.save_config(Config(False, 60, False, 2048, False, None, 3600, static))
    return ca


def test_otps_are_single_use_expire_and_are_stored_hashed(tmp_path: Path) -> None:
    ca = _dir(tmp_path)
    otp = challenges.new_otp(ca, now=NOW, lifetime=dt.timedelta(minutes=60))
    assert otp not in (ca.root / "otp.json").read_text()
    assert challenges.consume(ca, otp, now=NOW) is challenges.Verdict.OK
    assert challenges.consume(ca, otp, now=NOW) is challenges.Verdict.USED
    assert challenges.consume(ca, "0" * 16, now=NOW) is challenges.Verdict.UNKNOWN
    late = challenges.new_otp(ca, now=NOW, lifetime=dt.timedelta(minutes=60))
    later = NOW + dt.timedelta(minutes=61)
    assert challenges.consume(ca, late, now=later) is not challenges.Verdict.OK


def test_static_challenge_is_reusable_and_never_stored(tmp_path: Path) -> None:
    record = challenges.static_challenge_record("lab-Secret")
    ca = _dir(tmp_path, record)
    stored = json.dumps(ca.read_json("config.json", {}))
    assert "lab-Secret" not in stored
    for _ in range(2):
        assert challenges.consume(ca, "lab-Secret", now=NOW) is challenges.Verdict.OK
    assert challenges.consume(ca, "lab-secret", now=NOW) is challenges.Verdict.UNKNOWN
