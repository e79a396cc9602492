"""The scepd CLI against scepd's own SCEP CA (`scepd devca serve`, a real process): pending
requests across restarts, NDES behaviour, renewal without challenge, GetCert, GetCRL and
GetNextCACert."""

from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PLACEHOLDER, REPO, run_scepd
from cryptography import x509
from devca_peer import DevCA, peer_env, start_devca
from faultserver import FaultServer

from scepd._compat import load_pem_certificates
from scepd.client import san_set


@pytest.fixture(scope="module")
def pending_ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCA]:
    yield from start_devca(tmp_path_factory.mktemp("devca") / "pending", "--pending")


@pytest.fixture(scope="module")
def auto_ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCA]:
    directory = tmp_path_factory.mktemp("devca") / "auto"
    yield from start_devca(directory, "--pending", "--auto-approve-after", "2")


@pytest.fixture(scope="module")
def ndes_ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCA]:
    yield from start_devca(tmp_path_factory.mktemp("devca") / "ndes", "--ndes")


@pytest.fixture(scope="module")
def std_ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCA]:
    yield from start_devca(tmp_path_factory.mktemp("devca") / "std")


def otp_file(ca: DevCA, tmp: Path, name: str = "otp") -> Path:
    path = tmp / name
    path.write_text(ca.otp() + "\n")
    return path


def enroll_args(ca: DevCA, tmp: Path, cn: str, challenge: Path, *extra: str) -> list[str]:
    return [
        "enroll", "--url", ca.url, "--key", str(tmp / "key.pem"), "--cert", str(tmp / "cert.pem"),
        "--subject", f"CN={cn},O=scepd tests", "--dns", f"{cn}.example",
        "--challenge-file", str(challenge), "--state-dir", str(tmp / "state"), *extra,
    ]  # fmt: skip


def transaction_id(output: str) -> str:
    match = re.search(r"transactionID (\S+)", output)
    assert match, output
    return match.group(1)


def test_pending_survives_a_killed_process_and_resumes_after_approve(
    pending_ca: DevCA, tmp_path: Path
) -> None:
    challenge = otp_file(pending_ca, tmp_path)
    first = run_scepd(*enroll_args(pending_ca, tmp_path, "pending-1", challenge))
    assert first.returncode == 3, first.stderr
    txid = transaction_id(first.stdout)
    assert not (tmp_path / "cert.pem").exists() and not (tmp_path / "key.pem").exists()

    # A waiting poller, killed (as by a reboot) in the middle.
    waiting = enroll_args(
        pending_ca, tmp_path, "pending-1", challenge, "--wait", "--poll-interval", "1s"
    )
    poller = subprocess.Popen(
        [sys.executable, "-m", "scepd", *waiting],
        env={**peer_env(), "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert len(pending_ca.log_for(txid, count=3)) >= 3  # the PKCSReq and two CertPolls
    poller.send_signal(signal.SIGKILL)
    poller.wait(10)

    approved = run_scepd("devca", "approve", "--dir", str(pending_ca.dir), txid)
    assert approved.returncode == 0, approved.stderr
    last = run_scepd(*enroll_args(pending_ca, tmp_path, "pending-1", challenge))
    assert last.returncode == 0, last.stderr
    cert = x509.load_pem_x509_certificate((tmp_path / "cert.pem").read_bytes())
    assert "CN=pending-1" in cert.subject.rfc4514_string()
    lines = pending_ca.log_for(txid, count=4)
    kinds = [re.search(r"messageType=(\S+)", line).group(1) for line in lines]  # type: ignore[union-attr]
    assert kinds[0] == "19" and set(kinds[1:]) == {"20"}  # one request, then only CertPolls
    assert "SUCCESS" in lines[-1]
    assert not list((tmp_path / "state" / "pending").iterdir())  # closed


def test_wait_polls_until_issued(auto_ca: DevCA, tmp_path: Path) -> None:
    challenge = otp_file(auto_ca, tmp_path)
    started = time.monotonic()
    result = run_scepd(
        *enroll_args(auto_ca, tmp_path, "waiter", challenge, "--wait", "--poll-interval", "1s"),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 20
    assert (tmp_path / "cert.pem").exists() and (tmp_path / "key.pem").exists()
    assert "pending" in result.stderr  # progress (one line per poll when not a terminal)


def test_wait_gives_up_after_max_wait(pending_ca: DevCA, tmp_path: Path) -> None:
    challenge = otp_file(pending_ca, tmp_path)
    result = run_scepd(*enroll_args(pending_ca, tmp_path, "impatient", challenge, "--wait",
                                    "--poll-interval", "1s", "--max-wait", "3s"))  # fmt: skip
    assert result.returncode == 3
    assert "still pending" in result.stdout
    assert (tmp_path / "state" / "pending").exists()


def test_ndes_one_time_password_reuse_names_it(ndes_ca: DevCA, tmp_path: Path) -> None:
    challenge = otp_file(ndes_ca, tmp_path)
    assert run_scepd(*enroll_args(ndes_ca, tmp_path, "otp-1", challenge)).returncode == 0
    again = tmp_path / "again"
    again.mkdir()
    (again / "cert.pem").write_bytes(PLACEHOLDER)
    result = run_scepd(*enroll_args(ndes_ca, again, "otp-2", challenge))
    assert result.returncode == 4
    assert "one-time password" in result.stderr and "already used" in result.stderr
    assert (again / "cert.pem").read_bytes() == PLACEHOLDER


def test_ndes_rejects_a_utf8_challenge(ndes_ca: DevCA, tmp_path: Path) -> None:
    challenge = otp_file(ndes_ca, tmp_path)
    result = run_scepd(*enroll_args(ndes_ca, tmp_path, "utf8", challenge,
                                    "--challenge-encoding", "utf8"))  # fmt: skip
    assert result.returncode == 4
    assert "badRequest" in result.stderr


def test_ndes_enroll_uses_get_3des_and_the_cep_encryption_cert(
    ndes_ca: DevCA, tmp_path: Path
) -> None:
    proxy = FaultServer(upstream=ndes_ca.url).start()
    try:
        challenge = otp_file(ndes_ca, tmp_path)
        args = enroll_args(ndes_ca, tmp_path, "ndes-get", challenge)
        args[args.index(ndes_ca.url)] = proxy.url
        result = run_scepd(*args)
    finally:
        proxy.stop()
    assert result.returncode == 0, result.stderr
    assert [s.method for s in proxy.seen if s.operation == "PKIOperation"] == ["GET"]
    # devca in NDES mode fails any request not encrypted to "CEP Encryption" (protocol test
    # in test_devca.py); this one was issued, so scepd chose the RA by key usage.


@pytest.mark.parametrize("mode", ["signed-pkcsreq", "auto"])
def test_ndes_renewal_without_challenge(ndes_ca: DevCA, tmp_path: Path, mode: str) -> None:
    challenge = otp_file(ndes_ca, tmp_path)
    assert run_scepd(*enroll_args(ndes_ca, tmp_path, f"renew-{mode}", challenge)).returncode == 0
    old_key, old_cert = (tmp_path / "key.pem").read_bytes(), (tmp_path / "cert.pem").read_bytes()
    result = run_scepd("renew", "--url", ndes_ca.url, "--key", str(tmp_path / "key.pem"),
                       "--cert", str(tmp_path / "cert.pem"), "--mode", mode)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "key.pem").read_bytes() != old_key
    old = x509.load_pem_x509_certificate(old_cert)
    new = x509.load_pem_x509_certificate((tmp_path / "cert.pem").read_bytes())
    assert new.subject == old.subject and san_set(new) == san_set(old)
    assert new.serial_number != old.serial_number


def test_ndes_renewal_with_another_subject_is_refused(ndes_ca: DevCA, tmp_path: Path) -> None:
    challenge = otp_file(ndes_ca, tmp_path)
    assert run_scepd(*enroll_args(ndes_ca, tmp_path, "renew-subject", challenge)).returncode == 0
    old_key, old_cert = (tmp_path / "key.pem").read_bytes(), (tmp_path / "cert.pem").read_bytes()
    result = run_scepd(
        "renew", "--url", ndes_ca.url, "--key", str(tmp_path / "key.pem"),
        "--cert", str(tmp_path / "cert.pem"), "--subject", "CN=someone-else",
    )  # fmt: skip
    assert result.returncode == 4
    assert "0x80094001" in result.stderr  # CERTSRV_E_BAD_REQUESTSUBJECT
    assert (tmp_path / "key.pem").read_bytes() == old_key
    assert (tmp_path / "cert.pem").read_bytes() == old_cert


def test_getcert_and_getcrl(std_ca: DevCA, tmp_path: Path) -> None:
    challenge = otp_file(std_ca, tmp_path)
    assert run_scepd(*enroll_args(std_ca, tmp_path, "fetch-me", challenge)).returncode == 0
    cert = x509.load_pem_x509_certificate((tmp_path / "cert.pem").read_bytes())
    got = run_scepd(
        "getcert", "--url", std_ca.url, "--cert", str(tmp_path / "cert.pem"),
        "--serial", f"0x{cert.serial_number:X}", "--out", str(tmp_path / "got.pem"),
    )  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert x509.load_pem_x509_certificate((tmp_path / "got.pem").read_bytes()) == cert
    missing = run_scepd("getcert", "--url", std_ca.url, "--cert", str(tmp_path / "cert.pem"),
                        "--serial", "0xDEAD0000", "--out", str(tmp_path / "none.pem"))  # fmt: skip
    assert missing.returncode == 4 and "badCertId" in missing.stderr

    revoked = run_scepd("devca", "revoke", "--dir", str(std_ca.dir), f"{cert.serial_number:X}")
    assert revoked.returncode == 0, revoked.stderr
    crl_run = run_scepd(
        "getcrl", "--url", std_ca.url, "--cert", str(tmp_path / "cert.pem"),
        "--key", str(tmp_path / "key.pem"), "--out", str(tmp_path / "crl.pem"),
    )  # fmt: skip
    assert crl_run.returncode == 0, crl_run.stderr
    crl = x509.load_pem_x509_crl((tmp_path / "crl.pem").read_bytes())
    ca = x509.load_pem_x509_certificate((std_ca.dir / "ca.pem").read_bytes())
    assert crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None


def test_getnextca_before_and_after_rollover(std_ca: DevCA, tmp_path: Path) -> None:
    before = run_scepd("getnextca", "--url", std_ca.url, "--out", str(tmp_path))
    assert before.returncode == 5
    assert "GetNextCACert" in before.stderr and len(before.stderr.strip().splitlines()) == 2
    rolled = run_scepd("devca", "rollover", "--dir", str(std_ca.dir))
    assert rolled.returncode == 0, rolled.stderr
    after = run_scepd("getnextca", "--url", std_ca.url, "--out", str(tmp_path))
    assert after.returncode == 0, after.stderr
    (next_ca,) = load_pem_certificates((tmp_path / "next-ca.pem").read_bytes())
    assert next_ca == x509.load_pem_x509_certificate((std_ca.dir / "next-ca.pem").read_bytes())


def test_getnextca_signed_by_another_ca_is_refused(std_ca: DevCA, tmp_path: Path) -> None:
    """A GetNextCACert answer signed by another CA (a second devca's real rollover answer,
    served in front of std_ca) fails the check that the current CA signed it."""
    stranger_run = start_devca(tmp_path / "stranger")
    stranger = next(stranger_run)
    try:
        assert run_scepd("devca", "rollover", "--dir", str(stranger.dir)).returncode == 0
        with urllib.request.urlopen(f"{stranger.url}?operation=GetNextCACert", timeout=10) as r:
            foreign = (200, r.headers.get("Content-Type", ""), r.read())
    finally:
        next(stranger_run, None)  # stops it
    proxy = FaultServer(upstream=std_ca.url).start()
    proxy.rules["GetNextCACert"] = lambda path, body: foreign
    try:
        result = run_scepd("getnextca", "--url", proxy.url, "--out", str(tmp_path))
    finally:
        proxy.stop()
    assert result.returncode == 6, result.stderr
    assert "not signed by the current CA" in result.stderr
    assert not (tmp_path / "next-ca.pem").exists()


def test_devca_with_a_relative_directory(tmp_path: Path) -> None:
    """`scepd devca init --dir dv` and `serve --dir dv` from the directory above: the path
    bug found by hand (files written to dv/dv/issued) must not come back."""
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        run = start_devca(Path("dv"))
        ca = next(run)
    finally:
        os.chdir(cwd)
    try:
        challenge = tmp_path / "otp"
        otp = run_scepd("devca", "otp", "--dir", str(tmp_path / "dv"))
        challenge.write_text(otp.stdout)
        result = run_scepd(*enroll_args(ca, tmp_path, "relative", challenge))
        assert result.returncode == 0, result.stderr
    finally:
        next(run, None)


def test_wait_progress_is_one_line_on_a_terminal(auto_ca: DevCA, tmp_path: Path) -> None:
    challenge = otp_file(auto_ca, tmp_path)
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "scepd",
         *enroll_args(auto_ca, tmp_path, "tty", challenge, "--wait", "--poll-interval", "1s")],
        env={**peer_env(), "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, stderr=slave,
    )  # fmt: skip
    os.close(slave)
    assert process.wait(60) == 0
    output = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO once the terminal's other side is closed
            break
        if not chunk:
            break
        output += chunk
    os.close(master)
    progress = [line for line in output.split(b"\n") if b"pending" in line]
    assert len(progress) == 1, output  # redrawn in place...
    assert progress[0].count(b"\r\x1b[K") >= 2  # ...once per poll
