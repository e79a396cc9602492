"""`scepd renew` against micromdm's scepserver (-allowrenew 0), through the fault proxy so the
request on the wire can be checked: decrypted with the server's own CA key."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from conftest import ScepServer, decrypt_empty_passphrase, run_scepd
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from faultserver import FaultServer
from pki import key, make_cert

from scepd.client import Transaction, check_identity, san_set
from scepd.errors import CertificateMismatch
from scepd.protocol import oids
from scepd.protocol.algorithms import ContentCipher, Digest
from scepd.protocol.cacerts import classify
from scepd.protocol.capabilities import Negotiated
from scepd.protocol.constants import MessageType
from scepd.protocol.envelope import open_enveloped_data
from scepd.protocol.keys import SoftwareKey
from scepd.protocol.pkimessage import spki_of
from scepd.protocol.signeddata import parse_signed_data


def enrolled(server_url: str, tmp: Path, challenge: Path, cn: str) -> tuple[bytes, bytes]:
    result = run_scepd(
        "enroll", "--url", server_url, "--key", str(tmp / "key.pem"), "--cert",
        str(tmp / "cert.pem"), "--subject", f"CN={cn},O=scepd tests", "--dns", f"{cn}.example",
        "--ip", "192.0.2.7", "--challenge-file", str(challenge), "--eku", "serverAuth",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (tmp / "key.pem").chmod(0o640)  # a mode the admin chose: renewal must keep it
    return (tmp / "key.pem").read_bytes(), (tmp / "cert.pem").read_bytes()


def renew(url: str, tmp: Path, *extra: str):  # type: ignore[no-untyped-def]
    return run_scepd(
        "renew", "--url", url, "--key", str(tmp / "key.pem"), "--cert", str(tmp / "cert.pem"),
        "--chain", str(tmp / "chain.pem"), *extra,
    )  # fmt: skip


def sent_request(proxy: FaultServer, server: ScepServer) -> tuple[str, x509.Certificate, bytes]:
    """(messageType, signer certificate, CSR DER) of the last PKIOperation, decrypted with the
    server's CA key."""
    body = [s.body for s in proxy.seen if s.operation == "PKIOperation"][-1]
    msg = parse_signed_data(body)
    ca_key = load_pem_private_key(
        decrypt_empty_passphrase((server.depot / "ca.key").read_bytes()), None
    )
    ca = x509.load_pem_x509_certificate(server.ca_pem)
    assert msg.content is not None
    csr = open_enveloped_data(msg.content, key=SoftwareKey(ca_key), certificate=ca).content  # type: ignore[arg-type]
    (signer,) = msg.certificates
    return msg.attribute(oids.MESSAGE_TYPE), signer, csr


@pytest.mark.parametrize(
    ("mode", "message_type"), [("renewalreq", "17"), ("signed-pkcsreq", "19"), ("auto", "17")]
)
def test_renew_with_new_key(
    proxy: FaultServer, scepserver: ScepServer, tmp_path: Path, challenge_file: Path,
    mode: str, message_type: str,
) -> None:  # fmt: skip
    old_key, old_cert = enrolled(scepserver.url, tmp_path, challenge_file, f"renew-{mode}")
    result = renew(proxy.url, tmp_path, "--mode", mode, "--challenge-file", str(challenge_file))
    assert result.returncode == 0, result.stderr
    new_key, new_cert = (tmp_path / "key.pem").read_bytes(), (tmp_path / "cert.pem").read_bytes()
    assert new_key != old_key and new_cert != old_cert
    assert stat.S_IMODE((tmp_path / "key.pem").stat().st_mode) == 0o640
    old, new = x509.load_pem_x509_certificate(old_cert), x509.load_pem_x509_certificate(new_cert)
    assert new.subject == old.subject and san_set(new) == san_set(old)
    assert spki_of(new) == spki_of(SoftwareKey(load_pem_private_key(new_key, None)))  # type: ignore[arg-type]
    sent_type, signer, _csr = sent_request(proxy, scepserver)
    assert sent_type == message_type
    assert signer == old  # signed with the current certificate, not a self-signed one
    assert (
        x509.load_pem_x509_certificate((tmp_path / "chain.pem").read_bytes()).subject == new.issuer
    )


def test_renew_reusing_the_key(
    proxy: FaultServer, scepserver: ScepServer, tmp_path: Path, challenge_file: Path
) -> None:
    old_key, old_cert = enrolled(scepserver.url, tmp_path, challenge_file, "renew-reuse")
    result = renew(proxy.url, tmp_path, "--reuse-key", "--mode", "signed-pkcsreq",
                   "--challenge-file", str(challenge_file))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "key.pem").read_bytes() == old_key
    new = x509.load_pem_x509_certificate((tmp_path / "cert.pem").read_bytes())
    old = x509.load_pem_x509_certificate(old_cert)
    assert new.serial_number != old.serial_number and spki_of(new) == spki_of(old)


def test_rejected_renewal_leaves_files_untouched(
    scepserver: ScepServer, tmp_path: Path, challenge_file: Path
) -> None:
    old_key, old_cert = enrolled(scepserver.url, tmp_path, challenge_file, "renew-rejected")
    result = renew(scepserver.url, tmp_path)  # micromdm checks the challenge on renewal too
    assert result.returncode == 4
    assert (tmp_path / "key.pem").read_bytes() == old_key
    assert (tmp_path / "cert.pem").read_bytes() == old_cert
    assert not (tmp_path / "chain.pem").exists()


def test_renew_with_a_key_of_another_certificate_is_a_file_error(
    scepserver: ScepServer, tmp_path: Path, challenge_file: Path
) -> None:
    enrolled(scepserver.url, tmp_path, challenge_file, "renew-mismatch")
    other = tmp_path / "other"
    other.mkdir()
    enrolled(scepserver.url, other, challenge_file, "renew-mismatch-2")
    (tmp_path / "key.pem").write_bytes((other / "key.pem").read_bytes())
    result = renew(scepserver.url, tmp_path, "--challenge-file", str(challenge_file))
    assert result.returncode == 7
    assert "is not the key of" in result.stderr


def _tx(subject: x509.Name, sans: frozenset[tuple[str, str]]) -> Transaction:
    ca_key = key()
    ca = make_cert("CA", ca_key, None, ca_key, ca=True)
    return Transaction(
        transaction_id="T", kind="renew", message_type=MessageType.RENEWAL_REQ,
        subject=subject.public_bytes(), spki=b"", signer_cert=ca, ca=classify((ca,)),
        negotiated=Negotiated(ContentCipher.AES128, Digest.SHA256, True),
        expect_subject=subject.public_bytes(), expect_sans=sans,
    )  # fmt: skip


def test_a_certificate_for_another_subject_or_sans_is_a_trust_failure() -> None:
    issuer_key = key()
    issuer = make_cert("CA", issuer_key, None, issuer_key, ca=True)
    issued = make_cert("web01", key(), issuer, issuer_key, ca=False)
    check_identity(issued, _tx(issued.subject, san_set(issued)))
    with pytest.raises(CertificateMismatch, match="not the subject") as err:
        check_identity(issued, _tx(x509.Name.from_rfc4514_string("CN=web02"), san_set(issued)))
    assert err.value.exit_code == 6
    with pytest.raises(CertificateMismatch, match="subjectAltNames"):
        check_identity(issued, _tx(issued.subject, frozenset({("DNSName", "web01.example")})))
