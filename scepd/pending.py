"""Pending transactions kept on disk, so polling survives a restart (RFC 8894 §2.5).

One directory per target certificate under ``STATE_DIR/pending/``:

    transaction.json   transactionID, server, algorithms, first/last poll time (no secret)
    (the CSR itself is not kept: it holds the challenge password; its subject and public key
    are in transaction.json)
    signer.pem         the certificate that signed the request
    ca.pem             the GetCACert certificates the request was encrypted to and checked with
    key.pem            the new private key, mode 0600 (absent when the key is reused)

All writes go through :mod:`scepd.store`."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from scepd import store
from scepd._compat import load_pem_certificates
from scepd.client import Transaction
from scepd.errors import LocalFileError
from scepd.protocol.algorithms import ContentCipher, Digest
from scepd.protocol.cacerts import classify
from scepd.protocol.capabilities import Negotiated
from scepd.protocol.constants import MessageType

_FORMAT = 1


def default_state_dir() -> Path:
    """$SCEPD_STATE_DIR; else /var/lib/scepd for root, $XDG_STATE_HOME/scepd
    (~/.local/state/scepd) for other users."""
    if os.environ.get("SCEPD_STATE_DIR"):
        return Path(os.environ["SCEPD_STATE_DIR"])
    if os.geteuid() == 0:
        return Path("/var/lib/scepd")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "scepd"


def transaction_dir(state_dir: Path, cert_path: Path) -> Path:
    """The directory of the transaction that will write ``cert_path``."""
    name = hashlib.sha256(str(cert_path.resolve()).encode()).hexdigest()[:16]
    return state_dir / "pending" / name


@dataclass(frozen=True)
class Saved:
    directory: Path
    transaction: Transaction
    url: str
    new_key: rsa.RSAPrivateKey | None
    first_poll: dt.datetime
    last_poll: dt.datetime


def save(
    directory: Path,
    tx: Transaction,
    *,
    url: str,
    cert_path: Path,
    new_key: rsa.RSAPrivateKey | None,
    first_poll: dt.datetime,
    last_poll: dt.datetime,
) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise LocalFileError(
            f"{directory}: cannot create state directory ({exc.strerror})"
        ) from None
    meta = {
        "format": _FORMAT,
        "transaction_id": tx.transaction_id,
        "kind": tx.kind,
        "message_type": tx.message_type.value,
        "subject": base64.b64encode(tx.subject).decode(),
        "spki": base64.b64encode(tx.spki).decode(),
        "url": url,
        "cert": str(cert_path.resolve()),
        "cipher": tx.negotiated.cipher.value,
        "digest": tx.negotiated.digest.value,
        "post": tx.negotiated.post,
        "expect_subject": (
            base64.b64encode(tx.expect_subject).decode() if tx.expect_subject else None
        ),
        "expect_sans": sorted(tx.expect_sans) if tx.expect_sans is not None else None,
        "first_poll": first_poll.isoformat(),
        "last_poll": last_poll.isoformat(),
    }
    if new_key is not None and not (directory / "key.pem").exists():
        store.save_key(directory / "key.pem", new_key)
    store.write_certificates(directory / "signer.pem", [tx.signer_cert])
    store.write_certificates(directory / "ca.pem", tx.ca.certificates)
    # Written last: a directory without it is an interrupted save and is not resumed.
    store.write_atomic(
        directory / "transaction.json", (json.dumps(meta, indent=2) + "\n").encode(), 0o600
    )


def load(directory: Path) -> Saved | None:
    """The transaction saved in ``directory``, or None when there is none."""
    meta_path = directory / "transaction.json"
    if not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != _FORMAT:
            raise ValueError(f"unknown format {meta.get('format')!r}")
        signer = x509.load_pem_x509_certificate((directory / "signer.pem").read_bytes())
        ca = classify(tuple(load_pem_certificates((directory / "ca.pem").read_bytes())))
        key_path = directory / "key.pem"
        new_key = None
        if key_path.exists():
            loaded = load_pem_private_key(key_path.read_bytes(), None)
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise ValueError("key.pem is not an RSA key")
            new_key = loaded
        expect_subject = (
            base64.b64decode(meta["expect_subject"]) if meta["expect_subject"] else None
        )
        expect_sans = (
            frozenset(tuple(pair) for pair in meta["expect_sans"])
            if meta["expect_sans"] is not None
            else None
        )
        tx = Transaction(
            transaction_id=meta["transaction_id"],
            kind=meta["kind"],
            message_type=MessageType(meta["message_type"]),
            subject=base64.b64decode(meta["subject"]),
            spki=base64.b64decode(meta["spki"]),
            signer_cert=signer,
            ca=ca,
            negotiated=Negotiated(
                cipher=ContentCipher(meta["cipher"]),
                digest=Digest(meta["digest"]),
                post=meta["post"],
            ),
            expect_subject=expect_subject,
            expect_sans=expect_sans,
        )
        return Saved(
            directory=directory,
            transaction=tx,
            url=meta["url"],
            new_key=new_key,
            first_poll=dt.datetime.fromisoformat(meta["first_poll"]),
            last_poll=dt.datetime.fromisoformat(meta["last_poll"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LocalFileError(
            f"{directory}: pending transaction is unreadable ({exc}); remove the directory to "
            "start a new request"
        ) from None
