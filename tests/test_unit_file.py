"""contrib/systemd/scepd.service: `systemd-analyze verify` prints nothing at all (an unknown or
misspelled directive is only a warning with rc 0), `systemd-analyze security --offline=true`
stays at the measured exposure, and the directives the daemon and its hooks rely on are there.

Exposure, measured with bookworm's systemd 252 (`--offline=true`):
  bare Type=notify unit                                           9.6 UNSAFE
  scepd.service as shipped (root, CAP_CHOWN only)                  1.9 OK
    what is left: PrivateNetwork= 0.5, User= (root) 0.4, AF_INET/AF_INET6 0.3, CAP_CHOWN's
    bucket 0.2, @privileged allowed (chown) 0.2, PrivateUsers= 0.2, IPAddressDeny= 0.2,
    AF_UNIX 0.1, RootDirectory= 0.1, DeviceAllow char-rtc (implied by ProtectClock=; without
    ProtectClock= 2.0) 0.1.  None can go without breaking the daemon: SCEP servers are
    anywhere (network, INET, no IP allow list), hooks need AF_UNIX for systemctl, chown to
    configured owners needs @chown and CAP_CHOWN, and PrivateUsers= would map every other
    owner to nobody.
  with scepd.service.d/other-owners.conf.example (+ CAP_FOWNER CAP_DAC_OVERRIDE)  2.1 OK
  with scepd.service.d/unprivileged.conf.example (User=scepd, no capabilities)   1.4 OK
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

UNIT = REPO / "contrib" / "systemd" / "scepd.service"
DROPIN = REPO / "contrib" / "systemd" / "scepd.service.d" / "unprivileged.conf.example"
OTHER_OWNERS = DROPIN.with_name("other-owners.conf.example")
ANALYZE = shutil.which("systemd-analyze") or (
    "/usr/bin/systemd-analyze" if Path("/usr/bin/systemd-analyze").exists() else None
)
EXPOSURE_MAX = 2.0  # the limit; the unit measures 1.9
EXPOSURE_OTHER_OWNERS_MAX = 2.1
EXPOSURE_UNPRIVILEGED_MAX = 1.4

needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed")


def directives(text: str) -> dict[str, list[str]]:
    """Key -> every value assigned in the file, in order (comments and sections dropped)."""
    out: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;" or line.startswith("["):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {raw!r}"
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def checkable_copy(tmp_path: Path, text: str, name: str = "scepd.service") -> Path:
    """The unit as `verify` can check it here: ExecStart= must name an executable, and the
    Debian package installs /usr/bin/scepd only later."""
    if not os.access("/usr/bin/scepd", os.X_OK):
        text = re.sub(r"^ExecStart=/usr/bin/scepd\b", "ExecStart=/bin/true", text, flags=re.M)
    path = tmp_path / name
    path.write_text(text)
    return path


def analyze(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run(
        [ANALYZE, *map(str, args)], check=False, capture_output=True, text=True, timeout=60,
        env={**os.environ, "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0", "LC_ALL": "C.UTF-8"},
    )  # fmt: skip


def exposure(unit: Path) -> float:
    result = analyze("security", "--offline=true", "--no-pager", unit)
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert match, result.stdout
    return float(match.group(1))


def test_unit_declares_notify_watchdog_and_reload() -> None:
    d = directives(UNIT.read_text())
    assert d["Type"] == ["notify"]
    assert d["NotifyAccess"] == ["main"]
    assert d["WatchdogSec"] == ["60s"]
    assert d["ExecStart"] == ["/usr/bin/scepd run"]
    assert d["ExecReload"], "no ExecReload="
    assert d["Restart"] == ["on-failure"] and d["RestartSec"] == ["30s"]
    assert d["StateDirectory"] == ["scepd"] and d["StateDirectoryMode"] == ["0700"]


def test_reload_needs_nothing_outside_essential_packages() -> None:
    """/bin/kill is procps's, missing on a minimal Debian (203/EXEC there)."""
    (reload_cmd,) = directives(UNIT.read_text())["ExecReload"]
    assert reload_cmd.split()[0] == "/bin/sh", reload_cmd


def test_reload_command_sends_sighup_to_mainpid() -> None:
    """Run ExecReload= the way systemd would: "$$" becomes "$", MAINPID in the environment."""
    (reload_cmd,) = directives(UNIT.read_text())["ExecReload"]
    match = re.fullmatch(r"/bin/sh -c '([^']*)'", reload_cmd)
    assert match, reload_cmd
    script = match.group(1).replace("$$", "$")
    waiter = subprocess.Popen(
        [sys.executable, "-c",
         "import signal, sys\n"
         "signal.signal(signal.SIGHUP, lambda *a: sys.exit(42))\n"
         "print('ready', flush=True)\n"
         "signal.pause()\n"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert waiter.stdout is not None and waiter.stdout.readline() == "ready\n"
        env = {"PATH": "/usr/bin:/bin", "MAINPID": str(waiter.pid)}
        subprocess.run(["/bin/sh", "-c", script], env=env, check=True, timeout=10)
        assert waiter.wait(timeout=10) == 42
        # No main PID known: the reload must fail, not signal something else.
        empty = subprocess.run(
            ["/bin/sh", "-c", script], check=False, env={"PATH": "/usr/bin:/bin"},
            capture_output=True, timeout=10,
        )  # fmt: skip
        assert empty.returncode != 0
    finally:
        if waiter.poll() is None:
            waiter.send_signal(signal.SIGKILL)
            waiter.wait()


def test_sandbox_keeps_what_the_daemon_and_hooks_need() -> None:
    d = directives(UNIT.read_text())
    # systemctl (hooks), journald and sd_notify are AF_UNIX; SCEP servers are AF_INET(6).
    assert d["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert "PrivateNetwork" not in d and "IPAddressDeny" not in d and "User" not in d
    # The swap renames a temporary file next to each target: its directory must be writable.
    rw = " ".join(d["ReadWritePaths"]).split()
    for path in ("-/etc/ssl/private", "-/etc/ssl/certs", "-/var/lib/prometheus/node-exporter"):
        assert path in rw
    assert d["ProtectSystem"] == ["strict"]
    # Only fchown() to the configured owner; the store sets modes before it (test_swap.py).
    assert d["CapabilityBoundingSet"] == ["CAP_CHOWN"]
    # @system-service includes @chown; ~@privileged would take it away again.
    assert d["SystemCallFilter"][0] == "@system-service"
    assert not any("@privileged" in v or "@chown" in v for v in d["SystemCallFilter"][1:])
    for key, value in [
        ("NoNewPrivileges", "yes"), ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"), ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"), ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"), ("ProtectClock", "yes"), ("ProtectHostname", "yes"),
        ("RestrictNamespaces", "yes"), ("RestrictRealtime", "yes"),
        ("RestrictSUIDSGID", "yes"), ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"), ("SystemCallArchitectures", "native"),
        ("UMask", "0077"),
    ]:  # fmt: skip
        assert d.get(key) == [value], key


def test_loadcredential_example_is_commented() -> None:
    text = UNIT.read_text()
    assert "#LoadCredential=web01.otp:/etc/scepd/web01.otp" in text
    assert "{credential: web01.otp}" in text
    assert "LoadCredential" not in directives(text)


@needs_analyze
def test_verify_prints_nothing(tmp_path: Path) -> None:
    unit = checkable_copy(tmp_path, UNIT.read_text())
    result = analyze("verify", "--man=no", unit)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@needs_analyze
def test_verify_catches_a_misspelled_directive(tmp_path: Path) -> None:
    """The check above is only worth something if a typo shows up in the output."""
    text = UNIT.read_text().replace("ProtectSystem=strict", "ProtectSytem=strict")
    result = analyze("verify", "--man=no", checkable_copy(tmp_path, text))
    assert "ProtectSytem" in result.stdout + result.stderr


@needs_analyze
def test_security_exposure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    value = exposure(checkable_copy(tmp_path, UNIT.read_text()))
    with capsys.disabled():
        print(f"\nscepd.service exposure: {value} (max {EXPOSURE_MAX})")
    assert value <= EXPOSURE_MAX
    # Same gate as a CI job would use (the threshold is exposure x 10).
    result = analyze(
        "security",
        "--offline=true",
        "--no-pager",
        f"--threshold={round(EXPOSURE_MAX * 10)}",
        tmp_path / "scepd.service",
    )
    assert result.returncode == 0, result.stdout  # fmt: skip


def dropin_exposure(tmp_path: Path, dropin: Path, capsys: pytest.CaptureFixture[str]) -> float:
    """The drop-in's assignments appended to the unit, as systemd applies a drop-in: it must
    verify without a word, and its exposure is returned (and shown)."""
    unit = checkable_copy(tmp_path, UNIT.read_text() + "\n" + dropin.read_text())
    result = analyze("verify", "--man=no", unit)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    value = exposure(unit)
    with capsys.disabled():
        print(f"scepd.service + {dropin.name} exposure: {value}")
    return value


@needs_analyze
def test_unprivileged_dropin(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = directives(DROPIN.read_text())
    assert d["User"] == ["scepd"] and d["CapabilityBoundingSet"] == [""]
    assert dropin_exposure(tmp_path, DROPIN, capsys) <= EXPOSURE_UNPRIVILEGED_MAX


TIMER_SERVICE = UNIT.parent / "scepd-renew.service"
TIMER = UNIT.parent / "scepd-renew.timer"


@needs_analyze
def test_timer_alternative_verifies_and_runs_renew_all(tmp_path: Path) -> None:
    service = checkable_copy(tmp_path, TIMER_SERVICE.read_text(), "scepd-renew.service")
    timer = tmp_path / "scepd-renew.timer"
    timer.write_text(TIMER.read_text())
    result = analyze("verify", "--man=no", service, timer)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    unit = directives(TIMER_SERVICE.read_text())
    assert unit["Type"] == ["oneshot"]
    assert unit["ExecStart"] == ["/usr/bin/scepd renew --all"]
    # The same sandbox as the daemon, line for line (Type/notify/watchdog/restart aside).
    daemon = directives(UNIT.read_text())
    for key, values in daemon.items():
        if key in ("Type", "NotifyAccess", "ExecStart", "ExecReload", "WatchdogSec", "Restart",
                   "RestartSec", "WantedBy", "Description", "Wants", "After"):  # fmt: skip
            continue
        assert unit.get(key) == values, key
    timer_keys = directives(TIMER.read_text())
    assert timer_keys["Persistent"] == ["true"] and "RandomizedDelaySec" in timer_keys


@needs_analyze
def test_other_owners_dropin(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = directives(OTHER_OWNERS.read_text())
    assert set(d["CapabilityBoundingSet"][0].split()) == {
        "CAP_CHOWN", "CAP_FOWNER", "CAP_DAC_OVERRIDE"
    }  # fmt: skip
    assert dropin_exposure(tmp_path, OTHER_OWNERS, capsys) <= EXPOSURE_OTHER_OWNERS_MAX
