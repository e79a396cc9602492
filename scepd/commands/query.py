"""getcert, getcrl: GetCert (21) and GetCRL (22), RFC 8894 §3.3.4."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from scepd import store
from scepd.client import Algorithms, ScepClient
from scepd.commands.common import make_client, pin
from scepd.errors import LocalFileError, UsageError
from scepd.protocol.cacerts import CACertificates
from scepd.protocol.capabilities import Negotiated
from scepd.protocol.keys import PrivateKey, SoftwareKey


def _serial(text: str) -> int:
    try:
        value = int(text, 16) if text.lower().startswith("0x") else int(text)
    except ValueError:
        raise UsageError(f"--serial {text!r}: not a number (decimal, or hex with 0x)") from None
    if value <= 0:
        raise UsageError(f"--serial {text!r}: serial numbers are positive")
    return value


def _signer(
    args: argparse.Namespace, client: ScepClient, cert: x509.Certificate
) -> tuple[x509.Certificate, PrivateKey]:
    """With --key, CERT and KEY sign the query; else a throwaway self-signed key does, as the
    CA answers encrypted to whoever signed."""
    if args.key is not None:
        key = store.load_key(args.key)
        if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
            raise LocalFileError(f"{args.key}: does not match {args.cert}")
        return cert, key
    throwaway = SoftwareKey(store.KeyGeneration(2048).result())
    return client.self_signed(throwaway, cert.subject), throwaway


@dataclass(frozen=True)
class _Query:
    cert: x509.Certificate
    client: ScepClient
    negotiated: Negotiated
    ca: CACertificates
    signer: tuple[x509.Certificate, PrivateKey]


def _prepare(args: argparse.Namespace) -> _Query:
    """Local checks first, then GetCACaps and GetCACert once, then who signs the query."""
    cert = store.load_certificate(args.cert)
    store.check_writable(args.out)
    client = make_client(args)
    negotiated = client.negotiate(client.get_caps(), Algorithms())
    ca = client.get_ca(pin(args))
    return _Query(cert, client, negotiated, ca, _signer(args, client, cert))


def getcert(args: argparse.Namespace) -> int:
    serial = _serial(args.serial)
    q = _prepare(args)
    found = q.client.get_cert(
        issuer=q.cert.issuer, serial=serial, signer=q.signer, negotiated=q.negotiated, ca=q.ca
    )
    store.write_certificates(args.out, [found])
    print(f"certificate {serial:X}: {found.subject.rfc4514_string()}; wrote {args.out}")
    return 0


def getcrl(args: argparse.Namespace) -> int:
    q = _prepare(args)
    crl = q.client.get_crl(cert=q.cert, signer=q.signer, negotiated=q.negotiated, ca=q.ca)
    store.write_atomic(args.out, crl.public_bytes(Encoding.PEM), store.CERT_MODE)
    revoked = sum(1 for _ in crl)
    next_update = f"{crl.next_update:%Y-%m-%d %H:%M:%S}Z" if crl.next_update else "not given"
    print(
        f"CRL of {crl.issuer.rfc4514_string()}: {revoked} revoked, next update {next_update}; "
        f"signature verified; wrote {args.out}"
    )
    return 0
