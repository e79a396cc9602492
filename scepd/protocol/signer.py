"""The self-signed signer certificate of an initial request (RFC 8894 §2.3 case 1)."""

from __future__ import annotations

import datetime as dt

from asn1crypto import x509 as asn1_x509
from cryptography import x509

from scepd.protocol.algorithms import Digest
from scepd.protocol.csr import public_key_info, signature_algorithm
from scepd.protocol.keys import PrivateKey


def build_self_signed(
    *,
    key: PrivateKey,
    subject: x509.Name,
    serial: int,
    not_before: dt.datetime,
    not_after: dt.datetime,
    digest: Digest = Digest.SHA256,
) -> x509.Certificate:
    """Same key and subject as the CSR; keyUsage digitalSignature and keyEncipherment, since
    the CA encrypts its CertRep to this certificate's key."""
    name = asn1_x509.Name.load(subject.public_bytes())
    algorithm = {"algorithm": signature_algorithm(digest)}
    tbs = asn1_x509.TbsCertificate(
        {
            "version": "v3",
            "serial_number": serial,
            "signature": algorithm,
            "issuer": name,
            "validity": {
                "not_before": asn1_x509.Time({"utc_time": not_before}),
                "not_after": asn1_x509.Time({"utc_time": not_after}),
            },
            "subject": name,
            "subject_public_key_info": public_key_info(key),
            "extensions": [
                {
                    "extn_id": "key_usage",
                    "critical": True,
                    "extn_value": {"digital_signature", "key_encipherment"},
                },
                {"extn_id": "basic_constraints", "critical": True, "extn_value": {"ca": False}},
            ],
        }
    )
    signature = key.sign(tbs.dump(), digest.algorithm())
    cert = asn1_x509.Certificate(
        {"tbs_certificate": tbs, "signature_algorithm": algorithm, "signature_value": signature}
    )
    return x509.load_der_x509_certificate(cert.dump())
