"""PKCS#10 requests (RFC 2986) for SCEP, signed through the key interface.

The challengePassword is a PrintableString, as NDES requires: OpenSSL's default UTF8String is
why admins edit ``string_mask = nombstr`` into sscep's mkrequest (protocol.md §2.4)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from asn1crypto import core
from asn1crypto import csr as asn1_csr
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from scepd.errors import ChallengeEncodingError, MalformedMessage, UsageError
from scepd.protocol.algorithms import Digest
from scepd.protocol.keys import PrivateKey

_PRINTABLE = re.compile(r"[A-Za-z0-9 '()+,\-./:=?]*")

KEY_USAGES = {
    "digitalSignature": "digital_signature",
    "nonRepudiation": "non_repudiation",
    "contentCommitment": "non_repudiation",
    "keyEncipherment": "key_encipherment",
    "dataEncipherment": "data_encipherment",
    "keyAgreement": "key_agreement",
}

EXTENDED_KEY_USAGES = {
    "serverAuth": "server_auth",
    "clientAuth": "client_auth",
    "codeSigning": "code_signing",
    "emailProtection": "email_protection",
    "timeStamping": "time_stamping",
    "ocspSigning": "ocsp_signing",
    "ipsecIKE": "1.3.6.1.5.5.7.3.17",
}

DEFAULT_KEY_USAGE = ("digitalSignature", "keyEncipherment")  # NDES GeneralPurposeTemplate

_SIGNATURE_ALGORITHMS = {
    Digest.SHA1: "sha1_rsa",
    Digest.SHA256: "sha256_rsa",
    Digest.SHA512: "sha512_rsa",
    Digest.MD5: "md5_rsa",
}


@dataclass(frozen=True)
class SubjectAltNames:
    dns: tuple[str, ...] = ()
    ip: tuple[str, ...] = ()
    email: tuple[str, ...] = ()
    uri: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.dns or self.ip or self.email or self.uri)

    def general_names(self) -> list[asn1_x509.GeneralName]:
        names = [asn1_x509.GeneralName(name="dns_name", value=d) for d in self.dns]
        for addr in self.ip:
            try:
                ipaddress.ip_address(addr)
            except ValueError:
                raise UsageError(f"--ip {addr!r}: not an IPv4 or IPv6 address") from None
            names.append(asn1_x509.GeneralName(name="ip_address", value=addr))
        names += [asn1_x509.GeneralName(name="rfc822_name", value=e) for e in self.email]
        names += [
            asn1_x509.GeneralName(name="uniform_resource_identifier", value=u) for u in self.uri
        ]
        return names


def parse_subject(dn: str) -> x509.Name:
    """An RFC 4514 string such as ``CN=web01,O=Example``."""
    try:
        name = x509.Name.from_rfc4514_string(dn)
    except ValueError as exc:
        raise UsageError(f"--subject {dn!r}: not an RFC 4514 name ({exc})") from None
    if not list(name):
        raise UsageError("--subject: empty name; give at least CN=...")
    return name


def challenge_value(challenge: str, *, utf8: bool = False) -> asn1_csr.DirectoryString:
    """The challengePassword as PrintableString, or UTF8String only when asked for."""
    if utf8:
        return asn1_csr.DirectoryString(name="utf8_string", value=challenge)
    if not _PRINTABLE.fullmatch(challenge):
        raise ChallengeEncodingError(
            "challenge password has characters outside PrintableString (A-Z a-z 0-9 space "
            "' ( ) + , - . / : = ?), which NDES rejects; use --challenge-encoding utf8 if your "
            "CA wants UTF8String"
        )
    return asn1_csr.DirectoryString(name="printable_string", value=challenge)


def _extensions(
    sans: SubjectAltNames, key_usage: tuple[str, ...], extended_key_usage: tuple[str, ...]
) -> list[asn1_x509.Extension]:
    extensions = []
    if sans:
        extensions.append(
            asn1_x509.Extension(
                {
                    "extn_id": "subject_alt_name",
                    "critical": False,
                    "extn_value": sans.general_names(),
                }
            )
        )
    if key_usage:
        bits = set()
        for usage in key_usage:
            if usage not in KEY_USAGES:
                raise UsageError(f"key usage {usage!r} unknown; use one of {', '.join(KEY_USAGES)}")
            bits.add(KEY_USAGES[usage])
        extensions.append(
            asn1_x509.Extension({"extn_id": "key_usage", "critical": True, "extn_value": bits})
        )
    if extended_key_usage:
        purposes = []
        for usage in extended_key_usage:
            if usage in EXTENDED_KEY_USAGES:
                purposes.append(EXTENDED_KEY_USAGES[usage])
            elif re.fullmatch(r"[0-2](\.\d+)+", usage):
                purposes.append(usage)
            else:
                raise UsageError(
                    f"extended key usage {usage!r} unknown; use one of "
                    f"{', '.join(EXTENDED_KEY_USAGES)} or a dotted OID"
                )
        extensions.append(
            asn1_x509.Extension(
                {"extn_id": "extended_key_usage", "critical": False, "extn_value": purposes}
            )
        )
    return extensions


def public_key_info(key: PrivateKey) -> asn1_keys.PublicKeyInfo:
    der = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return asn1_keys.PublicKeyInfo.load(der)


def signature_algorithm(digest: Digest) -> str:
    return _SIGNATURE_ALGORITHMS[digest]


def build_csr(
    *,
    key: PrivateKey,
    subject: x509.Name,
    sans: SubjectAltNames = SubjectAltNames(),
    key_usage: tuple[str, ...] = DEFAULT_KEY_USAGE,
    extended_key_usage: tuple[str, ...] = (),
    challenge: str | None = None,
    challenge_utf8: bool = False,
    digest: Digest = Digest.SHA256,
) -> x509.CertificateSigningRequest:
    """A CSR with the extensions in an extensionRequest attribute (RFC 2985 §5.4.2)."""
    attributes = []
    if challenge is not None:
        attributes.append(
            asn1_csr.CRIAttribute(
                {
                    "type": "challenge_password",
                    "values": [challenge_value(challenge, utf8=challenge_utf8)],
                }
            )
        )
    extensions = _extensions(sans, key_usage, extended_key_usage)
    if extensions:
        attributes.append(
            asn1_csr.CRIAttribute({"type": "extension_request", "values": [extensions]})
        )
    info = asn1_csr.CertificationRequestInfo(
        {
            "version": "v1",
            "subject": asn1_x509.Name.load(subject.public_bytes()),
            "subject_pk_info": public_key_info(key),
            "attributes": attributes,
        }
    )
    signature = key.sign(info.dump(), digest.algorithm())
    request = asn1_csr.CertificationRequest(
        {
            "certification_request_info": info,
            "signature_algorithm": {"algorithm": signature_algorithm(digest)},
            "signature": signature,
        }
    )
    return x509.load_der_x509_csr(request.dump())


def read_challenge(csr_der: bytes) -> tuple[str | None, str | None]:
    """A CSR's challengePassword and its ASN.1 string type (asn1crypto's name, e.g.
    ``printable_string``), read without the DirectoryString spec so that an IA5String some
    clients send is reported instead of failing the parse.  (None, None) when absent."""
    info = asn1_csr.CertificationRequest.load(csr_der)["certification_request_info"]
    for attribute in info["attributes"]:
        if attribute["type"].dotted != "1.2.840.113549.1.9.7":
            continue
        value = core.load(attribute["values"].contents)
        if not isinstance(value, core.AbstractString):
            raise MalformedMessage("challengePassword is not a character string")
        return str(value.native), _STRING_TYPES.get(type(value).__name__, type(value).__name__)
    return None, None


_STRING_TYPES = {
    "PrintableString": "printable_string",
    "UTF8String": "utf8_string",
    "IA5String": "ia5_string",
    "TeletexString": "teletex_string",
    "BMPString": "bmp_string",
    "UniversalString": "universal_string",
}


def read_challenge_encoding(csr_der: bytes) -> str | None:
    """The ASN.1 string type of a CSR's challengePassword (e.g. ``printable_string``)."""
    return read_challenge(csr_der)[1]
