"""The scepd .deb under a real systemd: a Debian bookworm root booted with systemd-nspawn.

One boot serves the whole module (the ``booted`` fixture): a fresh copy of the cached root
(scripts/nspawn-root), the newest dist/scepd_*_all.deb installed in it with apt, a
configuration with one identity against a devca on the host's 127.0.0.1 (the container
shares the host's network) issuing 60-second certificates, and inside_checks.py run as a
oneshot unit that drives scepd.service with systemctl and records what it saw.  The tests
below assert on that record, one behaviour each.  Nothing is simulated: PID 1, journald,
the sandbox, the watchdog and the hooks are systemd's own, and the scepd that runs is the
packaged one.

Run by `make test-systemd` (root, Debian's python3):
    SCEPD_TEST_SYSTEMD=1 PYTHONNOUSERSITE=1 PYTHONPATH=. /usr/bin/python3 -s -m pytest -q \
        -p no:cacheprovider tests/systemd
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from devca_peer import DevCA, start_devca

from scepd.daemon.journal import MESSAGE_IDS  # the repo's, host side only

pytestmark = pytest.mark.skipif(
    os.environ.get("SCEPD_TEST_SYSTEMD") != "1", reason="run by make test-systemd"
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
INSIDE = Path("/var/lib/scepd-systemd-test")  # results and marker, as the container sees it
IDENTITY = "web"
KEY_GROUP = "web-tls"  # created inside with groupadd
FILES = {
    "key": f"/etc/ssl/private/{IDENTITY}.key",
    "cert": f"/etc/ssl/certs/{IDENTITY}.pem",
    "chain": f"/etc/ssl/certs/{IDENTITY}-chain.pem",
    "fullchain": f"/etc/ssl/certs/{IDENTITY}-full.pem",
}
VALIDITY = "60s"  # renewal due at 50 %: ~30 s after the enrollment, during the boot
BOOT_TIMEOUT = 300
EXPOSURE_MAX = 2.0  # tests/test_unit_file.py's gate for the packaged unit (measured 1.9)
IDS = {kind: value.hex for kind, value in MESSAGE_IDS.items()}


@dataclass
class Booted:
    root: Path  # the booted copy, removed after the module's tests
    results: dict[str, Any]
    artifacts: Path  # results.json, journals, console: kept after the run
    apt: subprocess.CompletedProcess[str]
    package_enabled: str  # `systemctl is-enabled scepd` right after the install
    issued: set[str]  # serials the host's devca issued
    devca_log: list[str]
    challenge_seen_in: list[str]  # files holding the challenge (never the challenge itself)
    seconds: dict[str, float]

    def journal(self, lines: int = 80) -> str:
        path = self.artifacts / "journal-units.txt"
        text = path.read_text() if path.exists() else "(no journal saved)"
        return "\n".join(text.splitlines()[-lines:])

    def observed(self, check: str) -> dict[str, Any]:
        """The check's record, or a failure that shows its error and the journal."""
        entry = self.results.get(check)
        if entry is None or "observed" not in entry:
            pytest.fail(self.explain(f"inside check {check!r} did not complete", entry))
        observed: dict[str, Any] = entry["observed"]
        return observed

    def explain(self, what: str, observed: Any) -> str:
        shown = json.dumps(observed, indent=1, default=str)
        if len(shown) > 6000:
            shown = shown[:6000] + "\n..."
        return (f"{what}\n--- observed ---\n{shown}\n--- journal (scepd, scepd-dummy) ---\n"
                f"{self.journal()}\n--- everything: {self.artifacts} ---")  # fmt: skip


# --- the boot -------------------------------------------------------------------------------


def newest_deb() -> Path:
    debs = sorted((REPO / "dist").glob("scepd_*_all.deb"), key=lambda p: p.stat().st_mtime)
    if not debs:
        pytest.fail(f"no {REPO}/dist/scepd_*_all.deb: run make deb first")
    return debs[-1]


def cached_root() -> Path:
    """scripts/nspawn-root builds the root once, then only prints its path."""
    done = subprocess.run([REPO / "scripts" / "nspawn-root"], capture_output=True, text=True,
                          check=False, timeout=1800)  # fmt: skip
    if done.returncode != 0:
        pytest.fail(f"scripts/nspawn-root failed:\n{done.stderr[-4000:]}")
    return Path(done.stdout.split()[-1])


def nspawn(
    root: Path, machine: str, *args: str, timeout: float
) -> subprocess.CompletedProcess[str]:
    """systemd-nspawn without machined (the host has no systemd): --register=no --keep-unit."""
    Path("/run/systemd/nspawn").mkdir(parents=True, exist_ok=True)  # nspawn needs it
    cmd = ["timeout", "--kill-after=20", str(timeout), "systemd-nspawn", "-q", "--register=no",
           "--keep-unit", "--console=pipe", "--link-journal=no", f"--machine={machine}",
           "-D", str(root), *args]  # fmt: skip
    with subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:  # fmt: skip
        try:
            out, err = proc.communicate(timeout=timeout + 60)
        except BaseException:
            _end(proc)
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _end(proc: subprocess.Popen[str]) -> None:
    """Interrupted (Ctrl-C): SIGTERM, which `timeout` passes on and nspawn answers by shutting
    the container down; the copy may only be removed once it is gone.  Last resort: SIGKILL to
    `timeout`'s process group (it makes one of its own), nspawn included."""
    proc.terminate()
    try:
        proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()


def copy_root(root: Path, dest: Path) -> None:
    """cp -a under a shared lock: scripts/nspawn-root replaces the root under an exclusive one."""
    with (root.parent / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)
        subprocess.run(["cp", "-a", "--reflink=auto", str(root), str(dest)], check=True)


def config_yaml(url: str, fingerprint: str) -> str:
    files = "\n".join(f"    {name}: {path}" for name, path in FILES.items())
    return textwrap.dedent(
        f"""\
        # Written by tests/systemd/test_under_systemd.py.
        state_dir: /var/lib/scepd
        defaults:
          renew_at: 50%
          jitter: 0%
          retry: {{initial: 2s, max: 4s}}
        servers:
          devca:
            url: {url}
            ca_fingerprint: sha256:{fingerprint}
            timeout: 10s
        identities:
          {IDENTITY}:
            server: devca
            subject: CN={IDENTITY}.scepd-test.example,O=scepd systemd test
            san: {{dns: [{IDENTITY}.scepd-test.example]}}
        FILES
            owner: root
            group: {KEY_GROUP}
            key_mode: "0640"
            cert_mode: "0644"
            challenge: {{credential: {IDENTITY}.otp}}
            hooks:
              post_renew: [[systemctl, reload, scepd-dummy.service]]
        """
    ).replace("FILES", files)


def install_test_files(root: Path, config: str, challenge: str) -> None:
    """Units, drop-in, checks, configuration and challenge (root 0600, as LoadCredential=
    wants it), written into the not yet booted root."""
    units = HERE / "units"
    shutil.copytree(units, root / "etc/systemd/system", dirs_exist_ok=True)
    lib = root / "usr/local/lib/scepd-systemd-test"
    lib.mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "inside_checks.py", lib / "inside_checks.py")
    (root / "etc/scepd/config.yaml").write_text(config)
    otp = root / f"etc/scepd/{IDENTITY}.otp"
    otp.touch(mode=0o600)
    otp.write_text(challenge + "\n")


PREPARE = f"""set -eu
groupadd --system {KEY_GROUP}
systemctl is-enabled scepd.service > {INSIDE}/package-enabled || true
# The checks start it themselves (enable --now), after the boot.
systemctl disable --quiet scepd.service
systemctl enable --quiet scepd-systemd-test.service
"""


def install_deb(root: Path, machine: str, deb: Path) -> subprocess.CompletedProcess[str]:
    """apt-get install of the .deb in the root, not booted (as on a fresh server)."""
    shutil.copy(deb, root / "var/tmp" / deb.name)
    apt = nspawn(root, machine, "--setenv=DEBIAN_FRONTEND=noninteractive",
                 "apt-get", "install", "-y", "-q", f"/var/tmp/{deb.name}", timeout=300)  # fmt: skip
    if apt.returncode != 0:
        pytest.fail(f"apt-get install {deb.name} failed inside:\n{apt.stdout}\n{apt.stderr}")
    return apt


def prepare(root: Path, machine: str, ca: DevCA, challenge: str) -> None:
    """The configuration, the test's units and the checks' parameters."""
    (root / INSIDE.relative_to("/")).mkdir(parents=True)
    fingerprint = ca.cert("ca.pem").fingerprint(hashes.SHA256()).hex()
    install_test_files(root, config_yaml(ca.url, fingerprint), challenge)
    params = {"message_ids": IDS, "files": FILES,
              "enroll_timeout": 60, "renew_timeout": 90, "watchdog_timeout": 40}  # fmt: skip
    (root / INSIDE.relative_to("/") / "params.json").write_text(json.dumps(params))
    prepared = nspawn(root, machine, "sh", "-c", PREPARE, timeout=60)
    if prepared.returncode != 0:
        pytest.fail(f"preparing the root failed:\n{prepared.stdout}\n{prepared.stderr}")


def boot_and_collect(root: Path, machine: str, artifacts: Path) -> dict[str, Any]:
    """Boot; the checks power the container off.  Their files are copied to ``artifacts``."""
    started = time.monotonic()
    booted = nspawn(root, machine, "-b", timeout=BOOT_TIMEOUT)
    seconds = round(time.monotonic() - started, 1)
    console = booted.stdout + booted.stderr
    (artifacts / "console.txt").write_text(console)
    for path in (root / INSIDE.relative_to("/")).iterdir():
        if path.is_file():
            shutil.copy(path, artifacts / path.name)
    results_file = artifacts / "results.json"
    results: dict[str, Any] = json.loads(results_file.read_text()) if results_file.exists() else {}
    if not results.get("complete"):
        pytest.fail(
            f"the checks did not complete (nspawn exit {booted.returncode}, {seconds} s)"
            f"\n--- console ---\n{console[-6000:]}"
            f"\n--- journal ---\n{_host_journal(root)}\n--- everything: {artifacts} ---"
        )
    results["boot_seconds"] = seconds
    return results


def boot(root: Path, ca: DevCA, challenge: str, artifacts: Path, deb: Path) -> Booted:
    machine = f"scepd-test-{secrets.token_hex(3)}"  # the container's name, unique per run
    (root / "etc/machine-id").write_text(uuid.uuid4().hex + "\n")
    started = time.monotonic()
    apt = install_deb(root, machine, deb)
    seconds = {"apt_install": round(time.monotonic() - started, 1)}
    prepare(root, machine, ca, challenge)
    results = boot_and_collect(root, machine, artifacts)
    seconds["boot"] = results.pop("boot_seconds")
    otp = root / f"etc/scepd/{IDENTITY}.otp"  # where it belongs: proves the search finds it
    journals = list((root / "var/log/journal").rglob("*.journal"))
    return Booted(
        root=root, results=results, artifacts=artifacts, apt=apt,
        package_enabled=(root / INSIDE.relative_to("/") / "package-enabled").read_text().strip(),
        issued={p.stem for p in (ca.dir / "issued").glob("*.pem")}, devca_log=list(ca.lines),
        challenge_seen_in=_holding(challenge, [otp, *artifacts.iterdir(), *journals]),
        seconds=seconds,
    )  # fmt: skip


def _holding(secret: str, paths: list[Path]) -> list[str]:
    needle = secret.encode()
    return [str(p) for p in paths if p.is_file() and needle in p.read_bytes()]


def _host_journal(root: Path) -> str:
    """The container's persistent journal, read from the host (the boot may not have got as
    far as saving it itself)."""
    done = subprocess.run(["journalctl", "--no-pager", "-D", str(root / "var/log/journal"),
                           "-n", "150"], capture_output=True, text=True, check=False)  # fmt: skip
    return done.stdout + done.stderr


def _remove_copy(workdir: Path) -> None:
    """The copy goes unless something is still mounted in it (then rm -rf must not run)."""
    mounts = Path("/proc/mounts").read_text().split("\n")
    if any(f" {workdir}/" in line for line in mounts):
        pytest.fail(f"mounts left under {workdir}: not removed")
    shutil.rmtree(workdir)


@pytest.fixture(scope="module")
def booted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Booted]:
    if os.geteuid() != 0:
        pytest.fail("systemd-nspawn needs root")
    deb = newest_deb()
    root = cached_root()
    artifacts = tmp_path_factory.mktemp("systemd-run")
    ca_home = tmp_path_factory.mktemp("devca")
    challenge = secrets.token_hex(12)  # never printed; the devca and the credential get it
    secret = ca_home / "challenge"
    secret.touch(mode=0o600)
    secret.write_text(challenge + "\n")
    peer = start_devca(ca_home / "ca", "--validity", VALIDITY, "--challenge-file", str(secret))
    ca = next(peer)
    workdir = Path(tempfile.mkdtemp(prefix="scepd-systemd-", dir="/var/tmp"))
    try:
        started = time.monotonic()
        copy_root(root, workdir / "root")
        copied = round(time.monotonic() - started, 1)
        run = boot(workdir / "root", ca, challenge, artifacts, deb)
        run.seconds["copy"] = copied
        yield run
    finally:
        try:
            _remove_copy(workdir)
        finally:
            next(peer, None)  # stops the devca


# --- the behaviours -------------------------------------------------------------------------


def test_package_installs_with_apt(booted: Booted) -> None:
    assert "Setting up scepd " in booted.apt.stdout, booted.apt.stdout
    props = booted.observed("start")["props"]
    assert props["FragmentPath"] in ("/lib/systemd/system/scepd.service",
                                     "/usr/lib/systemd/system/scepd.service"), props  # fmt: skip
    installed = booted.root / props["FragmentPath"].lstrip("/")
    assert installed.read_text() == (REPO / "contrib/systemd/scepd.service").read_text(), (
        f"the .deb's {props['FragmentPath']} is not contrib/systemd/scepd.service: make deb?"
    )
    assert (booted.root / "usr/lib/systemd/catalog/scepd.catalog").is_file()
    # debian/rules: enabled on install (the test disables it before the boot to start it itself)
    assert booted.package_enabled == "enabled", booted.package_enabled


def test_enable_now_returns_after_ready(booted: Booted) -> None:
    start = booted.observed("start")
    props = start["props"]
    assert start["enable_now"]["rc"] == 0, booted.explain("systemctl enable --now failed", start)
    assert (props["Type"], props["ActiveState"], props["SubState"]) == (
        "notify",
        "active",
        "running",
    ), booted.explain("not active after enable --now", props)
    assert props["StatusText"].startswith("1 identities"), props["StatusText"]
    # Active only after READY=1, which scepd sends right after logging "scepd running".
    (running,) = start["running_log"] or [None]
    assert running is not None, booted.explain("no 'scepd running' line", start)
    assert int(props["ActiveEnterTimestampMonotonic"]) >= int(running["__MONOTONIC_TIMESTAMP"])
    assert start["dummy_active"] == "active", start["dummy_start"]


def test_enrollment_is_a_journal_event(booted: Booted) -> None:
    enrolled = booted.observed("enrolled")
    events = enrolled["events"]
    assert len(events) == 1, booted.explain("no (or several) enrollment events", enrolled)
    (event,) = events
    assert event["MESSAGE_ID"] == IDS["enrolled"]
    assert event["SCEPD_IDENTITY"] == IDENTITY and event["SCEPD_SERVER"] == "devca", event
    assert event["_SYSTEMD_UNIT"] == "scepd.service" and event["PRIORITY"] == "5", event
    assert event["SCEPD_SERIAL"] == enrolled["cert_serial"], booted.explain("serial", enrolled)
    assert event["SCEPD_SERIAL"] in booted.issued, (event, booted.issued)  # the host's devca
    assert event["SCEPD_NOT_AFTER"].endswith("Z"), event
    assert not enrolled["failures"], booted.explain("renewal-failed events", enrolled)


def test_catalog_explains_the_event(booted: Booted) -> None:
    catalog = booted.observed("enrolled")["catalog"]
    assert f"Certificate enrolled for {IDENTITY}" in catalog, catalog


def test_renewal_runs_the_hook_that_reloads_another_service(booted: Booted) -> None:
    renewed = booted.observed("renewed")
    assert renewed.get("events"), booted.explain("no renewal event in time", renewed)
    first = booted.observed("enrolled")["events"][0]["SCEPD_SERIAL"]
    event = renewed["events"][0]
    assert event["MESSAGE_ID"] == IDS["renewed"]
    assert event["SCEPD_IDENTITY"] == IDENTITY and event["SCEPD_SERIAL"] != first, event
    assert event["SCEPD_SERIAL"] in booted.issued, (event, booted.issued)
    assert renewed["cert_serial"] in booted.issued
    answered = [
        line for line in booted.devca_log if f"SUCCESS serial={event['SCEPD_SERIAL']}" in line
    ]
    assert answered, booted.devca_log  # the request went to the host's devca
    # The post_renew hook's `systemctl reload scepd-dummy.service`, from inside scepd's
    # sandbox, made PID 1 run the dummy's ExecReload: once per enrollment/renewal.
    assert len(renewed["marker_lines"]) == 1 + len(renewed["events"]), booted.explain(
        "the dummy service was not reloaded once per certificate", renewed
    )
    assert any(m.startswith("Reloaded ") for m in renewed["dummy_journal"]), renewed
    assert renewed["dummy_active"] == "active"
    assert not renewed["hook_failed"] and not renewed["failures"], booted.explain(
        "hook or renewal failures", renewed
    )


def test_systemctl_reload_sends_sighup(booted: Booted) -> None:
    reload = booted.observed("reload")
    assert reload["reload"]["rc"] == 0, booted.explain("systemctl reload scepd failed", reload)
    assert reload["daemon_log"], booted.explain("scepd did not log the reload", reload)
    assert reload["daemon_log"][0]["_PID"] == str(reload["pid_before"])
    props = reload["props"]
    assert props["MainPID"] == str(reload["pid_before"]) and props["ActiveState"] == "active"
    assert any(m.startswith("Reloaded ") for m in reload["pid1_log"]), reload["pid1_log"]


def test_watchdog_restarts_a_hung_daemon(booted: Booted) -> None:
    dog = booted.observed("watchdog")
    assert dog["kill"]["rc"] == 0, dog["kill"]
    assert dog["before"]["WatchdogUSec"] == "4s", dog["before"]  # the test's drop-in
    assert dog["stopped_state"].startswith("T"), dog["stopped_state"]  # SIGSTOP took
    assert dog["waited"] is not None, booted.explain("no restart after the watchdog", dog)
    log = " | ".join(dog["pid1_log"])
    assert "Watchdog timeout" in log and "Failed with result 'watchdog'" in log, log
    assert dog["seconds_to_timeout"] is not None and dog["seconds_to_timeout"] <= 6, dog
    before, after = dog["before"], dog["after"]
    assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1, (before, after)
    assert after["MainPID"] != before["MainPID"] and after["ActiveState"] == "active", after
    assert dog["old_pid_gone"]


def test_stop_is_clean(booted: Booted) -> None:
    stop = booted.observed("stop")
    props = stop["props"]
    assert stop["stop"]["rc"] == 0, booted.explain("systemctl stop failed", stop)
    assert (props["ActiveState"], props["SubState"], props["Result"]) == (
        "inactive",
        "dead",
        "success",
    ), booted.explain("not a clean stop", props)
    assert (props["ExecMainCode"], props["ExecMainStatus"]) == ("1", "0"), props  # exited 0
    assert stop["is_failed"]["stdout"].strip() == "inactive", stop["is_failed"]
    assert any("scepd stopped" in m for m in stop["daemon_log"]), stop["daemon_log"]


def test_key_and_certificate_modes_and_owners(booted: Booted) -> None:
    files = booted.observed("files")
    assert files["key"] == {"mode": "0640", "owner": "root", "group": KEY_GROUP}, files
    for name in ("cert", "chain", "fullchain"):
        assert files[name] == {"mode": "0644", "owner": "root", "group": KEY_GROUP}, files
    assert files["state_dir"] == {"mode": "0700", "owner": "root", "group": "root"}, files


def test_the_sandbox_is_applied_to_the_running_daemon(booted: Booted) -> None:
    box = booted.observed("sandbox")
    status, mounts = box["status"], box["mounts"]
    assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2", status
    assert int(status["CapBnd"], 16) == 1 << 0, status  # CAP_CHOWN only
    assert int(status["CapAmb"], 16) == 0, status
    # ProtectSystem=strict + ReadWritePaths + StateDirectory, ProtectHome, PrivateTmp/Devices
    for point in ("/", "/home", "/root", "/dev"):
        assert mounts[point].startswith("ro,"), (point, mounts)
    for point in ("/etc/ssl/private", "/etc/ssl/certs", "/var/lib/scepd", "/tmp"):
        assert mounts[point].startswith("rw,"), (point, mounts)
    assert box["credentials"] == [f"{IDENTITY}.otp"], box
    assert box["credentials_directory"] == "/run/credentials/scepd.service", box


def test_challenge_is_never_logged(booted: Booted) -> None:
    """Not in the journal files, the saved journals, the results or the console: only in
    the file LoadCredential= reads it from."""
    assert booted.challenge_seen_in == [str(booted.root / f"etc/scepd/{IDENTITY}.otp")]


def test_security_exposure(booted: Booted, capsys: pytest.CaptureFixture[str]) -> None:
    security = booted.observed("security")
    with capsys.disabled():
        print(f"\nscepd.service exposure under systemd: {security['exposure']} "
              f"{security['verdict']}; timings {booted.seconds}; "
              f"restarts {booted.observed('watchdog')['after'].get('NRestarts')}; "
              f"artifacts {booted.artifacts}")  # fmt: skip
    assert security["exposure"] is not None, security["analyze"]
    assert security["exposure"] <= EXPOSURE_MAX, security["analyze"]["stdout"]
