"""hooks.run_hook with real processes: environment, no shell for argv, shell form, failures
reported (never raised), a timeout kills the hook's whole process group, output logged."""

from __future__ import annotations

import logging
import os
import shlex
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scepd.hooks import MAX_OUTPUT, hook_environment, run_hook

log = logging.getLogger("test.hooks")
BASE = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}


@pytest.fixture
def caplog_info(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.INFO, logger=log.name)
    yield caplog


def _dead(pid: int) -> bool:
    """Gone, or a zombie nobody has reaped yet (it runs no more code either way)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _wait_dead(pid: int, within: float = 2.0) -> bool:
    deadline = time.monotonic() + within
    while not _dead(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_environment_drops_systemd_variables_and_adds_scepd_ones() -> None:
    base = {**BASE, "NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "30000000",
            "WATCHDOG_PID": "1", "WATCHDOG_OTHER": "x", "KEEP": "1"}  # fmt: skip
    env = hook_environment(base, {"SCEPD_IDENTITY": "web", "SCEPD_CERT": "/etc/ssl/web.pem"})
    result = run_hook(("/usr/bin/env",), env=env, timeout=5, log=log)
    assert result.ok, result
    seen = dict(line.split("=", 1) for line in result.output.splitlines())
    assert seen["SCEPD_IDENTITY"] == "web" and seen["SCEPD_CERT"] == "/etc/ssl/web.pem"
    assert seen["KEEP"] == "1" and seen["PATH"] == BASE["PATH"]
    assert not {k for k in seen if k == "NOTIFY_SOCKET" or k.startswith("WATCHDOG_")}
    assert "NOTIFY_SOCKET" in base  # the caller's mapping is not changed


def test_argv_is_not_interpreted_by_a_shell(tmp_path: Path) -> None:
    marker = tmp_path / "x"
    tricky = f"$(touch {marker}); rm -rf {tmp_path} *"
    argv = ("/usr/bin/printf", "[%s]\\n", tricky, "two words", "`id`")
    result = run_hook(argv, env=BASE, timeout=5, log=log)
    assert result.ok, result
    assert result.output.splitlines() == [f"[{tricky}]", "[two words]", "[`id`]"]
    assert not marker.exists() and tmp_path.exists()
    assert result.command == shlex.join(argv)


def test_shell_form_and_a_non_zero_exit(caplog_info: pytest.LogCaptureFixture) -> None:
    text = "echo one; echo two >&2; exit 3"
    result = run_hook(text, shell=True, env=BASE, timeout=5, log=log)
    assert (result.returncode, result.timed_out, result.ok) == (3, False, False)
    assert result.output.splitlines() == ["one", "two"]
    assert result.command == text and result.error == "exit status 3"
    errors = [r for r in caplog_info.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [f"hook {text}: exit status 3"]


def test_missing_program_is_reported_not_raised(caplog_info: pytest.LogCaptureFixture) -> None:
    result = run_hook(("/nonexistent/bin/pre", "arg"), env=BASE, timeout=5, log=log)
    assert result.returncode is None and not result.ok and not result.timed_out
    assert result.error == "not found: /nonexistent/bin/pre"
    assert any(r.levelno == logging.ERROR and "not found" in r.getMessage()
               for r in caplog_info.records)  # fmt: skip


def test_not_executable_is_reported(tmp_path: Path) -> None:
    script = tmp_path / "hook.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    result = run_hook((str(script),), env=BASE, timeout=5, log=log)  # root needs an x bit too
    assert not result.ok and result.returncode is None
    assert result.error == f"not executable: {script}"


def test_output_lines_logged(caplog_info: pytest.LogCaptureFixture) -> None:
    argv = ("/bin/sh", "-c", "echo first; printf 'no newline at end'")
    result = run_hook(argv, env=BASE, timeout=5, log=log)
    assert result.ok
    label = shlex.join(argv)
    infos = [r.getMessage() for r in caplog_info.records if r.levelno == logging.INFO]
    assert infos == [f"hook {label}: first", f"hook {label}: no newline at end"]


def test_output_truncated_and_stdin_is_dev_null() -> None:
    result = run_hook("head -c 100000 /dev/zero | tr '\\0' x; cat", shell=True, env=BASE,
                      timeout=5, log=log)  # fmt: skip
    assert result.ok  # `cat` got EOF at once: stdin is /dev/null
    assert result.output == "x" * MAX_OUTPUT


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    text = f"sleep 60 & echo $! > {pids}; echo $$ >> {pids}; echo started; wait"
    start = time.monotonic()
    result = run_hook(text, shell=True, env=BASE, timeout=1, log=log)
    elapsed = time.monotonic() - start
    assert result.timed_out and result.returncode is None and not result.ok
    assert result.error is not None and result.error.startswith("timed out after 1 s")
    assert "started" in result.output
    assert 1 <= elapsed < 2.5  # sh and sleep die on SIGTERM: no 2 s wait for SIGKILL
    child, hook = (int(p) for p in pids.read_text().split())
    assert _wait_dead(hook) and _wait_dead(child), "the hook or its background child survived"


def test_timeout_sigkills_a_group_that_ignores_sigterm(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # An ignored signal stays ignored across exec: neither sh nor its sleep children stop.
    text = f"trap '' TERM; sleep 60 & echo $! > {pids}; echo $$ >> {pids}; wait"
    start = time.monotonic()
    result = run_hook(text, shell=True, env=BASE, timeout=1, log=log)
    elapsed = time.monotonic() - start
    assert result.timed_out and not result.ok
    assert 3 <= elapsed < 5  # 1 s timeout + 2 s grace, then SIGKILL
    for pid in (int(p) for p in pids.read_text().split()):
        assert _wait_dead(pid), pid


def test_a_background_child_holding_the_output_does_not_hang_the_hook(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    start = time.monotonic()
    result = run_hook(f"sleep 30 & echo $! > {pidfile}; echo done", shell=True, env=BASE,
                      timeout=10, log=log)  # fmt: skip
    try:
        assert result.ok and result.output == "done\n"
        assert time.monotonic() - start < 2
    finally:
        os.kill(int(pidfile.read_text()), signal.SIGKILL)
