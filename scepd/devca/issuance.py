"""Issuing, looking up and revoking certificates in a devca directory (CLI and server share it).

Callers hold ``CADir.locked()``: the serial counter, pending records and CRL are
read-modify-write."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from scepd.devca import certs
from scepd.devca.state import CADir
from scepd.errors import UsageError
from scepd.store import write_atomic

REVOKED_FILE = "revoked.json"
CRL_FILE = "crl.pem"


def issue(ca_dir: CADir, csr: x509.CertificateSigningRequest, now: dt.datetime) -> x509.Certificate:
    config = ca_dir.config()
    ca = ca_dir.load_cert("ca.pem")
    cert = certs.issue(
        csr,
        ca,
        ca_dir.load_key("ca.key").key,
        serial=ca_dir.next_serial(),
        now=now,
        validity=dt.timedelta(seconds=config.validity_seconds),
    )
    ca_dir.save_cert(ca_dir.issued_path(cert.serial_number), cert)
    return cert


def find_issued(ca_dir: CADir, serial: int) -> x509.Certificate | None:
    if serial <= 0 or not ca_dir.issued_path(serial).is_file():
        return None
    return ca_dir.load_cert(ca_dir.issued_path(serial))


def revoked(ca_dir: CADir) -> dict[int, dt.datetime]:
    raw: dict[str, str] = ca_dir.read_json(REVOKED_FILE, {})
    return {int(k, 16): dt.datetime.fromisoformat(v) for k, v in raw.items()}


def revoke(ca_dir: CADir, serial: int, now: dt.datetime) -> None:
    if find_issued(ca_dir, serial) is None:
        raise UsageError(f"serial {serial:X}: devca has not issued such a certificate")
    raw: dict[str, str] = ca_dir.read_json(REVOKED_FILE, {})
    raw.setdefault(f"{serial:X}", now.isoformat())
    ca_dir.write_json(REVOKED_FILE, raw)
    refresh_crl(ca_dir, now)


def refresh_crl(ca_dir: CADir, now: dt.datetime) -> x509.CertificateRevocationList:
    number_raw: dict[str, int] = ca_dir.read_json("crlnumber.json", {"next": 1})
    crl = certs.make_crl(
        ca_dir.load_cert("ca.pem"),
        ca_dir.load_key("ca.key").key,
        revoked=revoked(ca_dir),
        number=number_raw["next"],
        now=now,
    )
    ca_dir.write_json("crlnumber.json", {"next": number_raw["next"] + 1})
    write_atomic(ca_dir.path(CRL_FILE), crl.public_bytes(Encoding.PEM), 0o644)
    return crl


def current_crl(ca_dir: CADir, now: dt.datetime) -> x509.CertificateRevocationList:
    """The stored CRL, or a new one when it is missing or past its nextUpdate."""
    try:
        crl = x509.load_pem_x509_crl(ca_dir.path(CRL_FILE).read_bytes())
    except (OSError, ValueError):
        return refresh_crl(ca_dir, now)
    next_update = crl.next_update
    if next_update is None or next_update.replace(tzinfo=dt.UTC) <= now:
        return refresh_crl(ca_dir, now)
    return crl


# --- pending requests ---------------------------------------------------------------------


@dataclass
class PendingRequest:
    transaction_id: str
    csr_der: bytes
    polls: int = 0
    serial: int | None = None  # set once issued

    @property
    def csr(self) -> x509.CertificateSigningRequest:
        return x509.load_der_x509_csr(self.csr_der)

    def public_key_der(self) -> bytes:
        return self.csr.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)

    def to_json(self) -> dict[str, Any]:
        return {
            "transaction_id": self.transaction_id,
            "csr": base64.b64encode(self.csr_der).decode(),
            "polls": self.polls,
            "serial": self.serial,
        }


def load_pending(ca_dir: CADir, transaction_id: str) -> PendingRequest | None:
    raw = ca_dir.read_json(ca_dir.pending_path(transaction_id), None)
    if raw is None or raw.get("transaction_id") != transaction_id:
        return None
    return PendingRequest(
        transaction_id=raw["transaction_id"],
        csr_der=base64.b64decode(raw["csr"]),
        polls=raw["polls"],
        serial=raw["serial"],
    )


def save_pending(ca_dir: CADir, request: PendingRequest) -> None:
    ca_dir.write_json(ca_dir.pending_path(request.transaction_id), request.to_json())


def approve(ca_dir: CADir, request: PendingRequest, now: dt.datetime) -> x509.Certificate:
    """Issue a pending request and remember the certificate for the next CertPoll."""
    if request.serial is not None:
        cert = find_issued(ca_dir, request.serial)
        if cert is not None:
            return cert
    cert = issue(ca_dir, request.csr, now)
    request.serial = cert.serial_number
    save_pending(ca_dir, request)
    return cert
