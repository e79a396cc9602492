"""Certificates for tests, made with cryptography: an NDES-shaped hierarchy (root, issuing CA,
Enrollment Agent RA that signs, CEP Encryption RA that decrypts)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID, ObjectIdentifier

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
MS_ENROLLMENT_AGENT = ObjectIdentifier("1.3.6.1.4.1.311.20.2.1")


def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_cert(
    subject: str,
    subject_key: rsa.RSAPrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: rsa.RSAPrivateKey,
    *,
    ca: bool,
    digital_signature: bool = True,
    key_encipherment: bool = False,
    eku: list[ObjectIdentifier] | None = None,
    serial: int = 0,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(subject))
        .issuer_name(issuer.subject if issuer else name(subject))
        .public_key(subject_key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=digital_signature,
                content_commitment=False,
                key_encipherment=key_encipherment,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass
class NdesPki:
    root: x509.Certificate
    root_key: rsa.RSAPrivateKey
    issuing: x509.Certificate
    issuing_key: rsa.RSAPrivateKey
    ra_sign: x509.Certificate
    ra_sign_key: rsa.RSAPrivateKey
    ra_enc: x509.Certificate
    ra_enc_key: rsa.RSAPrivateKey

    @property
    def all(self) -> list[x509.Certificate]:
        # The order NDES returns them in: Enrollment Agent, CEP Encryption, root, issuing.
        return [self.ra_sign, self.ra_enc, self.root, self.issuing]


def ndes_pki() -> NdesPki:
    root_key, issuing_key, sign_key, enc_key = key(), key(), key(), key()
    root = make_cert("Example Root CA", root_key, None, root_key, ca=True)
    issuing = make_cert("Example Issuing CA", issuing_key, root, root_key, ca=True)
    ra_sign = make_cert(
        "NDES01-MSCEP-RA", sign_key, issuing, issuing_key, ca=False, eku=[MS_ENROLLMENT_AGENT]
    )
    ra_enc = make_cert(
        "NDES01-MSCEP-RA", enc_key, issuing, issuing_key, ca=False,
        digital_signature=False, key_encipherment=True,
    )  # fmt: skip
    return NdesPki(root, root_key, issuing, issuing_key, ra_sign, sign_key, ra_enc, enc_key)
