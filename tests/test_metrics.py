"""The textfile-collector metrics: parsed back with a small exposition-format parser."""

from __future__ import annotations

import datetime as dt
import os
import random
import re
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from scepd.daemon import metrics
from scepd.daemon.metrics import IdentityMetrics, render, write_metrics
from scepd.errors import LocalFileError

UTC = dt.UTC
NOW = dt.datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
NOT_BEFORE = dt.datetime(2026, 3, 1, 0, 0, 0, tzinfo=UTC)
NOT_AFTER = dt.datetime(2026, 9, 1, 0, 0, 0, tzinfo=UTC)
CA_NOT_AFTER = dt.datetime(2030, 1, 1, tzinfo=UTC)

Labels = tuple[tuple[str, str], ...]

WEB = IdentityMetrics(
    identity="web",
    filepath="/etc/ssl/certs/web.pem",
    serial="1A2B3C",
    subject_cn="web01.example.com",
    issuer_cn="Example Issuing CA",
    not_before=NOT_BEFORE,
    not_after=NOT_AFTER,
    last_success=dt.datetime(2026, 3, 1, 0, 5, tzinfo=UTC),
    last_attempt=dt.datetime(2026, 6, 1, 11, 0, tzinfo=UTC),
    failures_total=2,
    pending=False,
    next_renewal=dt.datetime(2026, 6, 1, 13, 0, tzinfo=UTC),
    ca_not_after=CA_NOT_AFTER,
)
# Never enrolled, its request pending at the CA: no certificate, nothing known yet.
MAIL = IdentityMetrics(
    identity="mail",
    filepath="/etc/ssl/certs/mail.pem",
    serial=None,
    subject_cn=None,
    issuer_cn=None,
    not_before=None,
    not_after=None,
    last_success=None,
    last_attempt=dt.datetime(2026, 6, 1, 11, 30, tzinfo=UTC),
    failures_total=0,
    pending=True,
    next_renewal=None,
    ca_not_after=None,
)


# --- a small parser for the text exposition format ---------------------------------------------
_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m[1], m[1]), value)


def parse(text: str) -> tuple[dict[str, tuple[str, str]], dict[str, dict[Labels, float]]]:
    """(name -> (type, help), name -> {labels: value}); checks the format as it goes."""
    assert text.endswith("\n")
    meta: dict[str, tuple[str, str]] = {}
    helps: dict[str, str] = {}
    samples: dict[str, dict[Labels, float]] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, help_text = line[7:].split(" ", 1)
            assert name not in helps, f"HELP {name} twice"
            helps[name] = help_text
        elif line.startswith("# TYPE "):
            name, kind = line[7:].split(" ")
            assert name in helps and name not in meta and name not in samples, line
            assert kind in ("gauge", "counter")
            meta[name] = (kind, helps[name])
        else:
            match = _SAMPLE.fullmatch(line)
            assert match, line
            name, body, value = match.groups()
            assert name in meta, f"{name} before its TYPE"
            labels: list[tuple[str, str]] = []
            pos = 0
            while body and pos < len(body):
                lm = _LABEL.match(body, pos)
                assert lm, (line, pos)
                labels.append((lm[1], _unescape(lm[2])))
                pos = lm.end()
            key = tuple(labels)
            assert key not in samples.setdefault(name, {}), f"duplicate series {line}"
            samples[name][key] = float(value)
    return meta, samples


def series(samples: dict[str, dict[Labels, float]], name: str) -> dict[Labels, float]:
    return samples.get(name, {})


def ts(when: dt.datetime) -> float:
    return when.timestamp()


# --- render ------------------------------------------------------------------------------------
def test_every_metric_and_label() -> None:
    meta, samples = parse(render([WEB, MAIL], now=NOW))
    assert meta == {
        name: (kind, help_text) for name, (kind, help_text) in metrics._FAMILIES.items()
    }
    assert meta["scepd_failures_total"][0] == "counter"
    gauges = {kind for name, (kind, _) in meta.items() if name != "scepd_failures_total"}
    assert gauges == {"gauge"}
    cert: Labels = (
        ("filepath", "/etc/ssl/certs/web.pem"),
        ("identity", "web"),
        ("issuer_CN", "Example Issuing CA"),
        ("serial_number", str(0x1A2B3C)),  # decimal, as x509-certificate-exporter has it
        ("subject_CN", "web01.example.com"),
    )
    assert series(samples, "x509_cert_not_after") == {cert: ts(NOT_AFTER)}
    assert series(samples, "x509_cert_not_before") == {cert: ts(NOT_BEFORE)}
    assert series(samples, "x509_cert_expired") == {cert: 0}
    web, mail = (("identity", "web"),), (("identity", "mail"),)
    assert series(samples, "scepd_last_success_timestamp_seconds") == {
        web: ts(WEB.last_success)  # type: ignore[arg-type]
    }
    assert series(samples, "scepd_last_attempt_timestamp_seconds") == {
        web: ts(WEB.last_attempt),  # type: ignore[arg-type]
        mail: ts(MAIL.last_attempt),  # type: ignore[arg-type]
    }
    assert series(samples, "scepd_failures_total") == {web: 2, mail: 0}
    assert series(samples, "scepd_pending") == {web: 0, mail: 1}
    assert series(samples, "scepd_next_renewal_timestamp_seconds") == {
        web: ts(WEB.next_renewal)  # type: ignore[arg-type]
    }
    assert series(samples, "scepd_ca_cert_not_after") == {web: ts(CA_NOT_AFTER)}


def test_exact_text_of_one_certificate() -> None:
    text = render([WEB], now=NOW)
    assert (
        'x509_cert_not_after{filepath="/etc/ssl/certs/web.pem",identity="web",'
        'issuer_CN="Example Issuing CA",serial_number="1715004",'
        'subject_CN="web01.example.com"} 1788220800\n'
    ) in text
    assert '# TYPE scepd_failures_total counter\nscepd_failures_total{identity="web"} 2\n' in text
    assert "# HELP x509_cert_expired 1 if the certificate has expired, else 0.\n" in text


def test_no_certificate_no_x509_series() -> None:
    meta, samples = parse(render([MAIL], now=NOW))
    for name in ("x509_cert_not_after", "x509_cert_not_before", "x509_cert_expired"):
        assert name in meta and not series(samples, name)  # HELP/TYPE only
    assert series(samples, "scepd_pending") == {(("identity", "mail"),): 1}


def test_not_before_unknown_and_cn_missing() -> None:
    m = replace(WEB, not_before=None, subject_cn=None, issuer_cn=None)
    _, samples = parse(render([m], now=NOW))
    assert not series(samples, "x509_cert_not_before")
    ((labels, _),) = series(samples, "x509_cert_not_after").items()
    assert dict(labels)["subject_CN"] == "" and dict(labels)["issuer_CN"] == ""


@pytest.mark.parametrize(
    ("now", "expired"),
    [
        (NOT_AFTER - dt.timedelta(seconds=1), 0),
        (NOT_AFTER, 1),  # notAfter is the last valid second's end: at it, expired
        (NOT_AFTER + dt.timedelta(days=3), 1),
        (NOT_AFTER.replace(tzinfo=None), 1),  # naive: UTC
    ],
)
def test_expired_flag(now: dt.datetime, expired: int) -> None:
    _, samples = parse(render([WEB], now=now))
    assert list(series(samples, "x509_cert_expired").values()) == [expired]


def test_label_values_are_escaped() -> None:
    nasty = 'C:\\certs\\"web"\nfile.pem'
    m = replace(WEB, identity='we"b\\1\n', filepath=nasty, subject_cn='a"b', issuer_cn="x\\n")
    text = render([m], now=NOW)
    assert 'filepath="C:\\\\certs\\\\\\"web\\"\\nfile.pem"' in text
    _, samples = parse(text)
    ((labels, _),) = series(samples, "x509_cert_not_after").items()
    assert dict(labels) == {
        "filepath": nasty,
        "identity": 'we"b\\1\n',
        "issuer_CN": "x\\n",
        "serial_number": str(0x1A2B3C),
        "subject_CN": 'a"b',
    }
    assert series(samples, "scepd_pending") == {(("identity", 'we"b\\1\n'),): 0}


def test_output_is_sorted_and_deterministic() -> None:
    many = [replace(WEB, identity=f"id{i:02d}", filepath=f"/c/{i}.pem") for i in range(20)]
    many.append(MAIL)
    text = render(many, now=NOW)
    shuffled = many[:]
    random.Random(7).shuffle(shuffled)
    assert render(shuffled, now=NOW) == text
    names = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert names == sorted(names)
    for name in names:
        lines = [line for line in text.splitlines() if line.startswith(name + "{")]
        assert lines == sorted(lines)


def test_timestamps_are_unix_seconds() -> None:
    m = replace(
        WEB,
        not_after=dt.datetime(2026, 9, 1),  # naive: UTC
        last_attempt=dt.datetime(2026, 6, 1, 11, 0, 0, 250000, tzinfo=UTC),
        next_renewal=dt.datetime(2026, 6, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    )
    text = render([m], now=NOW)
    assert re.search(r"^x509_cert_not_after\{.*\} 1788220800$", text, re.M)
    assert 'scepd_last_attempt_timestamp_seconds{identity="web"} 1780311600.250\n' in text
    assert 'scepd_next_renewal_timestamp_seconds{identity="web"} 1780315200\n' in text


def test_non_hex_serial_is_kept() -> None:
    _, samples = parse(render([replace(WEB, serial="not-hex")], now=NOW))
    ((labels, _),) = series(samples, "x509_cert_not_after").items()
    assert dict(labels)["serial_number"] == "not-hex"
    _, samples = parse(render([replace(WEB, serial="1a:2b:3c")], now=NOW))
    ((labels, _),) = series(samples, "x509_cert_not_after").items()
    assert dict(labels)["serial_number"] == str(0x1A2B3C)


def test_empty() -> None:
    meta, samples = parse(render([], now=NOW))
    assert set(meta) == set(metrics._FAMILIES) and not samples


# --- write_metrics -----------------------------------------------------------------------------
def test_write_metrics_mode_content_and_rewrite(tmp_path: Path) -> None:
    path = tmp_path / "scepd.prom"
    old_umask = os.umask(0o077)  # the daemon's UMask= must not make it unreadable
    try:
        write_metrics(path, [WEB, MAIL], now=NOW)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.read_text() == render([WEB, MAIL], now=NOW)
    # mail removed from the configuration: its series are gone, not left stale
    write_metrics(path, [WEB], now=NOW)
    _, samples = parse(path.read_text())
    identities = {dict(k)["identity"] for s in samples.values() for k in s}
    assert identities == {"web"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scepd.prom"]


def test_write_metrics_replaces_by_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "scepd.prom"
    write_metrics(path, [WEB], now=NOW)
    before = path.stat().st_ino
    old_text = path.read_text()
    seen: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        # Just before the rename a reader still sees the whole old file, and the new one is
        # complete, in the same directory, under a name the collector ignores (not *.prom).
        assert path.read_text() == old_text
        assert Path(src).read_text() == render([WEB, MAIL], now=NOW)
        seen.append((os.fspath(src), os.fspath(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    write_metrics(path, [WEB, MAIL], now=NOW)
    ((src, dst),) = seen
    assert Path(src).parent == tmp_path and not src.endswith(".prom")
    assert dst == os.fspath(path)
    assert path.stat().st_ino != before
    assert path.read_text() == render([WEB, MAIL], now=NOW)
    assert [p.name for p in tmp_path.iterdir()] == ["scepd.prom"]  # no temporary file left


def test_write_metrics_error_is_a_local_file_error(tmp_path: Path) -> None:
    with pytest.raises(LocalFileError, match="missing"):
        write_metrics(tmp_path / "missing" / "scepd.prom", [WEB], now=NOW)
