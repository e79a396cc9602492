"""Commands on configured identities: status, check-config, enroll NAME, renew NAME|--all."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from scepd import store
from scepd._compat import not_valid_after
from scepd.client import utc_now
from scepd.config import Config, Identity, ShellCommand, default_config_path, load_config
from scepd.errors import EXIT_ATTENTION, EXIT_HOOK, LocalFileError, ScepError
from scepd.manager import Manager, RunResult


def load(args: argparse.Namespace) -> Config:
    return load_config(args.config or default_config_path())


def _left(delta: dt.timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 0:
        return "EXPIRED"
    if seconds >= 2 * 86400:
        return f"{seconds // 86400}d left"
    if seconds >= 7200:
        return f"{seconds // 3600}h left"
    return f"{seconds // 60}m left"


def _status_of(manager: Manager, identity: Identity, now: dt.datetime) -> dict[str, Any]:
    cert = manager.current(identity)
    state = manager.state(identity.name)
    saved = manager.pending_transaction(identity)
    info: dict[str, Any] = {
        "identity": identity.name,
        "subject": identity.subject,
        "cert": str(identity.cert),
        "serial": None,
        "not_after": None,
        "seconds_left": None,
        "next_action": None,
        "next_at": None,
        "last_attempt": state.last_attempt,
        "last_result": state.last_result,
        "last_error": state.last_error,
        "failures": state.failures,
        "pending_since": saved.first_poll.isoformat() if saved else None,
        "pending_transaction_id": saved.transaction.transaction_id if saved else None,
    }
    if cert is not None:
        not_after = not_valid_after(cert)
        info.update(
            subject=cert.subject.rfc4514_string(),
            serial=f"{cert.serial_number:X}",
            not_after=not_after.isoformat(),
            seconds_left=int((not_after - now).total_seconds()),
        )
    if saved is not None:
        info.update(next_action="poll", next_at=state.next_attempt)
    elif state.last_result == "failed" and state.next_attempt:
        info.update(next_action="retry", next_at=state.next_attempt)
    elif cert is None:
        info.update(next_action="enroll", next_at=state.next_attempt or now.isoformat())
    else:
        info.update(next_action="renew", next_at=manager.due(identity, cert).isoformat())
    return info


def _needs_attention(info: dict[str, Any]) -> bool:
    expired = info["seconds_left"] is None or info["seconds_left"] < 0
    return expired or info["last_result"] in ("failed", "hook-failed", "waiting")


def _short(iso: str | None) -> str:
    return dt.datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M") + "Z" if iso else "-"


def status(args: argparse.Namespace) -> int:
    """Exit 0, or 8 when an identity has no valid certificate or its last attempt failed."""
    config = load(args)
    manager = Manager(config, debug=args.debug)
    now = utc_now()
    infos = [_status_of(manager, identity, now) for identity in manager.identities()]
    if args.json:
        json.dump(infos, sys.stdout, indent=2)
        print()
    else:
        if not infos:
            print(f"no identities configured in {config.path}")
        for info in infos:
            print(f"{info['identity']}: {info['subject']}")
            if info["serial"]:
                left = _left(dt.timedelta(seconds=info["seconds_left"]))
                print(f"  serial {info['serial']}, notAfter {_short(info['not_after'])} ({left})")
            else:
                print(f"  no certificate at {info['cert']}")
            print(f"  next: {info['next_action']} at {_short(info['next_at'])}")
            if info["last_attempt"]:
                error = f" ({info['last_error']})" if info["last_error"] else ""
                print(
                    f"  last attempt {_short(info['last_attempt'])}: {info['last_result']}{error}"
                )
            if info["pending_since"]:
                print(
                    f"  pending since {_short(info['pending_since'])}, transactionID "
                    f"{info['pending_transaction_id']}"
                )
    return EXIT_ATTENTION if any(_needs_attention(i) for i in infos) else 0


def check_config(args: argparse.Namespace) -> int:
    """Validate (exit 0, or 2), list identities with their next renewal, and report hooks that
    do not exist and files that cannot be written."""
    config = load(args)
    manager = Manager(config, debug=args.debug)
    problems: list[str] = []
    # The state directory is created on first use: its nearest existing parent must be writable.
    existing = config.state_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    problems += _writable(existing, what=f"state_dir {config.state_dir}")
    if config.metrics_file is not None:
        problems += _writable(
            config.metrics_file.parent, what=f"metrics_file {config.metrics_file}"
        )
    hooks = list(config.post_renew_batch)
    now = utc_now()
    for identity in manager.identities():
        for target in (identity.key, identity.cert, identity.chain, identity.fullchain):
            if target is not None:
                problems += _writable(target.parent, what=f"{identity.name}: {target}")
        hooks += [*identity.hooks.pre_renew, *identity.hooks.post_renew]
        info = _status_of(manager, identity, now)
        print(f"{identity.name}: {identity.subject} via {identity.server.name}; next "
              f"{info['next_action']} at {_short(info['next_at'])}")  # fmt: skip
    for command in hooks:
        program = "/bin/sh" if isinstance(command, ShellCommand) else command[0]
        if shutil.which(program) is None:
            problems.append(f"hook program not found: {program}")
    for problem in problems:
        print(f"scepd: error: {config.path}: {problem}", file=sys.stderr)
    if problems:
        return 2
    print(f"{config.path}: ok, {len(config.identities)} identities")
    return 0


def _writable(directory: Path, *, what: str) -> list[str]:
    try:
        store.check_writable(directory / ".scepd-check")
    except LocalFileError:
        return [f"{what}: directory {directory} is missing or not writable"]
    return []


def _print(result: RunResult) -> None:
    when = f" (next {_short(result.next_at.isoformat())})" if result.next_at else ""
    print(f"{result.identity}: {result.action}: {result.message}{when}")


def renew(args: argparse.Namespace) -> int:
    """renew NAME | --all: one attempt each, like the daemon would make; the batch hook runs
    once after them.  Exit 0; 8 when any failed; 9 when a hook failed; 3 when pending."""
    config = load(args)
    manager = Manager(config, debug=args.debug)
    names = None if args.all else [args.name]
    results = []
    for identity in manager.identities(names):
        try:
            result = manager.process(identity, force=args.force, dry_run=args.dry_run)
        except ScepError as exc:  # e.g. the identity is locked by the daemon
            print(f"scepd: error: {identity.name}: {exc}", file=sys.stderr)
            results.append(RunResult(identity.name, "failed", str(exc), None))
            continue
        _print(result)
        results.append(result)
    renewed = [r.identity for r in results if r.renewed]
    batch_ok = manager.run_batch_hooks(renewed)
    if not args.dry_run:
        manager.write_metrics()  # timer-based setups get metrics too
    if any(r.action in ("failed", "waiting") for r in results):
        return EXIT_ATTENTION
    if not batch_ok or any(r.hook_failed for r in results):
        return EXIT_HOOK
    return 3 if any(r.action == "pending" for r in results) else 0


def enroll(args: argparse.Namespace) -> int:
    """enroll NAME [--wait]: enroll a configured identity now (or poll its pending request)."""
    config = load(args)
    manager = Manager(config, debug=args.debug)
    (identity,) = manager.identities([args.name])
    if manager.current(identity) is not None and manager.pending_transaction(identity) is None:
        print(f"{identity.name}: already has a certificate ({identity.cert}); "
              f"`scepd renew {identity.name} --force` replaces it")  # fmt: skip
        return 0
    result = manager.process(identity)
    while args.wait and result.action == "pending" and result.next_at is not None:
        time.sleep(max(1.0, (result.next_at - utc_now()).total_seconds()))
        result = manager.process(identity)
    _print(result)
    manager.run_batch_hooks([result.identity] if result.renewed else [])
    if result.action in ("failed", "waiting"):
        return EXIT_ATTENTION
    if result.hook_failed:
        return EXIT_HOOK
    return 3 if result.action == "pending" else 0
