"""The CA's certificates and keys, created at ``init`` and loaded by ``serve``.

Standard mode: one CA that also decrypts requests and signs CertReps (micromdm-like).
NDES mode: root and issuing CA, plus the two RA certificates NDES has (protocol.md §2.3)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509

from scepd.devca import certs
from scepd.devca.state import CADir
from scepd.protocol.keys import SoftwareKey
from scepd.protocol.responder import Responder


@dataclass(frozen=True)
class Identities:
    ca: x509.Certificate  # issues end-entity certificates (NDES: the issuing CA)
    chain: tuple[x509.Certificate, ...]  # ca first, root last
    recipient: x509.Certificate  # requests are encrypted to it
    recipient_key: SoftwareKey
    responder: Responder
    ca_certs_response: tuple[x509.Certificate, ...]  # GetCACert, in NDES's order
    ndes: bool


def create(
    ca_dir: CADir,
    *,
    ndes: bool,
    key_bits: int,
    now: dt.datetime,
    ca_lifetime: dt.timedelta = certs.CA_LIFETIME,
) -> None:
    """Generate and store every key and certificate; call with ``ca_dir.locked()`` held."""
    if not ndes:
        key = certs.new_key(key_bits)
        ca = certs.make_ca(
            certs.STANDARD_CA, key, serial=ca_dir.next_serial(), now=now, lifetime=ca_lifetime
        )
        ca_dir.save_key("ca.key", key)
        ca_dir.save_cert("ca.pem", ca)
        return
    root_key, ca_key, sign_key, enc_key = (certs.new_key(key_bits) for _ in range(4))
    root = certs.make_ca(
        certs.NDES_ROOT, root_key, serial=ca_dir.next_serial(), now=now, lifetime=ca_lifetime
    )
    ca = certs.make_ca(
        certs.NDES_ISSUING, ca_key, serial=ca_dir.next_serial(), now=now, issuer=(root, root_key),
        lifetime=ca_lifetime,
    )  # fmt: skip
    ra_sign = certs.make_ra(
        sign_key, (ca, ca_key), encryption=False, serial=ca_dir.next_serial(), now=now
    )
    ra_enc = certs.make_ra(
        enc_key, (ca, ca_key), encryption=True, serial=ca_dir.next_serial(), now=now
    )
    for name, key, cert in (
        ("root", root_key, root),
        ("ca", ca_key, ca),
        ("ra-sign", sign_key, ra_sign),
        ("ra-enc", enc_key, ra_enc),
    ):
        ca_dir.save_key(f"{name}.key", key)
        ca_dir.save_cert(f"{name}.pem", cert)


def load(ca_dir: CADir) -> Identities:
    config = ca_dir.config()
    ca = ca_dir.load_cert("ca.pem")
    ca_key = ca_dir.load_key("ca.key")
    if not config.ndes:
        return Identities(
            ca=ca,
            chain=(ca,),
            recipient=ca,
            recipient_key=ca_key,
            responder=Responder(signer=ca, key=ca_key),
            ca_certs_response=(ca,),
            ndes=False,
        )
    root = ca_dir.load_cert("root.pem")
    ra_sign = ca_dir.load_cert("ra-sign.pem")
    ra_enc = ca_dir.load_cert("ra-enc.pem")
    return Identities(
        ca=ca,
        chain=(ca, root),
        recipient=ra_enc,
        recipient_key=ca_dir.load_key("ra-enc.key"),
        # NDES signs with the Enrollment Agent and includes no certificate at all (§2.10).
        responder=Responder(
            signer=ra_sign,
            key=ca_dir.load_key("ra-sign.key"),
            certificates=(),
            oaep=config.oaep,
            ndes=True,
        ),
        ca_certs_response=(ra_sign, ra_enc, root, ca),
        ndes=True,
    )
