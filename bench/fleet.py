"""Fleet simulation: what 10,000 hosts issued in the same minute do to the CA.

Runs scepd.policy's real functions on a virtual clock (nothing sleeps, nothing is sent):

  (a) peak requests/minute when every request succeeds;
  (b) the same when the CA fails every request for the first hour of the renewal window (from
      the fleet's earliest renewal), each host backing off with retry_delay and its own
      random.Random(hostname);
  (c) the peak of uniformly random renewal times over the jitter window, for comparison;
  (d) step-ca's policy for the same outage: the same renewal times, a retry every minute;
  (e) certmonger: no jitter, every host renews in the same minute.

"Requests per minute" is the busiest sliding 60 s window, so a burst that straddles a minute
boundary is not halved. A report: exits 0 whatever the figures.

    .venv/bin/python bench/fleet.py
"""

from __future__ import annotations

import bisect
import datetime as dt
import random
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from scepd.policy import next_renewal, renewal_point, retry_delay

HOSTS = [f"host{i:05d}" for i in range(1, 10_001)]
IDENTITY = "web"
RENEW_AT = 0.66
JITTER = 0.05
ISSUED = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
OUTAGE = dt.timedelta(hours=1)
STEP_CA_RETRY = dt.timedelta(minutes=1)
UNIFORM_SEED = 20260105
TARGET_A_OVER_C = 1.5
TARGET_B_OVER_A = 2.0
MINUTE_US = 60_000_000


@dataclass(frozen=True)
class Host:
    name: str
    not_before: dt.datetime
    not_after: dt.datetime
    due: dt.datetime


def fleet(lifetime: dt.timedelta) -> list[Host]:
    # All issued within one minute: 6 ms apart, 10,000 x 6 ms = 60 s.
    hosts = []
    for index, name in enumerate(HOSTS):
        not_before = ISSUED + dt.timedelta(milliseconds=6 * index)
        not_after = not_before + lifetime
        due = next_renewal(not_before, not_after, renew_at=RENEW_AT, renew_before=None,
                           jitter=JITTER, host=name, identity=IDENTITY)  # fmt: skip
        hosts.append(Host(name, not_before, not_after, due))
    return hosts


def peak_per_minute(times: Iterable[dt.datetime]) -> int:
    """Most requests in any 60 s window [t, t + 60 s)."""
    stamps = sorted((t - ISSUED) // dt.timedelta(microseconds=1) for t in times)
    return max(
        bisect.bisect_left(stamps, start + MINUTE_US) - i for i, start in enumerate(stamps)
    )


def with_outage(
    hosts: list[Host],
    start: dt.datetime,
    end: dt.datetime,
    next_try: Callable[[Host, int, dt.datetime], dt.datetime],
) -> tuple[list[dt.datetime], int]:
    """Every request time when the CA fails all requests in [start, end); the most attempts
    one host made."""
    requests, most = [], 0
    for host in hosts:
        at, failures = host.due, 0
        requests.append(at)
        while start <= at < end:
            failures += 1
            at = next_try(host, failures, at)
            requests.append(at)
        most = max(most, failures + 1)
    return requests, most


def scepd_backoff(hosts: list[Host], start: dt.datetime, end: dt.datetime) -> tuple[
    list[dt.datetime], int, int
]:  # fmt: skip
    rngs = {host.name: random.Random(host.name).random for host in hosts}
    past_expiry = 0

    def next_try(host: Host, failures: int, now: dt.datetime) -> dt.datetime:
        nonlocal past_expiry
        plan = retry_delay(failures, now=now, not_after=host.not_after, initial=None,
                           maximum=None, rng=rngs[host.name])  # fmt: skip
        past_expiry += plan.past_expiry
        return plan.at

    requests, most = with_outage(hosts, start, end, next_try)
    return requests, most, past_expiry


def uniform_times(hosts: list[Host], lifetime: dt.timedelta) -> list[dt.datetime]:
    draw = random.Random(UNIFORM_SEED).random
    times = []
    for host in hosts:
        point = renewal_point(host.not_before, host.not_after, renew_at=RENEW_AT,
                              renew_before=None)  # fmt: skip
        times.append(point - lifetime * JITTER * draw())
    return times


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def target(ratio: float, limit: float) -> str:
    return f"{ratio:.2f}   target <= {limit}: {verdict(ratio <= limit)}"


def report(label: str, lifetime: dt.timedelta) -> list[bool]:
    hosts = fleet(lifetime)
    start = min(h.due for h in hosts)
    end = start + OUTAGE

    a = peak_per_minute(h.due for h in hosts)
    b_requests, b_most, b_past = scepd_backoff(hosts, start, end)
    b = peak_per_minute(b_requests)
    c = peak_per_minute(uniform_times(hosts, lifetime))
    d_requests, d_most = with_outage(hosts, start, end, lambda _h, _n, now: now + STEP_CA_RETRY)
    d = peak_per_minute(d_requests)
    e = peak_per_minute(  # certmonger: the renewal point itself, no jitter
        renewal_point(h.not_before, h.not_after, renew_at=RENEW_AT, renew_before=None)
        for h in hosts
    )
    failed = sum(1 for h in hosts if start <= h.due < end)

    print(f"\n{label} certificates, {len(hosts)} hosts issued {ISSUED:%Y-%m-%d %H:%M}Z, "
          f"renew_at {RENEW_AT:.0%}, jitter {JITTER:.0%}, auto retry")  # fmt: skip
    print(f"renewal window from {start:%Y-%m-%d %H:%M:%S}Z; outage until {end:%H:%M:%S}Z "
          f"hits {failed} hosts")  # fmt: skip
    rows = [
        ("(a) scepd, every request succeeds", f"{a}"),
        ("(b) scepd, 1 h outage, backoff", f"{b}   ({len(b_requests)} requests, "
         f"<= {b_most} per host, {b_past} past-expiry plans)"),
        ("(c) uniform random over the jitter window", f"{c}"),
        ("    a/c", target(a / c, TARGET_A_OVER_C)),
        ("    b/a", target(b / a, TARGET_B_OVER_A)),
        ("(d) step-ca, 1 h outage, retry every 1 min", f"{d}   ({len(d_requests)} requests, "
         f"<= {d_most} per host)"),
        ("    d/a", f"{d / a:.1f}"),
        ("(e) certmonger, no jitter", f"{e}"),
    ]  # fmt: skip
    width = max(len(name) for name, _ in rows)
    print(f"{'':{width}}  peak requests/min")
    for name, value in rows:
        print(f"{name:{width}}  {value}")
    return [a / c <= TARGET_A_OVER_C, b / a <= TARGET_B_OVER_A]


def main() -> int:
    results = []
    for label, lifetime in (("365-day", dt.timedelta(days=365)), ("7-day", dt.timedelta(days=7))):
        results += report(label, lifetime)
    print(f"\noverall: {verdict(all(results))} ({sum(results)}/{len(results)} targets met)")
    return 0  # a report, not a gate


if __name__ == "__main__":
    sys.exit(main())
