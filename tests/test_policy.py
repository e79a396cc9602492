"""The renewal policy with an injected clock: explicit datetimes, a scripted rng."""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from collections.abc import Callable

import pytest

from scepd import policy
from scepd.policy import (
    MIN_RENEWAL_SPACING,
    RetryPlan,
    earliest_next_attempt,
    is_renewal_loop,
    jitter_offset,
    next_renewal,
    renewal_point,
    retry_delay,
)

NB = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DAY, HOUR, MINUTE, SECOND = (dt.timedelta(days=1), dt.timedelta(hours=1),
                             dt.timedelta(minutes=1), dt.timedelta(seconds=1))  # fmt: skip
YEAR_NA = NB + 365 * DAY
WEEK_NA = NB + 7 * DAY
HOSTS = [f"host{i:05d}" for i in range(1, 10_001)]


def fixed(value: float) -> Callable[[], float]:
    return lambda: value


def close(actual: dt.timedelta, expected: dt.timedelta) -> bool:
    # float x microseconds may round one microsecond either way
    return abs(actual - expected) <= dt.timedelta(microseconds=2)


# --- renewal point ---------------------------------------------------------------------------


def test_renew_at_is_a_fraction_of_the_lifetime_from_not_before() -> None:
    # 66 % of 365 days = 240.9 days
    assert renewal_point(NB, YEAR_NA, renew_at=0.66, renew_before=None) == NB + dt.timedelta(
        days=240, hours=21, minutes=36
    )
    # 66 % of 7 days = 4 d 14 h 52 min 48 s
    assert renewal_point(NB, WEEK_NA, renew_at=0.66, renew_before=None) == NB + dt.timedelta(
        days=4, hours=14, minutes=52, seconds=48
    )


def test_renew_before_counts_back_from_not_after() -> None:
    assert renewal_point(NB, YEAR_NA, renew_at=None, renew_before=30 * DAY) == YEAR_NA - 30 * DAY
    # longer than the lifetime: before notBefore, left for is_renewal_loop to report
    assert renewal_point(NB, WEEK_NA, renew_at=None, renew_before=30 * DAY) == NB - 23 * DAY


@pytest.mark.parametrize(
    ("renew_at", "renew_before"),
    [(None, None), (0.66, 30 * DAY), (66.0, None), (-0.1, None), (None, dt.timedelta(0))],
)
def test_renewal_point_refuses_ambiguous_or_absurd_settings(
    renew_at: float | None, renew_before: dt.timedelta | None
) -> None:
    with pytest.raises(ValueError):
        renewal_point(NB, YEAR_NA, renew_at=renew_at, renew_before=renew_before)


def test_not_after_must_follow_not_before() -> None:
    with pytest.raises(ValueError):
        renewal_point(NB, NB, renew_at=0.5, renew_before=None)


def test_aware_non_utc_times_are_read_as_the_same_instant() -> None:
    paris = dt.timezone(dt.timedelta(hours=1))
    point = renewal_point(NB.astimezone(paris), YEAR_NA, renew_at=0.5, renew_before=None)
    assert point == NB + 182.5 * DAY
    assert point.utcoffset() == dt.timedelta(0)


# --- jitter ----------------------------------------------------------------------------------


def test_jitter_is_deterministic_and_pinned() -> None:
    first = jitter_offset("host00001", "web", 365 * DAY, 0.05)
    assert first == jitter_offset("host00001", "web", 365 * DAY, 0.05)
    # Pinned: a change of hash would reshuffle every fleet's schedule on upgrade.
    digest = hashlib.sha256(b"host00001\0web").digest()
    expected_fraction = int.from_bytes(digest[:8], "big") / 2**64
    assert abs(first / (365 * DAY * 0.05) - expected_fraction) < 1e-9
    # host and identity both count, and are not merely concatenated
    assert first != jitter_offset("host00001", "mail", 365 * DAY, 0.05)
    assert jitter_offset("ab", "c", DAY, 0.5) != jitter_offset("a", "bc", DAY, 0.5)


def test_jitter_spreads_a_fleet_uniformly() -> None:
    window = 365 * DAY * 0.05
    buckets = [0] * 10
    for host in HOSTS:
        buckets[int(jitter_offset(host, "web", 365 * DAY, 0.05) / window * 10)] += 1
    assert all(800 <= count <= 1200 for count in buckets), buckets


@pytest.mark.parametrize(("lifetime", "jitter"), [(365 * DAY, 0.05), (7 * DAY, 0.05),
                                                  (10 * MINUTE, 0.5), (SECOND, 0.1)])  # fmt: skip
def test_jitter_offset_stays_in_its_window(lifetime: dt.timedelta, jitter: float) -> None:
    offsets = [jitter_offset(host, "web", lifetime, jitter) for host in HOSTS]
    assert min(offsets) >= dt.timedelta(0)
    assert max(offsets) < lifetime * jitter
    assert max(offsets) > lifetime * jitter * 0.99  # and uses all of it


def test_no_jitter_no_offset() -> None:
    assert {jitter_offset(h, "web", 365 * DAY, 0.0) for h in HOSTS[:100]} == {dt.timedelta(0)}


@pytest.mark.parametrize("jitter", [-0.01, 1.5])
def test_jitter_outside_zero_one_is_refused(jitter: float) -> None:
    with pytest.raises(ValueError):
        jitter_offset("host00001", "web", DAY, jitter)


def test_next_renewal_is_the_point_moved_earlier_by_the_offset() -> None:
    due = next_renewal(NB, YEAR_NA, renew_at=0.66, renew_before=None, jitter=0.05,
                       host="host00001", identity="web")  # fmt: skip
    offset = jitter_offset("host00001", "web", 365 * DAY, 0.05)
    assert offset > DAY  # the check below is not vacuous
    assert due == renewal_point(NB, YEAR_NA, renew_at=0.66, renew_before=None) - offset


def test_next_renewal_is_never_before_not_before() -> None:
    # renew_before longer than the lifetime
    assert next_renewal(NB, WEEK_NA, renew_at=None, renew_before=30 * DAY, jitter=0.05,
                        host="host00001", identity="web") == NB  # fmt: skip
    # jitter larger than the time to the renewal point: some hosts would fall before notBefore
    dues = [next_renewal(NB, WEEK_NA, renew_at=0.02, renew_before=None, jitter=0.05,
                         host=h, identity="web") for h in HOSTS[:1000]]  # fmt: skip
    assert min(dues) == NB
    assert max(dues) > NB


# --- retry backoff ---------------------------------------------------------------------------


def year_cert_left(left: dt.timedelta) -> tuple[dt.datetime, dt.datetime]:
    """(now, not_after) of a 365-day certificate with `left` to live."""
    return YEAR_NA - left, YEAR_NA


def week_cert_left(left: dt.timedelta) -> tuple[dt.datetime, dt.datetime]:
    return WEEK_NA - left, WEEK_NA


# (certificate, time left, attempt, rng, expected delay) -- base/cap derived in the comments
BACKOFF_CASES = [
    # 365 d at 66 %: 124.1 d left -> base 1 % = 29.8 h clamped to 1 h, cap 12.4 d -> 24 h
    (year_cert_left, 124.1 * DAY, 1, 0.5, 30 * MINUTE),
    (year_cert_left, 124.1 * DAY, 1, 0.999, 0.999 * HOUR),
    (year_cert_left, 124.1 * DAY, 5, 0.5, 8 * HOUR),  # 16 h window, under the cap
    (year_cert_left, 124.1 * DAY, 6, 0.5, 12 * HOUR),  # 32 h -> capped at 24 h
    (year_cert_left, 124.1 * DAY, 10, 0.999, 0.999 * 24 * HOUR),
    # 365 d, 5 days left: base 1.2 h -> 1 h, cap 12 h (unclamped)
    (year_cert_left, 5 * DAY, 10, 0.5, 6 * HOUR),
    # 365 d, 2 days left: base 28.8 min (unclamped), cap 4.8 h
    (year_cert_left, 2 * DAY, 1, 0.5, 14.4 * MINUTE),
    (year_cert_left, 2 * DAY, 10, 0.999, 0.999 * 4.8 * HOUR),
    # 7 d at 66 %: 57.12 h left -> base 34.272 min, cap 5.712 h (both unclamped)
    (week_cert_left, 57.12 * HOUR, 1, 0.5, 0.5 * 34.272 * MINUTE),
    (week_cert_left, 57.12 * HOUR, 1, 0.999, 0.999 * 34.272 * MINUTE),
    (week_cert_left, 57.12 * HOUR, 4, 0.5, 0.5 * 8 * 34.272 * MINUTE),  # 4.57 h < cap
    (week_cert_left, 57.12 * HOUR, 5, 0.5, 0.5 * 5.712 * HOUR),  # 9.14 h -> cap
    # 7 d at 95 %: 8.4 h left -> base 5.04 min, cap 50.4 min -> 1 h
    (week_cert_left, 8.4 * HOUR, 1, 0.5, 2.52 * MINUTE),
    (week_cert_left, 8.4 * HOUR, 8, 0.999, 0.999 * HOUR),
    # 7 d, 3 h left: base 1.8 min, cap 18 min -> 1 h
    (week_cert_left, 3 * HOUR, 1, 0.999, 0.999 * 1.8 * MINUTE),
    # 7 d, 2 h left: base 1.2 min, cap 1 h; 59.94 min lands before expiry: no guard
    (week_cert_left, 2 * HOUR, 10, 0.999, 0.999 * HOUR),
    # 7 d, 90 min left: base 0.9 min -> 1 min
    (week_cert_left, 90 * MINUTE, 1, 0.999, 0.999 * MINUTE),
]


@pytest.mark.parametrize(("cert", "left", "attempt", "draw", "expected"), BACKOFF_CASES)
def test_auto_backoff_scales_with_the_time_left(
    cert: Callable[[dt.timedelta], tuple[dt.datetime, dt.datetime]],
    left: dt.timedelta, attempt: int, draw: float, expected: dt.timedelta,
) -> None:  # fmt: skip
    now, not_after = cert(left)
    plan = retry_delay(attempt, now=now, not_after=not_after, initial=None, maximum=None,
                       rng=fixed(draw))  # fmt: skip
    assert close(plan.delay, expected), (plan.delay, expected)
    assert plan.at == now + plan.delay
    assert plan.past_expiry is False


def test_full_jitter_spans_the_whole_window() -> None:
    now, not_after = week_cert_left(57.12 * HOUR)
    delays = [retry_delay(2, now=now, not_after=not_after, initial=None, maximum=None,
                          rng=fixed(r)).delay for r in (0.0, 0.25, 0.5, 0.999)]  # fmt: skip
    window = 2 * 34.272 * MINUTE
    assert delays[0] == dt.timedelta(seconds=30)  # the floor, not zero
    assert close(delays[1], 0.25 * window)
    assert close(delays[2], 0.5 * window)
    assert close(delays[3], 0.999 * window)


def test_without_a_certificate_base_is_5_minutes_and_cap_1_hour() -> None:
    def delay(attempt: int, draw: float) -> dt.timedelta:
        return retry_delay(attempt, now=NB, not_after=None, initial=None, maximum=None,
                           rng=fixed(draw)).delay  # fmt: skip

    assert close(delay(1, 0.5), 150 * SECOND)
    assert close(delay(2, 0.999), 0.999 * 10 * MINUTE)
    assert close(delay(10, 0.999), 0.999 * HOUR)


def test_delay_is_never_under_30_seconds() -> None:
    now, not_after = year_cert_left(124.1 * DAY)
    assert retry_delay(1, now=now, not_after=not_after, initial=None, maximum=None,
                       rng=fixed(0.0)).delay == 30 * SECOND  # fmt: skip
    # a configured tiny base does not beat the floor either
    assert retry_delay(1, now=now, not_after=not_after, initial=SECOND, maximum=None,
                       rng=fixed(0.5)).delay == 30 * SECOND  # fmt: skip
    draws = random.Random(1).random
    for attempt in range(1, 40):
        plan = retry_delay(attempt, now=now, not_after=not_after, initial=SECOND,
                           maximum=10 * SECOND, rng=draws)  # fmt: skip
        assert plan.delay >= 30 * SECOND


def test_retry_after_is_a_lower_bound() -> None:
    now, not_after = year_cert_left(124.1 * DAY)

    def delay(retry_after: dt.timedelta | None) -> dt.timedelta:
        return retry_delay(1, now=now, not_after=not_after, initial=None, maximum=None,
                           rng=fixed(0.5), retry_after=retry_after).delay  # fmt: skip

    assert delay(None) == 30 * MINUTE
    assert delay(2 * HOUR) == 2 * HOUR  # the server asks for longer: honoured
    assert delay(10 * SECOND) == 30 * MINUTE  # shorter: backoff unchanged
    # Retry-After also beats the floor
    assert retry_delay(1, now=now, not_after=not_after, initial=None, maximum=None,
                       rng=fixed(0.0), retry_after=45 * SECOND).delay == 45 * SECOND  # fmt: skip


def test_configured_durations_replace_the_auto_ones() -> None:
    now, not_after = year_cert_left(124.1 * DAY)  # auto would be base 1 h, cap 24 h

    def delay(
        attempt: int, initial: dt.timedelta | None, maximum: dt.timedelta | None
    ) -> dt.timedelta:
        return retry_delay(attempt, now=now, not_after=not_after, initial=initial,
                           maximum=maximum, rng=fixed(0.5)).delay  # fmt: skip

    assert delay(1, 10 * MINUTE, 2 * HOUR) == 5 * MINUTE
    assert delay(10, 10 * MINUTE, 2 * HOUR) == HOUR
    assert delay(10, 10 * MINUTE, None) == 12 * HOUR  # fixed base, auto cap 24 h
    assert delay(1, None, 2 * HOUR) == 30 * MINUTE  # auto base, fixed cap
    assert delay(10, None, 2 * HOUR) == HOUR
    # without a certificate too
    assert retry_delay(1, now=NB, not_after=None, initial=20 * MINUTE, maximum=None,
                       rng=fixed(0.5)).delay == 10 * MINUTE  # fmt: skip


@pytest.mark.parametrize("bad", [dt.timedelta(0), -MINUTE])
def test_configured_durations_must_be_positive(bad: dt.timedelta) -> None:
    with pytest.raises(ValueError):
        retry_delay(1, now=NB, not_after=None, initial=bad, maximum=None, rng=fixed(0.5))
    with pytest.raises(ValueError):
        retry_delay(1, now=NB, not_after=None, initial=None, maximum=bad, rng=fixed(0.5))


def test_attempts_count_from_one_and_many_do_not_overflow() -> None:
    with pytest.raises(ValueError, match="attempt"):
        retry_delay(0, now=NB, not_after=None, initial=None, maximum=None, rng=fixed(0.5))
    plan = retry_delay(10_000, now=NB, not_after=YEAR_NA, initial=None, maximum=None,
                       rng=fixed(0.5))  # fmt: skip
    assert plan.delay == 12 * HOUR


def test_a_bad_rng_is_refused() -> None:
    with pytest.raises(ValueError):
        retry_delay(1, now=NB, not_after=None, initial=None, maximum=None, rng=fixed(2.0))


# --- expiry guard ----------------------------------------------------------------------------


def test_a_retry_that_would_land_after_expiry_is_clamped_before_it() -> None:
    now, not_after = week_cert_left(30 * MINUTE)  # 1 h window x 0.999 > 30 min
    plan = retry_delay(10, now=now, not_after=not_after, initial=None, maximum=None,
                       rng=fixed(0.999))  # fmt: skip
    assert plan == RetryPlan(delay=29 * MINUTE, at=not_after - MINUTE, past_expiry=True)
    # a Retry-After beyond expiry is clamped the same way: the certificate comes first
    now, not_after = week_cert_left(3 * HOUR)
    plan = retry_delay(1, now=now, not_after=not_after, initial=None, maximum=None,
                       rng=fixed(0.5), retry_after=5 * HOUR)  # fmt: skip
    assert plan == RetryPlan(delay=179 * MINUTE, at=not_after - MINUTE, past_expiry=True)


def test_a_retry_landing_before_expiry_is_not_flagged() -> None:
    now, not_after = week_cert_left(61 * MINUTE)
    plan = retry_delay(10, now=now, not_after=not_after, initial=None, maximum=None,
                       rng=fixed(0.999))  # fmt: skip
    assert plan.past_expiry is False
    assert plan.at < not_after


def test_too_close_to_expiry_the_retry_comes_after_the_initial_delay() -> None:
    # 50 s left: landing a minute before expiry is no longer possible
    now, not_after = week_cert_left(50 * SECOND)
    plan = retry_delay(3, now=now, not_after=not_after, initial=None, maximum=None,
                       rng=fixed(0.999))  # fmt: skip
    assert plan == RetryPlan(delay=MINUTE, at=now + MINUTE, past_expiry=True)


def test_an_expired_certificate_retries_after_the_initial_delay() -> None:
    now = WEEK_NA + HOUR
    plan = retry_delay(7, now=now, not_after=WEEK_NA, initial=None, maximum=None,
                       rng=fixed(0.999))  # fmt: skip
    assert plan == RetryPlan(delay=MINUTE, at=now + MINUTE, past_expiry=True)
    plan = retry_delay(7, now=now, not_after=WEEK_NA, initial=10 * MINUTE, maximum=None,
                       rng=fixed(0.999))  # fmt: skip
    assert plan == RetryPlan(delay=10 * MINUTE, at=now + 10 * MINUTE, past_expiry=True)
    # nothing left to protect: the server's Retry-After is honoured again
    plan = retry_delay(7, now=now, not_after=WEEK_NA, initial=None, maximum=None,
                       rng=fixed(0.999), retry_after=2 * HOUR)  # fmt: skip
    assert plan.delay == 2 * HOUR


# --- renewal loop and rate limit -------------------------------------------------------------


def test_renew_before_longer_than_the_lifetime_is_a_loop() -> None:
    # smallstep/cli#523: renew_before 30 d, the CA grants 7 d
    assert is_renewal_loop(issued_not_before=NB, issued_not_after=WEEK_NA, renew_at=None,
                           renew_before=30 * DAY) is True  # fmt: skip
    assert is_renewal_loop(issued_not_before=NB, issued_not_after=WEEK_NA, renew_at=0.66,
                           renew_before=None) is False  # fmt: skip
    assert is_renewal_loop(issued_not_before=NB, issued_not_after=WEEK_NA, renew_at=None,
                           renew_before=DAY) is False  # fmt: skip


def test_due_within_the_spacing_of_issuance_is_a_loop() -> None:
    na = NB + HOUR

    def loop(renew_before: dt.timedelta) -> bool:
        return is_renewal_loop(issued_not_before=NB, issued_not_after=na, renew_at=None,
                               renew_before=renew_before)  # fmt: skip

    assert loop(HOUR - MIN_RENEWAL_SPACING + SECOND) is True
    assert loop(HOUR - MIN_RENEWAL_SPACING) is False
    assert is_renewal_loop(issued_not_before=NB, issued_not_after=na, renew_at=0.0,
                           renew_before=None) is True  # fmt: skip


def test_renewals_of_one_identity_are_spaced() -> None:
    due = NB + DAY
    assert MIN_RENEWAL_SPACING == 5 * MINUTE
    assert earliest_next_attempt(None, due) == due
    assert earliest_next_attempt(due - HOUR, due) == due
    assert earliest_next_attempt(due - MINUTE, due) == due + 4 * MINUTE
    # a loop: due long ago, just attempted
    assert earliest_next_attempt(due, NB - 23 * DAY) == due + MIN_RENEWAL_SPACING


# --- naive datetimes -------------------------------------------------------------------------

NAIVE = dt.datetime(2026, 1, 1)

NAIVE_CALLS: list[Callable[[], object]] = [
    lambda: renewal_point(NAIVE, YEAR_NA, renew_at=0.5, renew_before=None),
    lambda: renewal_point(NB, NAIVE + DAY, renew_at=None, renew_before=HOUR),
    lambda: next_renewal(
        NAIVE, YEAR_NA, renew_at=0.5, renew_before=None, jitter=0.05, host="h", identity="web"
    ),
    lambda: retry_delay(1, now=NAIVE, not_after=None, initial=None, maximum=None, rng=fixed(0.5)),
    lambda: retry_delay(
        1, now=NB, not_after=NAIVE + DAY, initial=None, maximum=None, rng=fixed(0.5)
    ),
    lambda: is_renewal_loop(
        issued_not_before=NAIVE, issued_not_after=YEAR_NA, renew_at=0.5, renew_before=None
    ),
    lambda: earliest_next_attempt(None, NAIVE),
    lambda: earliest_next_attempt(NAIVE, NB),
]


@pytest.mark.parametrize("call", NAIVE_CALLS)
def test_naive_datetimes_are_refused(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match="naive"):
        call()


def test_renewal_spacing_is_a_tenth_of_short_lifetimes() -> None:
    nb = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert policy.renewal_spacing(nb, nb + dt.timedelta(seconds=30)) == dt.timedelta(seconds=3)
    assert policy.renewal_spacing(nb, nb + dt.timedelta(days=7)) == policy.MIN_RENEWAL_SPACING


def test_renewal_loop_counts_from_arrival_and_given_spacing() -> None:
    nb = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    na = nb + dt.timedelta(seconds=330)  # 30 s certificate backdated 5 minutes
    # From notBefore the half-life point is 165 s away; from its arrival it is already past.
    assert not policy.is_renewal_loop(
        issued_not_before=nb, issued_not_after=na, renew_at=0.5, renew_before=None,
        spacing=dt.timedelta(seconds=33),
    )  # fmt: skip
    assert policy.is_renewal_loop(
        issued_not_before=nb, issued_not_after=na, renew_at=0.5, renew_before=None,
        issued_at=na - dt.timedelta(seconds=30), spacing=dt.timedelta(seconds=33),
    )  # fmt: skip


def test_earliest_next_attempt_with_spacing() -> None:
    due = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
    last = due - dt.timedelta(seconds=1)
    assert policy.earliest_next_attempt(last, due, dt.timedelta(seconds=3)) == last + dt.timedelta(
        seconds=3
    )
