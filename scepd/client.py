"""SCEP operations: the sans-IO protocol composed with a transport.

The client supplies what the protocol leaves out on purpose: the clock, random bytes and the
HTTP exchanges.  Warnings the protocol returns are logged here.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import logging
import os
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from scepd.debugdump import Recorder
from scepd.errors import (
    CARejected,
    CertificateMismatch,
    HttpError,
    MalformedMessage,
    NotSupportedByServer,
    ScepError,
    SignatureInvalid,
    TrustError,
)
from scepd.protocol.algorithms import ContentCipher, Digest
from scepd.protocol.asn1util import untrusted
from scepd.protocol.cacerts import CACertificates, parse_ca_certs, parse_next_ca_certs
from scepd.protocol.capabilities import Capabilities, Negotiated
from scepd.protocol.constants import MessageType, PkiStatus
from scepd.protocol.csr import DEFAULT_KEY_USAGE, SubjectAltNames, build_csr
from scepd.protocol.fingerprint import Fingerprint
from scepd.protocol.keys import PrivateKey
from scepd.protocol.messagedata import issuer_and_serial, issuer_and_subject
from scepd.protocol.pkimessage import (
    CertRep,
    IssuedContent,
    PkiRequest,
    build_pki_message,
    issued_chain,
    open_cert_rep,
    parse_cert_rep,
    select_issued,
    spki_of,
)
from scepd.protocol.signeddata import same_name
from scepd.protocol.signer import build_self_signed
from scepd.transport import (
    HttpResponse,
    HttpTransport,
    Transport,
    check_response,
    encode_get_message,
)

log = logging.getLogger("scepd")

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class EnrollmentRequest:
    """What to ask the CA for."""

    subject: x509.Name
    sans: SubjectAltNames = field(default_factory=SubjectAltNames)
    key_usage: tuple[str, ...] = DEFAULT_KEY_USAGE
    extended_key_usage: tuple[str, ...] = ()
    challenge: str | None = field(default=None, repr=False)
    challenge_utf8: bool = False


@dataclass(frozen=True)
class Algorithms:
    """The user's explicit choices; ``None`` means negotiate from GetCACaps."""

    digest: Digest | None = None
    cipher: ContentCipher | None = None
    allow_legacy: bool = False


class RenewalMode(enum.Enum):
    AUTO = "auto"
    RENEWAL_REQ = "renewalreq"  # RenewalReq (17), RFC 8894 §3.3.1
    SIGNED_PKCS_REQ = "signed-pkcsreq"  # PKCSReq signed by the current cert: NDES, sscep


@dataclass(frozen=True)
class Transaction:
    """One request and everything needed to poll for its answer and check it: persisted while
    the CA keeps it pending (RFC 8894 §2.5), so polling resumes after a restart."""

    transaction_id: str
    kind: str  # "enroll" or "renew"
    message_type: MessageType  # of the original request
    subject: bytes  # DER Name, as requested in the CSR
    spki: bytes  # the CSR's public key: the issued certificate must carry it
    signer_cert: x509.Certificate  # self-signed (enroll) or the current certificate (renew)
    ca: CACertificates
    negotiated: Negotiated
    # Renewal keeps the identity: the issued certificate must have this subject and these SANs.
    expect_subject: bytes | None = None  # DER Name
    expect_sans: frozenset[tuple[str, str]] | None = None


@dataclass(frozen=True)
class Issued:
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # issuing CA first, root last
    transaction: Transaction


@dataclass(frozen=True)
class Pending:
    transaction: Transaction


Outcome = Issued | Pending


def transaction_id_for(key: PrivateKey, renewing: x509.Certificate | None = None) -> str:
    """Hex SHA-1 of the public key (as jscep and strongSwan send): the same key gives the same
    ID, so re-running a pending enrollment is recognised by NDES and OpenXPKI.  A renewal mixes
    in the certificate it replaces, so reusing a key still makes a new transaction (NDES answers
    a repeated transactionID with the old certificate: sscep#189)."""
    spki = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    h = hashlib.sha1(spki, usedforsecurity=False)
    if renewing is not None:
        h.update(renewing.fingerprint(hashes.SHA256()))
    return h.hexdigest().upper()


def san_set(
    cert_or_csr: x509.Certificate | x509.CertificateSigningRequest,
) -> frozenset[tuple[str, str]]:
    """(type, value) of every subjectAltName, for comparing what was asked and issued."""
    try:
        ext = cert_or_csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return frozenset()
    return frozenset((type(n).__name__, str(n.value)) for n in ext.value)


class ScepClient:
    def __init__(
        self,
        transport: Transport,
        *,
        ca_identifier: str | None = None,
        clock: Clock = utc_now,
        rand: Callable[[int], bytes] = os.urandom,
        recorder: Recorder | None = None,
    ) -> None:
        self._recorder = recorder  # --debug: every exchange logged and saved
        self._transport = transport
        self._ca_identifier = ca_identifier
        self._clock = clock
        self._rand = rand

    @property
    def server(self) -> str:
        return self._transport.url

    def get_caps(self) -> Capabilities:
        """GetCACaps; an HTTP error means "no capabilities" (RFC 8894 §3.5.2)."""
        try:
            response = self._transport.get("GetCACaps", self._message_param())
            if self._recorder is not None:
                self._recorder.simple("GetCACaps", response)
            body = check_response(response, self.server, "GetCACaps")
        except HttpError as exc:
            log.warning("GetCACaps failed (%s); assuming no capabilities", exc)
            return Capabilities()
        return Capabilities.parse(body)

    def get_ca(self, pin: Fingerprint | None = None) -> CACertificates:
        response = self._transport.get("GetCACert", self._message_param())
        if self._recorder is not None:
            self._recorder.simple("GetCACert", response)
        if response.status == 404 and self._ca_identifier is None:
            raise HttpError(
                f"{self.server}: GetCACert answered HTTP 404; check the URL, or give the CA "
                "name with --ca-identifier (EJBCA needs it)",
                status=404,
            )
        body = check_response(response, self.server, "GetCACert")
        ca = parse_ca_certs(body, pin=pin)
        if pin is None:
            log.warning(
                "no --fingerprint given: trusting the CA certificate %s as received; "
                "pin it for production use",
                ca.ca_certs[-1].subject.rfc4514_string(),
            )
        return ca

    def _message_param(self) -> str | None:
        if self._ca_identifier is None:
            return None
        return urllib.parse.quote(self._ca_identifier, safe="")

    def negotiate(self, caps: Capabilities, algorithms: Algorithms) -> Negotiated:
        negotiated = caps.negotiate(
            digest=algorithms.digest,
            cipher=algorithms.cipher,
            allow_legacy=algorithms.allow_legacy,
        )
        for warning in negotiated.warnings:
            log.warning("%s", warning)
        log.debug(
            "negotiated cipher %s, digest %s, %s",
            negotiated.cipher.value,
            negotiated.digest.value,
            "POST" if negotiated.post else "GET",
        )
        return negotiated

    def enroll(
        self,
        *,
        key: PrivateKey,
        request: EnrollmentRequest,
        negotiated: Negotiated,
        ca: CACertificates,
    ) -> Outcome:
        """Initial enrollment: PKCSReq signed with a self-signed certificate (RFC 8894 §2.3)."""
        csr = self._csr(key, request, request.subject, negotiated)
        signer = self.self_signed(key, request.subject, negotiated.digest)
        tx = Transaction(
            transaction_id=transaction_id_for(key),
            kind="enroll",
            message_type=MessageType.PKCS_REQ,
            subject=request.subject.public_bytes(),
            spki=spki_of(csr),
            signer_cert=signer,
            ca=ca,
            negotiated=negotiated,
        )
        return self._submit(tx, key, MessageType.PKCS_REQ, csr.public_bytes(Encoding.DER))

    def self_signed(
        self, key: PrivateKey, subject: x509.Name, digest: Digest = Digest.SHA256
    ) -> x509.Certificate:
        """The signer certificate of a request made without a CA-issued certificate."""
        now = self._clock()
        return build_self_signed(
            key=key,
            subject=subject,
            serial=int.from_bytes(self._rand(16), "big") >> 1 or 1,
            not_before=now - dt.timedelta(hours=1),
            not_after=now + dt.timedelta(days=1),
            digest=digest,
        )

    def renew(
        self,
        *,
        current_key: PrivateKey,
        current_cert: x509.Certificate,
        new_key: PrivateKey,
        request: EnrollmentRequest,
        mode: RenewalMode,
        caps: Capabilities,
        negotiated: Negotiated,
        ca: CACertificates,
    ) -> Outcome:
        """Renewal (RFC 8894 §2.3 case 2): the request is signed with the current certificate
        and key, the CSR with the new key; the answer is encrypted to the current certificate."""
        if mode is RenewalMode.AUTO:
            mode = RenewalMode.RENEWAL_REQ if caps.renewal else RenewalMode.SIGNED_PKCS_REQ
        message_type = (
            MessageType.RENEWAL_REQ if mode is RenewalMode.RENEWAL_REQ else MessageType.PKCS_REQ
        )
        csr = self._csr(new_key, request, request.subject, negotiated)
        tx = Transaction(
            transaction_id=transaction_id_for(new_key, renewing=current_cert),
            kind="renew",
            message_type=message_type,
            subject=request.subject.public_bytes(),
            spki=spki_of(csr),
            signer_cert=current_cert,
            ca=ca,
            negotiated=negotiated,
            expect_subject=request.subject.public_bytes(),
            expect_sans=san_set(csr),
        )
        log.debug("renewal by %s (messageType %s)", mode.value, message_type.value)
        return self._submit(tx, current_key, message_type, csr.public_bytes(Encoding.DER))

    def poll(self, tx: Transaction, signer_key: PrivateKey) -> Outcome:
        """CertPoll (RFC 8894 §3.3.3): same transactionID, fresh senderNonce, IssuerAndSubject
        naming the issuing CA's subject."""
        data = issuer_and_subject(tx.ca.issuing_ca.subject, tx.subject)
        return self._submit(tx, signer_key, MessageType.CERT_POLL, data)

    def get_cert(
        self, *, issuer: x509.Name, serial: int, signer: tuple[x509.Certificate, PrivateKey],
        negotiated: Negotiated, ca: CACertificates,
    ) -> x509.Certificate:  # fmt: skip
        """GetCert (RFC 8894 §3.3.4): a certificate by issuer and serial number."""
        content = self._query(MessageType.GET_CERT, issuer_and_serial(issuer, serial), signer,
                              negotiated, ca)  # fmt: skip
        found = [c for c in content.certificates if c.serial_number == serial]
        if not found:
            raise CertificateMismatch(f"the CA answered GetCert without certificate {serial:X}")
        return found[0]

    def get_crl(
        self, *, cert: x509.Certificate, signer: tuple[x509.Certificate, PrivateKey],
        negotiated: Negotiated, ca: CACertificates,
    ) -> x509.CertificateRevocationList:  # fmt: skip
        """GetCRL (RFC 8894 §3.3.4) for ``cert``'s issuer; the CRL must verify with that CA."""
        data = issuer_and_serial(cert.issuer, cert.serial_number)
        content = self._query(MessageType.GET_CRL, data, signer, negotiated, ca)
        if not content.crls:
            raise MalformedMessage(f"{self.server}: GetCRL answer holds no CRL")
        return verified_crl(content.crls[0], ca)

    def get_next_ca(self, caps: Capabilities, ca: CACertificates) -> tuple[x509.Certificate, ...]:
        """GetNextCACert (RFC 8894 §4.7), verified with the current CA or its RA."""
        if not caps.get_next_ca_cert:
            raise NotSupportedByServer(
                f"{self.server}: the server does not advertise GetNextCACert"
            )
        response = self._transport.get("GetNextCACert", self._message_param())
        if self._recorder is not None:
            self._recorder.simple("GetNextCACert", response)
        if response.status in (404, 405, 501):
            raise NotSupportedByServer(
                f"{self.server}: GetNextCACert answered HTTP {response.status}: no next CA "
                "certificate (no rollover prepared, or not implemented)"
            )
        return parse_next_ca_certs(
            check_response(response, self.server, "GetNextCACert"), current=ca
        )

    def _csr(
        self,
        key: PrivateKey,
        request: EnrollmentRequest,
        subject: x509.Name,
        negotiated: Negotiated,
    ) -> x509.CertificateSigningRequest:
        return build_csr(
            key=key,
            subject=subject,
            sans=request.sans,
            key_usage=request.key_usage,
            extended_key_usage=request.extended_key_usage,
            challenge=request.challenge,
            challenge_utf8=request.challenge_utf8,
            digest=negotiated.digest,
        )

    def _exchange(
        self,
        *,
        transaction_id: str,
        signer: tuple[x509.Certificate, PrivateKey],
        ca: CACertificates,
        negotiated: Negotiated,
        message_type: MessageType,
        data: bytes,
    ) -> CertRep:
        """One PKIOperation: build, send, and check that the CertRep answers it."""
        request = build_pki_message(
            message_type=message_type,
            message_data=data,
            recipient=ca.recipient,
            signer_cert=signer[0],
            key=signer[1],
            transaction_id=transaction_id,
            now=self._clock(),
            cipher=negotiated.cipher,
            digest=negotiated.digest,
            rand=self._rand,
        )
        response: HttpResponse | None = None
        rep: CertRep | None = None
        error: str | None = None
        try:
            response = self._send_pki(request, negotiated.post)
            rep = parse_cert_rep(
                self._check_pki(request, response),
                ca=ca,
                transaction_id=request.transaction_id,
                sender_nonce=request.sender_nonce,
            )
            return rep
        except ScepError as exc:
            error = str(exc)
            raise
        finally:
            if self._recorder is not None:
                self._recorder.pki_operation(
                    message_type=message_type, message_data=data, request=request.der,
                    response=response, rep=rep, negotiated=negotiated, ca=ca, error=error,
                )  # fmt: skip

    def _submit(
        self, tx: Transaction, signer_key: PrivateKey, message_type: MessageType, data: bytes
    ) -> Outcome:
        rep = self._exchange(
            transaction_id=tx.transaction_id,
            signer=(tx.signer_cert, signer_key),
            ca=tx.ca,
            negotiated=tx.negotiated,
            message_type=message_type,
            data=data,
        )
        if rep.status is PkiStatus.PENDING:
            return Pending(tx)
        if rep.status is PkiStatus.FAILURE:
            raise rep.rejection(self.server)
        content = self._open(rep, tx.signer_cert, signer_key)
        issued, extra = select_issued(content.certificates, tx.spki)
        check_identity(issued, tx)
        return Issued(issued, issued_chain(issued, extra, tx.ca), tx)

    def _open(self, rep: CertRep, cert: x509.Certificate, key: PrivateKey) -> IssuedContent:
        content = open_cert_rep(rep, key=key, certificate=cert)
        for warning in content.warnings:
            log.warning("%s", warning)
        return content

    def _query(
        self, message_type: MessageType, data: bytes, signer: tuple[x509.Certificate, PrivateKey],
        negotiated: Negotiated, ca: CACertificates,
    ) -> IssuedContent:  # fmt: skip
        name = "GetCert" if message_type is MessageType.GET_CERT else "GetCRL"
        rep = self._exchange(
            transaction_id=self._rand(20).hex().upper(),  # a query has no key to derive it from
            signer=signer,
            ca=ca,
            negotiated=negotiated,
            message_type=message_type,
            data=data,
        )
        if rep.status is PkiStatus.FAILURE:
            error = rep.rejection(self.server)
            raise CARejected(
                f"{error} (a server that does not implement {name} answers this way too)",
                fail_info=error.fail_info,
            )
        if rep.status is PkiStatus.PENDING:
            raise MalformedMessage(
                f"{self.server}: {name} answered PENDING, which RFC 8894 does not allow"
            )
        return self._open(rep, *signer)

    def _send_pki(self, request: PkiRequest, post: bool) -> HttpResponse:
        if post:
            return self._transport.post("PKIOperation", request.der)
        return self._transport.get("PKIOperation", encode_get_message(request.der))

    def _check_pki(self, request: PkiRequest, response: HttpResponse) -> bytes:
        # micromdm answers GetCert/GetCRL with HTTP 500 "not implemented": name the operation.
        if response.status in (405, 501) or (
            response.status >= 400 and b"not implemented" in response.body[:200].lower()
        ):
            raise NotSupportedByServer(
                f"{self.server}: the server does not implement {_NAMES[request.message_type]} "
                f"(HTTP {response.status})"
            )
        return check_response(response, self.server, "PKIOperation")


_NAMES = {
    MessageType.PKCS_REQ: "PKCSReq",
    MessageType.RENEWAL_REQ: "RenewalReq",
    MessageType.CERT_POLL: "CertPoll",
    MessageType.GET_CERT: "GetCert",
    MessageType.GET_CRL: "GetCRL",
    MessageType.CERT_REP: "CertRep",
}


def over_http(
    url: str,
    *,
    timeout: float,
    ca_bundle: str | None = None,
    ca_identifier: str | None = None,
    recorder: Recorder | None = None,
    clock: Clock = utc_now,
) -> ScepClient:
    """A client for one SCEP URL: the CLI's and the daemon's, built the same way (a connect
    timeout of at most 10 s, so an unreachable first URL fails over quickly)."""
    transport = HttpTransport(
        url, connect_timeout=min(timeout, 10.0), read_timeout=timeout, ca_bundle=ca_bundle
    )
    return ScepClient(transport, ca_identifier=ca_identifier, clock=clock, recorder=recorder)


def check_identity(issued: x509.Certificate, tx: Transaction) -> None:
    """A renewal must keep the subject and the subjectAltNames (exit 6 otherwise)."""
    if tx.expect_subject is not None and not same_name(issued.subject, tx.expect_subject):
        raise CertificateMismatch(
            f"the CA issued a certificate for {issued.subject.rfc4514_string()}, not the "
            "subject of the certificate being renewed; the old certificate is kept"
        )
    if tx.expect_sans is not None and san_set(issued) != tx.expect_sans:
        raise CertificateMismatch(
            "the CA changed the subjectAltNames on renewal; the old certificate is kept"
        )


def verified_crl(der: bytes, ca: CACertificates) -> x509.CertificateRevocationList:
    def load() -> x509.CertificateRevocationList:
        crl = x509.load_der_x509_crl(der)
        issuer = next((c for c in ca.ca_certs if c.subject == crl.issuer), None)
        if issuer is None:
            raise TrustError(f"the CRL's issuer {crl.issuer.rfc4514_string()} is not a known CA")
        if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
            raise SignatureInvalid("the CRL's signature does not verify with its CA")
        return crl

    return untrusted("CRL", load)
