"""`scepd check [NAME]`: an online preflight of each configured identity.

One line per check, ``ok``, ``warn`` or ``FAIL`` first: the server answers (each URL in order,
as the daemon fails over), its capabilities, the pinned CA fingerprint, the RA certificates'
lifetime, whether the current certificate can sign a renewal, the challenge source, and whether
the target files can be written.  Nothing is sent to the CA but GetCACaps and GetCACert, nothing
is written, and the challenge is never printed.  Exit 0 when no check failed, else 8."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from scepd import store
from scepd._compat import not_valid_after, not_valid_before
from scepd.client import utc_now
from scepd.commands.identities import load
from scepd.config import Challenge, Identity, Server
from scepd.errors import EXIT_ATTENTION, EXIT_OK, FingerprintMismatch, ScepError, TransportError
from scepd.manager import Manager, _is_ndes
from scepd.protocol.cacerts import CACertificates, classify
from scepd.protocol.capabilities import Capabilities
from scepd.protocol.fingerprint import Fingerprint, display

OK, WARN, FAIL = "ok", "warn", "FAIL"
EXPIRY_WARNING = dt.timedelta(days=30)
_RANK = {OK: 0, WARN: 1, FAIL: 2}

Line = tuple[str, str]  # (status, text)


@dataclass
class _Probe:
    """What one server's URLs answered (shared by the identities using the server)."""

    lines: list[Line] = field(default_factory=list)
    caps: Capabilities | None = None
    ca: CACertificates | None = None  # verified against the pin when one is configured


def check(args: argparse.Namespace) -> int:
    config = load(args)
    manager = Manager(config, debug=bool(getattr(args, "debug", False)))
    name = getattr(args, "name", None)
    probes: dict[str, _Probe] = {}
    failed = False
    for identity in manager.identities([name] if name else None):
        server = identity.server
        if server.name not in probes:
            probes[server.name] = _probe(manager, server)
        for status, text in _identity_lines(manager, identity, probes[server.name]):
            failed = failed or status == FAIL
            print(f"{identity.name}: {status:<4} {text}", flush=True)
    return EXIT_ATTENTION if failed else EXIT_OK


def _identity_lines(manager: Manager, identity: Identity, probe: _Probe) -> list[Line]:
    lines = list(probe.lines)
    now = utc_now()
    for checker in (_current_certificate, _challenge, _targets):
        try:
            lines.extend(checker(manager, identity, probe, now))
        except ScepError as exc:  # a check that met something unforeseen fails, never raises
            lines.append((FAIL, f"{checker.__name__.strip('_').replace('_', ' ')}: {exc}"))
    return lines


# --- the server ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_pin_warning() -> Iterator[None]:
    """GetCACert without a pin logs a warning for the one-shot commands; check prints its own."""

    def keep(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("no --fingerprint given")

    logger = logging.getLogger("scepd")
    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


def _probe(manager: Manager, server: Server) -> _Probe:
    probe = _Probe()
    unreachable: list[str] = []
    raw: CACertificates | None = None
    url = ""
    for url in server.urls:
        try:
            client = manager._client(server, url)
            caps = client.get_caps()
            with _quiet_pin_warning():
                raw = client.get_ca(None)
        except TransportError as exc:  # the daemon goes on to the next URL, so does check
            unreachable.append(str(exc))
            continue
        except ScepError as exc:  # answered, but not with CA certificates we can use
            probe.lines += [(WARN, f"server {server.name}: {text} (next URL tried)")
                            for text in unreachable]  # fmt: skip
            probe.lines.append((FAIL, f"server {server.name}: {url}: GetCACert: {exc}"))
            return probe
        probe.caps = caps
        break
    if raw is None or probe.caps is None:
        probe.lines += [(FAIL, f"server {server.name} unreachable: {text}") for text in unreachable]
        return probe
    later = " (the next URL answered)"
    probe.lines += [(WARN, f"server {server.name} unreachable: {t}{later}") for t in unreachable]
    caps = probe.caps
    advertised = ", ".join(caps.keywords) if caps else "no capabilities"
    probe.lines.append(
        (OK, f"server {server.name} reachable: {url} answered GetCACaps ({advertised})")
    )
    for warning in caps.negotiate().warnings:
        probe.lines.append((WARN, f"capabilities: {warning}"))
    probe.ca = _fingerprint(probe, server, raw)
    if probe.ca is not None:
        probe.lines.extend(_ca_lifetimes(probe.ca, utc_now()))
    return probe


def _fingerprint(probe: _Probe, server: Server, raw: CACertificates) -> CACertificates | None:
    root = raw.ca_certs[-1]
    if not server.ca_fingerprint:
        probe.lines.append((
            WARN, f"no ca_fingerprint configured for server {server.name}: trusting "
            f"{root.subject.rfc4514_string()} as received; pin it with ca_fingerprint: "
            f"sha256:{display(root, 'sha256').replace(':', '')}",
        ))  # fmt: skip
        return raw
    try:
        pin = Fingerprint.parse(server.ca_fingerprint)
        ca = classify(raw.certificates, pin=pin)
    except FingerprintMismatch:
        seen = ", ".join(
            f"{c.subject.rfc4514_string()} ({pin.algorithm}:{display(c, pin.algorithm)})"
            for c in raw.ca_certs
        )
        probe.lines.append(
            (FAIL, f"CA fingerprint {pin} matches no CA certificate of the server: got {seen}")
        )
        return None
    except ScepError as exc:
        probe.lines.append((FAIL, f"CA fingerprint {server.ca_fingerprint}: {exc}"))
        return None
    assert ca.pinned is not None
    probe.lines.append((OK, f"CA fingerprint {pin} matches {ca.pinned.subject.rfc4514_string()}"))
    return ca


def _left(cert: x509.Certificate, now: dt.datetime) -> tuple[str, str]:
    """(status, "N days left" / "expired YYYY-MM-DD") of one certificate."""
    not_after = not_valid_after(cert)
    if not_after <= now:
        return FAIL, f"expired {not_after:%Y-%m-%d}"
    left = not_after - now
    text = (
        f"{left.days} days left" if left.days >= 2 else f"{int(left.total_seconds() // 3600)}h left"
    )
    return (WARN if left < EXPIRY_WARNING else OK), text


def _ca_lifetimes(ca: CACertificates, now: dt.datetime) -> list[Line]:
    lines: list[Line] = []
    if ca.ra_certs:
        worst, parts = OK, []
        for cert in ca.ra_certs:
            roles = [
                r for r, c in (("signs", ca.verifier), ("encryption", ca.recipient)) if c == cert
            ]
            status, left = _left(cert, now)
            worst = max(worst, status, key=_RANK.__getitem__)
            parts.append(f"{cert.subject.rfc4514_string()} ({', '.join(roles or ['RA'])}, {left})")
        lines.append((worst, f"RA certificates: {', '.join(parts)}"))
    else:
        lines.append((OK, f"no RA certificates: the CA {ca.issuing_ca.subject.rfc4514_string()} "
                          "signs responses and decrypts requests"))  # fmt: skip
    for cert in ca.ca_certs:  # said only when it needs attention
        status, left = _left(cert, now)
        if status != OK:
            lines.append((status, f"CA certificate {cert.subject.rfc4514_string()}: {left}"))
    return lines


# --- the identity -------------------------------------------------------------------------------


def _current_certificate(
    manager: Manager, identity: Identity, probe: _Probe, now: dt.datetime
) -> list[Line]:
    if not identity.cert.exists():
        if _read_challenge(identity.challenge)[0]:
            return [(OK, "no certificate yet: will enroll")]
        return [(FAIL, "no certificate yet and no readable challenge to enroll with")]
    cert = store.load_certificate(identity.cert)
    serial = f"serial {cert.serial_number:X}"
    if not identity.key.exists():
        return [(FAIL, f"current certificate cannot sign a renewal: {serial}, key "
                       f"{identity.key} does not exist")]  # fmt: skip
    modulus = store.key_modulus(identity.key)
    if modulus is None:
        store.load_key(identity.key)  # raises, saying what is wrong with the file
    public = cert.public_key()
    if not isinstance(public, rsa.RSAPublicKey) or public.public_numbers().n != modulus:
        return [(FAIL, f"current certificate cannot sign a renewal: {serial}, {identity.cert} "
                       f"is not the certificate of the key {identity.key}")]  # fmt: skip
    not_after, not_before = not_valid_after(cert), not_valid_before(cert)
    if not_after <= now:
        return [(FAIL, f"current certificate cannot sign a renewal: {serial} expired "
                       f"{not_after:%Y-%m-%d %H:%M}Z; remove it to enroll again")]  # fmt: skip
    if not_before > now:
        return [(FAIL, f"current certificate cannot sign a renewal: {serial} is not valid "
                       f"before {not_before:%Y-%m-%d %H:%M}Z (check the clock)")]  # fmt: skip
    lines: list[Line] = [(OK, f"current certificate can sign a renewal: {serial}, valid until "
                              f"{not_after:%Y-%m-%d}, key matches")]  # fmt: skip
    if probe.ca is not None and all(cert.issuer != ca.subject for ca in probe.ca.ca_certs):
        lines.append((WARN, f"current certificate was issued by {cert.issuer.rfc4514_string()}, "
                            f"not by a CA of server {identity.server.name}"))  # fmt: skip
    return lines


def _source(challenge: Challenge) -> str:
    if challenge.file is not None:
        return f"file {challenge.file}"
    if challenge.env is not None:
        return f"environment variable {challenge.env}"
    return f"systemd credential {challenge.credential}"


def _read_challenge(challenge: Challenge | None) -> tuple[bool, str]:
    """(readable, why not); the challenge itself is never returned."""
    if challenge is None:
        return False, "no challenge configured"
    path: Path | None = challenge.file
    if challenge.env is not None:
        if not os.environ.get(challenge.env, "").strip():
            return False, f"environment variable {challenge.env} is not set or empty"
        return True, ""
    if challenge.credential is not None:
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            return False, (f"systemd credential {challenge.credential} "
                           "($CREDENTIALS_DIRECTORY is not set: run under systemd with "
                           "LoadCredential=)")  # fmt: skip
        path = Path(directory) / challenge.credential
    assert path is not None
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return False, f"{path} ({exc.strerror or exc})"
    except UnicodeDecodeError:
        return False, f"{path} (not UTF-8 text)"
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        return False, f"{path} (empty)"
    return True, ""


def _challenge(manager: Manager, identity: Identity, probe: _Probe, now: dt.datetime) -> list[Line]:
    send = identity.renewal.send_challenge
    if send is None:
        if probe.ca is not None:
            send = not _is_ndes(identity.server, probe.ca)
        else:
            send = identity.server.profile != "ndes"  # unknown under auto: assume it is needed
    renewing = identity.cert.exists()
    readable, why = _read_challenge(identity.challenge)
    if renewing and not send:
        reason = ("renewal.send_challenge is false" if identity.renewal.send_challenge is False
                  else "the server is NDES, which renews without one")  # fmt: skip
        if identity.challenge is None:
            return [(OK, f"no challenge configured: not needed ({reason})")]
        return [(WARN, f"challenge source {_source(identity.challenge)} not needed ({reason})")]
    if readable:
        assert identity.challenge is not None
        return [(OK, f"challenge source readable: {_source(identity.challenge)}")]
    if identity.challenge is None:
        if renewing:
            return [(WARN, "no challenge configured: renewals are sent without one")]
        return [(FAIL, "no challenge configured: needed to enroll")]
    return [(FAIL, f"challenge source unreadable: {why}")]


def _targets(manager: Manager, identity: Identity, probe: _Probe, now: dt.datetime) -> list[Line]:
    files = manager.fileset(identity)
    lines: list[Line] = []
    directories: list[str] = []
    for path in (files.key, files.cert, files.chain, files.fullchain):
        if path is None:
            continue
        try:
            store.check_writable(path)
        except ScepError as exc:
            lines.append((FAIL, f"target file not writable: {exc}"))
            continue
        directory = str(path.parent)
        if directory not in directories:
            directories.append(directory)
    try:
        store._resolve_ids(files)  # owner/group we may not give
    except ScepError as exc:
        lines.append((FAIL, f"target files: {exc}"))
    state = manager.identity_dir(identity.name)
    existing = next(p for p in (state, *state.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        lines.append((FAIL, f"state directory {state} cannot be created or written "
                            f"({existing} is not writable)"))  # fmt: skip
    if not lines:
        lines.append((OK, f"target files writable: {', '.join(directories)}"))
    return lines
