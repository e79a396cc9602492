"""GetCACert (RFC 8894 §4.2): CA and RA certificates, and which one does what.

Roles are chosen by basicConstraints and keyUsage, never by position: NDES returns Enrollment
Agent, CEP Encryption, root and issuing CA in no guaranteed order (protocol.md §2.3)."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from scepd.errors import FingerprintMismatch, MalformedMessage, SignatureInvalid, TrustError
from scepd.protocol.asn1util import untrusted
from scepd.protocol.fingerprint import Fingerprint
from scepd.protocol.signeddata import load_certificate, parse_certs_only, parse_signed_data

_SEQUENCE = 0x30


@dataclass(frozen=True)
class CACertificates:
    """A verified GetCACert response."""

    certificates: tuple[x509.Certificate, ...]  # as received
    ca_certs: tuple[x509.Certificate, ...]  # issuing CA first, root last
    ra_certs: tuple[x509.Certificate, ...]
    recipient: x509.Certificate  # requests are encrypted to this one
    verifier: x509.Certificate  # CertReps are expected to be signed by this one
    pinned: x509.Certificate | None

    @property
    def issuing_ca(self) -> x509.Certificate:
        """The CA that issues end-entity certificates (and so the RA certificates)."""
        if self.ra_certs:
            return _issuer_in(self.ra_certs[0], self.ca_certs) or self.ca_certs[0]
        return self.ca_certs[0]

    def role(self, cert: x509.Certificate) -> str:
        roles = ["RA"]
        if cert in self.ca_certs:
            roles = ["root CA" if _self_signed(cert) else "CA"]
        if self.ra_certs and cert == self.verifier:
            roles.append("signs responses")
        if self.ra_certs and cert == self.recipient:
            roles.append("request encryption")
        return ", ".join(roles)


def parse_ca_certs(body: bytes, *, pin: Fingerprint | None = None) -> CACertificates:
    """Parse a GetCACert body: one DER certificate or a certs-only PKCS#7, whatever the
    Content-Type said.  With ``pin``, a CA certificate must match it and every certificate used
    must chain to it."""
    return untrusted("GetCACert response", lambda: classify(_load(body), pin=pin))


def _load(body: bytes) -> tuple[x509.Certificate, ...]:
    if not body or body[0] != _SEQUENCE:
        raise MalformedMessage("GetCACert response is not DER (HTML or text?)")
    try:
        return (load_certificate(body),)
    except ValueError:
        pass
    certs, _crls = parse_certs_only(body, "GetCACert response")
    if not certs:
        raise MalformedMessage("GetCACert response holds no certificate")
    return certs


def classify(
    certs: tuple[x509.Certificate, ...], *, pin: Fingerprint | None = None
) -> CACertificates:
    if len(certs) == 1:
        ca_list = [certs[0]]  # a lone certificate is CA and RA at once (RFC 8894 §4.2.1.1)
        ra_list: list[x509.Certificate] = []
    else:
        ca_list = [c for c in certs if _is_ca(c)]
        ra_list = [c for c in certs if not _is_ca(c)]
        if not ca_list:
            raise TrustError("GetCACert response holds no CA certificate")
    ca_ordered = _order_chain(ca_list)
    pinned = None
    if pin is not None:
        pinned = next((c for c in ca_ordered if pin.matches(c)), None)
        if pinned is None:
            raise FingerprintMismatch(
                f"no CA certificate matches the pinned fingerprint {pin}; "
                "check the fingerprint with the CA administrator (NDES shows an MD5 one)"
            )
    # CAs above the pinned one (its issuers) are not trust anchors of ours: they are ignored.
    above_pin = _ancestors(pinned, ca_ordered) if pinned is not None else []
    trusted = [ca for ca in ca_ordered if ca not in above_pin]
    for ca in trusted:
        _verify_path(ca, ca_ordered, pinned)
    for ra in ra_list:
        issuer = _issuer_in(ra, trusted)
        if issuer is None:
            raise TrustError(
                f"RA certificate {ra.subject.rfc4514_string()} does not chain to a CA "
                "certificate of the GetCACert response"
            )
        verify_issued_by(ra, issuer)
    recipient = (
        _first(ra_list, x509.KeyUsage, "key_encipherment")
        or _first(ra_list, x509.KeyUsage, "data_encipherment")
        or trusted[0]
    )
    verifier = _first(ra_list, x509.KeyUsage, "digital_signature") or trusted[0]
    return CACertificates(
        certificates=tuple(certs),
        ca_certs=tuple(ca_ordered),
        ra_certs=tuple(ra_list),
        recipient=recipient,
        verifier=verifier,
        pinned=pinned,
    )


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return _self_signed(cert)  # a v1 root has no extensions


def _self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject


def _first(
    certs: list[x509.Certificate], ext_type: type[x509.KeyUsage], attr: str
) -> x509.Certificate | None:
    for cert in certs:
        try:
            usage = cert.extensions.get_extension_for_class(ext_type).value
        except x509.ExtensionNotFound:
            continue
        if getattr(usage, attr):
            return cert
    return None


def _issuer_in(
    cert: x509.Certificate, pool: list[x509.Certificate] | tuple[x509.Certificate, ...]
) -> x509.Certificate | None:
    return next((c for c in pool if c.subject == cert.issuer and c != cert), None)


def _ancestors(cert: x509.Certificate, pool: list[x509.Certificate]) -> list[x509.Certificate]:
    found: list[x509.Certificate] = []
    current = _issuer_in(cert, pool)
    while current is not None and current not in found and current != cert:
        found.append(current)
        current = _issuer_in(current, pool)
    return found


def _order_chain(cas: list[x509.Certificate]) -> list[x509.Certificate]:
    """Lowest CA first, root last: a CA that issued another CA of the set comes after it."""
    remaining = list(cas)
    ordered: list[x509.Certificate] = []
    while remaining:
        leaves = [
            c for c in remaining if not any(o.issuer == c.subject and o != c for o in remaining)
        ]
        if not leaves:  # a cycle of cross-signed certificates: keep what is left as received
            ordered.extend(remaining)
            break
        ordered.extend(leaves)
        remaining = [c for c in remaining if c not in leaves]
    return ordered


def _verify_path(
    cert: x509.Certificate, pool: list[x509.Certificate], pinned: x509.Certificate | None
) -> None:
    """Walk issuer links within the response, verifying each signature; with a pin, the walk
    must reach the pinned certificate."""
    seen: list[x509.Certificate] = []
    current = cert
    while True:
        if pinned is not None and current == pinned:
            return
        seen.append(current)
        issuer = _issuer_in(current, pool)
        if issuer is None or issuer in seen:
            if _self_signed(current):
                verify_issued_by(current, current)
            if pinned is not None:
                raise FingerprintMismatch(
                    f"CA certificate {cert.subject.rfc4514_string()} does not chain to the "
                    "pinned CA certificate"
                )
            return
        verify_issued_by(current, issuer)
        current = issuer


def verify_issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> None:
    """Check ``cert``'s signature with ``issuer``'s key (``verify_directly_issued_by`` needs
    cryptography 40)."""
    try:
        key = issuer.public_key()
        hash_alg = cert.signature_hash_algorithm
    except (UnsupportedAlgorithm, ValueError):
        raise TrustError(
            f"cannot verify {cert.subject.rfc4514_string()}: unsupported signature or key algorithm"
        ) from None
    try:
        if isinstance(key, rsa.RSAPublicKey) and hash_alg is not None:
            key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), hash_alg)
        elif isinstance(key, ec.EllipticCurvePublicKey) and hash_alg is not None:
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hash_alg))
        else:
            raise TrustError(f"cannot verify {cert.subject.rfc4514_string()}: unsupported key")
    except InvalidSignature:
        raise SignatureInvalid(
            f"certificate {cert.subject.rfc4514_string()} is not signed by "
            f"{issuer.subject.rfc4514_string()}"
        ) from None


def parse_next_ca_certs(body: bytes, *, current: CACertificates) -> tuple[x509.Certificate, ...]:
    """GetNextCACert (RFC 8894 §4.7.1): a SignedData whose signature must verify with the
    *current* CA (or its RA signing certificate) before its certificates are trusted."""

    def parse() -> tuple[x509.Certificate, ...]:
        msg = parse_signed_data(body, "GetNextCACert response", require_signed_attrs=False)
        signer = msg.find_signer(current.certificates)
        if signer is None:
            raise TrustError(
                "GetNextCACert response is not signed by the current CA or its RA certificate"
            )
        try:
            msg.verify(signer)
        except SignatureInvalid:
            raise SignatureInvalid(
                "GetNextCACert response is not signed by the current CA: its signature does "
                f"not verify with {signer.subject.rfc4514_string()}"
            ) from None
        if not msg.content:
            raise MalformedMessage("GetNextCACert response has no content")
        certs, _crls = parse_certs_only(msg.content, "GetNextCACert content")
        if not certs:
            raise MalformedMessage("GetNextCACert response holds no certificate")
        return certs

    return untrusted("GetNextCACert response", parse)
