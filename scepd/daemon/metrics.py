"""Prometheus metrics for node-exporter's textfile collector (``metrics_file``).

The certificate series use the names and labels of the x509-certificate-exporter
(``x509_cert_not_after{serial_number, subject_CN, issuer_CN, filepath}``...), so its dashboards
and alerts such as ``(x509_cert_not_after - time()) / 86400 < 14`` work unchanged; scepd's own
state is under ``scepd_``.  Times are absolute Unix timestamps (constant values compress well;
PromQL computes the time left).  Every HELP text is a constant: node-exporter drops a series
whose HELP differs between two files, without a scrape error.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from scepd import store


@dataclass(frozen=True)
class IdentityMetrics:
    identity: str
    filepath: str  # the certificate file
    serial: str | None  # hex; None when there is no certificate
    subject_cn: str | None
    issuer_cn: str | None
    not_before: dt.datetime | None
    not_after: dt.datetime | None
    last_success: dt.datetime | None
    last_attempt: dt.datetime | None
    failures_total: int
    pending: bool
    next_renewal: dt.datetime | None
    ca_not_after: dt.datetime | None  # the issuing CA certificate's notAfter, when known


# name: (type, help); rendered in name order.
_FAMILIES: dict[str, tuple[str, str]] = {
    "scepd_ca_cert_not_after": (
        "gauge", "notAfter of the issuing CA certificate, as a Unix timestamp."),
    "scepd_failures_total": (
        "counter", "Failed renewal attempts since the last success (reset by a success)."),
    "scepd_last_attempt_timestamp_seconds": (
        "gauge", "Time of the last renewal or enrollment attempt."),
    "scepd_last_success_timestamp_seconds": (
        "gauge", "Time of the last successful renewal or enrollment."),
    "scepd_next_renewal_timestamp_seconds": (
        "gauge", "Time of the next scheduled renewal, retry or poll."),
    "scepd_pending": (
        "gauge", "1 while a certificate request waits for approval at the CA, else 0."),
    "x509_cert_expired": (
        "gauge", "1 if the certificate has expired, else 0."),
    "x509_cert_not_after": (
        "gauge", "notAfter of the certificate, as a Unix timestamp."),
    "x509_cert_not_before": (
        "gauge", "notBefore of the certificate, as a Unix timestamp."),
}  # fmt: skip

_Sample = tuple[str, tuple[tuple[str, str], ...], str]  # name, labels, value


def render(metrics: Sequence[IdentityMetrics], *, now: dt.datetime) -> str:
    """The Prometheus text exposition format (0.0.4) for ``metrics``: families in name order,
    series in label order, so the same state always gives the same bytes.

    The x509_* series exist only for identities with a certificate; the scepd_* timestamp
    series only when the time is known.  ``serial_number`` is decimal, as the
    x509-certificate-exporter writes it, so series from both can be joined.
    """
    samples: list[_Sample] = []
    for m in metrics:
        ident = (("identity", m.identity),)
        if m.serial is not None and m.not_after is not None:
            cert = (
                ("filepath", m.filepath),
                ("identity", m.identity),
                ("issuer_CN", m.issuer_cn or ""),
                ("serial_number", _decimal(m.serial)),
                ("subject_CN", m.subject_cn or ""),
            )
            samples.append(("x509_cert_not_after", cert, _timestamp(m.not_after)))
            if m.not_before is not None:
                samples.append(("x509_cert_not_before", cert, _timestamp(m.not_before)))
            expired = _utc(now) >= _utc(m.not_after)
            samples.append(("x509_cert_expired", cert, "1" if expired else "0"))
        for name, when in (
            ("scepd_last_success_timestamp_seconds", m.last_success),
            ("scepd_last_attempt_timestamp_seconds", m.last_attempt),
            ("scepd_next_renewal_timestamp_seconds", m.next_renewal),
            ("scepd_ca_cert_not_after", m.ca_not_after),
        ):
            if when is not None:
                samples.append((name, ident, _timestamp(when)))
        samples.append(("scepd_failures_total", ident, str(int(m.failures_total))))
        samples.append(("scepd_pending", ident, "1" if m.pending else "0"))
    lines: list[str] = []
    for family, (kind, help_text) in _FAMILIES.items():
        lines.append(f"# HELP {family} {help_text}")
        lines.append(f"# TYPE {family} {kind}")
        for _, labels, value in sorted(s for s in samples if s[0] == family):
            text = ",".join(f'{key}="{_escape(val)}"' for key, val in labels)
            lines.append(f"{family}{{{text}}} {value}")
    return "\n".join(lines) + "\n"


def write_metrics(path: Path, metrics: Sequence[IdentityMetrics], *, now: dt.datetime) -> None:
    """Replace ``path`` with render(metrics): written to a temporary file next to it (named
    ``.NAME.*.tmp``, which the collector ignores, as it reads ``*.prom`` only), fsynced, then
    renamed over it, so the collector never sees a half-written file.  Mode 0644: the exporter
    runs as another user.  The whole file is rewritten, so an identity removed from the
    configuration leaves no stale series.  Raises scepd.errors.LocalFileError."""
    store.write_atomic(path, render(metrics, now=now).encode(), 0o644)


def _escape(value: str) -> str:
    """Label value escaping of the text format: backslash, double quote, newline."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _decimal(serial: str) -> str:
    try:
        return str(int(serial.replace(":", ""), 16))
    except ValueError:  # not hex after all: keep it rather than lose the series
        return serial


def _utc(when: dt.datetime) -> dt.datetime:
    """Naive datetimes are UTC throughout scepd."""
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when


def _timestamp(when: dt.datetime) -> str:
    seconds = _utc(when).timestamp()
    # Whole seconds (every certificate time) without a fraction; otherwise milliseconds.
    return str(int(seconds)) if seconds == int(seconds) else f"{seconds:.3f}"
