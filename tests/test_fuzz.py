"""Property tests: bytes from the network only ever produce a ScepError.

GetCACaps bodies, GetCACert bodies and CertReps come from a server we do not trust yet.  Their
parsers must either return or raise a :class:`scepd.errors.ScepError` subclass (which the CLI
turns into a documented exit status); any other exception is a bug (exit status 1, "unexpected
error").  Inputs are arbitrary bytes and single-byte mutations and truncations of real
captures (../shared/vectors).

The file also holds example-based tests of GetCACaps parsing and algorithm negotiation.
"""

from __future__ import annotations

import datetime as dt
import string
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from hypothesis import example, given, settings
from hypothesis import strategies as st

from scepd.errors import ScepError, UsageError
from scepd.protocol import oids
from scepd.protocol.algorithms import ContentCipher, Digest
from scepd.protocol.cacerts import CACertificates, classify, parse_ca_certs
from scepd.protocol.capabilities import Capabilities
from scepd.protocol.csr import public_key_info
from scepd.protocol.envelope import open_enveloped_data
from scepd.protocol.keys import SoftwareKey
from scepd.protocol.pkimessage import parse_cert_rep
from scepd.protocol.signeddata import build_signed_data, parse_signed_data

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors"
SMALLSTEP = VECTORS / "smallstep-scep"
MICROMDM = VECTORS / "micromdm-scepserver-2.1.0"

FUZZ = settings(max_examples=200, deadline=None, database=None)

pytestmark = pytest.mark.filterwarnings(
    # cryptography warns about malformed-but-loadable names in mutated certificates.
    "ignore::UserWarning",
    "ignore::DeprecationWarning",
)


# --------------------------------------------------------------------------------------------
# inputs, read once at import (explicit @example values need them)


def _read(path: Path) -> bytes:
    if not path.is_file():
        raise AssertionError(f"test vector {path} missing (expected ../shared/vectors)")
    return path.read_bytes()


MDM_CA_CERT = x509.load_pem_x509_certificate(_read(MICROMDM / "ca.pem"))
MDM_CA_DER = MDM_CA_CERT.public_bytes(Encoding.DER)
MDM_ISSUED = x509.load_pem_x509_certificate(_read(MICROMDM / "issued-success.pem"))
CERTS_ONLY = pkcs7.serialize_certificates([MDM_CA_CERT, MDM_ISSUED], Encoding.DER)

MDM_SUCCESS = _read(MICROMDM / "CertRep-success.der")
MDM_FAILURE = _read(MICROMDM / "CertRep-failure.der")
NDES = _read(SMALLSTEP / "testca2" / "CertRep_NoCertificatesForSigners.der")
NDES_RA = x509.load_pem_x509_certificate(_read(SMALLSTEP / "testca2" / "ca2.pem"))

MDM_CA = classify((MDM_CA_CERT,))
NDES_CA = classify((NDES_RA,))

MDM_CLIENT_KEY = serialization.load_pem_private_key(
    _read(MICROMDM / "client-success.key"), password=None
)
_mdm_req = parse_signed_data(_read(MICROMDM / "PKCSReq-success.der"))
MDM_CLIENT_CERT = _mdm_req.find_signer(_mdm_req.certificates)
MDM_ENVELOPE = parse_signed_data(MDM_SUCCESS).content


def _expected(data: bytes) -> tuple[str, bytes]:
    """transactionID and nonce that make the unmutated CertRep acceptable."""
    msg = parse_signed_data(data)
    return msg.attribute(oids.TRANSACTION_ID), msg.attribute(oids.RECIPIENT_NONCE)


MDM_SUCCESS_TID, MDM_SUCCESS_NONCE = _expected(MDM_SUCCESS)
MDM_FAILURE_TID, MDM_FAILURE_NONCE = _expected(MDM_FAILURE)
NDES_TID, NDES_NONCE = _expected(NDES)


def flip(data: bytes, index: int, mask: int = 0xFF) -> bytes:
    return data[:index] + bytes([data[index] ^ mask]) + data[index + 1 :]


def sid_issuer_offset(data: bytes) -> int:
    """Offset of the SignerInfo's issuerAndSerialNumber issuer Name in a SignedData.

    The same Name also appears in certificates, which come first: the last occurrence is the
    SignerInfo's."""
    info = cms.ContentInfo.load(data)
    issuer = info["content"]["signer_infos"][0]["sid"].chosen["issuer"].dump()
    return data.rfind(issuer)


def rid_issuer_offset(data: bytes) -> int:
    """Offset of the first KeyTransRecipientInfo's issuer Name in an EnvelopedData."""
    info = cms.ContentInfo.load(data)
    ri = info["content"]["recipient_infos"][0].chosen
    return data.find(ri["rid"].chosen["issuer"].dump())


# Known-bad inputs found by an exhaustive single-byte sweep (see the regression tests below):
# a mutated issuer Name in the SignerInfo/RecipientInfo identifier whose serial still matches.
# +2 is the tag of the first RDN SET (0x31 -> 0xCE, "private class").
MDM_SUCCESS_BAD_SID = flip(MDM_SUCCESS, sid_issuer_offset(MDM_SUCCESS) + 2)
MDM_FAILURE_BAD_SID = flip(MDM_FAILURE, sid_issuer_offset(MDM_FAILURE) + 2)
NDES_BAD_SID = flip(NDES, sid_issuer_offset(NDES) + 2)
NDES_BAD_SID_TEXT = flip(NDES, sid_issuer_offset(NDES) + 20)  # non-ASCII byte in a DC value
MDM_ENVELOPE_BAD_RID = flip(MDM_ENVELOPE, rid_issuer_offset(MDM_ENVELOPE) + 2)


def assert_only_scep_errors(what: str, func: Callable[[bytes], Any], data: bytes) -> Any:
    """Run ``func(data)``; a ScepError is fine, anything else fails with a clear message."""
    try:
        return func(data)
    except ScepError:
        return None
    except Exception as exc:  # any other exception is the bug this file looks for
        where = traceback.extract_tb(exc.__traceback__)
        scepd_frames = [f for f in where if "/scepd/" in f.filename.replace("\\", "/")]
        frame = scepd_frames[-1] if scepd_frames else where[-1]
        raise AssertionError(
            f"{what} raised {type(exc).__name__} (not a scepd.errors.ScepError) from "
            f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}(): {exc!s:.200} "
            f"-- input ({len(data)} bytes) starts {data[:48].hex()}"
        ) from exc


def mutations(base: bytes) -> st.SearchStrategy[bytes]:
    """One byte flipped, set, inserted or deleted, or the input truncated."""
    n = len(base)
    index = st.integers(0, n - 1)
    flipped = st.builds(flip, st.just(base), index, st.integers(1, 255))
    replaced = st.tuples(index, st.integers(0, 255)).map(
        lambda t: base[: t[0]] + bytes([t[1]]) + base[t[0] + 1 :]
    )
    inserted = st.tuples(st.integers(0, n), st.integers(0, 255)).map(
        lambda t: base[: t[0]] + bytes([t[1]]) + base[t[0] :]
    )
    deleted = index.map(lambda i: base[:i] + base[i + 1 :])
    truncated = st.integers(0, n - 1).map(lambda k: base[:k])
    return st.one_of(flipped, replaced, inserted, deleted, truncated)


# --------------------------------------------------------------------------------------------
# GetCACaps


@FUZZ
@given(st.binary(max_size=512))
def test_caps_parse_arbitrary_bytes(body):
    caps = Capabilities.parse(body)
    assert isinstance(caps.keywords, tuple)
    lowered = [k.lower() for k in caps.keywords]
    assert len(lowered) == len(set(lowered))  # each keyword once, whatever its case
    for keyword in caps.keywords:
        assert keyword and keyword == keyword.strip() and keyword.isprintable()
        assert caps.has(keyword) and caps.has(keyword.lower())
        if keyword.isascii():  # "ß".swapcase() is "SS": case folding is only exact for ASCII
            assert caps.has(keyword.swapcase())
    negotiated = caps.negotiate()  # never raises without an explicit legacy choice
    assert negotiated.cipher in (ContentCipher.AES128, ContentCipher.DES3)
    assert negotiated.digest in (Digest.SHA1, Digest.SHA256, Digest.SHA512)


_KEYWORD = st.text(alphabet=string.ascii_letters + string.digits + "-.", min_size=1, max_size=16)


@FUZZ
@given(
    keywords=st.lists(_KEYWORD, max_size=12),
    newline=st.sampled_from(["\n", "\r\n"]),
    pads=st.lists(st.sampled_from(["", " ", "\t", "  ", " \t"]), min_size=2, max_size=2),
    trailing=st.booleans(),
)
def test_caps_keywords_stripped_and_case_insensitive(keywords, newline, pads, trailing):
    body = newline.join(pads[0] + k + pads[1] for k in keywords) + (newline if trailing else "")
    caps = Capabilities.parse(body.encode("ascii"))
    first: dict[str, str] = {}
    for k in keywords:
        first.setdefault(k.lower(), k)
    assert caps.keywords == tuple(first.values())
    for k in keywords:
        assert caps.has(k)
        assert caps.has(k.lower())
        assert caps.has(k.upper())
        assert caps.has(k.swapcase())
    assert not caps.has("no-such-keyword-" + "x" * 17)  # longer than any generated keyword
    assert bool(caps) == bool(keywords)


def test_caps_crlf_equals_lf():
    lf = Capabilities.parse(b"AES\nPOSTPKIOperation\nSHA-256\n")
    crlf = Capabilities.parse(b"AES\r\nPOSTPKIOperation\r\nSHA-256\r\n")
    assert lf == crlf
    assert lf.keywords == ("AES", "POSTPKIOperation", "SHA-256")


def test_caps_stray_whitespace_and_blank_lines():
    caps = Capabilities.parse(b"\r\n  AES  \r\n\r\n\tSHA-512\t\n\n")
    assert caps.keywords == ("AES", "SHA-512")


@pytest.mark.parametrize("body", [b"", None, b"\n", b"\r\n\r\n", b"   \n\t\n"])
def test_caps_empty(body):
    caps = Capabilities.parse(body)
    assert caps.keywords == ()
    assert not caps
    assert not caps.post and not caps.aes and not caps.renewal and not caps.scep_standard
    assert caps.digests() == set()


def test_caps_unknown_keyword_kept():
    caps = Capabilities.parse(b"AES\nX-Vendor-Thing\nGetNextCACert\n")
    assert "X-Vendor-Thing" in caps.keywords
    assert caps.has("x-vendor-thing")
    assert caps.get_next_ca_cert


def test_caps_duplicate_keyword_once():
    caps = Capabilities.parse(b"AES\nSHA-256\naes\nAES\nsha-256\n")
    assert caps.keywords == ("AES", "SHA-256")  # first spelling wins


def test_caps_has_ignores_case():
    caps = Capabilities.parse(b"postpkioperation\nscepstandard\n")
    assert caps.has("POSTPKIOperation") and caps.post
    assert caps.scep_standard


# --------------------------------------------------------------------------------------------
# negotiation (RFC 8894 §3.5.2)


@pytest.mark.parametrize(
    ("body", "cipher"),
    [
        (b"AES\n", ContentCipher.AES128),
        (b"SCEPStandard\n", ContentCipher.AES128),
        (b"scepstandard\n", ContentCipher.AES128),
        (b"aes\nDES3\n", ContentCipher.AES128),
        (b"DES3\n", ContentCipher.DES3),
        (b"POSTPKIOperation\nSHA-256\n", ContentCipher.DES3),
        (b"Renewal\n", ContentCipher.DES3),
    ],
)
def test_negotiate_cipher(body, cipher):
    negotiated = Capabilities.parse(body).negotiate()
    assert negotiated.cipher is cipher
    assert negotiated.warnings == ()


@pytest.mark.parametrize(
    ("body", "digest"),
    [
        (b"SHA-1\nSHA-256\nSHA-512\n", Digest.SHA512),
        (b"SHA-512\nSHA-1\n", Digest.SHA512),
        (b"SHA-1\nSHA-256\n", Digest.SHA256),
        (b"SHA-256\n", Digest.SHA256),
        (b"SHA-1\n", Digest.SHA1),
        (b"AES\n", Digest.SHA1),
        (b"SCEPStandard\n", Digest.SHA256),  # SCEPStandard implies SHA-256
        (b"SCEPStandard\nSHA-512\n", Digest.SHA512),
        (b"sha-512\n", Digest.SHA512),
    ],
)
def test_negotiate_digest(body, digest):
    assert Capabilities.parse(body).negotiate().digest is digest


@pytest.mark.parametrize(
    ("body", "post"),
    [
        (b"POSTPKIOperation\n", True),
        (b"SCEPStandard\n", True),
        (b"AES\nSHA-256\n", False),
    ],
)
def test_negotiate_method(body, post):
    assert Capabilities.parse(body).negotiate().post is post


@pytest.mark.parametrize("body", [b"", None])
def test_negotiate_empty_caps(body):
    negotiated = Capabilities.parse(body).negotiate()
    assert negotiated.cipher is ContentCipher.DES3
    assert negotiated.digest is Digest.SHA1
    assert negotiated.post is False
    assert len(negotiated.warnings) == 1
    assert "no capabilities" in negotiated.warnings[0]


@pytest.mark.parametrize("caps", [b"", b"AES\nSHA-256\nPOSTPKIOperation\n", b"SCEPStandard\n"])
@pytest.mark.parametrize(
    "choice", [{"digest": Digest.MD5}, {"cipher": ContentCipher.DES}], ids=["md5", "des"]
)
def test_negotiate_legacy_needs_allow_legacy(caps, choice):
    parsed = Capabilities.parse(caps)
    with pytest.raises(UsageError, match="RFC 8894"):
        parsed.negotiate(**choice)
    negotiated = parsed.negotiate(**choice, allow_legacy=True)
    if "digest" in choice:
        assert negotiated.digest is Digest.MD5
    else:
        assert negotiated.cipher is ContentCipher.DES


def test_negotiate_explicit_choice_not_advertised_warns():
    negotiated = Capabilities.parse(b"DES3\nSHA-1\n").negotiate(
        digest=Digest.SHA256, cipher=ContentCipher.AES128
    )
    assert negotiated.digest is Digest.SHA256
    assert negotiated.cipher is ContentCipher.AES128
    assert len(negotiated.warnings) == 2
    assert any("SHA256" in w.upper() or "sha256" in w for w in negotiated.warnings)
    assert any("AES" in w for w in negotiated.warnings)


def test_negotiate_explicit_choice_advertised_no_warning():
    negotiated = Capabilities.parse(b"AES\nSHA-512\n").negotiate(
        digest=Digest.SHA512, cipher=ContentCipher.AES128
    )
    assert negotiated.warnings == ()


# --------------------------------------------------------------------------------------------
# GetCACert


def test_valid_getcacert_inputs_parse():
    single = parse_ca_certs(MDM_CA_DER)
    assert single.certificates == (MDM_CA_CERT,)
    bundle = parse_ca_certs(CERTS_ONLY)
    assert set(bundle.certificates) == {MDM_CA_CERT, MDM_ISSUED}
    assert bundle.ca_certs == (MDM_CA_CERT,)


def _check_ca_certs(result: CACertificates | None) -> None:
    if result is not None:
        assert result.certificates and result.ca_certs
        assert result.verifier in result.certificates
        assert result.recipient in result.certificates


@FUZZ
@given(st.binary(max_size=2048))
@example(b"")
@example(b"0")
@example(b"\x30\x80")
@example(b"\x30\x82\xff\xff")
@example(b"<html>503</html>")
def test_parse_ca_certs_arbitrary_bytes(body):
    _check_ca_certs(assert_only_scep_errors("parse_ca_certs", parse_ca_certs, body))


@FUZZ
@given(mutations(MDM_CA_DER))
def test_parse_ca_certs_mutated_der_certificate(body):
    _check_ca_certs(assert_only_scep_errors("parse_ca_certs", parse_ca_certs, body))


@FUZZ
@given(mutations(CERTS_ONLY))
def test_parse_ca_certs_mutated_certs_only_pkcs7(body):
    _check_ca_certs(assert_only_scep_errors("parse_ca_certs", parse_ca_certs, body))


# --------------------------------------------------------------------------------------------
# CertRep


def _cert_rep(ca: CACertificates, tid: str, nonce: bytes) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        return parse_cert_rep(data, ca=ca, transaction_id=tid, sender_nonce=nonce)

    return parse


parse_mdm_success = _cert_rep(MDM_CA, MDM_SUCCESS_TID, MDM_SUCCESS_NONCE)
parse_mdm_failure = _cert_rep(MDM_CA, MDM_FAILURE_TID, MDM_FAILURE_NONCE)
parse_ndes = _cert_rep(NDES_CA, NDES_TID, NDES_NONCE)


def test_unmutated_cert_reps_parse():
    assert parse_mdm_success(MDM_SUCCESS).status.name == "SUCCESS"
    assert parse_mdm_failure(MDM_FAILURE).status.name == "FAILURE"
    assert parse_ndes(NDES).status.name == "SUCCESS"


@FUZZ
@given(st.binary(max_size=2048))
@example(b"")
@example(b"\x30\x80\x00\x00")
@example(b"\x30\x03\x06\x01\x00")
def test_parse_cert_rep_arbitrary_bytes(data):
    assert_only_scep_errors("parse_cert_rep", parse_mdm_success, data)
    assert_only_scep_errors("parse_cert_rep", parse_ndes, data)


@FUZZ
@given(mutations(MDM_SUCCESS))
@example(MDM_SUCCESS_BAD_SID)  # known bug: ValueError from same_name(), see below
def test_parse_cert_rep_mutated_micromdm_success(data):
    rep = assert_only_scep_errors("parse_cert_rep", parse_mdm_success, data)
    if rep is not None:  # a mutation outside the signed part
        assert rep.transaction_id == MDM_SUCCESS_TID


@FUZZ
@given(mutations(MDM_FAILURE))
@example(MDM_FAILURE_BAD_SID)  # known bug: ValueError from same_name(), see below
def test_parse_cert_rep_mutated_micromdm_failure(data):
    rep = assert_only_scep_errors("parse_cert_rep", parse_mdm_failure, data)
    if rep is not None:
        assert rep.transaction_id == MDM_FAILURE_TID


@FUZZ
@given(mutations(NDES))
@example(NDES_BAD_SID)  # known bug: ValueError from same_name(), see below
@example(NDES_BAD_SID_TEXT)  # known bug: UnicodeDecodeError from same_name()
def test_parse_cert_rep_mutated_ndes(data):
    rep = assert_only_scep_errors("parse_cert_rep", parse_ndes, data)
    if rep is not None:
        assert rep.ms_disposition == "Issued"


def _open_mdm_envelope(data: bytes) -> Any:
    return open_enveloped_data(data, key=SoftwareKey(MDM_CLIENT_KEY), certificate=MDM_CLIENT_CERT)


def test_unmutated_envelope_opens():
    assert _open_mdm_envelope(MDM_ENVELOPE).cipher == "des"


@FUZZ
@given(mutations(MDM_ENVELOPE))
@example(MDM_ENVELOPE_BAD_RID)  # known bug: ValueError from same_name(), see below
def test_open_enveloped_data_mutated_micromdm(data):
    # The envelope is covered by the CertRep signature, but open_enveloped_data is also the
    # server-side decryption entry point, so it gets the same guarantee.
    assert_only_scep_errors("open_enveloped_data", _open_mdm_envelope, data)


# --------------------------------------------------------------------------------------------
# Regression tests for non-ScepError exceptions found on crafted CertReps (bugs in scepd/)


@pytest.mark.parametrize(
    ("parse", "data"),
    [
        (parse_mdm_success, MDM_SUCCESS_BAD_SID),
        (parse_mdm_failure, MDM_FAILURE_BAD_SID),
        (parse_ndes, NDES_BAD_SID),
        (parse_ndes, NDES_BAD_SID_TEXT),
    ],
    ids=["micromdm-success", "micromdm-failure", "ndes-rdn-tag", "ndes-non-ascii"],
)
def test_malformed_signer_issuer_name_is_a_scep_error(parse, data):
    """SignedMessage.find_signer() -> same_name() loads the sid's issuer Name with asn1crypto
    outside ``untrusted()``; asn1crypto's lazy parse raises ValueError/UnicodeDecodeError when a
    certificate's serial matches but the Name bytes are malformed."""
    assert_only_scep_errors("parse_cert_rep", parse, data)


def test_malformed_recipient_issuer_name_is_a_scep_error():
    """open_enveloped_data() filters recipients with same_name() outside ``untrusted()``."""
    assert_only_scep_errors("open_enveloped_data", _open_mdm_envelope, MDM_ENVELOPE_BAD_RID)


_NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def _crafted_cert(
    *, serial: int, extensions: list[dict[str, Any]], signature_algorithm: str
) -> x509.Certificate:
    """A certificate "issued by" the micromdm CA, with the micromdm client's key, signature
    not valid; only the structure matters."""
    key = SoftwareKey(MDM_CLIENT_KEY)
    tbs = asn1_x509.TbsCertificate(
        {
            "version": "v3",
            "serial_number": serial,
            "signature": {"algorithm": "sha256_rsa"},
            "issuer": asn1_x509.Name.load(MDM_CA_CERT.subject.public_bytes()),
            "validity": {
                "not_before": asn1_x509.Time({"utc_time": _NOW}),
                "not_after": asn1_x509.Time({"utc_time": _NOW + dt.timedelta(days=1)}),
            },
            "subject": asn1_x509.Name.build({"common_name": "crafted RA"}),
            "subject_public_key_info": public_key_info(key),
            "extensions": extensions,
        }
    )
    cert = asn1_x509.Certificate(
        {
            "tbs_certificate": tbs,
            "signature_algorithm": {"algorithm": signature_algorithm},
            "signature_value": b"\x00" * 256,
        }
    )
    return x509.load_der_x509_certificate(cert.dump())


def _crafted_cert_rep(signer: x509.Certificate, *, key_id: bytes | None = None) -> bytes:
    """A SUCCESS CertRep for (MDM_SUCCESS_TID, MDM_SUCCESS_NONCE) carrying ``signer``."""
    der = build_signed_data(
        content=b"\x00" * 32,
        signer_cert=signer,
        key=SoftwareKey(MDM_CLIENT_KEY),
        digest=Digest.SHA256,
        signing_time=_NOW,
        scep_attributes=[
            cms.CMSAttribute({"type": "message_type", "values": ["3"]}),
            cms.CMSAttribute({"type": "pki_status", "values": ["0"]}),
            cms.CMSAttribute({"type": "transaction_id", "values": [MDM_SUCCESS_TID]}),
            cms.CMSAttribute({"type": "recipient_nonce", "values": [MDM_SUCCESS_NONCE]}),
        ],
    )
    if key_id is None:
        return der
    info = cms.ContentInfo.load(der)
    signed_data = info["content"]
    signed_data["signer_infos"][0]["sid"] = cms.SignerIdentifier(
        name="subject_key_identifier", value=key_id
    )
    out: bytes = cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump(
        force=True
    )
    return out


def test_signer_certificate_with_unknown_signature_algorithm_is_a_scep_error():
    """_trusted_signer() -> verify_issued_by() reads ``cert.signature_hash_algorithm``, which
    raises cryptography.exceptions.UnsupportedAlgorithm for an unknown OID: anyone can send a
    CertRep whose embedded "RA" certificate names the CA as issuer."""
    signer = _crafted_cert(serial=77, extensions=[], signature_algorithm="1.2.3.4.5")
    data = _crafted_cert_rep(signer)
    assert parse_signed_data(data).find_signer(parse_signed_data(data).certificates) == signer
    assert_only_scep_errors("parse_cert_rep", parse_mdm_success, data)


def test_message_certificate_with_undecodable_issuer_is_a_scep_error():
    """find_signer() reads ``cert.issuer`` of the message's certificates; cryptography decodes
    the Name lazily and raises ValueError on a UTF8String that is not UTF-8."""
    crafted = _crafted_cert(serial=79, extensions=[], signature_algorithm="sha256_rsa")
    cert_der = crafted.public_bytes(Encoding.DER)
    printable_ou = b"\x13\x07SCEP CA"  # issuer OU=SCEP CA as PrintableString
    assert cert_der.count(printable_ou) == 1
    bad = x509.load_der_x509_certificate(
        cert_der.replace(printable_ou, b"\x0c\x07" + bytes(range(0xF9, 0x100))[::-1])
    )
    data = _crafted_cert_rep(bad)
    assert parse_signed_data(data).sid_issuer_serial[1] == 79
    assert_only_scep_errors("parse_cert_rep", parse_mdm_success, data)


def test_message_certificate_with_duplicate_extensions_is_a_scep_error():
    """find_signer() with a subjectKeyIdentifier sid reads ``cert.extensions`` of the message's
    certificates, which raises cryptography.x509.DuplicateExtension (not a ValueError)."""
    bc = {"extn_id": "basic_constraints", "critical": True, "extn_value": {"ca": False}}
    signer = _crafted_cert(serial=78, extensions=[bc, bc], signature_algorithm="sha256_rsa")
    data = _crafted_cert_rep(signer, key_id=b"\x01" * 20)
    assert parse_signed_data(data).sid_key_id == b"\x01" * 20
    assert_only_scep_errors("parse_cert_rep", parse_mdm_success, data)
