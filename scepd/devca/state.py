"""The devca state directory: one place that knows the file layout.

    config.json          mode and policy chosen at ``init`` (hash of a static challenge, if any)
    ca.pem, ca.key       the CA (NDES mode: the issuing CA)
    root.pem, root.key   NDES mode: the root CA
    ra-sign.pem/.key     NDES mode: Exchange Enrollment Agent (Offline request), signs CertReps
    ra-enc.pem/.key      NDES mode: CEP Encryption, requests are encrypted to it
    next-ca.pem/.key     after ``rollover`` (standard mode): served by GetNextCACert
    serial               the next serial number
    issued/SERIAL.pem    every certificate issued (hex serial)
    revoked.json         revoked serials; crl.pem is the CRL made from them
    otp.json             SHA-256 hashes of one-time passwords, their expiry and use
    pending/TXHASH.json  requests awaiting approval (named by SHA-256 of the transactionID)
    lock                 flock(2) target: ``serve``, ``otp`` and ``approve`` may run at once

Keys are 0600, everything is written with :func:`scepd.store.write_atomic`."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from scepd.errors import LocalFileError, UsageError
from scepd.protocol.keys import SoftwareKey
from scepd.store import KEY_MODE, write_atomic

DATA_MODE = 0o600  # OTP hashes and pending CSRs are nobody else's business either
CERT_MODE = 0o644


@dataclass(frozen=True)
class Config:
    ndes: bool
    validity_seconds: int
    pending: bool
    key_bits: int
    oaep: bool
    auto_approve_after: int | None
    otp_lifetime_seconds: int
    # {"salt": hex, "iterations": n, "pbkdf2_sha256": hex}; never the challenge itself.
    static_challenge: dict[str, Any] | None = None


class CADir:
    def __init__(self, root: Path) -> None:
        # Absolute: file names below are joined onto it, and a relative --dir joined onto a
        # path that already holds it gave "dv/dv/issued" (found by hand, see the test).
        self.root = root.resolve()

    # --- paths ---
    def path(self, name: str) -> Path:
        return self.root / name

    @property
    def issued_dir(self) -> Path:
        return self.root / "issued"

    @property
    def pending_dir(self) -> Path:
        return self.root / "pending"

    def pending_path(self, transaction_id: str) -> Path:
        digest = hashlib.sha256(transaction_id.encode("utf-8", "surrogatepass")).hexdigest()
        return self.pending_dir / f"{digest}.json"

    def issued_path(self, serial: int) -> Path:
        return self.issued_dir / f"{serial:X}.pem"

    # --- checks ---
    def require(self) -> None:
        if not (self.root / "config.json").is_file():
            raise UsageError(f"--dir {self.root}: no devca here; run `scepd devca init` first")

    def create(self) -> None:
        if (self.root / "config.json").exists():
            raise UsageError(f"--dir {self.root}: already holds a devca; use another directory")
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.issued_dir.mkdir(mode=0o755, exist_ok=True)
            self.pending_dir.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise LocalFileError(f"{self.root}: cannot create ({exc.strerror})") from None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive lock across processes (serve, otp, approve) for read-modify-write."""
        try:
            fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, DATA_MODE)
        except OSError as exc:
            raise LocalFileError(f"{self.root}/lock: cannot open ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    # --- typed files ---
    def config(self) -> Config:
        self.require()
        return Config(**self.read_json("config.json", {}))

    def save_config(self, config: Config) -> None:
        self.write_json("config.json", asdict(config))

    def read_json(self, name: str | Path, default: Any) -> Any:
        path = self.root / name
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return default
        except (OSError, ValueError) as exc:
            raise LocalFileError(f"{path}: cannot read devca state ({exc})") from None

    def write_json(self, name: str | Path, value: Any) -> None:
        data = json.dumps(value, indent=1, sort_keys=True).encode() + b"\n"
        write_atomic(self.root / name, data, DATA_MODE)

    def save_key(self, name: str, key: rsa.RSAPrivateKey) -> None:
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_atomic(self.root / name, pem, KEY_MODE)

    def load_key(self, name: str) -> SoftwareKey:
        path = self.root / name
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise LocalFileError(f"{path}: cannot load the CA key ({exc})") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise LocalFileError(f"{path}: not an RSA key")
        return SoftwareKey(key)

    def save_cert(self, name: str | Path, cert: x509.Certificate) -> None:
        write_atomic(self.root / name, cert.public_bytes(serialization.Encoding.PEM), CERT_MODE)

    def load_cert(self, name: str | Path) -> x509.Certificate:
        path = self.root / name
        try:
            return x509.load_pem_x509_certificate(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise LocalFileError(f"{path}: cannot load certificate ({exc})") from None

    def has(self, name: str) -> bool:
        return (self.root / name).is_file()

    def next_serial(self) -> int:
        """Take a serial number; call with :meth:`locked` held."""
        path = self.root / "serial"
        try:
            serial = int(path.read_text().strip(), 16)
        except FileNotFoundError:
            serial = 1
        except (OSError, ValueError) as exc:
            raise LocalFileError(f"{path}: unreadable serial counter ({exc})") from None
        write_atomic(path, f"{serial + 1:X}\n".encode(), DATA_MODE)
        return serial
