"""Real peers for the test suite: micromdm's scepserver (Debian package ``scep``) on a free
loopback port, and helpers to run the ``scepd`` command as a separate process."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from faultserver import FaultServer

REPO = Path(__file__).resolve().parents[1]
VECTORS = REPO.parent / "shared" / "vectors"
CHALLENGE = "s3cret-Challenge"
PLACEHOLDER = b"existing certificate bytes, must survive every failure\n"


_SESSION_STATE = Path(tempfile.mkdtemp(prefix="scepd-test-state-"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class ScepServer:
    url: str
    depot: Path
    challenge: str
    process: subprocess.Popen[bytes]

    @property
    def ca_pem(self) -> bytes:
        return (self.depot / "ca.pem").read_bytes()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_scepserver(workdir: Path, *extra: str) -> ScepServer:
    exe = shutil.which("scepserver")
    if exe is None:
        pytest.fail("scepserver not installed: `make test` installs Debian package scep")
    depot = workdir / "depot"
    subprocess.run([exe, "ca", "-init", "-depot", str(depot)], check=True, capture_output=True)
    port = free_port()
    log = (workdir / "scepserver.log").open("wb")
    process = subprocess.Popen(
        [exe, "-depot", str(depot), "-port", str(port), "-challenge", CHALLENGE, *extra],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/scep"
    server = ScepServer(url, depot, CHALLENGE, process)
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(f"{url}?operation=GetCACaps", timeout=1) as r:
                if r.status == 200:
                    return server
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            pytest.fail(f"scepserver did not start: {(workdir / 'scepserver.log').read_text()}")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def scepserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScepServer]:
    # -allowrenew 0: the suite enrolls many times; unique CNs are used anyway.
    server = start_scepserver(tmp_path_factory.mktemp("scepserver"), "-allowrenew", "0")
    yield server
    server.stop()


def run_scepd(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -m scepd ARGS`` with the interpreter running the tests (venv or Debian's)."""
    # Loopback traffic must not go to a proxy the machine may have configured.
    full_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SCEPD_")
        and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    full_env["PYTHONPATH"] = str(REPO)
    # Pending transactions of the tests never go to /var/lib/scepd.
    full_env["SCEPD_STATE_DIR"] = str(_SESSION_STATE)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "scepd", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )


def decrypt_empty_passphrase(pem: bytes) -> bytes:
    """PEM key encrypted with an empty passphrase (scepserver's ca.key) -> unencrypted PEM.
    cryptography 38 and 50 disagree on ``password=b""``; openssl takes it as is."""
    return subprocess.run(
        ["openssl", "rsa", "-passin", "pass:"], input=pem, capture_output=True, check=True
    ).stdout


@pytest.fixture
def challenge_file(tmp_path: Path) -> Path:
    path = tmp_path / "challenge"
    path.write_text(CHALLENGE + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def proxy(scepserver: ScepServer) -> Iterator[FaultServer]:
    """The fault-injection proxy in front of the session's scepserver."""
    server = FaultServer(upstream=scepserver.url).start()
    yield server
    server.stop()


def enroll_via(
    proxy: FaultServer, tmp: Path, challenge: Path, cn: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    """``scepd enroll`` through the proxy, with a placeholder CERT that must survive failures."""
    (tmp / "cert.pem").write_bytes(PLACEHOLDER)
    return run_scepd(
        "enroll", "--url", proxy.url, "--key", str(tmp / "key.pem"), "--cert",
        str(tmp / "cert.pem"), "--subject", f"CN={cn}", "--challenge-file", str(challenge),
        *extra,
    )  # fmt: skip
