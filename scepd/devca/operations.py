"""PKIOperation policy: who may enroll, renew, poll, fetch certificates and CRLs.

The protocol work is :mod:`scepd.protocol.responder`'s; this module decides the answer, with
the failInfo and (NDES mode) the HRESULT real NDES gives for the same mistake
(protocol.md §2.8)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from scepd._compat import not_valid_after, not_valid_before
from scepd.devca import challenges, issuance
from scepd.devca.identities import Identities
from scepd.devca.state import CADir
from scepd.errors import MalformedMessage, ScepError, SignatureInvalid, TrustError
from scepd.protocol import messagedata, responder
from scepd.protocol.cacerts import verify_issued_by
from scepd.protocol.constants import FailInfo
from scepd.protocol.signeddata import same_name

Clock = Callable[[], dt.datetime]
Random = Callable[[int], bytes]

# Microsoft HRESULTs NDES puts in its FAILURE CertReps.
E_INVALIDARG = 0x80070057
ERROR_NOT_FOUND = 0x80070490  # challenge unknown (or expired: NDES forgets it)
CERT_E_WRONG_USAGE = 0x800B0110  # challenge already used
TRUST_E_CERT_SIGNATURE = 0x80096004  # a challenge is required and none was sent
CERTSRV_E_BAD_REQUESTSUBJECT = 0x80094001
CERTSRV_E_KEY_LENGTH = 0x80094811
CERT_E_EXPIRED = 0x800B0101
CRYPT_E_REVOKED = 0x80092010
NTE_BAD_DATA = 0x80090005  # cannot decrypt: encrypted to the wrong certificate
NTE_BAD_SIGNATURE = 0x80090006

PKCS_REQ, RENEWAL_REQ, CERT_POLL, GET_CERT, GET_CRL = "19", "17", "20", "21", "22"


@dataclass(frozen=True)
class Outcome:
    """A CertRep and the log line's ``result`` field (never a secret)."""

    body: bytes
    result: str


class _Reject(Exception):
    def __init__(self, fail_info: FailInfo, hresult: int | None, reason: str) -> None:
        super().__init__(reason)
        self.fail_info = fail_info
        self.hresult = hresult
        self.reason = reason


class Operations:
    def __init__(self, ca_dir: CADir, identities: Identities, clock: Clock, rand: Random) -> None:
        self._dir = ca_dir
        self._ids = identities
        self._clock = clock
        self._rand = rand
        self._config = ca_dir.config()

    def handle(self, message: responder.IncomingMessage) -> Outcome:
        """Answer a parsed pkiMessage; every refusal is a FAILURE CertRep, never an exception."""
        now = self._clock()
        try:
            return self._handle(message, now)
        except _Reject as reject:
            body = responder.cert_rep_failure(
                self._ids.responder,
                message,
                fail_info=reject.fail_info,
                hresult=reject.hresult,
                text=reject.reason,
                now=now,
                rand=self._rand,
            )
            hresult = f" hresult=0x{reject.hresult:08X}" if reject.hresult is not None else ""
            result = (
                f"FAILURE failInfo={reject.fail_info.rfc_name}{hresult} reason={reject.reason!r}"
            )
            return Outcome(body, result)

    def _handle(self, message: responder.IncomingMessage, now: dt.datetime) -> Outcome:
        try:
            responder.verify(message)
        except (SignatureInvalid, MalformedMessage):
            raise _Reject(
                FailInfo.BAD_MESSAGE_CHECK, NTE_BAD_SIGNATURE, "signature does not verify"
            ) from None
        except TrustError as exc:
            raise _Reject(FailInfo.BAD_ALG, E_INVALIDARG, str(exc)) from None
        try:
            opened = responder.open_request(
                message, key=self._ids.recipient_key, recipient=self._ids.recipient
            )
        except ScepError:
            raise _Reject(
                FailInfo.BAD_MESSAGE_CHECK,
                NTE_BAD_DATA,
                "cannot decrypt the request (not encrypted to "
                f"{'the CEP Encryption certificate' if self._config.ndes else 'the CA'})",
            ) from None
        kind = message.message_type
        if kind in (PKCS_REQ, RENEWAL_REQ):
            return self._enroll(message, opened, now)
        if kind == CERT_POLL:
            return self._poll(message, opened, now)
        if kind == GET_CERT:
            return self._get_cert(message, opened, now)
        if kind == GET_CRL:
            return self._get_crl(message, opened, now)
        raise _Reject(FailInfo.BAD_REQUEST, E_INVALIDARG, "unsupported messageType")

    # --- enrollment -------------------------------------------------------------------------

    def _enroll(
        self, message: responder.IncomingMessage, opened: responder.OpenedRequest, now: dt.datetime
    ) -> Outcome:
        try:
            request = responder.parse_csr(opened.message_data)
        except ScepError:
            raise _Reject(FailInfo.BAD_REQUEST, E_INVALIDARG, "malformed PKCS#10 request") from None
        key = request.csr.public_key()
        if not isinstance(key, rsa.RSAPublicKey) or key.key_size < self._config.key_bits:
            raise _Reject(
                FailInfo.BAD_REQUEST,
                CERTSRV_E_KEY_LENGTH,
                f"RSA key of at least {self._config.key_bits} bits required",
            )
        with self._dir.locked():
            existing = issuance.load_pending(self._dir, message.transaction_id)
            if existing is not None:
                return self._resend(message, opened, existing, request.csr, now)
            self._authorize(message, request, now)
            if self._config.pending:
                issuance.save_pending(
                    self._dir,
                    issuance.PendingRequest(message.transaction_id, _der(request.csr)),
                )
                return self._pending(message, now)
            cert = issuance.issue(self._dir, request.csr, now)
        return self._success(message, opened, (cert, *self._ids.chain), now, cert)

    def _resend(
        self,
        message: responder.IncomingMessage,
        opened: responder.OpenedRequest,
        existing: issuance.PendingRequest,
        csr: x509.CertificateSigningRequest,
        now: dt.datetime,
    ) -> Outcome:
        """The same transactionID again (a client re-running a pending enrollment): the
        request it already made stands, for the same key only."""
        if existing.public_key_der() != _spki(csr):
            raise _Reject(
                FailInfo.BAD_REQUEST, E_INVALIDARG, "transactionID in use for another key"
            )
        if existing.serial is None:
            return self._pending(message, now)
        cert = issuance.find_issued(self._dir, existing.serial)
        if cert is None:
            raise _Reject(FailInfo.BAD_CERT_ID, E_INVALIDARG, "issued certificate is missing")
        return self._success(message, opened, (cert, *self._ids.chain), now, cert)

    def _authorize(
        self,
        message: responder.IncomingMessage,
        request: responder.CertificationRequest,
        now: dt.datetime,
    ) -> None:
        """Raise _Reject unless the request may be issued: a renewal signed by a valid
        certificate of ours, or a good challenge password."""
        signer_state = self._signer_state(message.signer, now)
        ndes = self._config.ndes
        renewal = message.message_type == RENEWAL_REQ or (ndes and request.challenge is None)
        if renewal and signer_state is not None:
            if signer_state == "valid":
                if ndes and request.csr.subject != message.signer.subject:
                    raise _Reject(
                        FailInfo.BAD_REQUEST,
                        CERTSRV_E_BAD_REQUESTSUBJECT,
                        "renewal subject differs from the signing certificate's",
                    )
                return
            hresult = CRYPT_E_REVOKED if signer_state == "revoked" else CERT_E_EXPIRED
            raise _Reject(FailInfo.BAD_REQUEST, hresult, f"renewal signer is {signer_state}")
        if message.message_type == RENEWAL_REQ and request.challenge is None:
            raise _Reject(
                FailInfo.BAD_REQUEST,
                TRUST_E_CERT_SIGNATURE,
                "RenewalReq not signed by a certificate this CA issued",
            )
        self._check_challenge(request)
        verdict = challenges.consume(self._dir, request.challenge or "", now=now)
        if verdict is challenges.Verdict.USED:
            raise _Reject(
                FailInfo.BAD_REQUEST, CERT_E_WRONG_USAGE, "challenge password already used"
            )
        if verdict is not challenges.Verdict.OK:
            raise _Reject(
                FailInfo.BAD_REQUEST, ERROR_NOT_FOUND, f"challenge password {verdict.value}"
            )

    def _check_challenge(self, request: responder.CertificationRequest) -> None:
        if request.challenge is None:
            raise _Reject(
                FailInfo.BAD_REQUEST, TRUST_E_CERT_SIGNATURE, "challenge password required"
            )
        if self._config.ndes and request.challenge_type != "printable_string":
            # NDES Event 29: OpenSSL's default UTF8String challenge is refused (§2.4).
            raise _Reject(
                FailInfo.BAD_REQUEST,
                ERROR_NOT_FOUND,
                f"challenge password is a {request.challenge_type}, not a PrintableString",
            )

    def _signer_state(self, signer: x509.Certificate, now: dt.datetime) -> str | None:
        """None when this CA did not issue ``signer``; else "valid", "expired" or "revoked"."""
        ca = self._ids.ca
        if signer.issuer != ca.subject or signer.issuer == signer.subject:
            return None
        ours = issuance.find_issued(self._dir, signer.serial_number)
        if ours is None or _der(ours) != _der(signer):
            return None
        try:
            verify_issued_by(signer, ca)
        except TrustError:
            return None
        if signer.serial_number in issuance.revoked(self._dir):
            return "revoked"
        if not not_valid_before(signer) <= now <= not_valid_after(signer):
            return "expired"
        return "valid"

    # --- polling and retrieval --------------------------------------------------------------

    def _poll(
        self, message: responder.IncomingMessage, opened: responder.OpenedRequest, now: dt.datetime
    ) -> Outcome:
        try:
            issuer, subject = messagedata.parse_issuer_and_subject(opened.message_data)
        except ScepError:
            raise _Reject(
                FailInfo.BAD_REQUEST, E_INVALIDARG, "malformed IssuerAndSubject"
            ) from None
        with self._dir.locked():
            record = issuance.load_pending(self._dir, message.transaction_id)
            if record is None:
                raise _Reject(FailInfo.BAD_CERT_ID, E_INVALIDARG, "unknown transactionID")
            if not same_name(self._ids.ca.subject, issuer) or not same_name(
                record.csr.subject, subject
            ):
                raise _Reject(
                    FailInfo.BAD_CERT_ID, E_INVALIDARG, "issuer or subject does not match"
                )
            if record.serial is None:
                record.polls += 1
                limit = self._config.auto_approve_after
                if limit is None or record.polls < limit:
                    issuance.save_pending(self._dir, record)
                    return self._pending(message, now)
            cert = issuance.approve(self._dir, record, now)
        return self._success(message, opened, (cert, *self._ids.chain), now, cert)

    def _get_cert(
        self, message: responder.IncomingMessage, opened: responder.OpenedRequest, now: dt.datetime
    ) -> Outcome:
        issuer, serial = self._issuer_and_serial(opened)
        cert = issuance.find_issued(self._dir, serial) if issuer else None
        if cert is None:
            raise _Reject(FailInfo.BAD_CERT_ID, ERROR_NOT_FOUND, "no such certificate")
        return self._success(message, opened, (cert,), now, cert)

    def _get_crl(
        self, message: responder.IncomingMessage, opened: responder.OpenedRequest, now: dt.datetime
    ) -> Outcome:
        issuer, _serial = self._issuer_and_serial(opened)
        if not issuer:
            raise _Reject(FailInfo.BAD_CERT_ID, E_INVALIDARG, "not this CA's certificate")
        with self._dir.locked():
            crl = issuance.current_crl(self._dir, now)
        content = responder.certs_only((), (crl.public_bytes(Encoding.DER),))
        body = responder.cert_rep_success(
            self._ids.responder, message, content=content, cipher=opened.cipher, now=now,
            rand=self._rand,
        )  # fmt: skip
        return Outcome(body, "SUCCESS crl")

    def _issuer_and_serial(self, opened: responder.OpenedRequest) -> tuple[bool, int]:
        """(whether the issuer is this CA, serial)."""
        try:
            issuer, serial = messagedata.parse_issuer_and_serial(opened.message_data)
        except ScepError:
            raise _Reject(
                FailInfo.BAD_REQUEST, E_INVALIDARG, "malformed IssuerAndSerialNumber"
            ) from None
        return same_name(self._ids.ca.subject, issuer), serial

    # --- answers ----------------------------------------------------------------------------

    def _success(
        self,
        message: responder.IncomingMessage,
        opened: responder.OpenedRequest,
        certificates: tuple[x509.Certificate, ...],
        now: dt.datetime,
        cert: x509.Certificate,
    ) -> Outcome:
        body = responder.cert_rep_success(
            self._ids.responder, message, content=responder.certs_only(certificates),
            cipher=opened.cipher, now=now, rand=self._rand,
        )  # fmt: skip
        return Outcome(body, f"SUCCESS serial={cert.serial_number:X}")

    def _pending(self, message: responder.IncomingMessage, now: dt.datetime) -> Outcome:
        body = responder.cert_rep_pending(self._ids.responder, message, now=now, rand=self._rand)
        return Outcome(body, "PENDING")


def _der(obj: x509.Certificate | x509.CertificateSigningRequest) -> bytes:
    return obj.public_bytes(Encoding.DER)


def _spki(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
