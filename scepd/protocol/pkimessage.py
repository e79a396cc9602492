"""pkiMessage requests (RFC 8894 §3.2-§3.3) and the CertRep that answers them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from scepd.errors import (
    CARejected,
    CertificateMismatch,
    MalformedMessage,
    ResponseMismatch,
    TrustError,
)
from scepd.protocol import oids
from scepd.protocol.algorithms import ContentCipher, Digest
from scepd.protocol.asn1util import untrusted
from scepd.protocol.cacerts import CACertificates, verify_issued_by
from scepd.protocol.constants import FailInfo, MessageType, PkiStatus, describe_hresult
from scepd.protocol.envelope import build_enveloped_data, open_enveloped_data
from scepd.protocol.keys import PrivateKey
from scepd.protocol.signeddata import (
    SignedMessage,
    build_signed_data,
    parse_certs_only,
    parse_signed_data,
)

NONCE_SIZE = 16
_SPKI = PublicFormat.SubjectPublicKeyInfo

Random = Callable[[int], bytes]


@dataclass(frozen=True)
class PkiRequest:
    """A built request and what its answer must echo."""

    message_type: MessageType
    transaction_id: str
    sender_nonce: bytes
    der: bytes


def build_pki_message(
    *,
    message_type: MessageType,
    message_data: bytes,
    recipient: x509.Certificate,
    signer_cert: x509.Certificate,
    key: PrivateKey,
    transaction_id: str,
    now: dt.datetime,
    cipher: ContentCipher,
    digest: Digest,
    rand: Random,
) -> PkiRequest:
    """Encrypt ``message_data`` to ``recipient``, then sign it (RFC 8894 §3.1 order).

    ``rand`` supplies the senderNonce, content key and IV; ``now`` the signingTime."""
    nonce = rand(NONCE_SIZE)
    envelope = build_enveloped_data(
        content=message_data,
        recipient=recipient,
        cipher=cipher,
        content_key=rand(cipher.key_size),
        iv=rand(cipher.block_size),
    )
    der = build_signed_data(
        content=envelope,
        signer_cert=signer_cert,
        key=key,
        digest=digest,
        signing_time=now,
        scep_attributes=[
            cms.CMSAttribute({"type": "message_type", "values": [message_type.value]}),
            cms.CMSAttribute({"type": "transaction_id", "values": [transaction_id]}),
            cms.CMSAttribute({"type": "sender_nonce", "values": [nonce]}),
        ],
    )
    return PkiRequest(message_type, transaction_id, nonce, der)


def build_pkcs_req(
    *,
    csr: x509.CertificateSigningRequest,
    recipient: x509.Certificate,
    signer_cert: x509.Certificate,
    key: PrivateKey,
    transaction_id: str,
    now: dt.datetime,
    cipher: ContentCipher,
    digest: Digest,
    rand: Random,
) -> PkiRequest:
    return build_pki_message(
        message_type=MessageType.PKCS_REQ,
        message_data=csr.public_bytes(Encoding.DER),
        recipient=recipient,
        signer_cert=signer_cert,
        key=key,
        transaction_id=transaction_id,
        now=now,
        cipher=cipher,
        digest=digest,
        rand=rand,
    )


@dataclass(frozen=True)
class CertRep:
    """A CertRep whose signature, messageType, transactionID and recipientNonce checked out."""

    status: PkiStatus
    transaction_id: str
    signer: x509.Certificate
    digest_algorithm: str
    envelope: bytes | None = field(repr=False)
    fail_info: FailInfo | None = None
    fail_info_text: str | None = None
    ms_hresult: int | None = None
    ms_disposition: str | None = None

    def rejection(self, server: str) -> CARejected:
        """The one-line error for a FAILURE: failInfo, its likely meaning, and what NDES said."""
        if self.fail_info is None:
            text = "no failInfo"
        else:
            text = f"failInfo {self.fail_info.rfc_name} ({self.fail_info.value})"
        parts = [f"{server} rejected the request: {text}"]
        if self.fail_info_text:
            parts.append(f'"{self.fail_info_text}"')
        if self.ms_hresult is not None:
            parts.append(f"NDES error {describe_hresult(self.ms_hresult)}")
        if self.fail_info is not None:
            parts.append(f"likely cause: {self.fail_info.likely_cause}")
        return CARejected(
            "; ".join(parts), fail_info=self.fail_info.rfc_name if self.fail_info else None
        )


def parse_cert_rep(
    data: bytes, *, ca: CACertificates, transaction_id: str, sender_nonce: bytes
) -> CertRep:
    """Verify a CertRep against the GetCACert certificates (NDES omits its signer certificate
    from the message) and check that it answers our request (RFC 8894 §3.2.1, §3.3.2)."""
    msg = parse_signed_data(data, "CertRep")
    signer = untrusted("CertRep signer", lambda: _trusted_signer(msg, ca))
    untrusted("CertRep signature", lambda: msg.verify(signer))
    message_type = msg.attribute(oids.MESSAGE_TYPE)
    if message_type != MessageType.CERT_REP.value:
        raise ResponseMismatch(f"response messageType is {message_type!r}, not CertRep (3)")
    got_tid = msg.attribute(oids.TRANSACTION_ID)
    if got_tid != transaction_id:
        raise ResponseMismatch(f"CertRep transactionID {got_tid!r} is not our {transaction_id!r}")
    if msg.attribute(oids.RECIPIENT_NONCE) != sender_nonce:
        raise ResponseMismatch("CertRep recipientNonce does not match the senderNonce we sent")
    status_value = msg.attribute(oids.PKI_STATUS)
    try:
        status = PkiStatus(status_value)
    except ValueError:
        raise MalformedMessage(f"CertRep pkiStatus {status_value!r} is not 0, 2 or 3") from None
    rep = CertRep(
        status=status,
        transaction_id=transaction_id,
        signer=signer,
        digest_algorithm=msg.digest_algorithm,
        envelope=msg.content if status is PkiStatus.SUCCESS else None,
        ms_disposition=_text(msg.attribute(oids.MS_DISPOSITION)),
    )
    if status is PkiStatus.SUCCESS:
        # Dogtag answers SUCCESS with no content while a request awaits approval.
        if not msg.content or len(msg.content) < 2:
            raise MalformedMessage("CertRep says SUCCESS but carries no certificate envelope")
        return rep
    if status is PkiStatus.FAILURE:
        fail_value = msg.attribute(oids.FAIL_INFO)
        fail_info = None
        if fail_value is not None:
            try:
                fail_info = FailInfo(str(fail_value))
            except ValueError:
                raise MalformedMessage(f"CertRep failInfo {fail_value!r} is not 0-4") from None
        return CertRep(
            status=status,
            transaction_id=transaction_id,
            signer=signer,
            digest_algorithm=msg.digest_algorithm,
            envelope=None,
            fail_info=fail_info,
            fail_info_text=_text(msg.attribute(oids.FAIL_INFO_TEXT)),
            ms_hresult=_hresult(msg.attribute(oids.MS_HRESULT)),
            ms_disposition=rep.ms_disposition,
        )
    return rep


def _trusted_signer(msg: SignedMessage, ca: CACertificates) -> x509.Certificate:
    signer = msg.find_signer(ca.certificates)
    if signer is not None:
        return signer
    signer = msg.find_signer(msg.certificates)
    if signer is None:
        raise TrustError(
            "CertRep signer is neither in the message nor among the GetCACert certificates"
        )
    issuer = next((c for c in ca.ca_certs if c.subject == signer.issuer), None)
    if issuer is None:
        raise TrustError(
            f"CertRep signer {signer.subject.rfc4514_string()} is not issued by the CA"
        )
    verify_issued_by(signer, issuer)
    return signer


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _hresult(value: object) -> int | None:
    if value is None:
        return None
    try:
        return int(str(value).strip(), 0)
    except ValueError:
        return None


@dataclass(frozen=True)
class IssuedContent:
    certificates: tuple[x509.Certificate, ...]
    crls: tuple[bytes, ...]
    cipher: str
    key_transport: str
    warnings: tuple[str, ...]


def open_cert_rep(rep: CertRep, *, key: PrivateKey, certificate: x509.Certificate) -> IssuedContent:
    """Decrypt a SUCCESS CertRep with the key of the certificate that signed our request."""
    if rep.envelope is None:
        raise MalformedMessage("CertRep has no envelope to open")
    opened = open_enveloped_data(rep.envelope, key=key, certificate=certificate)
    warnings = []
    if opened.cipher == "des":
        warnings.append(
            "the server encrypted its response with single DES (micromdm scepserver always "
            "does); accepted because the payload is a public certificate"
        )
    certs, crls = parse_certs_only(opened.content, "CertRep content")
    return IssuedContent(certs, crls, opened.cipher, opened.key_transport, tuple(warnings))


def select_issued(
    certs: tuple[x509.Certificate, ...], spki: bytes
) -> tuple[x509.Certificate, tuple[x509.Certificate, ...]]:
    """The certificate whose public key (DER SubjectPublicKeyInfo) is ours, and the others as
    its chain: never rely on order (RFC 8894 §3.3.2.1 allows extra certificates)."""

    def pick() -> tuple[x509.Certificate, tuple[x509.Certificate, ...]]:
        for cert in certs:
            if cert.public_key().public_bytes(Encoding.DER, _SPKI) == spki:
                return cert, tuple(c for c in certs if c != cert)
        raise CertificateMismatch("the CA returned no certificate for our public key")

    return untrusted("issued certificate", pick)


def spki_of(key: x509.CertificateSigningRequest | x509.Certificate | PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.DER, _SPKI)


def issued_chain(
    issued: x509.Certificate, extra: tuple[x509.Certificate, ...], ca: CACertificates
) -> tuple[x509.Certificate, ...]:
    """The issued certificate's CA chain, root last.  It must be signed by a CA certificate of
    the (verified) GetCACert response; certificates the CertRep adds may complete the chain."""
    return untrusted("issued certificate chain", lambda: _chain(issued, extra, ca))


def _chain(
    issued: x509.Certificate, extra: tuple[x509.Certificate, ...], ca: CACertificates
) -> tuple[x509.Certificate, ...]:
    issuer = next((c for c in ca.ca_certs if c.subject == issued.issuer), None)
    if issuer is None:
        raise CertificateMismatch(
            f"the issued certificate's issuer {issued.issuer.rfc4514_string()} is not a CA "
            "certificate of the GetCACert response"
        )
    try:
        verify_issued_by(issued, issuer)
    except TrustError:
        raise CertificateMismatch(
            "the issued certificate is not signed by the CA it names as issuer"
        ) from None
    pool = list(ca.ca_certs) + [c for c in extra if c not in ca.ca_certs]
    chain = [issuer]
    while chain[-1].issuer != chain[-1].subject:
        parent = next((c for c in pool if c.subject == chain[-1].issuer and c not in chain), None)
        if parent is None:
            break
        chain.append(parent)
    return tuple(chain)
