"""GetCACert: roles by key usage, never by position; chains; fingerprint pins."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from pki import NdesPki, key, make_cert, ndes_pki

from scepd.errors import (
    FingerprintMismatch,
    MalformedMessage,
    SignatureInvalid,
    TrustError,
    UsageError,
)
from scepd.protocol.cacerts import classify, parse_ca_certs
from scepd.protocol.fingerprint import Fingerprint


@pytest.fixture(scope="module")
def pki() -> NdesPki:
    return ndes_pki()


def degenerate(certs: list) -> bytes:  # type: ignore[type-arg]
    return pkcs7.serialize_certificates(certs, Encoding.DER)


def pin(cert, alg: str = "sha256", sep: str = "") -> str:  # type: ignore[no-untyped-def]
    digest = hashlib.new(alg, cert.public_bytes(Encoding.DER)).hexdigest()
    return f"{alg}:" + sep.join(digest[i : i + 2] for i in range(0, len(digest), 2))


def test_roles_by_key_usage_in_every_order(pki: NdesPki) -> None:
    for order in itertools.permutations(pki.all):
        ca = parse_ca_certs(degenerate(list(order)))
        assert ca.recipient == pki.ra_enc, order
        assert ca.verifier == pki.ra_sign
        assert ca.ca_certs == (pki.issuing, pki.root)  # root last
        assert set(ca.ra_certs) == {pki.ra_sign, pki.ra_enc}
        assert ca.issuing_ca == pki.issuing


def test_single_der_certificate_is_ca_and_ra(pki: NdesPki) -> None:
    ca = parse_ca_certs(pki.root.public_bytes(Encoding.DER))
    assert ca.recipient == ca.verifier == pki.root
    assert ca.ra_certs == ()


def test_only_ca_certs_means_the_issuing_ca_does_everything(pki: NdesPki) -> None:
    ca = parse_ca_certs(degenerate([pki.root, pki.issuing]))
    assert ca.recipient == ca.verifier == pki.issuing


def test_ra_must_chain_to_a_ca_of_the_response(pki: NdesPki) -> None:
    stray_key = key()
    stray_ca = make_cert("Other CA", stray_key, None, stray_key, ca=True)
    stray_ra = make_cert("Stray RA", key(), stray_ca, stray_key, ca=False, key_encipherment=True)
    with pytest.raises(TrustError, match="does not chain"):
        parse_ca_certs(degenerate([stray_ra, pki.issuing, pki.root]))


def test_ra_with_forged_signature_is_refused(pki: NdesPki) -> None:
    # Named as issued by the issuing CA, but signed by another key.
    forged = make_cert("Forged RA", key(), pki.issuing, key(), ca=False, key_encipherment=True)
    with pytest.raises(SignatureInvalid):
        parse_ca_certs(degenerate([forged, pki.issuing, pki.root]))


@pytest.mark.parametrize("alg", ["sha256", "sha1", "md5"])
def test_pin_on_the_root_with_colons_and_case(pki: NdesPki, alg: str) -> None:
    text = pin(pki.root, alg, ":").upper()
    ca = parse_ca_certs(degenerate(pki.all), pin=Fingerprint.parse(text))
    assert ca.pinned == pki.root


def test_pin_on_the_issuing_ca(pki: NdesPki) -> None:
    ca = parse_ca_certs(degenerate(pki.all), pin=Fingerprint.parse(pin(pki.issuing)))
    assert ca.pinned == pki.issuing


def test_pin_on_an_ra_certificate_does_not_count(pki: NdesPki) -> None:
    with pytest.raises(FingerprintMismatch):
        parse_ca_certs(degenerate(pki.all), pin=Fingerprint.parse(pin(pki.ra_sign)))


def test_pin_mismatch(pki: NdesPki) -> None:
    with pytest.raises(FingerprintMismatch, match="NDES shows an MD5"):
        parse_ca_certs(degenerate(pki.all), pin=Fingerprint.parse("md5:" + "00" * 16))


def test_pinned_root_but_issuing_ca_from_elsewhere(pki: NdesPki) -> None:
    other_key = key()
    other_root = make_cert("Example Root CA", other_key, None, other_key, ca=True)
    # Same subject as the real root but another key: the issuing CA does not verify under it.
    with pytest.raises((FingerprintMismatch, SignatureInvalid)):
        classify((pki.issuing, other_root), pin=Fingerprint.parse(pin(other_root)))


@pytest.mark.parametrize(
    "text",
    ["sha256", "sha256:zz", "sha384:" + "00" * 48, "sha1:" + "00" * 19, "00" * 32],
)
def test_bad_fingerprint_text_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError):
        Fingerprint.parse(text)


@pytest.mark.parametrize("body", [b"", b"<html>", b"\x30\x03\x02\x01\x00", b"\x30"])
def test_garbage_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedMessage):
        parse_ca_certs(body)
