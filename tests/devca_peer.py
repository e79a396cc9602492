"""scepd's own SCEP CA as a test peer: `scepd devca serve` as a real process on loopback."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from conftest import REPO, run_scepd
from cryptography import x509


@dataclass
class DevCA:
    dir: Path
    url: str
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def cert(self, name: str) -> x509.Certificate:
        return x509.load_pem_x509_certificate((self.dir / name).read_bytes())

    def otp(self) -> str:
        result = run_scepd("devca", "otp", "--dir", str(self.dir))
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def log_for(self, transaction_id: str, count: int = 1) -> list[str]:
        """The log lines naming ``transaction_id``, once ``count`` of them have been read."""
        deadline = time.monotonic() + 5
        while True:
            found = [line for line in self.lines if f"transactionID={transaction_id} " in line]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.02)


def peer_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["PYTHONPATH"] = str(REPO)
    return env


def start_devca(directory: Path, *init_args: str) -> Iterator[DevCA]:
    result = run_scepd("devca", "init", "--dir", str(directory), *init_args)
    assert result.returncode == 0, result.stderr
    process = subprocess.Popen(
        [sys.executable, "-m", "scepd", "devca", "serve", "--dir", str(directory), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=peer_env(),
    )
    assert process.stdout is not None
    first = process.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:\d+/\S+", first)
    assert match, first + (process.stderr.read() if process.stderr else "")
    server = DevCA(directory, match.group(0), process)

    def follow() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            server.lines.append(line.rstrip("\n"))

    threading.Thread(target=follow, daemon=True).start()
    yield server
    process.send_signal(signal.SIGTERM)
    assert process.wait(10) == 0  # SIGTERM is a clean stop
    stderr = process.stderr.read() if process.stderr else ""
    assert "Traceback" not in stderr, stderr
