"""--debug: one line per SCEP exchange, the raw messages saved as DER, and never a secret."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import CHALLENGE, ScepServer, run_scepd

from scepd.protocol.csr import read_challenge


def test_debug_logs_each_exchange_and_saves_der_without_the_challenge(
    scepserver: ScepServer, tmp_path: Path, challenge_file: Path
) -> None:
    state = tmp_path / "state"
    result = run_scepd(
        "--debug", "enroll", "--url", scepserver.url, "--key", str(tmp_path / "k.pem"),
        "--cert", str(tmp_path / "c.pem"), "--subject", "CN=debug-me", "--challenge-file",
        str(challenge_file), "--state-dir", str(state),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("scepd: info: debug: ")]
    assert any("GetCACaps -> HTTP 200" in line for line in lines)
    assert any("GetCACert -> HTTP 200" in line for line in lines)
    (pki,) = [line for line in lines if "PKIOperation" in line]
    for part in ("PKCS_REQ (19)", "POST -> HTTP 200", "application/x-pki-message",
                 "cipher aes", "digest sha256", "RA sign=", "pkiStatus SUCCESS"):  # fmt: skip
        assert part in pki, (part, pki)

    files = sorted((state / "debug").iterdir())
    names = [f.name for f in files]
    assert any(n.endswith("GetCACaps-response.txt") for n in names)
    for suffix in ("GetCACert-response.der", "PKCS_REQ-request.der", "PKCS_REQ-csr.der",
                   "PKCS_REQ-response.der"):  # fmt: skip
        (path,) = [f for f in files if f.name.endswith(suffix)]
        parsed = subprocess.run(
            ["openssl", "asn1parse", "-inform", "DER", "-in", str(path)],
            capture_output=True,
            check=False,
        )
        assert parsed.returncode == 0, (suffix, parsed.stderr)
    (csr,) = [f for f in files if f.name.endswith("-csr.der")]
    value, kind = read_challenge(csr.read_bytes())
    assert kind == "printable_string" and value == "X" * len(CHALLENGE)

    secret = CHALLENGE.encode()
    assert all(secret not in f.read_bytes() for f in files)
    assert CHALLENGE not in result.stderr + result.stdout
    assert all(b"PRIVATE KEY" not in f.read_bytes() for f in files)
    assert all(oct(f.stat().st_mode & 0o777) == "0o600" for f in files)
