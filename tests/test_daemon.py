"""`scepd run` and the configured-identity commands, end to end with real processes: the
daemon against devca with 30-second certificates and against micromdm's scepserver."""

from __future__ import annotations

import datetime as dt
import json
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, ScepServer, free_port, run_scepd
from cryptography import x509
from devca_peer import DevCA, peer_env, start_devca
from faultserver import FaultServer

from scepd import store
from scepd._compat import not_valid_after

HOOK = textwrap.dedent(
    """\
    import json, os, sys
    with open(sys.argv[1], "a") as out:
        out.write(json.dumps({k: v for k, v in os.environ.items()
                              if k.startswith("SCEPD_") or k in ("NOTIFY_SOCKET", "WATCHDOG_USEC")})
                  + "\\n")
    """
)


@pytest.fixture(scope="module")
def static_ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCA]:
    directory = tmp_path_factory.mktemp("devca")
    secret = directory / "static-challenge"
    secret.write_text("static-s3cret\n")
    yield from start_devca(directory / "ca", "--validity", "30s", "--challenge-file", str(secret))


def write_config(
    tmp: Path, urls: list[str], *, identities: tuple[str, ...] = ("web",), extra: str = "",
    hooks: str = "", challenge: str = "static-s3cret",
) -> Path:  # fmt: skip
    (tmp / "otp").write_text(challenge + "\n")
    (tmp / "hook.py").write_text(HOOK)
    blocks = []
    for name in identities:
        blocks.append(
            f"""  {name}:
    server: ca
    subject: CN={name}.example.com,O=scepd tests
    san: {{dns: [{name}.example.com]}}
    key: {tmp}/{name}.key
    cert: {tmp}/{name}.pem
    chain: {tmp}/{name}-chain.pem
    fullchain: {tmp}/{name}-full.pem
    key_mode: "0640"
    challenge: {{file: {tmp}/otp}}
    hooks:
      post_renew: [[{sys.executable}, {tmp}/hook.py, {tmp}/hook-{name}.log]]
{extra}"""
        )
    config = f"""state_dir: {tmp}/state
defaults:
  renew_at: 50%
  jitter: 0%
  retry: {{initial: 2s, max: 4s}}
servers:
  ca:
    url: [{", ".join(urls)}]
    timeout: 5s
identities:
{"".join(blocks)}
{hooks}
"""
    path = tmp / "config.yaml"
    path.write_text(config)
    return path


def hook_calls(tmp: Path, name: str = "web") -> list[dict[str, str]]:
    path = tmp / f"hook-{name}.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def start_daemon(config: Path) -> subprocess.Popen[str]:
    env = {
        **peer_env(),
        "PYTHONPATH": str(REPO),
        "NOTIFY_SOCKET": "/nonexistent",
        "WATCHDOG_USEC": "1",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "scepd", "--config", str(config), "run"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_daemon_enrolls_then_renews_twice(static_ca: DevCA, tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}/scep"  # the first URL is down: the second is used
    config = write_config(tmp_path, [down, static_ca.url])
    daemon = start_daemon(config)
    try:
        assert wait_for(lambda: len(hook_calls(tmp_path)) >= 3, timeout=60), hook_calls(tmp_path)
    finally:
        daemon.send_signal(signal.SIGTERM)
        _out, err = daemon.communicate(timeout=15)
    assert daemon.returncode == 0, err
    calls = hook_calls(tmp_path)
    serials = [c["SCEPD_SERIAL"] for c in calls]
    assert len(set(serials)) == len(serials) >= 3  # an enrollment and two renewals
    assert calls[0]["SCEPD_OLD_SERIAL"] == "" and calls[1]["SCEPD_OLD_SERIAL"] == serials[0]
    assert all("NOTIFY_SOCKET" not in c and "WATCHDOG_USEC" not in c for c in calls)
    last = calls[-1]
    assert last["SCEPD_IDENTITY"] == "web"
    assert last["SCEPD_CERT"] == str(tmp_path / "web.pem")
    assert last["SCEPD_KEY"] == str(tmp_path / "web.key")
    assert last["SCEPD_FULLCHAIN"] == str(tmp_path / "web-full.pem")
    assert "CN=web.example.com" in last["SCEPD_SUBJECT"]
    cert = x509.load_pem_x509_certificate((tmp_path / "web.pem").read_bytes())
    assert f"{cert.serial_number:X}" in serials
    assert store.files_match(store.FileSet(key=tmp_path / "web.key", cert=tmp_path / "web.pem"))
    assert oct((tmp_path / "web.key").stat().st_mode & 0o777) == "0o640"
    full = (tmp_path / "web-full.pem").read_bytes()
    assert full.startswith((tmp_path / "web.pem").read_bytes())
    assert "trying the next URL" in err
    assert "Traceback" not in err


def test_status_and_check_config(static_ca: DevCA, tmp_path: Path) -> None:
    config = write_config(tmp_path, [static_ca.url])
    checked = run_scepd("--config", str(config), "check-config")
    assert checked.returncode == 0, checked.stderr
    assert "web: CN=web.example.com" in checked.stdout and "next enroll" in checked.stdout
    before = run_scepd("--config", str(config), "status")
    assert before.returncode == 8  # no certificate yet
    assert "no certificate" in before.stdout
    enrolled = run_scepd("--config", str(config), "enroll", "web")
    assert enrolled.returncode == 0, enrolled.stderr
    after = run_scepd("--config", str(config), "status", "--json")
    assert after.returncode == 0, after.stdout
    (info,) = json.loads(after.stdout)
    assert info["identity"] == "web" and info["last_result"] == "enrolled"
    assert info["next_action"] == "renew" and info["seconds_left"] > 0


def test_check_config_reports_missing_hook_program(static_ca: DevCA, tmp_path: Path) -> None:
    config = write_config(
        tmp_path, [static_ca.url], extra="      pre_renew: [[/nonexistent/pre-hook]]\n"
    )
    result = run_scepd("--config", str(config), "check-config")
    assert result.returncode == 2
    assert "hook program not found: /nonexistent/pre-hook" in result.stderr


def test_renew_all_runs_the_batch_hook_once(static_ca: DevCA, tmp_path: Path) -> None:
    hook = f"[{sys.executable}, {tmp_path}/hook.py, {tmp_path}/hook-batch.log]"
    batch = f"hooks:\n  post_renew_batch: [{hook}]\n"
    config = write_config(tmp_path, [static_ca.url], identities=("a", "b"), hooks=batch)
    result = run_scepd("--config", str(config), "renew", "--all")
    assert result.returncode == 0, result.stderr
    assert "a: enrolled" in result.stdout and "b: enrolled" in result.stdout
    (call,) = hook_calls(tmp_path, "batch")
    assert call["SCEPD_IDENTITIES"] == "a b"
    again = run_scepd("--config", str(config), "renew", "--all")  # nothing due: no hook
    assert again.returncode == 0 and "not-due" in again.stdout
    assert len(hook_calls(tmp_path, "batch")) == 1


def test_dry_run_sends_nothing(static_ca: DevCA, tmp_path: Path) -> None:
    config = write_config(tmp_path, [static_ca.url])
    seen = len(static_ca.lines)
    result = run_scepd("--config", str(config), "renew", "web", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "would enroll" in result.stdout and "hook.py" in result.stdout
    time.sleep(0.3)
    assert len(static_ca.lines) == seen
    assert not (tmp_path / "web.pem").exists()


def test_failing_post_renew_hook_keeps_the_certificate(static_ca: DevCA, tmp_path: Path) -> None:
    config = write_config(tmp_path, [static_ca.url])
    text = config.read_text().replace(
        f"post_renew: [[{sys.executable}, {tmp_path}/hook.py, {tmp_path}/hook-web.log]]",
        "post_renew: [[/bin/false]]",
    )
    config.write_text(text)
    result = run_scepd("--config", str(config), "renew", "web")
    assert result.returncode == 9, result.stderr
    assert "hook /bin/false: exit status 1" in result.stderr
    assert (tmp_path / "web.pem").exists()
    status = run_scepd("--config", str(config), "status", "--json")
    assert json.loads(status.stdout)[0]["last_result"] == "hook-failed"
    assert status.returncode == 8


def test_cli_renew_waits_for_the_daemons_lock(static_ca: DevCA, tmp_path: Path) -> None:
    """While the daemon enrolls (its pre_renew hook takes 3 s), a CLI renew of the same identity
    waits for the lock, then finds the fresh certificate: one request in all."""
    config = write_config(tmp_path, [static_ca.url], extra="      pre_renew: [[sleep, '3']]\n")
    seen = len(static_ca.lines)
    daemon = start_daemon(config)
    try:
        assert wait_for((tmp_path / "state" / "identities" / "web" / "lock").exists, 15)
        time.sleep(0.5)
        cli = run_scepd("--config", str(config), "renew", "web")
        assert wait_for(lambda: len(hook_calls(tmp_path)) >= 1, 20)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=15)
    assert cli.returncode == 0, cli.stderr
    assert "not-due" in cli.stdout
    requests = [line for line in static_ca.lines[seen:] if "messageType=19" in line]
    cert = x509.load_pem_x509_certificate((tmp_path / "web.pem").read_bytes())
    assert len(requests) == 1 and f"serial={cert.serial_number:X}" in requests[0]
    assert len(hook_calls(tmp_path)) == 1


def test_daemon_against_micromdm_renews_with_the_challenge(
    scepserver: ScepServer, tmp_path: Path
) -> None:
    config = write_config(tmp_path, [scepserver.url], challenge=scepserver.challenge)
    text = config.read_text().replace("  renew_at: 50%", "  renew_at: 50%\n  key_bits: 2048")
    text = text.replace("    timeout: 5s", "    timeout: 5s\n    profile: rfc8894")
    config.write_text(text)
    daemon = start_daemon(config)
    try:
        assert wait_for(lambda: len(hook_calls(tmp_path)) >= 1, 30)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=15)
    assert daemon.returncode == 0
    first = x509.load_pem_x509_certificate((tmp_path / "web.pem").read_bytes())
    renewed = run_scepd("--config", str(config), "renew", "web", "--force")
    assert renewed.returncode == 0, renewed.stderr  # micromdm checks the challenge on renewal
    second = x509.load_pem_x509_certificate((tmp_path / "web.pem").read_bytes())
    assert second.serial_number != first.serial_number
    assert second.subject == first.subject


def test_sighup_with_a_bad_config_keeps_running(static_ca: DevCA, tmp_path: Path) -> None:
    config = write_config(tmp_path, [static_ca.url])
    daemon = start_daemon(config)
    try:
        assert wait_for(lambda: len(hook_calls(tmp_path)) >= 1, 30)
        config.write_text("identities: {web: {bogus: 1}}\n")
        daemon.send_signal(signal.SIGHUP)
        time.sleep(1)
        assert daemon.poll() is None
    finally:
        daemon.send_signal(signal.SIGTERM)
        _out, err = daemon.communicate(timeout=15)
    assert daemon.returncode == 0
    assert "reload refused" in err


def test_enroll_name_unknown_identity(tmp_path: Path) -> None:
    config = write_config(tmp_path, ["http://127.0.0.1:9/scep"])
    result = run_scepd("--config", str(config), "enroll", "nope")
    assert result.returncode == 2
    assert "no identity 'nope'" in result.stderr


def test_one_shot_enroll_without_name_needs_its_options(tmp_path: Path) -> None:
    result = run_scepd("enroll", "--url", "http://127.0.0.1:9/scep")
    assert result.returncode == 2
    assert "--key" in result.stderr and "NAME" in result.stderr


def test_retry_after_is_honoured(static_ca: DevCA, tmp_path: Path) -> None:
    proxy = FaultServer(upstream=static_ca.url).start()
    proxy.rules["PKIOperation"] = lambda path, body: (
        503, "text/plain", b"busy", {"Retry-After": "3600"},
    )  # fmt: skip
    try:
        config = write_config(tmp_path, [proxy.url])
        result = run_scepd("--config", str(config), "renew", "web")
    finally:
        proxy.stop()
    assert result.returncode == 8
    (info,) = json.loads(run_scepd("--config", str(config), "status", "--json").stdout)
    assert info["last_result"] == "failed" and "HTTP 503" in info["last_error"]
    wait = dt.datetime.fromisoformat(info["next_at"]) - dt.datetime.now(dt.UTC)
    assert wait > dt.timedelta(minutes=59)  # retry.max is 4s: the server's word wins


def test_expiring_ca_is_warned_and_its_next_certificate_fetched(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("static-s3cret\n")
    run = start_devca(tmp_path / "ca", "--ca-validity", "20d", "--challenge-file", str(secret))
    ca = next(run)
    try:
        assert run_scepd("devca", "rollover", "--dir", str(ca.dir)).returncode == 0
        config = write_config(tmp_path, [ca.url])
        result = run_scepd("--config", str(config), "renew", "web")
    finally:
        next(run, None)
    assert result.returncode == 0, result.stderr
    assert "root CA certificate CN=scepd devca CA" in result.stderr and "expires" in result.stderr
    saved = tmp_path / "state" / "identities" / "web" / "next-ca.pem"
    assert x509.load_pem_x509_certificate(saved.read_bytes()) == ca.cert("next-ca.pem")


def test_a_certificate_replaced_by_someone_else_is_noticed(
    static_ca: DevCA, tmp_path: Path
) -> None:
    config = write_config(tmp_path, [static_ca.url])
    assert run_scepd("--config", str(config), "enroll", "web").returncode == 0
    first = x509.load_pem_x509_certificate((tmp_path / "web.pem").read_bytes())
    (tmp_path / "web.pem").unlink()
    (tmp_path / "web.key").unlink()
    by_hand = run_scepd(
        "enroll", "--url", static_ca.url, "--key", str(tmp_path / "web.key"),
        "--cert", str(tmp_path / "web.pem"), "--subject", "CN=web.example.com,O=scepd tests",
        "--challenge-file", str(tmp_path / "otp"), "--state-dir", str(tmp_path / "st"),
    )  # fmt: skip
    assert by_hand.returncode == 0, by_hand.stderr
    (info,) = json.loads(run_scepd("--config", str(config), "status", "--json").stdout)
    replaced = x509.load_pem_x509_certificate((tmp_path / "web.pem").read_bytes())
    assert info["serial"] == f"{replaced.serial_number:X}" != f"{first.serial_number:X}"
    again = run_scepd("--config", str(config), "renew", "web")
    assert again.returncode == 0 and "not-due" in again.stdout  # scheduled from its own dates


def test_no_challenge_logs_once_and_waits_for_a_reload(static_ca: DevCA, tmp_path: Path) -> None:
    config = write_config(tmp_path, [static_ca.url])
    (tmp_path / "otp").unlink()  # the challenge file is not there (yet)
    daemon = start_daemon(config)
    try:
        assert wait_for((tmp_path / "state" / "identities" / "web" / "status.json").exists, 15)
        time.sleep(1)
        (tmp_path / "otp").write_text("static-s3cret\n")  # provided; a reload picks it up
        daemon.send_signal(signal.SIGHUP)
        assert wait_for(lambda: len(hook_calls(tmp_path)) >= 1, 20)
    finally:
        daemon.send_signal(signal.SIGTERM)
        _out, err = daemon.communicate(timeout=15)
    errors = [line for line in err.splitlines() if line.startswith("scepd: error:")]
    assert sum("no challenge password to enroll with" in line for line in errors) == 1
    assert "configuration reloaded" in err


class NotifySocket:
    """The test's end of NOTIFY_SOCKET: collects every sd_notify datagram."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[dict[str, str]] = []

    def drain(self) -> list[dict[str, str]]:
        while True:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                return self.messages
            except OSError:
                return self.messages
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append(fields)

    def seen(self, key: str, value: str | None = None) -> int:
        return sum(1 for m in self.drain() if key in m and (value is None or m[key] == value))


def test_sd_notify_ready_status_watchdog_reloading_stopping(
    static_ca: DevCA, tmp_path: Path
) -> None:
    notify = NotifySocket(tmp_path / "notify.sock")
    config = write_config(tmp_path, [static_ca.url])
    env = {**peer_env(), "PYTHONPATH": str(REPO), "NOTIFY_SOCKET": str(notify.path),
           "WATCHDOG_USEC": "1000000"}  # fmt: skip
    daemon = subprocess.Popen(
        [sys.executable, "-m", "scepd", "--config", str(config), "run"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert wait_for(lambda: notify.seen("READY", "1") >= 1, 15)
        assert wait_for(lambda: len(hook_calls(tmp_path)) >= 1, 20)  # web enrolled
        assert wait_for(lambda: notify.seen("WATCHDOG", "1") >= 3, 10)  # every 0.5 s
        statuses = [m["STATUS"] for m in notify.drain() if "STATUS" in m]
        assert any(s.startswith("1 identities; next: web renews ") and s.endswith("; 0 failing")
                   for s in statuses), statuses  # fmt: skip

        # SIGHUP adds an identity: RELOADING=1 ... READY=1, and it is enrolled.
        write_config(tmp_path, [static_ca.url], identities=("web", "api"))
        daemon.send_signal(signal.SIGHUP)
        assert wait_for(lambda: notify.seen("RELOADING", "1") >= 1, 10)
        assert wait_for(lambda: notify.seen("READY", "1") >= 2, 10)
        assert wait_for(lambda: len(hook_calls(tmp_path, "api")) >= 1, 20)

        # A bad reload keeps the old configuration (and still ends in READY=1).
        good = config.read_text()
        config.write_text("identities: {web: {bogus: 1}}\n")
        daemon.send_signal(signal.SIGHUP)
        assert wait_for(lambda: notify.seen("RELOADING", "1") >= 2, 10)
        assert wait_for(lambda: notify.seen("READY", "1") >= 3, 10)
        assert daemon.poll() is None
        config.write_text(good)
        started = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        _out, err = daemon.communicate(timeout=15)
        stopped_in = time.monotonic() - started
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert daemon.returncode == 0, err
    assert stopped_in < 10
    assert notify.seen("STOPPING", "1") == 1
    assert "reload refused" in err


def test_metrics_file_follows_the_identities(static_ca: DevCA, tmp_path: Path) -> None:
    config = write_config(tmp_path, [static_ca.url], identities=("web", "api"))
    text = config.read_text().replace(
        "defaults:", f"metrics_file: {tmp_path}/scepd.prom\ndefaults:"
    )
    config.write_text(text)
    daemon = start_daemon(config)
    prom = tmp_path / "scepd.prom"

    def series(name: str) -> list[str]:
        if not prom.exists():
            return []
        return [line for line in prom.read_text().splitlines() if line.startswith(name + "{")]

    try:
        assert wait_for(lambda: len(series("x509_cert_not_after")) == 2, 30)
        cert = x509.load_pem_x509_certificate((tmp_path / "web.pem").read_bytes())
        (web,) = [s for s in series("x509_cert_not_after") if 'identity="web"' in s]
        assert f'serial_number="{cert.serial_number}"' in web
        assert float(web.rsplit(" ", 1)[1]) == not_valid_after(cert).timestamp()
        assert any('identity="api"' in s for s in series("scepd_last_success_timestamp_seconds"))
        assert oct(prom.stat().st_mode & 0o777) == "0o644"
        config.write_text(text.replace("  api:", "  old-api:").split("  old-api:")[0])
        daemon.send_signal(signal.SIGHUP)  # api removed: its series go
        assert wait_for(
            lambda: not any('identity="api"' in line for line in prom.read_text().splitlines()), 15
        )
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=15)
    assert series("x509_cert_not_after") and all(
        'identity="web"' in s for s in series("x509_cert_not_after")
    )
    assert not list(tmp_path.glob(".scepd.prom.*"))


def test_check_command_is_wired(static_ca: DevCA, tmp_path: Path) -> None:
    config = write_config(tmp_path, [static_ca.url])
    result = run_scepd("--config", str(config), "check", "web")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "web: ok   no certificate yet: will enroll" in result.stdout
    assert "static-s3cret" not in result.stdout + result.stderr
