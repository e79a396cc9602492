"""When to renew a certificate and when to retry a failed renewal.

Pure functions: the clock (``now``) and the randomness (``rng``) are passed in, nothing is read
or written, so the daemon, the tests and ``bench/fleet.py`` all run exactly this code.

Every datetime must be timezone-aware (naive ones raise :class:`ValueError`: a naive value is
local time on one host and UTC on the next); results are in UTC.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

MIN_RENEWAL_SPACING = dt.timedelta(minutes=5)  # renewals of one identity are never back to back

# Full jitter can draw ~0: without a floor a fleet that failed together would retry together.
RETRY_FLOOR = dt.timedelta(seconds=30)
# The last retry before expiry lands this long before notAfter: room for two 30 s timeouts.
EXPIRY_MARGIN = dt.timedelta(minutes=1)

# 'auto' backoff, from the time the certificate has left (1 % and 10 % of it, clamped).
_AUTO_INITIAL_SHARE, _AUTO_INITIAL_MIN, _AUTO_INITIAL_MAX = (
    0.01, dt.timedelta(minutes=1), dt.timedelta(hours=1))  # fmt: skip
_AUTO_CAP_SHARE, _AUTO_CAP_MIN, _AUTO_CAP_MAX = 0.10, dt.timedelta(hours=1), dt.timedelta(hours=24)
# Without a certificate (first enrollment) there is no time left to scale to.
_NO_CERT_INITIAL, _NO_CERT_CAP = dt.timedelta(minutes=5), dt.timedelta(hours=1)

_US = dt.timedelta(microseconds=1)


def _utc(name: str, value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} {value.isoformat()} is naive: a timezone-aware time is needed")
    return value.astimezone(dt.UTC)


def _lifetime(not_before: dt.datetime, not_after: dt.datetime) -> dt.timedelta:
    lifetime = _utc("not_after", not_after) - _utc("not_before", not_before)
    if lifetime <= dt.timedelta(0):
        raise ValueError(f"notAfter {not_after.isoformat()} is not after notBefore")
    return lifetime


def renewal_point(
    not_before: dt.datetime,
    not_after: dt.datetime,
    *,
    renew_at: float | None,
    renew_before: dt.timedelta | None,
) -> dt.datetime:
    """notBefore + renew_at x lifetime, or notAfter - renew_before (exactly one is given).

    ``renew_at`` is a fraction (0.66 for 66 %). A ``renew_before`` longer than the lifetime gives
    a point before notBefore: that is what :func:`is_renewal_loop` reports, so it is not refused.
    """
    lifetime = _lifetime(not_before, not_after)
    if (renew_at is None) == (renew_before is None):
        raise ValueError("give exactly one of renew_at and renew_before")
    if renew_at is not None:
        if not 0.0 <= renew_at <= 1.0:  # 66 instead of 0.66 is caught here
            raise ValueError(f"renew_at {renew_at} is not a fraction of the lifetime (0..1)")
        return _utc("not_before", not_before) + lifetime * renew_at
    assert renew_before is not None
    if renew_before <= dt.timedelta(0):
        raise ValueError(f"renew_before {renew_before} must be longer than zero")
    return _utc("not_after", not_after) - renew_before


def jitter_offset(host: str, identity: str, lifetime: dt.timedelta, jitter: float) -> dt.timedelta:
    """Deterministic offset in [0, jitter x lifetime) from a hash (sha256) of host + identity:
    a fleet spreads out, restarts do not reshuffle."""
    if not 0.0 <= jitter <= 1.0:
        raise ValueError(f"jitter {jitter} is not a fraction of the lifetime (0..1)")
    if lifetime < dt.timedelta(0):
        raise ValueError(f"lifetime {lifetime} is negative")
    # NUL separator: ("ab", "c") and ("a", "bc") must not share an offset.
    digest = hashlib.sha256(f"{host}\0{identity}".encode()).digest()
    window_us = (lifetime * jitter) // _US
    # Integer scaling of a 64-bit fraction: strictly below the window, no float rounding up.
    return dt.timedelta(microseconds=(int.from_bytes(digest[:8], "big") * window_us) >> 64)


def next_renewal(
    not_before: dt.datetime,
    not_after: dt.datetime,
    *,
    renew_at: float | None,
    renew_before: dt.timedelta | None,
    jitter: float,
    host: str,
    identity: str,
) -> dt.datetime:
    """renewal_point minus jitter_offset, never before not_before."""
    point = renewal_point(not_before, not_after, renew_at=renew_at, renew_before=renew_before)
    # Jitter only moves renewals earlier: a later one could run past the configured margin.
    offset = jitter_offset(host, identity, _lifetime(not_before, not_after), jitter)
    return max(point - offset, _utc("not_before", not_before))


@dataclass(frozen=True)
class RetryPlan:
    """When to retry. ``past_expiry``: the backoff would have landed after notAfter (the caller
    logs an error); ``delay`` is then clamped to land EXPIRY_MARGIN before expiry when that is
    still at least RETRY_FLOOR away, else it is the initial delay (the certificate is lost)."""

    delay: dt.timedelta
    at: dt.datetime
    past_expiry: bool


def _clamp(value: dt.timedelta, low: dt.timedelta, high: dt.timedelta) -> dt.timedelta:
    return max(low, min(high, value))


def retry_delay(
    attempt: int,
    *,
    now: dt.datetime,
    not_after: dt.datetime | None,
    initial: dt.timedelta | None,
    maximum: dt.timedelta | None,
    rng: Callable[[], float],
    retry_after: dt.timedelta | None = None,
) -> RetryPlan:
    """Exponential backoff with full jitter: ``rng() x min(cap, base x 2**(attempt-1))``.

    ``attempt`` counts failures (1 after the first). With ``initial``/``maximum`` None ('auto')
    base and cap follow the time the certificate has left: base 1 % of it within [1 min, 1 h],
    cap 10 % within [1 h, 24 h]; with no certificate (``not_after`` None) 5 min and 1 h.
    The delay is never under RETRY_FLOOR, nor under the server's Retry-After. Near expiry the
    expiry guard wins over Retry-After: one last try before notAfter beats a lost certificate.
    """
    if attempt < 1:
        raise ValueError(f"attempt {attempt}: attempts are counted from 1")
    for name, fixed in (("initial", initial), ("maximum", maximum)):
        if fixed is not None and fixed <= dt.timedelta(0):
            raise ValueError(f"{name} retry delay {fixed} must be longer than zero")
    now = _utc("now", now)
    left = None if not_after is None else _utc("not_after", not_after) - now
    if left is None:
        auto_base, auto_cap = _NO_CERT_INITIAL, _NO_CERT_CAP
    else:  # an expired certificate (left <= 0) gets the lower clamps
        auto_base = _clamp(left * _AUTO_INITIAL_SHARE, _AUTO_INITIAL_MIN, _AUTO_INITIAL_MAX)
        auto_cap = _clamp(left * _AUTO_CAP_SHARE, _AUTO_CAP_MIN, _AUTO_CAP_MAX)
    base = auto_base if initial is None else initial
    cap = max(auto_cap if maximum is None else maximum, base)  # a configured base is not cut

    draw = rng()
    if not 0.0 <= draw <= 1.0:
        raise ValueError(f"rng returned {draw}, outside [0, 1]")
    # Integer microseconds: 2**(attempt-1) of a timedelta overflows after ~40 attempts.
    # base >= 1 us, so 64 doublings exceed any cap.
    window_us = min(cap // _US, (base // _US) << min(attempt - 1, 64))
    delay = max(dt.timedelta(microseconds=round(draw * window_us)), RETRY_FLOOR)
    if retry_after is not None:
        delay = max(delay, retry_after)

    if left is None or delay <= left:
        return RetryPlan(delay=delay, at=now + delay, past_expiry=False)
    if left - EXPIRY_MARGIN >= RETRY_FLOOR:
        delay = left - EXPIRY_MARGIN
    else:
        # Too close to (or past) expiry for a last try: retrying faster would only make a storm.
        delay = max(base, RETRY_FLOOR, retry_after or dt.timedelta(0))
    return RetryPlan(delay=delay, at=now + delay, past_expiry=True)


def is_renewal_loop(
    *,
    issued_not_before: dt.datetime,
    issued_not_after: dt.datetime,
    renew_at: float | None,
    renew_before: dt.timedelta | None,
    issued_at: dt.datetime | None = None,
    spacing: dt.timedelta = MIN_RENEWAL_SPACING,
) -> bool:
    """True when a freshly issued certificate would be due at once (e.g. renew_before longer
    than the lifetime the CA grants, smallstep/cli#523): the daemon reports it and spaces
    renewals by MIN_RENEWAL_SPACING instead of looping.

    'At once' is: due less than MIN_RENEWAL_SPACING after notBefore, where the rate limit and
    not the configuration would set the pace. The CA's lifetime is what counts, not the
    requested one. (A CA that backdates notBefore by more than that, as AD CS does by 10 min,
    can hide a near-loop here; the rate limit still spaces it.)  With ``issued_at`` (when
    the certificate arrived), 'at once' counts from then, which backdating cannot hide.
    ``spacing`` is the rate limit in force (see :func:`renewal_spacing`).
    """
    point = renewal_point(
        issued_not_before, issued_not_after, renew_at=renew_at, renew_before=renew_before
    )
    start = _utc("issued_not_before", issued_not_before)
    if issued_at is not None:
        start = max(start, _utc("issued_at", issued_at))
    return point - start < spacing


def renewal_spacing(not_before: dt.datetime, not_after: dt.datetime) -> dt.timedelta:
    """The rate limit for one identity: MIN_RENEWAL_SPACING, or a tenth of the lifetime for
    the short certificates of a demo or a test (30 s certificates must still renew)."""
    return min(MIN_RENEWAL_SPACING, _lifetime(not_before, not_after) / 10)


def earliest_next_attempt(
    last_attempt: dt.datetime | None,
    due: dt.datetime,
    spacing: dt.timedelta = MIN_RENEWAL_SPACING,
) -> dt.datetime:
    """max(due, last_attempt + spacing): the rate limit."""
    due = _utc("due", due)
    if last_attempt is None:
        return due
    return max(due, _utc("last_attempt", last_attempt) + spacing)
