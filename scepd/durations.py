"""Durations as admins write them: ``120s``, ``5m``, ``6h``, ``30d``.

One parser for every option that takes a duration (devca's ``--validity``, the daemon's renewal
and poll intervals), so the same spelling is accepted everywhere."""

from __future__ import annotations

import datetime as dt
import re

from scepd.errors import UsageError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"([0-9]+)([smhd])")


def parse_duration(text: str, *, option: str = "duration") -> dt.timedelta:
    """A positive whole number followed by one unit: s, m, h or d (``365d``)."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise UsageError(
            f"{option} {text!r}: expected a number and a unit s, m, h or d (e.g. 120s, 5m, 6h, 30d)"
        )
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise UsageError(f"{option} {text!r}: must be longer than zero")
    if seconds > 100 * 365 * 86400:
        raise UsageError(f"{option} {text!r}: longer than 100 years")
    return dt.timedelta(seconds=seconds)


def format_duration(delta: dt.timedelta) -> str:
    """The shortest exact spelling that :func:`parse_duration` reads back."""
    seconds = int(delta.total_seconds())
    for unit in ("d", "h", "m"):
        if seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"
