"""Protocol tests on real captured SCEP messages (../shared/vectors, see its README.md).

Each section names the peer the bytes come from.  Nothing here opens a socket: the sans-IO
protocol code is fed the exact bytes a real server or client sent.

The same file must pass on the project venv (cryptography 50) and on Debian bookworm's
python3 (cryptography 38.0.4, asn1crypto 1.5.1), so it only uses APIs both have (no
``load_pem_x509_certificates``, no ``OAEP.algorithm``...).
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pytest
from asn1crypto import csr as asn1_csr
from conftest import decrypt_empty_passphrase
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from scepd.errors import (
    EXIT_REJECTED,
    CARejected,
    CertificateMismatch,
    ChallengeEncodingError,
    MalformedMessage,
    ResponseMismatch,
    SignatureInvalid,
    TrustError,
    UsageError,
)
from scepd.protocol import envelope as envelope_mod
from scepd.protocol import oids
from scepd.protocol.algorithms import ContentCipher, Digest
from scepd.protocol.asn1util import tlvs
from scepd.protocol.cacerts import classify, parse_ca_certs
from scepd.protocol.constants import FailInfo, PkiStatus
from scepd.protocol.csr import SubjectAltNames, build_csr, read_challenge_encoding
from scepd.protocol.envelope import open_enveloped_data
from scepd.protocol.keys import SoftwareKey
from scepd.protocol.pkimessage import (
    NONCE_SIZE,
    build_pkcs_req,
    open_cert_rep,
    parse_cert_rep,
    select_issued,
    spki_of,
)
from scepd.protocol.signeddata import parse_certs_only, parse_signed_data
from scepd.protocol.signer import build_self_signed

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors"
SMALLSTEP = VECTORS / "smallstep-scep"
MICROMDM = VECTORS / "micromdm-scepserver-2.1.0"
JSCEP = VECTORS / "jscep"

# The Apple/etcd-ca vectors have a 3-letter country name ("USA"): cryptography warns about it.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Country names should be two characters:UserWarning",
    "ignore:Attribute's length must be:UserWarning",
)


# --------------------------------------------------------------------------------------------
# helpers


def read(path: Path) -> bytes:
    if not path.is_file():
        raise AssertionError(
            f"test vector {path} missing: the shared vectors must sit at ../shared/vectors "
            "relative to the repository root"
        )
    return path.read_bytes()


def pem_certs(path: Path) -> list[x509.Certificate]:
    """All certificates of a PEM file (``load_pem_x509_certificates`` needs cryptography 39)."""
    text = read(path).decode("ascii")
    end = "-----END CERTIFICATE-----"
    blocks = [b + end for b in text.split(end) if "-----BEGIN CERTIFICATE-----" in b]
    return [x509.load_pem_x509_certificate(b.encode("ascii")) for b in blocks]


def pem_cert(path: Path) -> x509.Certificate:
    (cert,) = pem_certs(path)
    return cert


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def cn(name: x509.Name) -> str:
    (attr,) = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attr.value)


def load_key(path: Path) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(read(path), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def load_pem_key_empty_passphrase(pem: bytes) -> rsa.RSAPrivateKey:
    """An OpenSSL "traditional" PEM key encrypted with an EMPTY passphrase (micromdm's depot
    format); cryptography versions disagree on ``password=b""``, so openssl decrypts it."""
    key = serialization.load_pem_private_key(decrypt_empty_passphrase(pem), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def oaep_hash(pad: padding.OAEP) -> hashes.HashAlgorithm:
    """``OAEP.algorithm`` is public only in newer cryptography; 38 has just ``_algorithm``."""
    return getattr(pad, "algorithm", None) or pad._algorithm


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0xFF]) + data[index + 1 :]


# --------------------------------------------------------------------------------------------
# 1. Microsoft NDES CertRep (smallstep testca2): signer certificate absent, OAEP, AES-128

NDES_TID = "HVvzN0228V+AW+dUuDe8OPyDXD0="


@pytest.fixture(scope="module")
def ndes() -> bytes:
    return read(SMALLSTEP / "testca2" / "CertRep_NoCertificatesForSigners.der")


@pytest.fixture(scope="module")
def ndes_ca():
    return classify(tuple(pem_certs(SMALLSTEP / "testca2" / "ca2.pem")))


def ndes_nonce(data: bytes) -> bytes:
    nonce = parse_signed_data(data).attribute(oids.RECIPIENT_NONCE)
    assert isinstance(nonce, bytes) and len(nonce) == 16
    return nonce


def test_ndes_ca2_pem_holds_the_ra_certificate(ndes_ca):
    # README says "RA and CA certificates", but the file holds the RA certificate only.
    ra = next(c for c in ndes_ca.certificates if cn(c.subject) == "CERT-PROV-CA-MSCEP-RA")
    eku = ra.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.ObjectIdentifier(oids.MS_ENROLLMENT_AGENT) in eku
    assert ra.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature


def test_ndes_signer_certificate_is_not_in_the_message(ndes, ndes_ca):
    msg = parse_signed_data(ndes)
    assert msg.certificates == ()
    assert msg.find_signer(msg.certificates) is None
    assert msg.sid_issuer_serial is not None
    # ...but it is among the GetCACert certificates, found by issuerAndSerialNumber.
    signer = msg.find_signer(ndes_ca.certificates)
    assert signer is not None
    assert cn(signer.subject) == "CERT-PROV-CA-MSCEP-RA"
    assert msg.digest_algorithm == "sha1"


def test_ndes_cert_rep_verifies_with_getcacert_ra(ndes, ndes_ca):
    rep = parse_cert_rep(ndes, ca=ndes_ca, transaction_id=NDES_TID, sender_nonce=ndes_nonce(ndes))
    assert rep.status is PkiStatus.SUCCESS
    assert rep.ms_disposition == "Issued"
    assert rep.fail_info is None
    assert rep.transaction_id == NDES_TID
    assert rep.digest_algorithm == "sha1"
    assert cn(rep.signer.subject) == "CERT-PROV-CA-MSCEP-RA"
    assert rep.envelope == parse_signed_data(ndes).content


def test_ndes_signed_attributes(ndes):
    msg = parse_signed_data(ndes)
    assert msg.attribute(oids.MESSAGE_TYPE) == "3"
    assert msg.attribute(oids.PKI_STATUS) == "0"
    assert msg.attribute(oids.TRANSACTION_ID) == NDES_TID
    assert msg.attribute(oids.MS_DISPOSITION) == "Issued"
    assert len(msg.attribute(oids.SENDER_NONCE)) == 16
    assert msg.attribute(oids.CONTENT_TYPE) == oids.ID_DATA


def test_ndes_wrong_transaction_id(ndes, ndes_ca):
    with pytest.raises(ResponseMismatch, match="transactionID"):
        parse_cert_rep(
            ndes, ca=ndes_ca, transaction_id=NDES_TID[:-2] + "A=", sender_nonce=ndes_nonce(ndes)
        )


def test_ndes_wrong_nonce(ndes, ndes_ca):
    nonce = bytearray(ndes_nonce(ndes))
    nonce[0] ^= 1
    with pytest.raises(ResponseMismatch, match="recipientNonce"):
        parse_cert_rep(ndes, ca=ndes_ca, transaction_id=NDES_TID, sender_nonce=bytes(nonce))


def test_ndes_pool_without_ra_certificate(ndes):
    other = classify((pem_cert(MICROMDM / "ca.pem"),))
    with pytest.raises(TrustError, match="neither in the message nor among"):
        parse_cert_rep(ndes, ca=other, transaction_id=NDES_TID, sender_nonce=ndes_nonce(ndes))


def test_ndes_oaep_recipient_is_recognised(ndes):
    parsed = envelope_mod._parse(parse_signed_data(ndes).content)
    assert parsed.cipher == "aes128_cbc"
    assert len(parsed.iv) == 16
    assert parsed.ciphertext and len(parsed.ciphertext) % 16 == 0
    assert len(parsed.recipients) == 1
    _issuer, serial, transport, pad, wrapped = parsed.recipients[0]
    assert transport == "rsaes_oaep"
    assert isinstance(pad, padding.OAEP)
    assert isinstance(oaep_hash(pad), hashes.SHA1)  # default RSAES-OAEP-params
    assert serial is not None
    assert len(wrapped) in (128, 256, 512)


def test_ndes_flipped_signature_byte(ndes, ndes_ca):
    signature = parse_signed_data(ndes).signature
    at = ndes.find(signature)
    assert at > 0 and ndes.find(signature, at + 1) == -1
    tampered = flip(ndes, at + len(signature) // 2)
    with pytest.raises((SignatureInvalid, TrustError)):
        parse_cert_rep(tampered, ca=ndes_ca, transaction_id=NDES_TID, sender_nonce=ndes_nonce(ndes))


def test_ndes_flipped_signed_attribute_byte(ndes, ndes_ca):
    # The transactionID is inside the signed attributes: changing it breaks the signature.
    at = ndes.find(NDES_TID.encode())
    tampered = ndes[:at] + b"X" + ndes[at + 1 :]
    with pytest.raises(SignatureInvalid):
        parse_cert_rep(
            tampered, ca=ndes_ca, transaction_id="X" + NDES_TID[1:], sender_nonce=ndes_nonce(ndes)
        )


# --------------------------------------------------------------------------------------------
# 2. jscep samples: PKCS#10 -> EnvelopedData -> SignedData, and the answer


JSCEP_TID = "7XXEY-ERLPU-2JDR9"


def test_jscep_req0_challenge_is_printable_string():
    csr_der = read(JSCEP / "scep_req0.der")
    assert read_challenge_encoding(csr_der) == "printable_string"
    request = asn1_csr.CertificationRequest.load(csr_der)
    values = {
        a["type"].native: a["values"] for a in request["certification_request_info"]["attributes"]
    }
    assert values["challenge_password"][0].native == "NQ3C6-GS3ZN-2XPGL-SEJTQ"
    csr = x509.load_der_x509_csr(csr_der)
    assert csr.is_signature_valid
    assert cn(csr.subject) == "Test SCEP PKI user"
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == ["dave@wetas-r-us.com"]


def test_jscep_req2_is_signed_pkcs_req():
    msg = parse_signed_data(read(JSCEP / "scep_req2.der"))
    assert msg.attribute(oids.MESSAGE_TYPE) == "19"
    assert msg.attribute(oids.TRANSACTION_ID) == JSCEP_TID
    nonce = msg.attribute(oids.SENDER_NONCE)
    assert isinstance(nonce, bytes) and len(nonce) == 16
    assert msg.digest_algorithm == "sha256"
    assert msg.content == read(JSCEP / "scep_req1.der")  # layer 2 wraps layer 1
    signer = msg.find_signer(msg.certificates)
    assert signer is not None and signer.issuer == signer.subject  # self-signed
    msg.verify(signer)
    parsed = envelope_mod._parse(msg.content)
    assert parsed.cipher == "aes128_cbc"
    assert [r[2] for r in parsed.recipients] == ["rsaes_pkcs1v15"]


def test_jscep_resp2_answers_req2():
    req = parse_signed_data(read(JSCEP / "scep_req2.der"))
    rep = parse_signed_data(read(JSCEP / "scep_resp2.der"))
    assert rep.attribute(oids.MESSAGE_TYPE) == "3"
    assert rep.attribute(oids.PKI_STATUS) == "0"
    assert rep.attribute(oids.RECIPIENT_NONCE) == req.attribute(oids.SENDER_NONCE)
    assert rep.attribute(oids.TRANSACTION_ID) == req.attribute(oids.TRANSACTION_ID) == JSCEP_TID
    assert rep.content == read(JSCEP / "scep_resp1.der")
    signer = rep.find_signer(rep.certificates)
    assert signer is not None
    assert cn(signer.subject) == "Dave's SCEP CA"
    rep.verify(signer)
    # The response is encrypted to the request's self-signed signer certificate.
    req_signer = req.find_signer(req.certificates)
    (recipient,) = envelope_mod._parse(rep.content).recipients
    assert recipient[1] == req_signer.serial_number


def test_jscep_resp2_through_parse_cert_rep():
    req = parse_signed_data(read(JSCEP / "scep_req2.der"))
    data = read(JSCEP / "scep_resp2.der")
    ca = classify(parse_signed_data(data).certificates)
    rep = parse_cert_rep(
        data, ca=ca, transaction_id=JSCEP_TID, sender_nonce=req.attribute(oids.SENDER_NONCE)
    )
    assert rep.status is PkiStatus.SUCCESS
    assert cn(rep.signer.subject) == "Dave's SCEP CA"


def test_jscep_resp0_holds_the_certificate_for_req0():
    certs, crls = parse_certs_only(read(JSCEP / "scep_resp0.der"), "resp0")
    csr = x509.load_der_x509_csr(read(JSCEP / "scep_req0.der"))
    assert crls == ()
    issued, chain = select_issued(certs, spki_of(csr))
    assert cn(issued.subject) == "Test SCEP PKI user"
    assert chain == ()


# --------------------------------------------------------------------------------------------
# 3. Apple MDM PKCSReq (smallstep): server side, 3DES, CSR with version 2


@pytest.fixture(scope="module")
def apple_ca_key() -> rsa.RSAPrivateKey:
    return load_pem_key_empty_passphrase(read(SMALLSTEP / "testca" / "ca.key"))


@pytest.fixture(scope="module")
def apple_ca_cert() -> x509.Certificate:
    return pem_cert(SMALLSTEP / "testca" / "ca.pem")


def test_apple_ca_key_matches_ca_certificate(apple_ca_key, apple_ca_cert):
    assert apple_ca_key.public_key().public_numbers() == apple_ca_cert.public_key().public_numbers()


def test_apple_pkcs_req_signature(apple_ca_cert):
    msg = parse_signed_data(read(SMALLSTEP / "PKCSReq.der"))
    assert msg.attribute(oids.MESSAGE_TYPE) == "19"
    assert msg.digest_algorithm == "sha1"
    signer = msg.find_signer(msg.certificates)
    assert signer is not None
    assert cn(signer.subject) == "MDM SCEP SIGNER"
    assert signer.issuer == signer.subject
    msg.verify(signer)


def test_apple_pkcs_req_decrypts_to_csr(apple_ca_key, apple_ca_cert):
    msg = parse_signed_data(read(SMALLSTEP / "PKCSReq.der"))
    opened = open_enveloped_data(
        msg.content, key=SoftwareKey(apple_ca_key), certificate=apple_ca_cert
    )
    assert opened.cipher == "tripledes_3key"
    assert opened.key_transport == "rsaes_pkcs1v15"
    request = asn1_csr.CertificationRequest.load(opened.content)
    info = request["certification_request_info"]
    assert info["version"].native == 2  # non-standard: PKCS#10 only defines v1 (0)
    subject = info["subject"].native
    assert subject["common_name"].startswith("com.apple.security.scep.")
    (rdn,) = info["subject"].chosen
    assert rdn[0]["value"].name == "utf8_string"
    try:
        csr = x509.load_der_x509_csr(opened.content)
    except (ValueError, x509.InvalidVersion):
        pass  # cryptography refuses version 2 ("2 is not a valid CSR version"): expected
    else:
        assert cn(csr.subject).startswith("com.apple.security.scep.")


def test_apple_cert_rep_answers_pkcs_req(apple_ca_cert):
    """The older micromdm CertRep in the same folder answers this PKCSReq (same transaction)."""
    req = parse_signed_data(read(SMALLSTEP / "PKCSReq.der"))
    data = read(SMALLSTEP / "CertRep.der")
    rep = parse_cert_rep(
        data,
        ca=classify((apple_ca_cert,)),
        transaction_id=req.attribute(oids.TRANSACTION_ID),
        sender_nonce=req.attribute(oids.SENDER_NONCE),
    )
    assert rep.status is PkiStatus.SUCCESS
    assert rep.signer == apple_ca_cert
    assert envelope_mod._parse(rep.envelope).cipher == "des"


# --------------------------------------------------------------------------------------------
# 4. micromdm scepserver 2.1.0 capture: decryptable, BER, single DES


@pytest.fixture(scope="module")
def mdm_ca():
    return parse_ca_certs(der(pem_cert(MICROMDM / "ca.pem")))


def _request(name: str):
    msg = parse_signed_data(read(MICROMDM / name))
    signer = msg.find_signer(msg.certificates)
    assert signer is not None
    return msg, signer


def test_micromdm_getcacert_single_der(mdm_ca):
    assert mdm_ca.certificates == (pem_cert(MICROMDM / "ca.pem"),)
    assert mdm_ca.ra_certs == ()
    assert mdm_ca.verifier == mdm_ca.recipient == mdm_ca.ca_certs[0]


def test_micromdm_success(mdm_ca):
    req, signer = _request("PKCSReq-success.der")
    assert cn(signer.subject) == "SCEP SIGNER"
    req.verify(signer)
    tid = req.attribute(oids.TRANSACTION_ID)
    nonce = req.attribute(oids.SENDER_NONCE)
    data = read(MICROMDM / "CertRep-success.der")
    rep = parse_cert_rep(data, ca=mdm_ca, transaction_id=tid, sender_nonce=nonce)
    assert rep.status is PkiStatus.SUCCESS
    assert rep.signer == mdm_ca.verifier
    assert rep.digest_algorithm == "sha1"
    assert parse_signed_data(data).attribute(oids.SENDER_NONCE) == nonce  # micromdm echoes it

    key = load_key(MICROMDM / "client-success.key")
    issued = open_cert_rep(rep, key=SoftwareKey(key), certificate=signer)
    assert issued.cipher == "des"
    assert issued.key_transport == "rsaes_pkcs1v15"
    assert len(issued.warnings) == 1
    assert "DES" in issued.warnings[0]
    expected = pem_cert(MICROMDM / "issued-success.pem")
    assert expected in issued.certificates
    assert issued.certificates[0] == expected
    assert cn(expected.subject) == "captest"

    csr = build_csr(
        key=SoftwareKey(key), subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    )
    cert, chain = select_issued(issued.certificates, spki_of(csr))
    assert cert == expected
    assert expected not in chain


def test_micromdm_envelope_is_ber(mdm_ca):
    """The encryptedContent [0] is constructed (chunked), which asn1crypto refuses as is."""
    env = parse_signed_data(read(MICROMDM / "CertRep-success.der")).content
    ((_c, _m, _t, content_info),) = tlvs(env)  # ContentInfo
    explicit = tlvs(content_info)[1][3]  # [0] EXPLICIT
    ((_c, _m, _t, enveloped),) = tlvs(explicit)  # EnvelopedData
    eci = tlvs(enveloped)[-1][3]  # EncryptedContentInfo
    class_, method, tag, _contents = tlvs(eci)[-1]
    assert (class_, tag) == (2, 0)  # [0] IMPLICIT encryptedContent
    assert method == 1  # constructed: BER


def test_micromdm_select_issued_refuses_other_key():
    issued = pem_cert(MICROMDM / "issued-success.pem")
    other = SoftwareKey(load_key(MICROMDM / "client-failure.key"))
    csr = build_csr(key=other, subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
    with pytest.raises(CertificateMismatch):
        select_issued((issued,), spki_of(csr))


def test_micromdm_wrong_key_cannot_open(mdm_ca):
    req, signer = _request("PKCSReq-success.der")
    rep = parse_cert_rep(
        read(MICROMDM / "CertRep-success.der"),
        ca=mdm_ca,
        transaction_id=req.attribute(oids.TRANSACTION_ID),
        sender_nonce=req.attribute(oids.SENDER_NONCE),
    )
    other = SoftwareKey(load_key(MICROMDM / "client-failure.key"))
    with pytest.raises(TrustError):
        open_cert_rep(rep, key=other, certificate=signer)


def test_micromdm_failure(mdm_ca):
    req, signer = _request("PKCSReq-badchallenge.der")
    data = read(MICROMDM / "CertRep-failure.der")
    assert parse_signed_data(data).content == b""  # eContent present but empty
    rep = parse_cert_rep(
        data,
        ca=mdm_ca,
        transaction_id=req.attribute(oids.TRANSACTION_ID),
        sender_nonce=req.attribute(oids.SENDER_NONCE),
    )
    assert rep.status is PkiStatus.FAILURE
    assert rep.fail_info is FailInfo.BAD_REQUEST
    assert rep.envelope is None
    error = rep.rejection("srv")
    assert isinstance(error, CARejected)
    assert error.exit_code == EXIT_REJECTED == 4
    assert "badRequest" in str(error)
    assert str(error).startswith("srv ")
    assert error.fail_info == "badRequest"
    with pytest.raises(MalformedMessage, match="no envelope"):
        open_cert_rep(
            rep, key=SoftwareKey(load_key(MICROMDM / "client-failure.key")), certificate=signer
        )


def test_micromdm_failure_does_not_answer_success_request(mdm_ca):
    req, _signer = _request("PKCSReq-success.der")
    with pytest.raises(ResponseMismatch):
        parse_cert_rep(
            read(MICROMDM / "CertRep-failure.der"),
            ca=mdm_ca,
            transaction_id=req.attribute(oids.TRANSACTION_ID),
            sender_nonce=req.attribute(oids.SENDER_NONCE),
        )


# --------------------------------------------------------------------------------------------
# 5. Round trip through the protocol's own builders, the test acting as the server

NOW = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
SUBJECT = x509.Name(
    [
        x509.NameAttribute(NameOID.COMMON_NAME, "client.example.org"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example"),
    ]
)
SANS = SubjectAltNames(
    dns=("client.example.org", "alt.example.org"), ip=("192.0.2.7",), email=("ops@example.org",)
)


@pytest.fixture(scope="module")
def ca_pair():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "scepd test CA")])
    naive = NOW.replace(tzinfo=None)  # cryptography 38 wants naive UTC
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(0x5CE9D)
        .not_valid_before(naive - dt.timedelta(days=1))
        .not_valid_after(naive + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


@pytest.fixture(scope="module")
def client_key() -> SoftwareKey:
    return SoftwareKey(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="module")
def csr(client_key):
    return build_csr(key=client_key, subject=SUBJECT, sans=SANS, challenge="Secret-123")


@pytest.fixture(scope="module")
def signer_cert(client_key):
    return build_self_signed(
        key=client_key,
        subject=SUBJECT,
        serial=0x1234567,
        not_before=NOW - dt.timedelta(hours=1),
        not_after=NOW + dt.timedelta(days=7),
    )


def test_generated_ca_classifies(ca_pair):
    _key, cert = ca_pair
    ca = parse_ca_certs(der(cert))
    assert ca.ca_certs == (cert,)
    assert ca.recipient == cert


def test_built_csr(csr, client_key):
    assert csr.is_signature_valid
    assert csr.subject == SUBJECT
    csr_der = csr.public_bytes(Encoding.DER)
    assert read_challenge_encoding(csr_der) == "printable_string"
    request = asn1_csr.CertificationRequest.load(csr_der)
    attrs = {
        a["type"].native: a["values"] for a in request["certification_request_info"]["attributes"]
    }
    assert attrs["challenge_password"][0].native == "Secret-123"
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == list(SANS.dns)
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == list(SANS.ip)
    assert san.get_values_for_type(x509.RFC822Name) == list(SANS.email)
    ku = csr.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and ku.key_encipherment
    assert csr.public_key().public_numbers() == client_key.public_key().public_numbers()


def test_built_self_signed(signer_cert, client_key):
    assert signer_cert.subject == signer_cert.issuer == SUBJECT
    assert signer_cert.public_key().public_numbers() == client_key.public_key().public_numbers()
    ku = signer_cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and ku.key_encipherment
    assert not signer_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    client_key.public_key().verify(
        signer_cert.signature,
        signer_cert.tbs_certificate_bytes,
        padding.PKCS1v15(),
        signer_cert.signature_hash_algorithm,
    )


@pytest.mark.parametrize("cipher", [ContentCipher.AES128, ContentCipher.DES3], ids=str)
@pytest.mark.parametrize("digest", [Digest.SHA1, Digest.SHA256, Digest.SHA512], ids=str)
def test_pkcs_req_round_trip(ca_pair, client_key, csr, signer_cert, cipher, digest):
    ca_key, ca_cert = ca_pair
    tid = f"scepd-test-{cipher.name}-{digest.name}"
    req = build_pkcs_req(
        csr=csr,
        recipient=ca_cert,
        signer_cert=signer_cert,
        key=client_key,
        transaction_id=tid,
        now=NOW,
        cipher=cipher,
        digest=digest,
        rand=random.Random(1).randbytes,
    )
    assert req.transaction_id == tid
    assert req.sender_nonce == random.Random(1).randbytes(NONCE_SIZE)  # rand's first draw

    # --- the server's side
    msg = parse_signed_data(req.der)
    assert msg.certificates == (signer_cert,)
    found = msg.find_signer(msg.certificates)
    assert found == signer_cert
    msg.verify(found)
    assert msg.digest_algorithm == digest.asn1_name
    assert msg.attribute(oids.MESSAGE_TYPE) == "19"
    assert msg.attribute(oids.TRANSACTION_ID) == tid
    nonce = msg.attribute(oids.SENDER_NONCE)
    assert isinstance(nonce, bytes) and len(nonce) == 16
    assert nonce == req.sender_nonce
    assert msg.attribute(oids.SIGNING_TIME) == NOW
    assert msg.attribute(oids.CONTENT_TYPE) == oids.ID_DATA
    assert msg.attribute(oids.RECIPIENT_NONCE) is None

    opened = open_enveloped_data(msg.content, key=SoftwareKey(ca_key), certificate=ca_cert)
    assert opened.cipher == cipher.asn1_name
    assert opened.key_transport == "rsaes_pkcs1v15"
    assert opened.content == csr.public_bytes(Encoding.DER)
    assert read_challenge_encoding(opened.content) == "printable_string"
    assert x509.load_der_x509_csr(opened.content) == csr


def test_pkcs_req_is_not_for_another_recipient(ca_pair, client_key, csr, signer_cert):
    _ca_key, ca_cert = ca_pair
    req = build_pkcs_req(
        csr=csr,
        recipient=ca_cert,
        signer_cert=signer_cert,
        key=client_key,
        transaction_id="t",
        now=NOW,
        cipher=ContentCipher.AES128,
        digest=Digest.SHA256,
        rand=random.Random(2).randbytes,
    )
    msg = parse_signed_data(req.der)
    # Decrypting with a key that is not the recipient's fails with a ScepError.
    with pytest.raises(TrustError):
        open_enveloped_data(msg.content, key=client_key, certificate=None)


def test_tampered_pkcs_req_content_fails_digest(ca_pair, client_key, csr, signer_cert):
    _ca_key, ca_cert = ca_pair
    req = build_pkcs_req(
        csr=csr,
        recipient=ca_cert,
        signer_cert=signer_cert,
        key=client_key,
        transaction_id="t",
        now=NOW,
        cipher=ContentCipher.DES3,
        digest=Digest.SHA256,
        rand=random.Random(3).randbytes,
    )
    msg = parse_signed_data(req.der)
    at = req.der.find(msg.content) + len(msg.content) - 1  # last ciphertext byte
    tampered = parse_signed_data(flip(req.der, at))
    with pytest.raises(SignatureInvalid, match="digest"):
        tampered.verify(signer_cert)


@pytest.mark.parametrize("challenge", ["pässwörd-é", "under_score", "a@b", "semi;colon"])
def test_challenge_outside_printable_string(client_key, challenge):
    with pytest.raises(ChallengeEncodingError) as info:
        build_csr(key=client_key, subject=SUBJECT, challenge=challenge)
    assert isinstance(info.value, UsageError)
    assert info.value.exit_code == 2
    csr = build_csr(key=client_key, subject=SUBJECT, challenge=challenge, challenge_utf8=True)
    csr_der = csr.public_bytes(Encoding.DER)
    assert read_challenge_encoding(csr_der) == "utf8_string"
    request = asn1_csr.CertificationRequest.load(csr_der)
    (attr,) = [
        a
        for a in request["certification_request_info"]["attributes"]
        if a["type"].native == "challenge_password"
    ]
    assert attr["values"][0].native == challenge


def test_no_challenge(client_key):
    csr = build_csr(key=client_key, subject=SUBJECT)
    assert read_challenge_encoding(csr.public_bytes(Encoding.DER)) is None
