"""The one-shot CLI against a real micromdm scepserver on loopback."""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import stat
import time
from pathlib import Path

import pytest
from conftest import CHALLENGE, ScepServer, free_port, run_scepd, start_scepserver
from cryptography import x509
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)

from scepd._compat import load_pem_certificates

PLACEHOLDER = b"-----BEGIN CERTIFICATE-----\nexisting, must survive\n-----END CERTIFICATE-----\n"


def ca_cert(server: ScepServer) -> x509.Certificate:
    return x509.load_pem_x509_certificate(server.ca_pem)


def sha256_pin(server: ScepServer) -> str:
    return "sha256:" + hashlib.sha256(ca_cert(server).public_bytes(Encoding.DER)).hexdigest()


def enroll_args(server: ScepServer, tmp: Path, cn: str, challenge: Path, *extra: str) -> list[str]:
    return [
        "enroll",
        "--url", server.url,
        "--key", str(tmp / "key.pem"),
        "--cert", str(tmp / "cert.pem"),
        "--subject", f"CN={cn},O=scepd tests",
        "--challenge-file", str(challenge),
        *extra,
    ]  # fmt: skip


def test_getcaps_prints_one_keyword_per_line(scepserver: ScepServer) -> None:
    result = run_scepd("getcaps", "--url", scepserver.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Renewal", "SHA-1", "SHA-256", "AES", "DES3", "SCEPStandard", "POSTPKIOperation",
    ]  # fmt: skip


def test_getca_with_good_pin_writes_ca(scepserver: ScepServer, tmp_path: Path) -> None:
    result = run_scepd("getca", "--url", scepserver.url, "--out", str(tmp_path),
                       "--fingerprint", sha256_pin(scepserver))  # fmt: skip
    assert result.returncode == 0, result.stderr
    written = x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes())
    assert written == ca_cert(scepserver)
    assert not (tmp_path / "ra-sign.pem").exists()  # micromdm has no RA certificates
    md5 = hashlib.md5(ca_cert(scepserver).public_bytes(Encoding.DER)).hexdigest().upper()
    assert ":".join(md5[i : i + 2] for i in range(0, 32, 2)) in result.stdout
    assert "root CA" in result.stdout


def test_getca_md5_pin_with_colons_and_lower_case(scepserver: ScepServer, tmp_path: Path) -> None:
    md5 = hashlib.md5(ca_cert(scepserver).public_bytes(Encoding.DER)).hexdigest().lower()
    pin = "MD5:" + ":".join(md5[i : i + 2] for i in range(0, 32, 2))
    result = run_scepd(
        "getca", "--url", scepserver.url, "--out", str(tmp_path), "--fingerprint", pin
    )
    assert result.returncode == 0, result.stderr


def test_getca_bad_pin_exits_6_and_writes_nothing(scepserver: ScepServer, tmp_path: Path) -> None:
    result = run_scepd("getca", "--url", scepserver.url, "--out", str(tmp_path),
                       "--fingerprint", "sha256:" + "00" * 32)  # fmt: skip
    assert result.returncode == 6
    assert list(tmp_path.iterdir()) == []
    assert "fingerprint" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("cipher", ["aes", "des3"])
@pytest.mark.parametrize("digest", ["sha1", "sha256", "sha512"])
def test_enroll_each_cipher_and_digest(
    scepserver: ScepServer, tmp_path: Path, challenge_file: Path, cipher: str, digest: str
) -> None:
    cn = f"enroll-{cipher}-{digest}"
    result = run_scepd(
        *enroll_args(scepserver, tmp_path, cn, challenge_file),
        "--cipher", cipher, "--digest", digest, "--fingerprint", sha256_pin(scepserver),
        "--chain", str(tmp_path / "chain.pem"),
        "--dns", f"{cn}.example.com", "--dns", "alias.example.com", "--ip", "192.0.2.10",
        "--ip", "2001:db8::1", "--email", "ops@example.com", "--uri", "https://example.com/id",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    cert = x509.load_pem_x509_certificate((tmp_path / "cert.pem").read_bytes())
    key = load_pem_private_key((tmp_path / "key.pem").read_bytes(), None)
    spki = PublicFormat.SubjectPublicKeyInfo
    assert cert.public_key().public_bytes(Encoding.DER, spki) == key.public_key().public_bytes(
        Encoding.DER, spki
    )
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == cn
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [f"{cn}.example.com", "alias.example.com"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("192.0.2.10"), ipaddress.ip_address("2001:db8::1"),
    ]  # fmt: skip
    assert san.get_values_for_type(x509.RFC822Name) == ["ops@example.com"]
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["https://example.com/id"]
    assert stat.S_IMODE((tmp_path / "key.pem").stat().st_mode) == 0o600
    chain = load_pem_certificates((tmp_path / "chain.pem").read_bytes())
    assert chain == [ca_cert(scepserver)]
    assert CHALLENGE not in result.stdout + result.stderr


def test_enroll_reuses_an_existing_key(
    scepserver: ScepServer, tmp_path: Path, challenge_file: Path
) -> None:
    first = run_scepd(*enroll_args(scepserver, tmp_path, "reuse-1", challenge_file))
    assert first.returncode == 0, first.stderr
    key_bytes = (tmp_path / "key.pem").read_bytes()
    second = run_scepd(*enroll_args(scepserver, tmp_path, "reuse-2", challenge_file))
    assert second.returncode == 0, second.stderr
    assert (tmp_path / "key.pem").read_bytes() == key_bytes
    cert = x509.load_pem_x509_certificate((tmp_path / "cert.pem").read_bytes())
    assert "reuse-2" in cert.subject.rfc4514_string()


def test_wrong_challenge_exits_4_and_keeps_cert(scepserver: ScepServer, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-challenge\n")
    (tmp_path / "cert.pem").write_bytes(PLACEHOLDER)
    result = run_scepd(*enroll_args(scepserver, tmp_path, "wrong-challenge", wrong))
    assert result.returncode == 4
    assert "badRequest" in result.stderr and "challenge" in result.stderr
    assert (tmp_path / "cert.pem").read_bytes() == PLACEHOLDER
    assert "not-the-challenge" not in result.stdout + result.stderr


def test_no_challenge_is_rejected_by_server(scepserver: ScepServer, tmp_path: Path) -> None:
    result = run_scepd(
        "enroll", "--url", scepserver.url, "--key", str(tmp_path / "k.pem"),
        "--cert", str(tmp_path / "c.pem"), "--subject", "CN=no-challenge",
    )  # fmt: skip
    assert result.returncode == 4
    assert not (tmp_path / "c.pem").exists()


def test_challenge_from_env(scepserver: ScepServer, tmp_path: Path) -> None:
    result = run_scepd(
        "enroll", "--url", scepserver.url, "--key", str(tmp_path / "k.pem"),
        "--cert", str(tmp_path / "c.pem"), "--subject", "CN=env-challenge",
        "--challenge-env", "MY_OTP", "--debug",
        env={"MY_OTP": CHALLENGE},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert CHALLENGE not in result.stdout + result.stderr  # not even with --debug


def test_challenge_is_never_taken_from_argv(scepserver: ScepServer, tmp_path: Path) -> None:
    result = run_scepd(*enroll_args(scepserver, tmp_path, "argv", tmp_path / "x"),
                       "--challenge", CHALLENGE)  # fmt: skip
    assert result.returncode == 2


def test_non_printable_challenge_is_a_usage_error_before_any_request(
    scepserver: ScepServer, tmp_path: Path
) -> None:
    bad = tmp_path / "bad"
    bad.write_text("pässword_1\n")
    result = run_scepd(*enroll_args(scepserver, tmp_path, "printable", bad))
    assert result.returncode == 2
    assert "PrintableString" in result.stderr
    assert not (tmp_path / "key.pem").exists()


def test_legacy_des_needs_the_switch(
    scepserver: ScepServer, tmp_path: Path, challenge_file: Path
) -> None:
    refused = run_scepd(
        *enroll_args(scepserver, tmp_path, "legacy", challenge_file), "--cipher", "des"
    )
    assert refused.returncode == 2
    assert "RFC 8894" in refused.stderr
    assert not (tmp_path / "key.pem").exists()


def test_bad_pin_on_enroll_exits_6_and_keeps_files(
    scepserver: ScepServer, tmp_path: Path, challenge_file: Path
) -> None:
    (tmp_path / "cert.pem").write_bytes(PLACEHOLDER)
    result = run_scepd(*enroll_args(scepserver, tmp_path, "bad-pin", challenge_file),
                       "--fingerprint", "sha1:" + "ab" * 20)  # fmt: skip
    assert result.returncode == 6
    assert (tmp_path / "cert.pem").read_bytes() == PLACEHOLDER
    assert not (tmp_path / "key.pem").exists()


def test_stopped_server_exits_5_within_timeout(tmp_path: Path, challenge_file: Path) -> None:
    server = start_scepserver(tmp_path / "srv")
    server.stop()
    (tmp_path / "cert.pem").write_bytes(PLACEHOLDER)
    started = time.monotonic()
    result = run_scepd(*enroll_args(server, tmp_path, "stopped", challenge_file), "--timeout", "5")
    assert result.returncode == 5
    assert time.monotonic() - started < 5
    assert "cannot connect" in result.stderr
    assert (tmp_path / "cert.pem").read_bytes() == PLACEHOLDER


def test_silent_server_times_out_with_exit_5(tmp_path: Path, challenge_file: Path) -> None:
    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        started = time.monotonic()
        result = run_scepd("getcaps", "--url", f"http://127.0.0.1:{port}/scep", "--timeout", "1")
        elapsed = time.monotonic() - started
    assert result.returncode == 5
    assert "no answer within" in result.stderr
    assert elapsed < 10


def test_unwritable_cert_dir_fails_before_any_request(tmp_path: Path, challenge_file: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/scep"  # nothing listens: a request would exit 5
    result = run_scepd("enroll", "--url", url, "--key", str(tmp_path / "k.pem"),
                       "--cert", str(tmp_path / "missing-dir" / "c.pem"), "--subject", "CN=x",
                       "--challenge-file", str(challenge_file))  # fmt: skip
    assert result.returncode == 7
    assert "missing-dir" in result.stderr


def test_unreadable_key_is_a_file_error(tmp_path: Path, challenge_file: Path) -> None:
    (tmp_path / "key.pem").write_text("not a key\n")
    result = run_scepd(*enroll_args(
        ScepServer(f"http://127.0.0.1:{free_port()}/scep", tmp_path, "", None),  # type: ignore[arg-type]
        tmp_path, "badkey", challenge_file))  # fmt: skip
    assert result.returncode == 7
    assert "key.pem" in result.stderr and "Traceback" not in result.stderr


def test_help_documents_exit_codes() -> None:
    result = run_scepd("enroll", "--help")
    assert result.returncode == 0
    for code in range(8):
        assert f"  {code}  " in result.stdout


@pytest.mark.parametrize("operation", ["getcert", "getcrl"])
def test_operations_micromdm_lacks_are_named(
    scepserver: ScepServer, tmp_path: Path, challenge_file: Path, operation: str
) -> None:
    enrolled = run_scepd(*enroll_args(scepserver, tmp_path, f"lacks-{operation}", challenge_file))
    assert enrolled.returncode == 0, enrolled.stderr
    extra = ["--serial", "2"] if operation == "getcert" else []
    result = run_scepd(operation, "--url", scepserver.url, "--cert", str(tmp_path / "cert.pem"),
                       "--out", str(tmp_path / "out.pem"), *extra)  # fmt: skip
    assert result.returncode == 5
    name = {"getcert": "GetCert", "getcrl": "GetCRL"}[operation]
    assert f"does not implement {name}" in result.stderr
    assert not (tmp_path / "out.pem").exists()


def test_getnextca_not_advertised(scepserver: ScepServer, tmp_path: Path) -> None:
    result = run_scepd("getnextca", "--url", scepserver.url, "--out", str(tmp_path))
    assert result.returncode == 5
    assert "does not advertise GetNextCACert" in result.stderr
