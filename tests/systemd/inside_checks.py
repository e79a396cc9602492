#!/usr/bin/python3
"""The checks that run inside the booted container, as scepd-systemd-test.service.

They drive the unit of the installed scepd package with systemctl, as an administrator would,
and record what systemd, the journal, /proc and the file system show in OUT/results.json;
the host (test_under_systemd.py) reads it after the boot and makes the assertions.  Every
wait is bounded.  At the end the journals are saved next to it and the container powers off.

Only Debian's python3 and python3-cryptography (a dependency of the package) are used: no
scepd code is imported here, the scepd under test is the packaged one, run by systemd.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import subprocess
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509

OUT = Path("/var/lib/scepd-systemd-test")
UNIT = "scepd.service"
DUMMY = "scepd-dummy.service"
MARKER = OUT / "dummy-reloads"
T = TypeVar("T")

# Journal fields worth keeping for the host (and the report); SCEPD_* are kept too.
KEEP = {"MESSAGE", "MESSAGE_ID", "PRIORITY", "SYSLOG_IDENTIFIER", "_PID", "_SYSTEMD_UNIT",
        "UNIT", "__MONOTONIC_TIMESTAMP"}  # fmt: skip
UNIT_PROPS = (
    "Type", "NotifyAccess", "ActiveState", "SubState", "Result", "MainPID", "StatusText",
    "NRestarts", "UnitFileState", "FragmentPath", "DropInPaths", "WatchdogUSec",
    "RestartUSec", "ExecMainStartTimestampMonotonic", "ActiveEnterTimestampMonotonic",
    "ExecMainCode", "ExecMainStatus",
)  # fmt: skip
# For the report: what the sandbox looks like to systemd once the package is installed.
SANDBOX_PROPS = (
    "ExecStart", "ExecReload", "ProtectSystem", "ReadWritePaths", "StateDirectory",
    "StateDirectoryMode", "CapabilityBoundingSet", "AmbientCapabilities", "NoNewPrivileges",
    "RestrictSUIDSGID", "ProtectHome", "PrivateTmp", "PrivateDevices", "ProtectProc",
    "ProcSubset", "RestrictAddressFamilies", "RestrictNamespaces", "MemoryDenyWriteExecute",
    "SystemCallArchitectures", "SystemCallErrorNumber", "UMask", "LoadCredential",
    "PrivateIPC", "PrivateMounts", "KeyringMode", "LockPersonality", "ProtectClock",
    "ProtectHostname", "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
    "ProtectControlGroups", "RestrictRealtime", "User", "Restart",
)  # fmt: skip


# --- helpers --------------------------------------------------------------------------------


def run(*cmd: str, timeout: float = 60) -> dict[str, Any]:
    started = time.monotonic()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        return {"cmd": list(cmd), "rc": None, "timed_out": timeout,
                "stdout": str(exc.stdout or ""), "stderr": str(exc.stderr or "")}  # fmt: skip
    return {"cmd": list(cmd), "rc": done.returncode, "stdout": done.stdout,
            "stderr": done.stderr, "seconds": round(time.monotonic() - started, 2)}  # fmt: skip


def show(unit: str, *props: str) -> dict[str, str]:
    out = run("systemctl", "show", unit, "--no-pager", *(f"--property={p}" for p in props))
    return dict(line.split("=", 1) for line in out["stdout"].splitlines() if "=" in line)


def journal(unit: str, *matches: str) -> list[dict[str, Any]]:
    """This boot's entries of ``unit`` (its processes' and PID 1's about it), slimmed."""
    out = run("journalctl", "-b", "--no-pager", "-o", "json", "-u", unit, *matches)
    entries = [json.loads(line) for line in out["stdout"].splitlines() if line.strip()]
    return [{k: v for k, v in e.items() if k in KEEP or k.startswith("SCEPD_")} for e in entries]


def by_pid1(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries if e.get("_PID") == "1"]


def by_daemon(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries if e.get("_PID") != "1"]


def events(kind: str, ids: dict[str, str]) -> list[dict[str, Any]]:
    return journal(UNIT, f"MESSAGE_ID={ids[kind]}")


def messages(entries: list[dict[str, Any]]) -> list[str]:
    return [str(e.get("MESSAGE", "")) for e in entries]


def wait_for(
    probe: Callable[[], T], done: Callable[[T], bool], timeout: float
) -> tuple[T, float | None]:
    """Poll ``probe`` until ``done``; the last value and the seconds it took (None: timed out)."""
    started = time.monotonic()
    while True:
        value = probe()
        elapsed = time.monotonic() - started
        if done(value):
            return value, round(elapsed, 2)
        if elapsed > timeout:
            return value, None
        time.sleep(0.25)


def now_usec() -> int:
    """CLOCK_MONOTONIC in µs: the clock of __MONOTONIC_TIMESTAMP and *TimestampMonotonic."""
    return time.monotonic_ns() // 1000


def since(entries: list[dict[str, Any]], usec: int) -> list[dict[str, Any]]:
    return [e for e in entries if int(e.get("__MONOTONIC_TIMESTAMP", 0)) >= usec]


def logged_since(unit: str, usec: int, *texts: str, timeout: float = 5) -> list[dict[str, Any]]:
    """The unit's entries since ``usec``, once each of ``texts`` is in one of them (journald
    stores an entry a moment after its sender has moved on) or ``timeout`` has passed."""
    entries, _ = wait_for(
        lambda: since(journal(unit), usec),
        lambda found: all(any(t in m for m in messages(found)) for t in texts),
        timeout,
    )
    return entries


def serial_of(path: str) -> str | None:
    try:
        return f"{x509.load_pem_x509_certificate(Path(path).read_bytes()).serial_number:X}"
    except (OSError, ValueError):
        return None


def marker_lines() -> list[str]:
    return MARKER.read_text().splitlines() if MARKER.exists() else []


def main_pid() -> int:
    return int(show(UNIT, "MainPID").get("MainPID", "0") or 0)


# --- the checks, in order; each gets the parameters and the results so far -----------------


def check_start(params: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    dummy = run("systemctl", "start", DUMMY, timeout=30)
    before = show(UNIT, "UnitFileState", "ActiveState")
    started = now_usec()
    enable = run("systemctl", "enable", "--now", UNIT, timeout=90)
    props = show(UNIT, *UNIT_PROPS)
    log = logged_since(UNIT, started, "scepd running")
    running = [e for e in by_daemon(log) if "scepd running" in str(e.get("MESSAGE", ""))]
    return {"dummy_start": dummy, "before": before, "enable_now": enable, "props": props,
            "running_log": running,
            "dummy_active": show(DUMMY, "ActiveState")["ActiveState"]}  # fmt: skip


def _proc_status(pid: int) -> dict[str, str]:
    """The process's state, no_new_privs, seccomp mode and capability sets ({}: gone)."""
    wanted = ("State", "NoNewPrivs", "Seccomp", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except FileNotFoundError:
        return {}
    pairs = (line.split(":", 1) for line in lines if ":" in line)
    return {k: v.strip() for k, v in pairs if k in wanted}


def _mount_options(pid: int, points: tuple[str, ...]) -> dict[str, str]:
    """Per-mount options of each mount point as the process sees it (the last mount wins)."""
    found: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] in points:
            found[fields[4]] = fields[5]
    return found


def check_sandbox(params: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    pid = main_pid()
    points = ("/", "/etc/ssl/private", "/etc/ssl/certs", "/var/lib/scepd", "/tmp", "/home",
              "/root", "/dev")  # fmt: skip
    creds = Path(f"/run/credentials/{UNIT}")
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return {
        "pid": pid,
        "status": _proc_status(pid),
        "mounts": _mount_options(pid, points),
        # Names only: a credential's content is a challenge password.
        "credentials": sorted(os.listdir(creds)) if creds.is_dir() else None,
        "credentials_directory": next((v.decode().split("=", 1)[1] for v in environ
                                       if v.startswith(b"CREDENTIALS_DIRECTORY=")), None),
        "properties": show(UNIT, *SANDBOX_PROPS),
    }  # fmt: skip


def check_security(params: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    out = run("systemd-analyze", "security", "--no-pager", UNIT, timeout=60)
    match = re.search(rf"Overall exposure level for {re.escape(UNIT)}: (\d+\.\d+) (\S+)",
                      out["stdout"])  # fmt: skip
    return {"analyze": out, "exposure": float(match.group(1)) if match else None,
            "verdict": match.group(2) if match else None}  # fmt: skip


def check_enrolled(params: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    ids = params["message_ids"]
    found, waited = wait_for(lambda: events("enrolled", ids), bool, params["enroll_timeout"])
    catalog = run("journalctl", "-b", "-x", "--no-pager", "-u", UNIT,
                  f"MESSAGE_ID={ids['enrolled']}")  # fmt: skip
    return {"events": found, "waited": waited, "cert_serial": serial_of(params["files"]["cert"]),
            "failures": events("renewal-failed", ids), "catalog": catalog["stdout"],
            "status": run("scepd", "status", "--json", timeout=30)}  # fmt: skip


def check_renewed(params: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    ids = params["message_ids"]
    if not results.get("enrolled", {}).get("observed", {}).get("events"):
        return {"skipped": "no enrollment to renew"}
    found, waited = wait_for(lambda: events("renewed", ids), bool, params["renew_timeout"])
    # post_renew ran once for the enrollment and once per renewal; each ran one reload.
    expected = 1 + len(found)
    lines, hook_waited = wait_for(marker_lines, lambda v: len(v) >= expected, 20)
    dummy, _ = wait_for(
        lambda: messages(by_pid1(journal(DUMMY))),
        lambda msgs: sum(m.startswith("Reloaded ") for m in msgs) >= expected,
        5,
    )
    return {
        "events": found,
        "waited": waited,
        "marker_lines": lines,
        "marker_waited": hook_waited,
        "cert_serial": serial_of(params["files"]["cert"]),
        "dummy_journal": dummy,
        "dummy_active": show(DUMMY, "ActiveState")["ActiveState"],
        "hook_failed": events("hook-failed", ids),
        "failures": events("renewal-failed", ids),
    }


def check_reload(params: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    pid = main_pid()
    started = now_usec()
    reload = run("systemctl", "reload", UNIT, timeout=30)
    log = logged_since(UNIT, started, "configuration reloaded", "Reloaded ", timeout=15)
    reloaded = [e for e in by_daemon(log) if "configuration reloaded" in str(e.get("MESSAGE"))]
    return {"pid_before": pid, "reload": reload, "daemon_log": reloaded,
            "pid1_log": messages(by_pid1(log)),
            "props": show(UNIT, "ActiveState", "SubState", "MainPID", "NRestarts")}  # fmt: skip


def check_watchdog(params: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    before = show(UNIT, "MainPID", "NRestarts", "WatchdogUSec", "ActiveState")
    old_pid = int(before["MainPID"])
    started = now_usec()
    kill = run("systemctl", "kill", "--signal=SIGSTOP", "--kill-who=main", UNIT, timeout=30)
    state, _ = wait_for(lambda: _proc_status(old_pid).get("State", ""),
                        lambda s: s.startswith("T"), 5)  # fmt: skip

    def restarted(props: dict[str, str]) -> bool:
        return (int(props["NRestarts"]) > int(before["NRestarts"])
                and props["ActiveState"] == "active"
                and props["MainPID"] not in ("0", before["MainPID"]))  # fmt: skip

    after, waited = wait_for(
        lambda: show(UNIT, "MainPID", "NRestarts", "ActiveState", "SubState", "Result"),
        restarted, params["watchdog_timeout"],
    )  # fmt: skip
    log = by_pid1(logged_since(UNIT, started, "Watchdog timeout", "Started "))
    timeout_at = next((int(e["__MONOTONIC_TIMESTAMP"]) for e in log
                       if "Watchdog timeout" in str(e.get("MESSAGE", ""))), None)  # fmt: skip
    return {
        "before": before,
        "kill": kill,
        "stopped_state": state,
        "after": after,
        "waited": waited,
        "pid1_log": messages(log),
        "seconds_to_timeout": round((timeout_at - started) / 1e6, 2) if timeout_at else None,
        "old_pid_gone": not Path(f"/proc/{old_pid}").exists(),
    }


def check_stop(params: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    started = now_usec()
    stop = run("systemctl", "stop", UNIT, timeout=90)
    log = logged_since(UNIT, started, "scepd stopped", "Stopped ")
    return {"stop": stop, "props": show(UNIT, *UNIT_PROPS),
            "is_failed": run("systemctl", "is-failed", UNIT),
            "daemon_log": messages(by_daemon(log)), "pid1_log": messages(by_pid1(log))}  # fmt: skip


def _stat(path: str) -> dict[str, Any]:
    try:
        st = os.stat(path)
    except OSError as exc:
        return {"error": str(exc)}
    return {"mode": f"{st.st_mode & 0o7777:04o}", "owner": pwd.getpwuid(st.st_uid).pw_name,
            "group": grp.getgrgid(st.st_gid).gr_name}  # fmt: skip


def check_files(params: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    paths = {**params["files"], "state_dir": "/var/lib/scepd"}
    return {name: _stat(path) for name, path in paths.items()}


CHECKS: list[tuple[str, Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]]] = [
    ("start", check_start),
    ("sandbox", check_sandbox),
    ("security", check_security),
    ("enrolled", check_enrolled),
    ("renewed", check_renewed),
    ("reload", check_reload),
    ("watchdog", check_watchdog),
    ("stop", check_stop),
    ("files", check_files),
]


# --- driver ---------------------------------------------------------------------------------


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    tmp.rename(path)  # the host never reads half a file


def save_journals() -> None:
    for name, args in [
        ("journal-boot.txt", ["-o", "short-monotonic"]),
        ("journal-units.txt", ["-o", "short-monotonic", "-u", UNIT, "-u", DUMMY]),
        ("journal-scepd.json", ["-o", "json", "-u", UNIT]),
    ]:
        out = run("journalctl", "-b", "--no-pager", *args, timeout=60)
        (OUT / name).write_text(out["stdout"] + out["stderr"])


def main() -> int:
    params = json.loads((OUT / "params.json").read_text())
    results: dict[str, Any] = {}
    try:
        for name, check in CHECKS:
            started = time.monotonic()
            try:
                results[name] = {"observed": check(params, results)}
            except Exception:
                results[name] = {"error": traceback.format_exc()}
            results[name]["seconds"] = round(time.monotonic() - started, 2)
            write_json(OUT / "results.json", results)
            print(f"scepd-systemd-test: {name} done in {results[name]['seconds']} s", flush=True)
    finally:
        save_journals()
        results["complete"] = True
        write_json(OUT / "results.json", results)
        run("systemctl", "poweroff", "--no-block", timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
