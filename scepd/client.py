"""SCEP operations: the sans-IO protocol composed with a transport.

The client supplies what the protocol leaves out on purpose: the clock, random bytes and the
HTTP exchanges.  Warnings the protocol returns are logged here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from scepd.errors import HttpError, NotSupportedByServer
from scepd.protocol.algorithms import ContentCipher, Digest
from scepd.protocol.cacerts import CACertificates, parse_ca_certs
from scepd.protocol.capabilities import Capabilities, Negotiated
from scepd.protocol.constants import PkiStatus
from scepd.protocol.csr import DEFAULT_KEY_USAGE, SubjectAltNames, build_csr
from scepd.protocol.fingerprint import Fingerprint
from scepd.protocol.keys import PrivateKey
from scepd.protocol.pkimessage import (
    PkiRequest,
    build_pkcs_req,
    issued_chain,
    open_cert_rep,
    parse_cert_rep,
    select_issued,
)
from scepd.protocol.signer import build_self_signed
from scepd.transport import Transport, check_response, encode_get_message

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


@dataclass(frozen=True)
class Issued:
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # issuing CA first, root last
    transaction_id: str


@dataclass(frozen=True)
class Pending:
    transaction_id: str


def transaction_id_for(key: PrivateKey) -> str:
    """Hex SHA-1 of the public key (as jscep and strongSwan send): the same key gives the same
    ID, so re-running a pending enrollment is recognised by NDES and OpenXPKI."""
    spki = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha1(spki, usedforsecurity=False).hexdigest().upper()


class ScepClient:
    def __init__(
        self,
        transport: Transport,
        *,
        ca_identifier: str | None = None,
        clock: Clock = utc_now,
        rand: Callable[[int], bytes] = os.urandom,
    ) -> None:
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
            body = check_response(response, self.server, "GetCACaps")
        except HttpError as exc:
            log.warning("GetCACaps failed (%s); assuming no capabilities", exc)
            return Capabilities()
        return Capabilities.parse(body)

    def get_ca(self, pin: Fingerprint | None = None) -> CACertificates:
        response = self._transport.get("GetCACert", self._message_param())
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
        pin: Fingerprint | None = None,
        algorithms: Algorithms = Algorithms(),
        negotiated: Negotiated | None = None,
        ca: CACertificates | None = None,
    ) -> Issued | Pending:
        """Initial enrollment: PKCSReq signed with a self-signed certificate (RFC 8894 §2.3).

        ``negotiated`` and ``ca`` let a caller that already fetched them (to fail early) avoid
        a second GetCACaps/GetCACert."""
        if negotiated is None:
            negotiated = self.negotiate(self.get_caps(), algorithms)
        ca = self.get_ca(pin) if ca is None else ca
        now = self._clock()
        csr = build_csr(
            key=key,
            subject=request.subject,
            sans=request.sans,
            key_usage=request.key_usage,
            extended_key_usage=request.extended_key_usage,
            challenge=request.challenge,
            challenge_utf8=request.challenge_utf8,
            digest=negotiated.digest,
        )
        signer = build_self_signed(
            key=key,
            subject=request.subject,
            serial=int.from_bytes(self._rand(16), "big") >> 1 or 1,
            not_before=now - dt.timedelta(hours=1),
            not_after=now + dt.timedelta(days=1),
            digest=negotiated.digest,
        )
        pki_request = build_pkcs_req(
            csr=csr,
            recipient=ca.recipient,
            signer_cert=signer,
            key=key,
            transaction_id=transaction_id_for(key),
            now=now,
            cipher=negotiated.cipher,
            digest=negotiated.digest,
            rand=self._rand,
        )
        rep = parse_cert_rep(
            self._pki_operation(pki_request, negotiated.post),
            ca=ca,
            transaction_id=pki_request.transaction_id,
            sender_nonce=pki_request.sender_nonce,
        )
        if rep.status is PkiStatus.PENDING:
            return Pending(pki_request.transaction_id)
        if rep.status is PkiStatus.FAILURE:
            raise rep.rejection(self.server)
        content = open_cert_rep(rep, key=key, certificate=signer)
        for warning in content.warnings:
            log.warning("%s", warning)
        issued, extra = select_issued(content.certificates, csr)
        return Issued(issued, issued_chain(issued, extra, ca), pki_request.transaction_id)

    def _pki_operation(self, request: PkiRequest, post: bool) -> bytes:
        if post:
            response = self._transport.post("PKIOperation", request.der)
        else:
            response = self._transport.get("PKIOperation", encode_get_message(request.der))
        if response.status in (405, 501):
            raise NotSupportedByServer(
                f"{self.server}: PKIOperation answered HTTP {response.status} (not implemented)"
            )
        return check_response(response, self.server, "PKIOperation")
