"""Certificates devca makes: its CA (and NDES-mode RA) certificates, issued certificates, CRLs."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ObjectIdentifier

from scepd._compat import not_valid_after
from scepd.protocol import oids

CA_LIFETIME = dt.timedelta(days=3650)
RA_LIFETIME = dt.timedelta(days=730)
CLOCK_SKEW = dt.timedelta(minutes=5)  # notBefore in the past: clients' clocks differ
CRL_LIFETIME = dt.timedelta(days=7)

STANDARD_CA = "CN=scepd devca CA,O=scepd devca"
NDES_ROOT = "CN=DEVCA Root CA,O=scepd devca"
NDES_ISSUING = "CN=DEVCA Issuing CA,O=scepd devca"
NDES_RA = "CN=DEVCA-MSCEP-RA,O=scepd devca,C=US"  # both RA certificates, as NDES names them


def new_key(bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _usage(*, sign: bool = False, encipher: bool = False, ca: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=False,
        key_encipherment=encipher,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _builder(  # noqa: PLR0917 - private, called in one way
    subject: x509.Name,
    public_key: rsa.RSAPublicKey,
    issuer: x509.Name,
    issuer_key: rsa.RSAPrivateKey,
    serial: int,
    now: dt.datetime,
    lifetime: dt.timedelta,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(serial)
        # Backdated for clients' clocks, but by at most a tenth of a short lifetime: a
        # 30-second demo certificate backdated 5 minutes would be mostly spent when issued.
        .not_valid_before(now - min(CLOCK_SKEW, lifetime / 10))
        .not_valid_after(now + lifetime)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )


def make_ca(
    subject: str,
    key: rsa.RSAPrivateKey,
    *,
    serial: int,
    now: dt.datetime,
    issuer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None = None,
    lifetime: dt.timedelta = CA_LIFETIME,
) -> x509.Certificate:
    """A root (``issuer`` None) or an intermediate CA certificate."""
    name = x509.Name.from_rfc4514_string(subject)
    issuer_name, issuer_key = (issuer[0].subject, issuer[1]) if issuer else (name, key)
    builder = _builder(name, key.public_key(), issuer_name, issuer_key, serial, now, lifetime)
    builder = builder.add_extension(
        x509.BasicConstraints(ca=True, path_length=None), critical=True
    ).add_extension(_usage(sign=True, ca=True), critical=True)
    return builder.sign(issuer_key, hashes.SHA256())


def make_ra(
    key: rsa.RSAPrivateKey,
    issuer: tuple[x509.Certificate, rsa.RSAPrivateKey],
    *,
    encryption: bool,
    serial: int,
    now: dt.datetime,
) -> x509.Certificate:
    """NDES's RA pair: "Exchange Enrollment Agent (Offline request)" (digitalSignature,
    Certificate Request Agent EKU) or "CEP Encryption" (keyEncipherment)."""
    name = x509.Name.from_rfc4514_string(NDES_RA)
    builder = _builder(
        name, key.public_key(), issuer[0].subject, issuer[1], serial, now, RA_LIFETIME
    ).add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    if encryption:
        builder = builder.add_extension(_usage(encipher=True), critical=True)
    else:
        builder = builder.add_extension(_usage(sign=True), critical=True).add_extension(
            x509.ExtendedKeyUsage([ObjectIdentifier(oids.MS_ENROLLMENT_AGENT)]), critical=False
        )
    return builder.sign(issuer[1], hashes.SHA256())


_DEFAULT_USAGE = _usage(sign=True, encipher=True)


def issue(
    csr: x509.CertificateSigningRequest,
    ca: x509.Certificate,
    ca_key: rsa.RSAPrivateKey,
    *,
    serial: int,
    now: dt.datetime,
    validity: dt.timedelta,
) -> x509.Certificate:
    """Subject and public key from the CSR; subjectAltName, keyUsage and extendedKeyUsage
    copied when requested (as an NDES template with "supply in the request" does)."""
    public_key = csr.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise ValueError("not an RSA key")
    not_after = min(now + validity, not_valid_after(ca))
    builder = _builder(
        csr.subject, public_key, ca.subject, ca_key, serial, now, not_after - now
    ).add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    requested = {ext.oid: ext for ext in csr.extensions}
    for ext_type in (x509.SubjectAlternativeName, x509.ExtendedKeyUsage):
        ext = requested.get(ext_type.oid)
        if ext is not None:
            builder = builder.add_extension(ext.value, critical=ext.critical)
    usage = requested.get(x509.KeyUsage.oid)
    builder = builder.add_extension(usage.value if usage else _DEFAULT_USAGE, critical=True)
    return builder.sign(ca_key, hashes.SHA256())


def make_crl(
    ca: x509.Certificate,
    ca_key: rsa.RSAPrivateKey,
    *,
    revoked: dict[int, dt.datetime],
    number: int,
    now: dt.datetime,
) -> x509.CertificateRevocationList:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.subject)
        .last_update(now - CLOCK_SKEW)
        .next_update(now + CRL_LIFETIME)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    for serial, when in sorted(revoked.items()):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        )
    return builder.sign(ca_key, hashes.SHA256())
