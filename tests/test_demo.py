"""`make demo` (scripts/demo), end to end: a real devca, a real `scepd run`, 40-second
certificates so that a renewal comes ~19 s in.  It must show an enrollment, a renewal with a
new serial, the hook's SCEPD_* environment and `scepd status`, end 0, and leave no process
and no temporary directory behind, also when Ctrl-C ends it early."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import REPO

DEMO = REPO / "scripts" / "demo"
VALIDITY = "40s"  # devca backdates by a tenth: 50% of 44 s is ~19 s after the enrollment
SECONDS = 28


def demo_env(tmp: Path, seconds: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCEPD", "DEMO_"))}
    return env | {
        # No venv in the Debian run: this interpreter (with -s: no user site) and this tree.
        "SCEPD": f"{sys.executable} -s -m scepd",
        "PYTHONPATH": str(REPO),
        "TMPDIR": str(tmp),
        "DEMO_SECONDS": str(seconds),
        "DEMO_VALIDITY": VALIDITY,
    }


def assert_nothing_left(tmp: Path, pgid: int) -> None:
    assert list(tmp.iterdir()) == [], "the demo's temporary directory is still there"
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        pass
    else:
        raise AssertionError(f"a process of the demo (group {pgid}) is still running")
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        assert str(tmp) not in text, f"left running: {text}"


def serials(out: str, verb: str) -> list[str]:
    return re.findall(rf"web: {verb} CN=web01\.example\.com,O=scepd demo serial (\w+)", out)


def test_demo_enrolls_renews_runs_the_hook_and_cleans_up(tmp_path: Path) -> None:
    started = time.monotonic()
    # start_new_session: the script leads its own process group, so leftovers can be found.
    proc = subprocess.Popen(
        [str(DEMO)], env=demo_env(tmp_path, SECONDS), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=SECONDS + 30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    took = time.monotonic() - started
    assert proc.returncode == 0, out
    assert re.search(r"==> starting a SCEP CA on http://127\.0\.0\.1:\d+/scep\n", out), out
    (enrolled,) = serials(out, "enrolled")
    renewed = serials(out, "renewed")
    assert renewed and renewed[0] != enrolled, out
    # The hook's environment, once per certificate.
    assert f"SCEPD_SERIAL={enrolled}\n" in out and "SCEPD_OLD_SERIAL=\n" in out
    assert f"SCEPD_SERIAL={renewed[0]}\n" in out and f"SCEPD_OLD_SERIAL={enrolled}\n" in out
    assert "SCEPD_IDENTITY=web\n" in out and "SCEPD_SUBJECT=CN=web01.example.com" in out
    # Log lines carry the time since the run started; the renewal is around the middle.
    at = re.findall(r"\[\+\s*(\d+)s\] scepd: \w+: web: renewed CN", out)
    assert at and 10 <= int(at[0]) <= SECONDS, out
    status = out.split("==> scepd --config ", 1)[1]
    assert re.search(rf"status\n    web: CN=web01\.example\.com,O=scepd demo\n"
                     rf"      serial {renewed[-1]}, notAfter ", status), out  # fmt: skip
    assert "last attempt " in status and ": renewed" in status
    assert "==> cleaning up" in out
    assert_nothing_left(tmp_path, proc.pid)
    assert took < SECONDS + 15, f"the demo took {took:.0f}s"


def test_ctrl_c_ends_early_shows_status_and_cleans_up(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [str(DEMO)], env=demo_env(tmp_path, 600), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    lines: queue.Queue[str | None] = queue.Queue()
    seen: list[str] = []

    def read() -> None:  # a thread, so that a demo that prints nothing cannot hang the test
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 30
        while not any("web: enrolled CN=" in line for line in seen):
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError("no enrollment in 30 s:\n" + "".join(seen)) from None
            if line is None:
                raise AssertionError("".join(seen))
            seen.append(line)
        # A terminal's Ctrl-C: SIGINT to the whole foreground process group.
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)
        reader.join(10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    while not lines.empty():
        line = lines.get_nowait()
        if line is not None:
            seen.append(line)
    out = "".join(seen)
    assert proc.returncode == 0, out
    assert "ended early by Ctrl-C" in out
    assert "==> scepd --config " in out and "web: CN=web01.example.com,O=scepd demo\n" in out
    assert "==> cleaning up" in out
    assert_nothing_left(tmp_path, proc.pid)
