"""Running pre/post-renewal hooks: an argv (never through a shell) or, when asked, a shell text.

A hook runs in its own process group with stdin from /dev/null and a clean environment (no
systemd notification or watchdog variables, so a hook cannot speak for scepd to systemd).
Its output is logged line by line; a hook that overruns its timeout is stopped with its whole
process group.  A failing hook is reported in the HookResult, never raised."""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

MAX_OUTPUT = 64 * 1024
KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL to a timed-out hook's group
# After a hook exits, a background child it left may still hold the output pipe: read it only
# this much longer, so a hook that starts a daemon does not hang scepd.
DRAIN_GRACE = 0.5
_POLL = 0.05


@dataclass(frozen=True)
class HookResult:
    command: str  # for logs: argv joined with shlex.join, or the shell text
    returncode: int | None  # None when it timed out or could not start
    timed_out: bool
    error: str | None  # e.g. "not found: /usr/local/bin/pre"
    output: str  # combined stdout+stderr, decoded with errors="replace", first 64 KiB

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and self.error is None


def hook_environment(base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """``base`` (usually os.environ) without NOTIFY_SOCKET and WATCHDOG_*, plus ``extra``."""
    env = {
        k: v for k, v in base.items() if k != "NOTIFY_SOCKET" and not k.startswith("WATCHDOG_")
    }
    env.update(extra)
    return env


class _Output:
    """Keeps the first MAX_OUTPUT bytes and logs them line by line as they arrive."""

    def __init__(self, label: str, log: logging.Logger) -> None:
        self._label, self._log = label, log
        self.data = bytearray()
        self._partial = b""
        self._truncated = False

    def feed(self, chunk: bytes) -> None:
        kept = chunk[: max(0, MAX_OUTPUT - len(self.data))]
        self.data += kept
        lines = (self._partial + kept).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            self._line(line)
        if len(kept) < len(chunk) and not self._truncated:
            self._truncated = True
            self._log.info("hook %s: (output beyond %d bytes not kept)", self._label, MAX_OUTPUT)

    def close(self) -> None:
        if self._partial:
            self._line(self._partial)
            self._partial = b""

    def _line(self, line: bytes) -> None:
        self._log.info("hook %s: %s", self._label, line.decode("utf-8", "replace").rstrip("\r"))


def _pump(fd: int, out: _Output, until: float, stop: Callable[[], bool]) -> bool:
    """Read ``fd`` into ``out`` until EOF (True), ``stop()`` or the deadline (False)."""
    while not stop():
        left = until - time.monotonic()
        if left <= 0:
            return False
        ready, _, _ = select.select([fd], [], [], min(left, _POLL))
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                return True
            out.feed(chunk)
    return False


def _group_alive(proc: subprocess.Popen[bytes]) -> bool:
    """Whether a process of the hook's group still runs.  Zombies do not count: an orphaned
    child is reaped by init when init gets to it (some container inits take seconds), and
    killpg(pgid, 0) would report it alive until then."""
    proc.poll()  # reap the leader ourselves
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                # "pid (comm) state ppid pgrp ...": comm may itself hold ")".
                fields = handle.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and int(fields[2]) == proc.pid and fields[0] != b"Z":
            return True
    return False


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)  # start_new_session: the group id is the leader's pid


def _wait_until(condition: Callable[[], bool], until: float) -> None:
    while not condition() and time.monotonic() < until:
        time.sleep(_POLL)


def run_hook(
    command: tuple[str, ...] | str,
    *,
    shell: bool = False,
    env: Mapping[str, str],
    timeout: float,
    log: logging.Logger,
) -> HookResult:
    """Run a hook and wait for it at most ``timeout`` seconds (then SIGTERM its process group
    and, KILL_GRACE seconds later, SIGKILL).  ``command`` is an argv; with ``shell=True`` it is
    a text for /bin/sh -c (a tuple is then joined with shlex.join).  A str without shell is
    one program path, not split.  Never raises for a failing hook."""
    if shell:
        label = command if isinstance(command, str) else shlex.join(command)
        argv: tuple[str, ...] = ("/bin/sh", "-c", label)
    else:
        argv = (command,) if isinstance(command, str) else command
        label = shlex.join(argv)

    def failed(
        error: str, output: str = "", *, rc: int | None = None, timed_out: bool = False
    ) -> HookResult:
        log.error("hook %s: %s", label, error)
        return HookResult(label, rc, timed_out=timed_out, error=error, output=output)

    if not argv or not argv[0]:
        return failed("empty command")
    try:
        proc = subprocess.Popen(  # noqa: S603 - running the configured hook is the point
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=dict(env), start_new_session=True, close_fds=True,
        )  # fmt: skip
    except FileNotFoundError:
        return failed(f"not found: {argv[0]}")
    except PermissionError:
        return failed(f"not executable: {argv[0]}")
    except OSError as exc:
        return failed(f"cannot start {argv[0]}: {exc.strerror or exc}")

    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    out = _Output(label, log)
    try:
        deadline = time.monotonic() + timeout
        eof = _pump(fd, out, deadline, lambda: proc.poll() is not None)
        if eof:  # it closed its output; it may still be running
            _wait_until(lambda: proc.poll() is not None, deadline)
        timed_out = proc.poll() is None
        if timed_out:
            _signal_group(proc, signal.SIGTERM)
            grace = time.monotonic() + KILL_GRACE
            if not eof:  # what it says while it stops is worth having
                eof = _pump(fd, out, grace, lambda: not _group_alive(proc))
            _wait_until(lambda: not _group_alive(proc), grace)
            if _group_alive(proc):
                _signal_group(proc, signal.SIGKILL)
            proc.wait()
        if not eof:
            _pump(fd, out, time.monotonic() + DRAIN_GRACE, lambda: False)
    finally:
        proc.stdout.close()
        out.close()
    output = bytes(out.data).decode("utf-8", "replace")
    if timed_out:
        error = f"timed out after {timeout:g} s; its process group was killed"
        return failed(error, output, timed_out=True)
    rc = proc.returncode
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = str(-rc)
        return failed(f"killed by signal {name}", output, rc=rc)
    if rc != 0:
        return failed(f"exit status {rc}", output, rc=rc)
    return HookResult(label, 0, timed_out=False, error=None, output=output)
