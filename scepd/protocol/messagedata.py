"""messageData of the requests other than PKCSReq (RFC 8894 §3.3.3, §3.3.4)."""

from __future__ import annotations

from typing import ClassVar

from asn1crypto import cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509

from scepd.protocol.asn1util import untrusted


class IssuerAndSubject(core.Sequence):  # type: ignore[misc]
    """CertPoll's messageData: the intended issuer and the requested subject."""

    _fields: ClassVar = [("issuer", asn1_x509.Name), ("subject", asn1_x509.Name)]


def issuer_and_subject(issuer: x509.Name, subject_der: bytes) -> bytes:
    """For CertPoll: issuer is the *issuing CA's subject* (jscep#9: servers look it up);
    the subject is the CSR's, byte for byte."""
    value = IssuerAndSubject(
        {
            "issuer": asn1_x509.Name.load(issuer.public_bytes()),
            "subject": asn1_x509.Name.load(subject_der),
        }
    )
    der: bytes = value.dump()
    return der


def issuer_and_serial(issuer: x509.Name, serial: int) -> bytes:
    """For GetCert and GetCRL: the certificate's issuer name and serial number."""
    value = cms.IssuerAndSerialNumber(
        {"issuer": asn1_x509.Name.load(issuer.public_bytes()), "serial_number": serial}
    )
    der: bytes = value.dump()
    return der


def parse_issuer_and_subject(data: bytes) -> tuple[bytes, bytes]:
    """CertPoll messageData (server side): DER issuer and subject Names."""

    def parse() -> tuple[bytes, bytes]:
        value = IssuerAndSubject.load(data)
        return value["issuer"].dump(), value["subject"].dump()

    return untrusted("IssuerAndSubject", parse)


def parse_issuer_and_serial(data: bytes) -> tuple[bytes, int]:
    """GetCert / GetCRL messageData (server side): DER issuer Name and serial number."""

    def parse() -> tuple[bytes, int]:
        value = cms.IssuerAndSerialNumber.load(data)
        serial: int = value["serial_number"].native
        return value["issuer"].dump(), serial

    return untrusted("IssuerAndSerialNumber", parse)
