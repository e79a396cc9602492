"""The installed Debian package, with /usr/bin/scepd and /usr/bin/python3 only.

Run by debian/tests/installed (autopkgtest) and by `make test-deb` after
`apt-get install ./dist/scepd_<version>_all.deb`.  Nothing here imports the source tree: the
daemon under test is the one dpkg installed, against micromdm's scepserver (Debian package
scep) on loopback, with the NOTIFY_SOCKET systemd would give it captured by the test.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

pytestmark = pytest.mark.skipif(
    os.environ.get("SCEPD_TEST_INSTALLED") != "1",
    reason="run by debian/tests/installed (make test-deb) on an installed package",
)

SCEPD = "/usr/bin/scepd"
PYTHON = "/usr/bin/python3"
CHALLENGE = "installed-s3cret"
# No proxy for loopback, and nothing from the caller's Python set-up.
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8", "NO_PROXY": "*"}

HOOK = textwrap.dedent(
    """\
    import json, os, sys
    with open(sys.argv[1], "a") as out:
        out.write(json.dumps({k: v for k, v in os.environ.items()
                              if k.startswith("SCEPD_") or k in ("NOTIFY_SOCKET", "WATCHDOG_USEC")})
                  + "\\n")
    """
)


def scepd(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SCEPD, *args], capture_output=True, text=True, timeout=timeout, env=CLEAN_ENV,
        check=False,
    )  # fmt: skip


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Micromdm:
    url: str
    depot: Path
    process: subprocess.Popen[bytes]

    def ca_cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate((self.depot / "ca.pem").read_bytes())

    def ca_key_pem(self) -> bytes:
        """scepserver's ca.key is encrypted with an empty passphrase, which cryptography 38
        cannot open: openssl decrypts it."""
        out = subprocess.run(
            ["openssl", "pkey", "-passin", "pass:", "-in", str(self.depot / "ca.key")],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        return out.stdout


@pytest.fixture(scope="module")
def micromdm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Micromdm]:
    exe = shutil.which("scepserver")
    assert exe, "scepserver missing: install Debian package scep"
    work = tmp_path_factory.mktemp("micromdm")
    depot = work / "depot"
    subprocess.run([exe, "ca", "-init", "-depot", str(depot)], check=True, capture_output=True)
    port = free_port()
    with (work / "scepserver.log").open("wb") as log:
        process = subprocess.Popen(
            [exe, "-depot", str(depot), "-port", str(port), "-challenge", CHALLENGE,
             "-allowrenew", "0", "-crtvalid", "1"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = Micromdm(f"http://127.0.0.1:{port}/scep", depot, process)
    try:
        up = wait_for(lambda: scepd("getcaps", "--url", server.url).returncode == 0, 15)
        assert up, (work / "scepserver.log").read_text()
        yield server
    finally:
        process.terminate()
        process.wait(10)


class NotifySocket:
    """The AF_UNIX datagram socket systemd would listen on for sd_notify(), drained all the
    time as systemd does (a full socket buffer would block the daemon's sends)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            with self._lock:
                self.messages.append(data.decode())

    def seen(self, line: str) -> bool:
        with self._lock:
            return any(line in m.splitlines() for m in self.messages)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@dataclass
class Daemon:
    tmp: Path
    config: Path
    notify: NotifySocket
    process: subprocess.Popen[str] | None = None
    stderr: list[str] = field(default_factory=list)

    def start(self) -> None:
        env = {**CLEAN_ENV, "NOTIFY_SOCKET": str(self.notify.path), "WATCHDOG_USEC": "2000000"}
        self.process = subprocess.Popen(
            [SCEPD, "--config", str(self.config), "run"], env=env,
            stdout=subprocess.DEVNULL, stderr=(self.tmp / "daemon.err").open("w"), text=True,
        )  # fmt: skip

    def log(self) -> str:
        return (self.tmp / "daemon.err").read_text()

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(20)

    def hook_calls(self) -> list[dict[str, str]]:
        path = self.tmp / "hook.log"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def daemon(tmp_path: Path, micromdm: Micromdm) -> Iterator[Daemon]:
    (tmp_path / "otp").write_text(CHALLENGE + "\n")
    (tmp_path / "otp").chmod(0o600)
    (tmp_path / "hook.py").write_text(HOOK)
    config = tmp_path / "config.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            state_dir: {tmp_path}/state
            metrics_file: {tmp_path}/scepd.prom
            defaults:
              renew_at: 66%
              jitter: 0%
              retry: {{initial: 2s, max: 4s}}
            servers:
              micromdm:
                url: {micromdm.url}
                timeout: 5s
                profile: rfc8894
            identities:
              web:
                server: micromdm
                subject: CN=web.installed.example,O=scepd package test
                san: {{dns: [web.installed.example]}}
                key: {tmp_path}/web.key
                cert: {tmp_path}/web.pem
                chain: {tmp_path}/web-chain.pem
                key_mode: "0640"
                group: "0"
                challenge: {{file: {tmp_path}/otp}}
                hooks:
                  post_renew: [[{PYTHON}, {tmp_path}/hook.py, {tmp_path}/hook.log]]
            """
        )
    )
    d = Daemon(tmp_path, config, NotifySocket(tmp_path / "notify"))
    yield d
    if d.process is not None and d.process.poll() is None:
        d.process.kill()
        d.process.wait(10)
    d.notify.close()


def near_expiry(micromdm: Micromdm, cert_path: Path) -> x509.Certificate:
    """The same certificate (subject, SANs, key) re-issued by the CA with 30 seconds left, as
    if it had been enrolled long ago: what the daemon must now renew by itself."""
    current = x509.load_pem_x509_certificate(cert_path.read_bytes())
    ca = micromdm.ca_cert()
    ca_key = serialization.load_pem_private_key(micromdm.ca_key_pem(), password=None)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    builder = (
        x509.CertificateBuilder()
        .subject_name(current.subject)
        .issuer_name(ca.subject)
        .public_key(current.public_key())
        .serial_number(x509.random_serial_number())
        # 90 s in all: the daemon's rate limit (a tenth of the lifetime) allows a renewal 9 s
        # after the enrollment, and 66 % of it has passed.
        .not_valid_before(now - dt.timedelta(seconds=60))
        .not_valid_after(now + dt.timedelta(seconds=30))
    )
    for ext in current.extensions:
        builder = builder.add_extension(ext.value, ext.critical)
    old = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    tmp = cert_path.with_suffix(".tmp")
    tmp.write_bytes(old.public_bytes(serialization.Encoding.PEM))
    tmp.chmod(0o644)
    tmp.replace(cert_path)
    return old


def test_version_is_the_packages() -> None:
    version = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "scepd"], check=True, capture_output=True,
        text=True,
    ).stdout  # fmt: skip
    result = scepd("--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"scepd {version}")


def test_runs_the_installed_module_on_debians_python() -> None:
    assert Path(SCEPD).read_text().splitlines()[0] == "#!/usr/bin/python3"
    where = subprocess.run(
        [PYTHON, "-s", "-P", "-c", "import scepd; print(scepd.__file__)"],
        check=True, capture_output=True, text=True, env=CLEAN_ENV, cwd="/",
    ).stdout.strip()  # fmt: skip
    assert where == "/usr/lib/python3/dist-packages/scepd/__init__.py"


def test_shipped_config_is_a_conffile_that_checks() -> None:
    conffiles = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Conffiles}", "scepd"], check=True, capture_output=True,
        text=True,
    ).stdout  # fmt: skip
    assert "/etc/scepd/config.yaml" in conffiles
    example = Path("/usr/share/doc/scepd/examples/config.example.yaml")
    assert Path("/etc/scepd/config.yaml").read_bytes() == example.read_bytes()
    result = scepd("check-config")  # the default path: /etc/scepd/config.yaml
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 identities" in result.stdout + result.stderr


def test_units_catalog_and_man_pages_are_installed() -> None:
    for path in ("/lib/systemd/system/scepd.service", "/lib/systemd/system/scepd-renew.service",
                 "/lib/systemd/system/scepd-renew.timer", "/usr/lib/systemd/catalog/scepd.catalog",
                 "/usr/share/man/man8/scepd.8.gz", "/usr/share/man/man5/scepd.yaml.5.gz",
                 "/usr/lib/sysusers.d/scepd.conf"):  # fmt: skip
        assert Path(path).is_file(), path
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    man = "yes" if shutil.which("man") else "no"
    result = subprocess.run(
        [analyze, "verify", f"--man={man}", "scepd.service", "scepd-renew.service",
         "scepd-renew.timer"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**CLEAN_ENV, "SYSTEMD_PAGER": ""},
    )  # fmt: skip
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_installed_daemon_enrolls_renews_and_runs_the_hook(
    daemon: Daemon, micromdm: Micromdm
) -> None:
    # Enrollment: nothing on disk yet.
    daemon.start()
    assert wait_for(lambda: daemon.notify.seen("READY=1"), 30), daemon.log()
    assert wait_for(lambda: len(daemon.hook_calls()) >= 1, 60), daemon.log()
    enrolled = x509.load_pem_x509_certificate((daemon.tmp / "web.pem").read_bytes())
    ca = micromdm.ca_cert()
    assert enrolled.issuer == ca.subject
    key = daemon.tmp / "web.key"
    st = key.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o640, 0)
    assert wait_for(lambda: daemon.notify.seen("WATCHDOG=1"), 5), daemon.notify.messages

    # Renewal: the certificate has 30 s left; a SIGHUP makes the daemon look again.
    old = near_expiry(micromdm, daemon.tmp / "web.pem")
    old_key = key.read_bytes()
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGHUP)
    assert wait_for(lambda: len(daemon.hook_calls()) >= 2, 60), daemon.log()
    assert daemon.notify.seen("RELOADING=1")
    renewed = x509.load_pem_x509_certificate((daemon.tmp / "web.pem").read_bytes())
    assert renewed.serial_number not in (old.serial_number, enrolled.serial_number)
    assert renewed.issuer == ca.subject and renewed.subject == enrolled.subject
    assert key.read_bytes() != old_key  # a new key by default
    assert stat.S_IMODE(key.stat().st_mode) == 0o640
    first, second = daemon.hook_calls()[:2]
    assert first["SCEPD_IDENTITY"] == "web" and first["SCEPD_OLD_SERIAL"] == ""
    assert second["SCEPD_OLD_SERIAL"] == f"{old.serial_number:X}"
    assert second["SCEPD_SERIAL"] == f"{renewed.serial_number:X}"
    assert all("NOTIFY_SOCKET" not in c and "WATCHDOG_USEC" not in c for c in (first, second))
    assert 'x509_cert_not_after{' in (daemon.tmp / "scepd.prom").read_text()

    assert daemon.stop() == 0, daemon.log()
    assert daemon.notify.seen("STOPPING=1")
    assert "Traceback" not in daemon.log()
