"""CMS SignedData (RFC 5652 §5) as SCEP uses it: build a pkiMessage, parse and verify one."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from asn1crypto import cms
from asn1crypto import crl as asn1_crl
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from scepd.errors import MalformedMessage, SignatureInvalid, TrustError
from scepd.protocol import oids
from scepd.protocol.algorithms import Digest, hash_for_verify
from scepd.protocol.asn1util import (
    attributes,
    set_of_attributes_der,
    to_asn1_certificate,
    untrusted,
)
from scepd.protocol.keys import PrivateKey


class _OrderedCertificateSet(cms.CertificateSet):  # type: ignore[misc]
    """A certificates field kept in the order given.  asn1crypto sorts a SET OF into DER order,
    but clients read GetCACert in NDES's order, and micromdm's scepclient takes the first
    certificate of a CertRep as the issued one."""

    def _set_contents(self, force: bool = False) -> None:
        self._contents = b"".join(child.dump(force=force) for child in self)


def _certificate_set(certificates: tuple[x509.Certificate, ...]) -> _OrderedCertificateSet:
    return _OrderedCertificateSet([to_asn1_certificate(c) for c in certificates])


def build_signed_data(
    *,
    content: bytes,
    signer_cert: x509.Certificate,
    key: PrivateKey,
    digest: Digest,
    signing_time: dt.datetime,
    scep_attributes: list[cms.CMSAttribute],
    certificates: tuple[x509.Certificate, ...] | None = None,
) -> bytes:
    """DER ContentInfo(SignedData v1) over ``content`` (id-data), one signer identified by
    issuerAndSerialNumber.  ``certificates`` defaults to the signer's own (RFC 8894 §2.3
    requires it in requests); a responder may pass others, or none as NDES does."""
    hash_alg = digest.algorithm()
    h = hashes.Hash(hash_alg)
    h.update(content)
    signed_attrs = cms.CMSAttributes(
        [
            cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
            cms.CMSAttribute({"type": "message_digest", "values": [h.finalize()]}),
            cms.CMSAttribute(
                {"type": "signing_time", "values": [cms.Time({"utc_time": signing_time})]}
            ),
            *scep_attributes,
        ]
    )
    signature = key.sign(signed_attrs.dump(), hash_alg)
    asn1_cert = to_asn1_certificate(signer_cert)
    signer_info = cms.SignerInfo(
        {
            "version": "v1",
            "sid": cms.SignerIdentifier(
                name="issuer_and_serial_number",
                value=cms.IssuerAndSerialNumber(
                    {"issuer": asn1_cert.issuer, "serial_number": asn1_cert.serial_number}
                ),
            ),
            "digest_algorithm": {"algorithm": digest.asn1_name},
            "signed_attrs": signed_attrs,
            # rsaEncryption, as Windows, Apple and OpenSSL-based clients send it.
            "signature_algorithm": {"algorithm": "rsassa_pkcs1v15"},
            "signature": signature,
        }
    )
    signed_data = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [{"algorithm": digest.asn1_name}],
            "encap_content_info": {"content_type": "data", "content": content},
            "certificates": [asn1_cert] if certificates is None else _certificate_set(certificates),
            "signer_infos": [signer_info],
        }
    )
    der: bytes = cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump()
    return der


@dataclass(frozen=True)
class SignedMessage:
    """A parsed, not yet verified, SignedData with one signer."""

    content: bytes | None
    certificates: tuple[x509.Certificate, ...]
    crls: tuple[bytes, ...]
    attributes: dict[str, Any]
    digest_algorithm: str
    signature_algorithm: str
    signature: bytes
    signed_attrs_der: bytes | None  # None: the signature is over the content itself
    sid_issuer_serial: tuple[bytes, int] | None  # (DER issuer Name, serial)
    sid_key_id: bytes | None

    def attribute(self, oid: str) -> Any:
        return self.attributes.get(oid)

    def find_signer(self, candidates: tuple[x509.Certificate, ...]) -> x509.Certificate | None:
        for cert in candidates:
            if self.sid_issuer_serial is not None:
                issuer_der, serial = self.sid_issuer_serial
                if cert.serial_number == serial and same_name(cert.issuer, issuer_der):
                    return cert
            elif self.sid_key_id is not None and _subject_key_id(cert) == self.sid_key_id:
                return cert
        return None

    def verify(self, signer: x509.Certificate) -> None:
        """Check messageDigest and the signature over the signed attributes (RFC 5652 §5.4),
        or over the content when there are none."""
        hash_alg = hash_for_verify(self.digest_algorithm)
        signed = self.signed_attrs_der
        if signed is None:
            signed = self.content or b""
        else:
            declared = self.attribute(oids.MESSAGE_DIGEST)
            h = hashes.Hash(hash_alg)
            h.update(self.content or b"")
            if declared != h.finalize():
                raise SignatureInvalid("message digest does not match the signed content")
            if self.attribute(oids.CONTENT_TYPE) != oids.ID_DATA:
                raise MalformedMessage("signed contentType attribute is not id-data")
        if self.signature_algorithm not in _PKCS1_SIGNATURES:
            raise TrustError(f"unsupported signature algorithm {self.signature_algorithm}")
        public_key = signer.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise TrustError("signer certificate does not hold an RSA key")
        try:
            public_key.verify(self.signature, signed, padding.PKCS1v15(), hash_alg)
        except InvalidSignature:
            raise SignatureInvalid(
                f"signature by {signer.subject.rfc4514_string()} does not verify"
            ) from None


# rsaEncryption as signature algorithm (NDES, Apple) or shaXWithRSAEncryption.
_PKCS1_SIGNATURES = {
    "rsassa_pkcs1v15",
    "sha1_rsa",
    "sha224_rsa",
    "sha256_rsa",
    "sha384_rsa",
    "sha512_rsa",
}


def same_name(name: x509.Name, der: bytes) -> bool:
    """Name equality by RFC 5280 §7.1 rules (asn1crypto normalises case and spaces)."""
    try:
        own = name.public_bytes()
        return own == der or bool(asn1_x509.Name.load(own) == asn1_x509.Name.load(der))
    except (ValueError, TypeError, UnicodeError):  # a malformed name matches nothing
        return False


def _subject_key_id(cert: x509.Certificate) -> bytes | None:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except (x509.ExtensionNotFound, x509.DuplicateExtension, ValueError):
        return None
    return ext.value.digest


def load_certificate(der: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(der)


def parse_signed_data(
    data: bytes, what: str = "pkiMessage", *, require_signed_attrs: bool = True
) -> SignedMessage:
    """Parse a DER/BER ContentInfo(SignedData) with exactly one signer (RFC 8894 §3).
    pkiMessages must have signed attributes; a GetNextCACert answer need not."""
    return untrusted(what, lambda: _parse(data, what, require_signed_attrs))


def _parse(data: bytes, what: str, require_signed_attrs: bool) -> SignedMessage:
    info = cms.ContentInfo.load(data)
    if info["content_type"].native != "signed_data":
        raise MalformedMessage(f"{what} is a {info['content_type'].native}, not SignedData")
    sd = info["content"]
    encap = sd["encap_content_info"]
    if encap["content_type"].native != "data":
        raise MalformedMessage(f"{what} content type is not id-data")
    content_value = encap["content"]
    content = None if content_value.native is None else bytes(content_value.native)
    certificates = tuple(
        load_certificate(choice.chosen.dump())
        for choice in (sd["certificates"] or [])
        if choice.name == "certificate"
    )
    crls = tuple(c.chosen.dump() for c in (sd["crls"] or []) if c.name == "crl")
    signer_infos = list(sd["signer_infos"])
    if len(signer_infos) != 1:
        raise MalformedMessage(f"{what} has {len(signer_infos)} signers, SCEP needs exactly one")
    si = signer_infos[0]
    signed_attrs_der = None
    if si["signed_attrs"].native is not None:
        signed_attrs_der = set_of_attributes_der(si["signed_attrs"])
    elif require_signed_attrs:
        raise MalformedMessage(f"{what} has no signed attributes")
    sid = si["sid"]
    issuer_serial = None
    key_id = None
    if sid.name == "issuer_and_serial_number":
        issuer_serial = (sid.chosen["issuer"].dump(), sid.chosen["serial_number"].native)
    else:
        key_id = bytes(sid.chosen.native)
    return SignedMessage(
        content=content,
        certificates=certificates,
        crls=crls,
        attributes=attributes(signed_attrs_der) if signed_attrs_der else {},
        digest_algorithm=si["digest_algorithm"]["algorithm"].native,
        signature_algorithm=si["signature_algorithm"]["algorithm"].native,
        signature=bytes(si["signature"].native),
        signed_attrs_der=signed_attrs_der,
        sid_issuer_serial=issuer_serial,
        sid_key_id=key_id,
    )


def parse_certs_only(
    data: bytes, what: str
) -> tuple[tuple[x509.Certificate, ...], tuple[bytes, ...]]:
    """Certificates and DER CRLs of a degenerate certs-only SignedData (RFC 8894 §3.4)."""

    def parse() -> tuple[tuple[x509.Certificate, ...], tuple[bytes, ...]]:
        info = cms.ContentInfo.load(data)
        if info["content_type"].native != "signed_data":
            raise MalformedMessage(f"{what} is not a certs-only SignedData")
        sd = info["content"]
        certs = tuple(
            load_certificate(c.chosen.dump())
            for c in (sd["certificates"] or [])
            if c.name == "certificate"
        )
        crls = tuple(c.chosen.dump() for c in (sd["crls"] or []) if c.name == "crl")
        return certs, crls

    return untrusted(what, parse)


def build_certs_only(
    certificates: tuple[x509.Certificate, ...], crls: tuple[bytes, ...] = ()
) -> bytes:
    """A degenerate certs-only SignedData (RFC 8894 §3.4): no signers, no content; the
    certificates in the order given (issued certificate first; NDES's GetCACert order)."""
    signed_data = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [],
            "encap_content_info": {"content_type": "data"},
            "certificates": _certificate_set(certificates),
            "signer_infos": [],
        }
    )
    if crls:
        signed_data["crls"] = [asn1_crl.CertificateList.load(c) for c in crls]
    der: bytes = cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump()
    return der


def cert_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)
