"""The CA side of SCEP (RFC 8894 §3.2-§3.3, §4.7): read a pkiMessage and answer it.

Sans-IO like the rest of ``scepd.protocol``: the clock (``now``) and randomness (``rand``) are
passed in, keys are used through :class:`~scepd.protocol.keys.PrivateKey`.  Policy (who may
enroll, pending approval, serial numbers) is the caller's; this module only speaks the protocol.
Everything read from the network raises only :class:`~scepd.errors.ScepError` subclasses."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from asn1crypto import cms, core
from cryptography import x509

from scepd.errors import MalformedMessage, SignatureInvalid, TrustError
from scepd.protocol import oids
from scepd.protocol.algorithms import ContentCipher, Digest
from scepd.protocol.asn1util import untrusted
from scepd.protocol.constants import FailInfo, PkiStatus
from scepd.protocol.csr import read_challenge
from scepd.protocol.envelope import build_enveloped_data, open_enveloped_data
from scepd.protocol.keys import PrivateKey
from scepd.protocol.signeddata import (
    SignedMessage,
    build_certs_only,
    build_signed_data,
    parse_signed_data,
    same_name,
)

Random = Callable[[int], bytes]
NONCE_SIZE = 16
MAX_NONCE = 64


class WrongRecipient(TrustError):
    """The request's envelope is addressed to another certificate (NDES: NTE_BAD_DATA)."""


@dataclass(frozen=True)
class IncomingMessage:
    """A pkiMessage whose structure was read; its signature is checked by :func:`verify`."""

    message_type: str  # decimal string as sent, e.g. "19"; may be a type we do not know
    transaction_id: str
    sender_nonce: bytes
    signer: x509.Certificate  # the certificate in the message that signed it (RFC 8894 §2.3)
    digest_algorithm: str
    envelope: bytes = field(repr=False)
    signed: SignedMessage = field(repr=False)


def read_pki_message(data: bytes) -> IncomingMessage:
    """Parse a PKIOperation body.  Without the attributes a CertRep must echo (transactionID,
    senderNonce) or a signer certificate, no CertRep can answer it: MalformedMessage."""
    msg = parse_signed_data(data, "pkiMessage")
    message_type = msg.attribute(oids.MESSAGE_TYPE)
    transaction_id = msg.attribute(oids.TRANSACTION_ID)
    nonce = msg.attribute(oids.SENDER_NONCE)
    if not isinstance(message_type, str) or not message_type.strip().isdigit():
        raise MalformedMessage("pkiMessage has no valid messageType attribute")
    if not isinstance(transaction_id, str) or not transaction_id:
        raise MalformedMessage("pkiMessage has no transactionID (PrintableString) attribute")
    if not isinstance(nonce, bytes) or not 0 < len(nonce) <= MAX_NONCE:
        raise MalformedMessage("pkiMessage has no valid senderNonce attribute")
    signer = msg.find_signer(msg.certificates)
    if signer is None:
        raise MalformedMessage("pkiMessage does not carry its signer's certificate")
    if not msg.content:
        raise MalformedMessage("pkiMessage has no pkcsPKIEnvelope")
    return IncomingMessage(
        message_type=message_type.strip(),
        transaction_id=transaction_id,
        sender_nonce=nonce,
        signer=signer,
        digest_algorithm=msg.digest_algorithm,
        envelope=msg.content,
        signed=msg,
    )


def verify(message: IncomingMessage) -> None:
    """Check the signature with the embedded signer certificate (proof of possession; whether
    that certificate is trusted, e.g. for renewal, is policy)."""
    untrusted("pkiMessage signature", lambda: message.signed.verify(message.signer))


@dataclass(frozen=True)
class OpenedRequest:
    message_data: bytes = field(repr=False)
    cipher: str  # asn1crypto name of the request's content cipher, e.g. "aes128_cbc"
    key_transport: str


def open_request(
    message: IncomingMessage, *, key: PrivateKey, recipient: x509.Certificate
) -> OpenedRequest:
    """Decrypt the envelope, which must be addressed to ``recipient`` (NDES's CEP Encryption
    certificate, or the CA).  Checked before decrypting: with PKCS#1 v1.5 implicit rejection a
    wrong key need not fail loudly."""
    if not untrusted("pkcsPKIEnvelope", lambda: _addressed_to(message.envelope, recipient)):
        raise WrongRecipient(
            f"request is not encrypted to {recipient.subject.rfc4514_string()} "
            f"(serial {recipient.serial_number:X})"
        )
    opened = open_enveloped_data(message.envelope, key=key, certificate=recipient)
    return OpenedRequest(opened.content, opened.cipher, opened.key_transport)


def _addressed_to(envelope: bytes, recipient: x509.Certificate) -> bool:
    info = cms.ContentInfo.load(envelope)
    if info["content_type"].native != "enveloped_data":
        raise MalformedMessage("pkcsPKIEnvelope is not EnvelopedData")
    for ri in info["content"]["recipient_infos"]:
        if ri.name != "ktri":
            continue
        rid = ri.chosen["rid"]
        if rid.name == "issuer_and_serial_number":
            if rid.chosen["serial_number"].native == recipient.serial_number and same_name(
                recipient.issuer, rid.chosen["issuer"].dump()
            ):
                return True
        elif _key_id(recipient) == bytes(rid.chosen.native):
            return True
    return False


def _key_id(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except (x509.ExtensionNotFound, ValueError):
        return None


# --- messageData of each request type (RFC 8894 §3.3.1-§3.3.4) ---------------------------


@dataclass(frozen=True)
class CertificationRequest:
    """A PKCS#10 request whose self-signature verified."""

    csr: x509.CertificateSigningRequest
    challenge: str | None = field(repr=False)
    challenge_type: str | None  # ASN.1 type as sent: "printable_string", "utf8_string", ...


def parse_csr(data: bytes) -> CertificationRequest:
    """PKCSReq/RenewalReq messageData.  The challenge's ASN.1 string type is kept, because NDES
    refuses anything but PrintableString."""

    def parse() -> CertificationRequest:
        csr = x509.load_der_x509_csr(data)
        if not csr.is_signature_valid:
            raise SignatureInvalid("the PKCS#10 request's signature does not verify")
        challenge, challenge_type = read_challenge(data)
        return CertificationRequest(csr, challenge, challenge_type)

    return untrusted("PKCS#10 request", parse)


# --- CertRep (RFC 8894 §3.3.2) -------------------------------------------------------------


@dataclass(frozen=True)
class Responder:
    """Who signs CertReps and how they look."""

    signer: x509.Certificate  # the CA, or NDES's Enrollment Agent RA certificate
    key: PrivateKey = field(repr=False)
    # None: the signer's own certificate; () none, as NDES sends.
    certificates: tuple[x509.Certificate, ...] | None = None
    oaep: bool = False  # RSAES-OAEP key transport for the envelope (real NDES may use it)
    ndes: bool = False  # one-byte eContent on FAILURE/PENDING, Microsoft attributes


def cert_rep_success(
    responder: Responder,
    request: IncomingMessage,
    *,
    content: bytes,
    cipher: str,
    now: dt.datetime,
    rand: Random,
) -> bytes:
    """SUCCESS: ``content`` (a certs-only SignedData, see :func:`certs_only`) encrypted to the
    request's signer certificate with the request's own content cipher."""
    chosen = _cipher(cipher)
    envelope = build_enveloped_data(
        content=content,
        recipient=request.signer,
        cipher=chosen,
        content_key=rand(chosen.key_size),
        iv=rand(chosen.block_size),
        oaep=responder.oaep,
    )
    extra = [_attr(oids.MS_DISPOSITION, core.UTF8String("Issued"))] if responder.ndes else []
    return _cert_rep(
        responder, request, PkiStatus.SUCCESS, envelope=envelope, extra=extra, now=now, rand=rand
    )


def cert_rep_failure(
    responder: Responder,
    request: IncomingMessage,
    *,
    fail_info: FailInfo,
    now: dt.datetime,
    rand: Random,
    hresult: int | None = None,
    text: str | None = None,
) -> bytes:
    """FAILURE with ``fail_info``; NDES adds its HRESULT (signed decimal PrintableString),
    other CAs may add a failInfoText (RFC 8894 §3.2.1.4)."""
    extra = [cms.CMSAttribute({"type": "fail_info", "values": [fail_info.value]})]
    if responder.ndes and hresult is not None:
        signed = hresult - 2**32 if hresult & 0x80000000 else hresult
        extra.append(_attr(oids.MS_HRESULT, core.PrintableString(str(signed))))
    elif text:
        extra.append(cms.CMSAttribute({"type": "fail_info_text", "values": [text]}))
    return _cert_rep(
        responder, request, PkiStatus.FAILURE, envelope=None, extra=extra, now=now, rand=rand
    )


def cert_rep_pending(
    responder: Responder, request: IncomingMessage, *, now: dt.datetime, rand: Random
) -> bytes:
    extra = (
        [_attr(oids.MS_DISPOSITION, core.UTF8String("Taken Under Submission"))]
        if responder.ndes
        else []
    )
    return _cert_rep(
        responder, request, PkiStatus.PENDING, envelope=None, extra=extra, now=now, rand=rand
    )


def certs_only(certificates: tuple[x509.Certificate, ...], crls: tuple[bytes, ...] = ()) -> bytes:
    """A degenerate certs-only SignedData (RFC 8894 §3.4) with ``certificates`` in this order:
    the GetCACert body, or what a SUCCESS envelope holds (issued certificate first, or a CRL)."""
    return build_certs_only(certificates, crls)


def _cert_rep(
    responder: Responder,
    request: IncomingMessage,
    status: PkiStatus,
    *,
    envelope: bytes | None,
    extra: list[cms.CMSAttribute],
    now: dt.datetime,
    rand: Random,
) -> bytes:
    attributes = [
        cms.CMSAttribute({"type": "message_type", "values": ["3"]}),
        cms.CMSAttribute({"type": "pki_status", "values": [status.value]}),
        cms.CMSAttribute({"type": "transaction_id", "values": [request.transaction_id]}),
        cms.CMSAttribute({"type": "recipient_nonce", "values": [request.sender_nonce]}),
        cms.CMSAttribute({"type": "sender_nonce", "values": [rand(NONCE_SIZE)]}),
        *extra,
    ]
    # NDES sends one zero byte where RFC 8894 omits the content (protocol.md §2.10).
    content = envelope if envelope is not None else (b"\x00" if responder.ndes else b"")
    der = build_signed_data(
        content=content,
        signer_cert=responder.signer,
        key=responder.key,
        digest=response_digest(request.digest_algorithm),
        signing_time=now,
        scep_attributes=attributes,
        certificates=responder.certificates,
    )
    return der if content else _omit_content(der)


def _omit_content(der: bytes) -> bytes:
    """RFC 8894 §3.3.2: no eContent on FAILURE/PENDING (the digest signed is of b"")."""
    info = cms.ContentInfo.load(der)
    info["content"]["encap_content_info"] = cms.ContentInfo({"content_type": "data"})
    out: bytes = info.dump(force=True)
    return out


def _attr(oid: str, value: core.Asn1Value) -> cms.CMSAttribute:
    return cms.CMSAttribute({"type": oid, "values": [value]})


def response_digest(request_digest: str) -> Digest:
    """Answer in the request's digest when scepd can sign with it, else SHA-256."""
    return {"sha1": Digest.SHA1, "sha512": Digest.SHA512}.get(request_digest, Digest.SHA256)


def _cipher(asn1_name: str) -> ContentCipher:
    """The request's cipher; AES-192/256 requests are answered in AES-128 (all clients that
    send AES decrypt AES-128)."""
    if asn1_name.startswith("aes"):
        return ContentCipher.AES128
    if asn1_name == "des":
        return ContentCipher.DES
    return ContentCipher.DES3


# --- GetNextCACert (RFC 8894 §4.7) ---------------------------------------------------------


def next_ca_cert_response(
    *,
    new_ca: tuple[x509.Certificate, ...],
    signer: x509.Certificate,
    key: PrivateKey,
    now: dt.datetime,
    digest: Digest = Digest.SHA256,
) -> bytes:
    """A SignedData by the current CA whose eContent is a certs-only SignedData holding the
    next CA certificate(s)."""
    return build_signed_data(
        content=certs_only(new_ca),
        signer_cert=signer,
        key=key,
        digest=digest,
        signing_time=now,
        scep_attributes=[],
    )
