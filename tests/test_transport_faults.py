"""Transport behaviour and injected faults, in front of the real scepserver.

The fault server forwards to micromdm's scepserver and only rewrites or breaks answers, so
every SCEP message that succeeds was produced by the real peer."""

from __future__ import annotations

import base64
import urllib.parse
from pathlib import Path

import pytest
from conftest import PLACEHOLDER, ScepServer, decrypt_empty_passphrase, enroll_via, run_scepd
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from faultserver import FaultServer

from scepd.protocol.csr import read_challenge_encoding
from scepd.protocol.envelope import open_enveloped_data
from scepd.protocol.keys import SoftwareKey
from scepd.protocol.signeddata import parse_signed_data
from scepd.transport import encode_get_message

HTML = b"<html><head><title>404 - File or directory not found.</title></head><body>x</body></html>"


def test_get_pkioperation_when_post_not_advertised(
    proxy: FaultServer, tmp_path: Path, challenge_file: Path
) -> None:
    # An NDES-like caps list: no POSTPKIOperation, no SCEPStandard, no AES.
    caps = b"Renewal\r\nSHA-512\r\nSHA-256\r\nSHA-1\r\nDES3\r\n"
    proxy.rules["GetCACaps"] = lambda path, body: (200, "text/plain", caps)
    result = enroll_via(proxy, tmp_path, challenge_file, "via-get")
    assert result.returncode == 0, result.stderr
    ops = [s for s in proxy.seen if s.operation == "PKIOperation"]
    assert [s.method for s in ops] == ["GET"]
    message = ops[0].message
    assert message is not None
    assert not set("+/=") & set(message)  # fully percent-encoded standard base64
    der = base64.b64decode(urllib.parse.unquote(message), validate=True)
    assert der[0] == 0x30
    assert "warning" in result.stderr and "GET URL" in result.stderr  # 2048-bit PKCSReq > 2000
    assert (tmp_path / "cert.pem").read_bytes() != PLACEHOLDER
    # caps were fetched once for the whole operation
    assert [s.operation for s in proxy.seen].count("GetCACaps") == 1


def test_post_when_advertised(proxy: FaultServer, tmp_path: Path, challenge_file: Path) -> None:
    result = enroll_via(proxy, tmp_path, challenge_file, "via-post")
    assert result.returncode == 0, result.stderr
    ops = [s for s in proxy.seen if s.operation == "PKIOperation"]
    assert [s.method for s in ops] == ["POST"]
    assert [s.operation for s in proxy.seen].count("GetCACaps") == 1
    assert [s.operation for s in proxy.seen].count("GetCACert") == 1


def test_empty_caps_fall_back_to_3des_sha1_get(
    proxy: FaultServer, tmp_path: Path, challenge_file: Path
) -> None:
    proxy.rules["GetCACaps"] = lambda path, body: (500, "text/html", HTML)
    result = enroll_via(proxy, tmp_path, challenge_file, "no-caps")
    assert result.returncode == 0, result.stderr
    assert "3DES, SHA-1 and GET" in result.stderr
    assert [s.method for s in proxy.seen if s.operation == "PKIOperation"] == ["GET"]


def test_ca_identifier_is_sent_only_when_given(proxy: FaultServer, tmp_path: Path) -> None:
    assert run_scepd("getca", "--url", proxy.url, "--out", str(tmp_path)).returncode == 0
    assert run_scepd("getca", "--url", proxy.url, "--out", str(tmp_path),
                     "--ca-identifier", "Management CA").returncode == 0  # fmt: skip
    messages = [s.message for s in proxy.seen if s.operation == "GetCACert"]
    assert messages == [None, "Management%20CA"]


def test_html_page_instead_of_ca_cert(proxy: FaultServer, tmp_path: Path) -> None:
    proxy.rules["GetCACert"] = lambda path, body: (200, "text/html", HTML)
    result = run_scepd("getca", "--url", proxy.url, "--out", str(tmp_path))
    assert result.returncode == 5
    assert "HTML page" in result.stderr and "404 - File or directory not found." in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_http_error_status_is_exit_5(
    proxy: FaultServer, tmp_path: Path, challenge_file: Path
) -> None:
    proxy.rules["PKIOperation"] = lambda path, body: (503, "text/plain", b"Service Unavailable")
    result = enroll_via(proxy, tmp_path, challenge_file, "http-503")
    assert result.returncode == 5
    assert "HTTP 503" in result.stderr
    assert (tmp_path / "cert.pem").read_bytes() == PLACEHOLDER


def test_truncated_ca_cert_is_exit_6(
    proxy: FaultServer, scepserver: ScepServer, tmp_path: Path
) -> None:
    der = x509.load_pem_x509_certificate(scepserver.ca_pem).public_bytes(
        __import__(
            "cryptography.hazmat.primitives.serialization", fromlist=["Encoding"]
        ).Encoding.DER
    )
    proxy.rules["GetCACert"] = lambda path, body: (200, "application/x-x509-ca-cert", der[:-40])
    result = run_scepd("getca", "--url", proxy.url, "--out", str(tmp_path))
    assert result.returncode == 6
    assert "malformed GetCACert" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("cut", [1, 100, 1000])
def test_truncated_certrep_is_exit_6_and_keeps_cert(
    proxy: FaultServer, tmp_path: Path, challenge_file: Path, cut: int
) -> None:
    def truncate(path: str, body: bytes) -> tuple[int, str, bytes]:
        status, ctype, payload = proxy.forward("POST", urllib.parse.urlsplit(path).query, body)
        return status, ctype, payload[:-cut]

    proxy.rules["PKIOperation"] = truncate
    result = enroll_via(proxy, tmp_path, challenge_file, f"truncated-{cut}")
    assert result.returncode == 6, result.stderr
    assert "Traceback" not in result.stderr
    assert (tmp_path / "cert.pem").read_bytes() == PLACEHOLDER


def test_certrep_for_another_request_is_exit_6(
    proxy: FaultServer, tmp_path: Path, challenge_file: Path
) -> None:
    """A replayed CertRep (an answer to an earlier request) fails the nonce/transactionID check."""
    first = enroll_via(proxy, tmp_path, challenge_file, "replay-1")
    assert first.returncode == 0, first.stderr
    replay = proxy.forward  # the answer captured below is replayed to the next request
    captured: dict[str, bytes] = {}

    def record(path: str, body: bytes) -> tuple[int, str, bytes]:
        status, ctype, payload = replay("POST", urllib.parse.urlsplit(path).query, body)
        captured.setdefault("rep", payload)
        return status, ctype, captured["rep"]

    proxy.rules["PKIOperation"] = record
    other = tmp_path / "other"
    other.mkdir()
    assert enroll_via(proxy, other, challenge_file, "replay-2").returncode == 0
    third = tmp_path / "third"
    third.mkdir()
    result = enroll_via(proxy, third, challenge_file, "replay-3")
    assert result.returncode == 6
    assert "transactionID" in result.stderr or "recipientNonce" in result.stderr
    assert (third / "cert.pem").read_bytes() == PLACEHOLDER


def test_slow_server_times_out(proxy: FaultServer, tmp_path: Path) -> None:
    proxy.delay = 3
    result = run_scepd("getca", "--url", proxy.url, "--out", str(tmp_path), "--timeout", "1")
    assert result.returncode == 5
    assert "no answer within" in result.stderr


def test_encode_get_message_is_standard_base64_fully_escaped() -> None:
    der = bytes([0xFB, 0xFF, 0xFE]) * 10  # base64 of these has '+', '/' and padding
    encoded = encode_get_message(der + b"\x00")
    assert "%2B" in encoded and "%2F" in encoded and encoded.endswith("%3D%3D")
    assert base64.b64decode(urllib.parse.unquote(encoded)) == der + b"\x00"


@pytest.mark.parametrize(
    ("encoding", "asn1_type"), [(None, "printable_string"), ("utf8", "utf8_string")]
)
def test_challenge_on_the_wire_is_printable_string(
    proxy: FaultServer, scepserver: ScepServer, tmp_path: Path, challenge_file: Path,
    encoding: str | None, asn1_type: str,
) -> None:  # fmt: skip
    """Decrypt the request scepd sent with the server's own CA key (the test owns the depot)."""
    extra = ("--challenge-encoding", encoding) if encoding else ()
    result = enroll_via(proxy, tmp_path, challenge_file, f"wire-{asn1_type}", *extra)
    assert result.returncode == 0, result.stderr
    (request,) = [s.body for s in proxy.seen if s.operation == "PKIOperation"]
    plain = decrypt_empty_passphrase((scepserver.depot / "ca.key").read_bytes())
    ca_key = SoftwareKey(load_pem_private_key(plain, None))
    ca = x509.load_pem_x509_certificate(scepserver.ca_pem)
    message = parse_signed_data(request)
    assert message.content is not None
    csr_der = open_enveloped_data(message.content, key=ca_key, certificate=ca).content
    assert read_challenge_encoding(csr_der) == asn1_type
